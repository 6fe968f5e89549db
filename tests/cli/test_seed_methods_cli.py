"""The seed methods through the editors and the CLI: RECT's exact count on a real edit, every mode for the methods
that accumulate, and a short COMEBA-HK run on the shipped fact-world model."""

import json

import pytest
import torch

from lit_edit.cli import LitEditCLI
from lit_edit.editing.requests import EditRequest
from lit_edit.editors import RECT, ROME
from lit_edit.editors.base import EditContext
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.models.loading import load_model
from tests.conftest import ROOT, make_tiny_model, run_edit_cli
from tests.edit_configs import method_config, registered_methods

REQUEST = EditRequest(prompt="{} was born in", subject="Alda Venkor", target_new="Port Ivory", record_id="r0")
SEQUENTIAL = registered_methods(accumulating=True)
MODES = {"single": True, "instance_sequential": False, "batch_single": True, "batch_sequential": False}


def _edit(folder, editor):
    model, tokenizer = load_model_and_tokenizer(str(folder))
    arch = architecture_of(model)
    for p in model.parameters():
        p.requires_grad_(False)
    editor.setup(model, tokenizer, arch, EditContext(str(folder), progress=False))
    before = arch.edit_weight(model, 1).detach().clone()
    outcome = editor.edit(model, tokenizer, arch, [REQUEST])
    return before, arch.edit_weight(model, 1).detach().clone(), outcome


def test_rect_keeps_exactly_k_percent_of_a_rome_update_and_the_kept_entries_unchanged(tmp_path):
    folder = make_tiny_model("gpt2", tmp_path, seed=2)
    rome = lambda: ROME(layer=1, mom2_adjustment=False, templates_per_seed=1, template_tokens=4)
    w0, plain, _ = _edit(folder, rome())
    w0_again, sparse, outcome = _edit(folder, RECT(rome(), keep_fraction=0.4))
    assert torch.equal(w0, w0_again)
    full, kept = plain - w0, sparse - w0
    assert int((full != 0).sum()) == full.numel()                     # ROME's rank-one update touches every entry
    assert int((kept != 0).sum()) == int(0.4 * full.numel())           # exactly floor(k · numel) survive
    mask = kept != 0
    torch.testing.assert_close(kept[mask], full[mask], rtol=1e-5, atol=1e-7)   # not rescaled
    ratio = (full / w0).abs()
    assert ratio[mask].min() >= ratio[~mask].max()
    assert outcome.diagnostics["rect_changed_fraction"] == pytest.approx(0.4, abs=1e-3)


@pytest.mark.parametrize("method", SEQUENTIAL)
def test_accumulating_methods_compose_with_every_mode_rollback_included(method):
    """Each mode overlay gives the accumulating method its batch size and rollback; with rollback every step edits
    with the state setup built (tests/unit/run/test_rollback_accumulating.py)."""
    for mode, rollback in MODES.items():
        args = [*method_config(method), "--config", str(ROOT / f"configs/edit/modes/{mode}.yaml"),
                "--trainer.logger", "false"]
        cli = LitEditCLI(args=args, run=False)
        assert cli.model.editor.accumulates and cli.model.hparams.rollback is rollback, mode
        assert cli.datamodule.hparams.batch_size == (1 if mode in ("single", "instance_sequential") else 10), mode


def test_comeba_hk_run_edits_through_hooks_only_and_reports_its_gate(tmp_path):
    cli = run_edit_cli(tmp_path, *method_config("comeba"),
                       "--data.init_args.n", "20", "--trainer.eval_every_n_batches", "0",
                       "--model.init_args.monitor_docs", "8")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "comeba-hk" and metrics["n_edits"] == 20
    fresh = load_model(str(ROOT / "checkpoints/factworld-gpt2"))
    edited = dict(cli.model.model.named_parameters())
    assert all(torch.equal(p, edited[n]) for n, p in fresh.named_parameters())     # the base model is untouched
    drift = {k: v for k, v in metrics["monitors"]["final"].items() if k.startswith("drift_fro/")}
    assert drift and all(v > 0 for v in drift.values())                            # ...the effective weights moved
    report = metrics["editor_report"]
    assert report["hook_bytes"] == 2 * 192 * 768 * 4
    import csv

    steps = list(csv.DictReader((tmp_path / "run" / "steps.csv").open()))
    max_z = json.loads((tmp_path / "run" / "gate_max_z.json").read_text())
    for layer in ("0", "1"):
        alpha, edited = report["gate"][layer]["alpha"], max_z[layer]["edited"]     # edited: request order
        assert report["gate"][layer]["edited"]["fire_rate"] == sum(z >= alpha for z in edited) / 20
        # right after its step, the dynamic threshold lets every edit of the batch through: α is at most the
        # smallest max z of the last batch's prompts (eq. 18; one of them sits on α, so the report's own pass may
        # put it a rounding error below: measured −2.6e-8 at layer 1, where the report's fire rate is then 0.85)
        assert [float(row[f"gate_missed/layer{layer}"]) for row in steps] == [0.0, 0.0]
        assert min(edited[10:]) >= alpha - 1e-6, (alpha, edited[10:])
        # ...later batches move the hook weights, so at the end most (not necessarily all) of the first batch's
        # edits still pass (measured 9 and 8 of 10 at layers 0 and 1)
        assert sum(z >= alpha - 1e-6 for z in edited[:10]) >= 6, (alpha, edited[:10])
        assert alpha <= 2.2
    assert metrics["final"]["token"]["reliability"] > metrics["pre"]["token"]["reliability"]
    assert (tmp_path / "run" / "plots" / "gate_zscores.png").exists()
    assert set(json.loads((tmp_path / "run" / "gate_max_z.json").read_text())["0"]) == {"edited", "rephrased",
                                                                                        "unrelated"}
