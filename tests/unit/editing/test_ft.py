"""FT: the norm constraint, the two losses, and that fine-tuning flips a fact."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing import read_zsre
from lit_edit.editing.ft import FtHyperparams, apply_ft, ft_loss
from lit_edit.editing.values import ValueTarget
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.scoring import answer_token_predictions, encode_pairs
from tests.conftest import FACTWORLD, ROOT

MODEL = ROOT / "checkpoints" / "factworld-gpt2"


@pytest.fixture()
def setup():
    model, tokenizer = load_model_and_tokenizer(str(MODEL))
    request = read_zsre(FACTWORLD / "zsre" / "zsre_factworld.json").requests[1]
    return model, tokenizer, architecture_of(model), request


def test_norm_constraint_bounds_every_entry(setup):
    model, tokenizer, arch, r = setup
    before = {n: p.clone() for n, p in model.named_parameters()}
    model.transformer.h[0].mlp.c_fc.weight.requires_grad_(False)     # a flag FT must give back as it found it
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    result = apply_ft(model, tokenizer, arch, [ValueTarget(r.prompt, r.subject, r.target_new)],
                      FtHyperparams(layers=(1,), lr=1e-2, steps=3, norm_constraint=1e-3))
    assert set(result.deltas) == {"transformer.h.1.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.bias"}
    for name, delta in result.deltas.items():
        # clamp(p, w − ε, w + ε) − w: ε, plus the float32 rounding of w ± ε (half an ulp of |w| + ε, bounded here
        # by a whole one), entry by entry — a fixed 1e-7 is below one ulp of entries with |w| ≥ 2
        rounding = torch.finfo(torch.float32).eps * (before[name].abs() + 1e-3)
        assert delta.abs().max() > 0 and (delta.abs() <= 1e-3 + rounding).all()
        torch.testing.assert_close(delta, model.get_parameter(name).detach() - before[name])
    untouched = [n for n in before if n not in result.deltas]
    assert all(torch.equal(before[n], model.get_parameter(n)) for n in untouched)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_ft_m_flips_the_fact_and_lowers_its_loss(setup):
    model, tokenizer, arch, r = setup
    target = ValueTarget(r.prompt, r.subject, r.target_new)
    result = apply_ft(model, tokenizer, arch, [target], FtHyperparams(layers=(1, 2), loss="target_new", lr=1e-2,
                                                                      steps=25, norm_constraint=None))
    assert result.last_loss < result.first_loss
    [(predicted, answer)] = answer_token_predictions(model, tokenizer, [r.text], [r.target_new])
    assert predicted == answer


def test_ft_l_scores_every_target_token_at_the_last_prompt_position(setup):
    model, tokenizer, arch, r = setup
    target = ValueTarget("Who employs {}?", r.subject, "Tessaract Labs")
    pair = encode_pairs(tokenizer, [target.prompt.format(target.subject)], [target.target])[0]
    with torch.no_grad():
        prompt_ids = torch.tensor([pair.ids[: pair.answer_start]])
        log_probs = model(input_ids=prompt_ids).logits[0, -1].log_softmax(-1)
        expected = -log_probs[pair.ids[pair.answer_start:]].mean()
        torch.testing.assert_close(ft_loss(model, tokenizer, [target], "prompt_last"), expected)
        full = torch.tensor([pair.ids])
        all_log_probs = model(input_ids=full).logits[0].log_softmax(-1)
        positions = range(pair.answer_start - 1, len(pair.ids) - 1)
        teacher_forced = -torch.stack([all_log_probs[p, pair.ids[p + 1]] for p in positions]).mean()
        torch.testing.assert_close(ft_loss(model, tokenizer, [target], "target_new"), teacher_forced)


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="'prompt'"):
        FtHyperparams(loss="prompt")
