"""COMEBA-HK's hook layers: the gate against a direct computation, and generation with and without the KV cache."""

import pytest
import torch

from lit_edit.editing.hook_layers import HookBank, gate_zscores
from lit_edit.generation import greedy_decode
from lit_edit.hooks import record
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.scoring import pad_right
from tests.conftest import make_tiny_model


def test_zscores_of_a_plain_pass_are_the_papers_over_the_real_tokens():
    norms = torch.tensor([[0.0, 1.0, 2.0, 9.0], [5.0, 1.0, 1.0, 7.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True], [False, True, True, True]])
    z, history = gate_zscores(norms, mask)
    for row in range(2):
        real = norms[row][mask[row]]
        expected = (real - real.mean()) / real.std(unbiased=True)
        torch.testing.assert_close(z[row][mask[row]], expected)
    assert z[1, 0] == float("-inf")                                # padding never swaps
    torch.testing.assert_close(history[1], torch.tensor([3.0, 9.0, 51.0], dtype=torch.float64))


def test_continuation_scores_each_new_token_against_the_history_up_to_itself():
    norms = torch.tensor([[1.0, 2.0, 4.0, 3.0, 10.0, 0.5]], dtype=torch.float64)
    mask = torch.ones(1, 6, dtype=torch.bool)
    whole, _ = gate_zscores(norms, mask, prompt_length=3)
    _, history = gate_zscores(norms[:, :3], mask[:, :3])
    pieces = []
    for t in range(3, 6):
        z, history = gate_zscores(norms[:, t:t + 1], mask[:, t:t + 1], history)
        pieces.append(z)
        seen = norms[0, : t + 1]
        torch.testing.assert_close(z[0, 0], (norms[0, t] - seen.mean()) / seen.std(unbiased=True))
    torch.testing.assert_close(torch.cat(pieces, 1), whole[:, 3:])
    prompt, _ = gate_zscores(norms[:, :3], mask[:, :3])
    torch.testing.assert_close(whole[:, :3], prompt)


def test_degenerate_windows_never_swap():
    z, _ = gate_zscores(torch.tensor([[3.0], [1.0]]), torch.ones(2, 1, dtype=torch.bool))
    assert (z == float("-inf")).all()
    z, _ = gate_zscores(torch.full((1, 4), 2.0), torch.ones(1, 4, dtype=torch.bool))
    assert (z == float("-inf")).all()


def _bank(model, arch, alpha, seed=0, **options):
    bank = HookBank(model, arch, [0, 2], alpha=alpha, **options).install()
    g = torch.Generator().manual_seed(seed)
    for hook in bank.layers.values():
        hook.add(torch.randn(hook.delta.shape, generator=g) * 0.5)
    return bank


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_generation_with_and_without_the_cache_is_identical(tmp_path, family):
    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model(family, tmp_path, seed=3)))
    arch = architecture_of(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bank = _bank(model, arch, alpha=0.5)
    bank.set_mode("validated")
    prompts = ["The capital of Voria is", "Zed", "A long sentence about the lakes of the north and their birds"]
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    with torch.no_grad():
        cached = greedy_decode(model, batch["input_ids"], batch["attention_mask"], 8, eos_id=-1, pad_id=pad)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with bank.generation():
            for _ in range(8):
                out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
                ids = torch.cat([ids, out.logits[:, -1].argmax(-1, keepdim=True)], 1)
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
    assert torch.equal(cached, ids[:, batch["input_ids"].shape[1]:])
    # the gate changes the generation (it fires), and the base model's weights were never touched
    with torch.no_grad(), bank.mode("off"):
        plain = greedy_decode(model, batch["input_ids"], batch["attention_mask"], 8, eos_id=-1, pad_id=pad)
    assert not torch.equal(plain, cached)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    del eos


def test_modes_and_thresholds(tmp_path):
    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model("gpt2", tmp_path, seed=4)))
    arch = architecture_of(model)
    bank = _bank(model, arch, alpha=1.0)
    ids, mask = pad_right([tokenizer("alpha beta gamma delta epsilon")["input_ids"],
                           tokenizer("one two three")["input_ids"]], tokenizer.pad_token_id)
    outputs, ffn = {}, {}
    for mode in ("off", "temporary", "validated", "recording"):
        with torch.no_grad(), bank.mode(mode), record(model, [arch.ffn_out_at(0)]) as seen:
            outputs[mode] = model(input_ids=ids, attention_mask=mask).logits
        ffn[mode] = seen[arch.ffn_out_at(0)].output
    assert torch.equal(outputs["off"], outputs["recording"])          # recording never changes the output
    assert not torch.allclose(outputs["off"], outputs["temporary"])
    # at the first hooked layer, validated is the temporary output exactly where z ≥ α, else the original
    recorded = bank.record_scores(ids, mask)
    z0 = recorded[0][0][0]
    gate = (z0 >= 1.0).unsqueeze(-1)
    assert 0 < int(gate.sum()) < int(mask.sum())
    torch.testing.assert_close(ffn["validated"], torch.where(gate, ffn["temporary"], ffn["off"]))
    before = {layer: hook.alpha for layer, hook in bank.layers.items()}
    bank.record_scores(ids, mask)
    missed = bank.lower_thresholds()
    for layer, hook in bank.layers.items():
        maxima = recorded[layer][0][0].max(dim=1).values
        assert hook.alpha == pytest.approx(min(before[layer], float(maxima.min())))
        assert missed[layer] == 0
    with pytest.raises(ValueError, match="unknown hook mode"):
        bank.set_mode("always")
    bank.remove()
    assert not bank.installed


