"""Keys at the subject token (docs/methods.md §0.1, §3) on a tiny GPT-2: the position rule handed on, the pass
stopped right after the module that is read (a hook on a later module never fires), and the bare-template check
when another module's output is read too."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing.keys import module_io_at_subject, subject_io, template_keys
from lit_edit.editing.positions import subject_token_indices
from lit_edit.models import architecture_of, load_model_and_tokenizer

PROMPTS = ["The capital city of {} is", "{} was founded by"]
SUBJECTS = ["Upper Kingdom of Nowhere", "Bright Harbour Trading Company"]   # several tokens each


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_dir):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    return model.eval(), tokenizer, architecture_of(model)


def _direct_inputs(model, tokenizer, module, rule):
    """The module's input at the rule's token, one prompt at a time, from a plain forward with a hook."""
    rows = []
    for prompt, subject, index in zip(PROMPTS, SUBJECTS, subject_token_indices(tokenizer, PROMPTS, SUBJECTS, rule),
                                      strict=True):
        seen = []
        handle = model.get_submodule(module).register_forward_hook(lambda _m, args, _o, into=seen: into.append(args[0]))
        with torch.no_grad():
            model(input_ids=torch.tensor([tokenizer(prompt.format(subject))["input_ids"]]))
        handle.remove()
        rows.append(seen[0][0, index])
    return torch.stack(rows)


class _Fired:
    """Counts the calls of a forward hook on ``module`` while in use."""

    def __init__(self, model, module):
        self.model, self.module, self.calls = model, module, 0

    def __enter__(self):
        self.handle = self.model.get_submodule(self.module).register_forward_hook(self._count)
        return self

    def _count(self, *_):
        self.calls += 1

    def __exit__(self, *_):
        self.handle.remove()


def test_the_position_rule_is_handed_on(tiny):
    model, tokenizer, arch = tiny
    module = arch.ffn_out_at(1)
    first = _direct_inputs(model, tokenizer, module, "subject_first")
    assert not torch.allclose(first, _direct_inputs(model, tokenizer, module, "subject_last"))
    keys, _ = module_io_at_subject(model, tokenizer, module, PROMPTS, SUBJECTS, rule="subject_first")
    torch.testing.assert_close(keys, first, rtol=1e-5, atol=1e-6)
    per_template = template_keys(model, tokenizer, arch, 1, PROMPTS, SUBJECTS, [["{}"]], rule="subject_first")
    torch.testing.assert_close(per_template.per_template[0], first, rtol=1e-5, atol=1e-6)


def test_the_pass_stops_after_the_module_read(tiny):
    model, tokenizer, arch = tiny
    with _Fired(model, arch.layer(2)) as later:
        module_io_at_subject(model, tokenizer, arch.ffn_out_at(1), PROMPTS, SUBJECTS)
        template_keys(model, tokenizer, arch, 1, PROMPTS, SUBJECTS, [["{}"]])
    assert later.calls == 0
    with _Fired(model, arch.layer(2)) as later:        # reading a later module runs the pass up to it
        template_keys(model, tokenizer, arch, 1, PROMPTS, SUBJECTS, [["{}"]], also=arch.layer(2))
    assert later.calls == 1


@pytest.mark.parametrize(("key_layer", "also_layer"), [(1, 1), (0, 1), (1, 0)])
def test_reading_another_module_stops_once_both_have_run(tiny, key_layer, also_layer):
    """MEMIT's keys pass also reads the block output of its last layer: the pass ends with the later of the two
    (no block above it runs, the unembedding neither) and reads what a pass through the whole model reads."""
    model, tokenizer, arch = tiny
    groups = [["{}"], ["Note. {}", "Another prefix, longer than the first. {}"]]
    above = [arch.layer(i) for i in range(max(key_layer, also_layer) + 1, arch.n_layers(model))] + [arch.unembedding]
    counters = [_Fired(model, name) for name in above]
    for counter in counters:
        counter.__enter__()
    try:
        stopped = template_keys(model, tokenizer, arch, key_layer, PROMPTS, SUBJECTS, groups,
                                also=arch.layer(also_layer))
    finally:
        for counter in counters:
            counter.__exit__()
    assert [counter.calls for counter in counters] == [0] * len(above)
    texts = [t.format(p) for group in groups for t in group for p in PROMPTS]
    whole = subject_io(model, tokenizer, [arch.ffn_out_at(key_layer), arch.layer(also_layer)], texts,
                       SUBJECTS * 3, stop_after=None)
    assert torch.equal(stopped.per_template.flatten(0, 1), whole[arch.ffn_out_at(key_layer)][0])
    assert torch.equal(stopped.bare_output, whole[arch.layer(also_layer)][1][: len(PROMPTS)])


def test_reading_another_module_needs_the_bare_template_first(tiny):
    model, tokenizer, arch = tiny
    also = arch.layer(2)
    with pytest.raises(ValueError) as refused:
        template_keys(model, tokenizer, arch, 1, PROMPTS, SUBJECTS, [["Note. {}"], ["{}"]], also=also)
    assert str(refused.value) == (f"the first template must be the bare '{{}}' to read {also!r} there, "
                                  "got 'Note. {}'")
    keys = template_keys(model, tokenizer, arch, 1, PROMPTS, SUBJECTS, [["Note. {}"], ["{}"]])
    assert keys.per_template.shape[:2] == (2, 2) and keys.bare_output is None


def _full_pass_at_subject(model, tokenizer, modules, texts, subjects):
    """(input, output) of each module at the subject's last token, from one full forward pass with hooks."""
    from lit_edit.hooks import record
    from lit_edit.scoring import pad_right

    encoded = [tokenizer(t.format(s), add_special_tokens=True)["input_ids"] for t, s in zip(texts, subjects, strict=True)]
    input_ids, mask = pad_right(encoded, tokenizer.pad_token_id)
    rows = torch.arange(len(encoded))
    lookup = torch.tensor(subject_token_indices(tokenizer, texts, subjects, "subject_last"))
    with torch.no_grad(), record(model, modules) as seen:
        model(input_ids=input_ids, attention_mask=mask)
    return {name: (seen[name].input[rows, lookup], seen[name].output[rows, lookup]) for name in modules}


@pytest.mark.parametrize(("key_layer", "also_layer"), [(0, 1), (1, 1), (1, 0)])
def test_keys_and_another_output_stop_after_the_later_module(tiny, key_layer, also_layer):
    """Keys at one layer and another module's output: the pass stops once both have run, whichever is later, and
    gives the numbers of a full pass bit for bit."""
    model, tokenizer, arch = tiny
    groups = [["{}"], ["Note. {}", "So, {}"]]
    also = arch.layer(also_layer)
    later = max(key_layer, also_layer) + 1
    with _Fired(model, arch.layer(later)) as beyond, _Fired(model, arch.final_norm) as norm:
        keys = template_keys(model, tokenizer, arch, key_layer, PROMPTS, SUBJECTS, groups, also=also)
    assert beyond.calls == 0 and norm.calls == 0
    texts = [t.format(p) for group in groups for t in group for p in PROMPTS]
    direct = _full_pass_at_subject(model, tokenizer, [arch.ffn_out_at(key_layer), also], texts,
                                   SUBJECTS * (len(texts) // len(PROMPTS)))
    assert torch.equal(keys.per_template.reshape(len(texts), -1), direct[arch.ffn_out_at(key_layer)][0])
    assert torch.equal(keys.bare_output, direct[also][1][: len(PROMPTS)])
