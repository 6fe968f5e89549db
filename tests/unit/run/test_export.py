"""Saving and loading an edited model (``lit_edit.export``): ``edits.safetensors`` holds only what changed and
re-applied to a fresh base reproduces the run's model bit-identically; the Hugging Face export gives the same
logits; COMEBA-HK's hook layers reproduce logits and generation; a file for another base is refused.

Two short batch-sequential CLI runs (20 edits) on the fact-world model, with cheap evaluation.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from lit_edit import tools
from lit_edit.cli import LitEditCLI
from lit_edit.export import EDITS_FILE, EditsFileError, apply_edits, export_model, read_edits
from lit_edit.models.loading import load_model, load_tokenizer
from lit_edit.stats import weights_sha256
from tests.conftest import ROOT, make_tiny_model, run_edit_cli
from tests.edit_configs import method_config

BASE = str(ROOT / "checkpoints/factworld-gpt2")
EDITED = ["transformer.h.0.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.weight"]


def _run(tmp_path, method: str, *extra: str) -> LitEditCLI:
    return run_edit_cli(tmp_path, *method_config(method),
                        "--config", str(ROOT / "configs/edit/modes/batch_sequential.yaml"),
                        "--data.init_args.n", "20", "--trainer.eval_every_n_batches", "0",
                        "--trainer.eval_pre", "false", "--trainer.eval_immediate", "false",
                        "--trainer.eval_final", "false", "--trainer.checkpoint_every_n_batches", "2",
                        "--model.init_args.families", "[token]", "--model.init_args.monitor_docs", "8", *extra)


@pytest.fixture(scope="module")
def memit_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("memit")
    cli = _run(tmp_path, "memit", "--model.init_args.export_model_dir", str(tmp_path / "hf"))
    return cli, tmp_path


@pytest.fixture(scope="module")
def comeba_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("comeba")
    return _run(tmp_path, "comeba"), tmp_path


def _prompts(cli) -> list[str]:
    """The edit prompts, their rephrasings and unrelated prompts of the run (the gate fires on some only)."""
    requests = cli.datamodule.requests[:6]
    return ([r.prompt.format(r.subject) for r in requests] + [r.rephrase_prompts[0] for r in requests]
            + [probe.prompt for r in requests for probe in r.locality][:6])


@torch.no_grad()
def _logits(model, tokenizer, prompts: list[str]) -> list[torch.Tensor]:
    return [model(**tokenizer(p, return_tensors="pt")).logits for p in prompts]


@torch.no_grad()
def _generate(model, tokenizer, prompts: list[str]) -> list[list[int]]:
    out = []
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt")
        out.append(model.generate(**encoded, max_new_tokens=8, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id)[0].tolist())
    return out


def _size_report(what: str, edits_bytes: int) -> None:
    full = (ROOT / "checkpoints/factworld-gpt2/model.safetensors").stat().st_size
    print(f"\n[size] {what}: {EDITS_FILE} {edits_bytes} bytes, full model.safetensors {full} bytes "
          f"({edits_bytes / full:.3f} of it)")


# --------------------------------------------------------------------------------------------- MEMIT


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_memit_edits_file_holds_only_the_edited_layers_and_says_what_it_is_for(memit_run):
    cli, tmp_path = memit_run
    path = tmp_path / "run" / EDITS_FILE
    tensors, meta = read_edits(path)
    assert sorted(tensors) == EDITED and json.loads(meta["parameters"]) == EDITED
    assert meta["method"] == "memit" and meta["n_edits"] == "20" and meta["base_model"].endswith("factworld-gpt2")
    assert meta["base_architecture"] == "gpt2"
    assert meta["base_weights_sha256"] == weights_sha256(load_model(BASE))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["exports"]["edits_bytes"] == path.stat().st_size
    full = (ROOT / "checkpoints/factworld-gpt2/model.safetensors").stat().st_size
    assert path.stat().st_size < 0.2 * full
    _size_report("MEMIT, 20 edits, layers 0-1", path.stat().st_size)


def test_memit_edits_on_a_fresh_base_are_bit_identical_to_the_run(memit_run):
    cli, tmp_path = memit_run
    fresh, base = load_model(BASE), load_model(BASE)
    applied = apply_edits(fresh, tmp_path / "run" / EDITS_FILE)
    assert applied.parameters == EDITED and applied.bank is None
    edited, untouched = dict(cli.model.model.named_parameters()), dict(base.named_parameters())
    for name, value in fresh.named_parameters():
        assert torch.equal(value, edited[name]), name
        assert torch.equal(value, untouched[name]) != (name in EDITED), name   # exactly the edited ones moved


def test_the_exported_hf_folder_and_the_apply_edits_job_give_the_runs_logits(memit_run, tmp_path):
    cli, run_tmp = memit_run
    tokenizer, prompts = cli.model.tokenizer, _prompts(cli)
    expected = _logits(cli.model.model, tokenizer, prompts)
    tools.main(["apply_edits", "--base", BASE, "--edits", str(run_tmp / "run" / EDITS_FILE), "--out",
                str(tmp_path / "applied")])
    for folder in (run_tmp / "hf", tmp_path / "applied"):
        exported = load_model(str(folder))
        assert all(torch.equal(a, b) for a, b in zip(_logits(exported, load_tokenizer(str(folder)), prompts), expected))


def test_the_edits_file_written_from_a_run_state_equals_the_runs(memit_run, tmp_path):
    _, run_tmp = memit_run
    tools.main(["export_edits", "--run", str(run_tmp / "run"), "--out", str(tmp_path / EDITS_FILE)])
    tensors, meta = read_edits(tmp_path / EDITS_FILE)
    run_tensors, run_meta = read_edits(run_tmp / "run" / EDITS_FILE)
    assert meta == run_meta and tensors.keys() == run_tensors.keys()
    assert all(torch.equal(tensors[k], run_tensors[k]) for k in tensors)


# ---------------------------------------------------------------------------------------- COMEBA-HK


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_comeba_hk_edits_through_hooks_reproduce_logits_and_generation(comeba_run):
    cli, tmp_path = comeba_run
    path = tmp_path / "run" / EDITS_FILE
    tensors, meta = read_edits(path)
    assert sorted(tensors) == ["hooks.layer0.alpha", "hooks.layer0.delta", "hooks.layer1.alpha", "hooks.layer1.delta"]
    assert json.loads(meta["parameters"]) == [] and meta["method"] == "comeba-hk"
    _size_report("COMEBA-HK, 20 edits, hook layers 0-1", path.stat().st_size)
    tokenizer, prompts = cli.model.tokenizer, _prompts(cli)
    base = load_model(BASE)
    before = _logits(base, tokenizer, prompts)
    applied = apply_edits(base, path)
    assert applied.parameters == [] and sorted(applied.bank.layers) == [0, 1]
    run_bank = cli.model.editor.bank
    assert all(applied.bank.layers[i].alpha == run_bank.layers[i].alpha for i in (0, 1))
    after, expected = _logits(base, tokenizer, prompts), _logits(cli.model.model, tokenizer, prompts)
    assert all(torch.equal(a, b) for a, b in zip(after, expected))
    assert all(not torch.equal(a, b) for a, b in zip(after[:6], before[:6]))      # the edits show on their prompts
    with applied.bank.mode("temporary"):            # ...and the gate matters: ungated, some outputs differ
        ungated = _logits(base, tokenizer, prompts)
    assert any(not torch.equal(a, b) for a, b in zip(after, ungated))
    assert _generate(base, tokenizer, prompts[:6]) == _generate(cli.model.model, tokenizer, prompts[:6])
    applied.bank.remove()
    assert all(torch.equal(a, b) for a, b in zip(_logits(base, tokenizer, prompts), before))


def test_hook_layers_are_not_exported_as_a_folder_unless_folded(comeba_run, tmp_path):
    cli, run_tmp = comeba_run
    base, tokenizer = load_model(BASE), cli.model.tokenizer
    bank = apply_edits(base, run_tmp / "run" / EDITS_FILE).bank
    with pytest.raises(ValueError, match="cannot carry the gate"):
        export_model(base, tokenizer, tmp_path / "hf", hooks=bank)
    with pytest.raises(ValueError, match="forward hooks"):
        export_model(base, tokenizer, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with pytest.warns(UserWarning, match="the gate is lost"):
        export_model(base, tokenizer, tmp_path / "hf", hooks=bank, fold_hooks=True)
    folded, pristine = load_model(str(tmp_path / "hf")), load_model(BASE)
    for layer, name in enumerate(EDITED):
        w0 = pristine.get_parameter(name)
        expected = w0 + bank.arch.from_math(bank.layers[layer].delta)
        assert torch.equal(folded.get_parameter(name), expected)
        assert torch.equal(base.get_parameter(name), w0)          # the in-memory base is restored bitwise


def test_a_hf_export_of_a_hook_layer_run_is_refused_before_editing(tmp_path):
    with pytest.raises(ValueError, match="hook layers"):
        _run(tmp_path, "comeba", "--model.init_args.export_model_dir", str(tmp_path / "hf"))
    assert not (tmp_path / "run" / "steps.csv").exists()
    with pytest.raises(ValueError, match="rollback"):
        LitEditCLI(args=[*method_config("memit"),
                         "--config", str(ROOT / "configs/edit/modes/batch_single.yaml"), "--trainer.logger", "false",
                         "--model.init_args.export_model_dir", str(tmp_path / "hf")], run=False)


# ------------------------------------------------------------------------------------- another base


def test_edits_for_another_base_are_refused_naming_both(memit_run, tmp_path):
    _, run_tmp = memit_run
    path = run_tmp / "run" / EDITS_FILE
    for other in (str(ROOT / "checkpoints/factworld-llama"), str(make_tiny_model("gpt2", tmp_path / "tiny"))):
        with pytest.raises(EditsFileError) as error:
            apply_edits(load_model(other), path)
        assert "factworld-gpt2" in str(error.value) and other in str(error.value)
    retrained = load_model(BASE)
    with torch.no_grad():
        retrained.get_parameter("transformer.wte.weight").mul_(1.01)   # same shapes, other weights
    with pytest.raises(EditsFileError, match="other weights.*allow_other_base"):
        apply_edits(retrained, path)
    with pytest.warns(UserWarning, match="applying them anyway"):
        applied = apply_edits(retrained, path, allow_other_base=True)
    assert applied.parameters == EDITED


def test_a_file_that_is_not_an_edits_file_is_refused(tmp_path):
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(EditsFileError, match="not a lit-edit edits file"):
        read_edits(tmp_path / "other.safetensors")
    with pytest.raises(EditsFileError, match="does not exist"):
        read_edits(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("rule", ["real_tokens", "all_positions"])
def test_an_edits_file_keeps_the_hook_gates_statistics_rule(tmp_path, rule):
    from lit_edit.editing.hook_layers import HookBank
    from lit_edit.export import save_edits
    from lit_edit.models import architecture_of

    folder = make_tiny_model("gpt2", tmp_path, seed=2)
    model = load_model(str(folder))
    bank = HookBank(model, architecture_of(model), [0, 1], alpha=1.5, gate_statistics=rule)
    for hook in bank.layers.values():
        hook.add(torch.full(hook.delta.shape, 0.01))
    path = save_edits(tmp_path / EDITS_FILE, base_model="tiny", base_sha256=weights_sha256(model), method="comeba-hk",
                      n_edits=2, hooks=bank)
    assert read_edits(path)[1]["hook_gate_statistics"] == rule
    applied = apply_edits(load_model(str(folder)), path)          # a fresh base
    assert applied.bank.gate_statistics == rule
    applied.bank.remove()


def test_an_edits_file_with_an_unknown_gate_statistics_rule_is_refused_naming_it(tmp_path):
    from lit_edit.editing.hook_layers import HookBank
    from lit_edit.export import save_edits
    from lit_edit.models import architecture_of

    folder = make_tiny_model("gpt2", tmp_path, seed=2)
    model = load_model(str(folder))
    path = save_edits(tmp_path / EDITS_FILE, base_model="tiny", base_sha256=weights_sha256(model), method="comeba-hk",
                      n_edits=1, hooks=HookBank(model, architecture_of(model), [0]))
    tensors, metadata = read_edits(path)
    save_file(tensors, str(path), metadata | {"hook_gate_statistics": "padding"})
    with pytest.raises(EditsFileError, match=r"edits.safetensors: metadata hook_gate_statistics: unknown gate_stat"):
        apply_edits(load_model(str(folder)), path)