def test_gate_report_gives_each_prompts_max_z_and_the_change_at_that_token(tmp_path):
    """gate_scores_by_group: per prompt, the max z (as in the gate) and ‖ΔW k‖ at that token, against a direct
    computation from the recorded FFN inputs; a report leaves the thresholds alone."""
    from lit_edit.editing.hook_layers import gate_scores_by_group

    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model("gpt2", tmp_path, seed=4)))
    arch = architecture_of(model)
    bank = _bank(model, arch, alpha=1.0)
    prompts = {"a": ["alpha beta gamma delta epsilon", "one two three"], "b": ["zeta eta theta iota kappa lambda"]}
    max_z, difference = gate_scores_by_group(bank, tokenizer, prompts, batch_size=1)
    for group, texts in prompts.items():
        for i, text in enumerate(texts):
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            with torch.no_grad(), bank.mode("off"), record(model, [arch.ffn_out_at(0), arch.ffn_out_at(2)]) as seen:
                model(input_ids=ids)
            for layer in (0, 2):
                norms = bank.layers[layer].difference(seen[arch.ffn_out_at(layer)].input)[0].norm(dim=-1).double()
                z, _ = gate_zscores(norms[None], torch.ones_like(norms, dtype=torch.bool)[None])
                top = int(z[0].argmax())
                assert max_z[layer][group][i] == pytest.approx(float(z[0, top]), abs=1e-5)
                assert difference[layer][group][i] == pytest.approx(float(norms[top]), rel=1e-5)
    assert [hook.alpha for hook in bank.layers.values()] == [1.0, 1.0]


def _padded_batch(tokenizer):
    """Two prompts of different lengths, right-padded: row 1 ends in padding, row 0 has none."""
    return pad_right([tokenizer("alpha beta gamma delta epsilon zeta eta")["input_ids"],
                      tokenizer("one two three")["input_ids"]], tokenizer.pad_token_id)


def _direct_zscores(bank, model, arch, ids, mask, layer, all_positions):
    """z of M = ‖ΔW k‖ per row, from the FFN inputs k recorded without hooks: over every position (padding
    included) or over the real tokens only (padding −inf)."""
    with torch.no_grad(), bank.mode("off"), record(model, [arch.ffn_out_at(layer)]) as seen:
        model(input_ids=ids, attention_mask=mask)
    norms = bank.layers[layer].difference(seen[arch.ffn_out_at(layer)].input).norm(dim=-1).double()
    z = torch.full_like(norms, float("-inf"))
    for row in range(norms.shape[0]):
        keep = torch.ones_like(mask[row], dtype=torch.bool) if all_positions else mask[row].bool()
        values = norms[row][keep]
        z[row][keep] = (values - values.mean()) / values.std(unbiased=True)
    return z


@pytest.mark.parametrize("gate_statistics", ["real_tokens", "all_positions"])
def test_gate_statistics_over_real_tokens_or_all_positions_against_a_direct_computation(tmp_path, gate_statistics):
    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model("gpt2", tmp_path, seed=4)))
    arch = architecture_of(model)
    bank = _bank(model, arch, alpha=1.0, gate_statistics=gate_statistics)
    ids, mask = _padded_batch(tokenizer)
    assert not mask[1].all() and mask[0].all()
    recorded = bank.record_scores(ids, mask)
    for layer in (0, 2):
        z = recorded[layer][0][0].double()
        torch.testing.assert_close(z, _direct_zscores(bank, model, arch, ids, mask, layer,
                                                      gate_statistics == "all_positions").float().double())
    # the validated gate follows those z: at the first hooked layer, temporary output exactly where z ≥ α
    ffn = {}
    for mode in ("off", "temporary", "validated"):
        with torch.no_grad(), bank.mode(mode), record(model, [arch.ffn_out_at(0)]) as seen:
            model(input_ids=ids, attention_mask=mask)
        ffn[mode] = seen[arch.ffn_out_at(0)].output
    gate = (recorded[0][0][0] >= 1.0).unsqueeze(-1)
    torch.testing.assert_close(ffn["validated"], torch.where(gate, ffn["temporary"], ffn["off"]))


def test_padding_changes_the_gate_statistics_only_where_there_is_padding(tmp_path):
    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model("gpt2", tmp_path, seed=4)))
    arch = architecture_of(model)
    ids, mask = _padded_batch(tokenizer)
    scores = {}
    for rule in ("real_tokens", "all_positions"):
        bank = _bank(model, arch, alpha=1.0, gate_statistics=rule)
        scores[rule] = bank.record_scores(ids, mask)[0][0][0]
        bank.remove()
    real, every = scores["real_tokens"], scores["all_positions"]
    torch.testing.assert_close(real[0], every[0])                     # no padding: the same statistics
    padded = mask[1].bool()
    assert not torch.allclose(real[1][padded], every[1][padded])      # padding shifts mean and std of row 1
    assert torch.isinf(real[1][~padded]).all() and torch.isfinite(every[1][~padded]).all()


def test_an_unknown_gate_statistics_rule_is_refused_naming_the_choices(tmp_path):
    model, _ = load_model_and_tokenizer(str(make_tiny_model("gpt2", tmp_path, seed=4)))
    with pytest.raises(ValueError, match="gate_statistics.*'padding'.*real_tokens.*all_positions"):
        HookBank(model, architecture_of(model), [0], gate_statistics="padding")
