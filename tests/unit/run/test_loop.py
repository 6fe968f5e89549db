"""The consecutive editing loop: private-API canary, modes, rollback, schedules, the run folder."""

from __future__ import annotations

import csv
import inspect
import io
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.loops import _EvaluationLoop

from lit_edit.data import EditDataModule
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import FT, MEMIT, ROME
from lit_edit.editors.base import Editor, EditorReport, EditOutcome, changes, snapshot
from lit_edit.loops import ConsecutiveEditingLoop, EditTrainer
from lit_edit.loops.contract import EditingRun
from lit_edit.metrics import pre_edit_reference, score_requests
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.modules import EditingModule
from lit_edit.modules.editing import mode_name
from lit_edit.stats import StatisticsConfig
from tests.conftest import FACTWORLD, ROOT

MODEL = str(ROOT / "checkpoints" / "factworld-gpt2")


def test_private_loop_api_canary():
    """The loop relies on these private signatures (stable 2.1–2.6); an upgrade that changes them fails here."""
    assert list(inspect.signature(_EvaluationLoop.__init__).parameters) == [
        "self", "trainer", "trainer_fn", "stage", "verbose", "inference_mode"]
    assert list(inspect.signature(_EvaluationLoop._evaluation_step).parameters) == [
        "self", "batch", "batch_idx", "dataloader_idx", "dataloader_iter"]
    assert list(inspect.signature(_EvaluationLoop.on_run_start).parameters) == ["self"]
    assert list(inspect.signature(_EvaluationLoop.on_run_end).parameters) == ["self"]


def test_edit_trainer_installs_the_loop_without_inference_mode():
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, eval_every_n_batches=3)
    assert isinstance(trainer.test_loop, ConsecutiveEditingLoop)
    assert trainer.test_loop.inference_mode is False and trainer.test_loop.eval_every_n_batches == 3


@pytest.mark.parametrize(("batch_size", "rollback", "name"), [
    (1, True, "single"), (1, False, "instance-sequential"), (4, True, "batch-single"), (4, False, "batch-sequential")])
def test_mode_names(batch_size, rollback, name):
    assert mode_name(batch_size, rollback) == name


def small_editor(kind: str):
    values = ValueHyperparams(steps=3)
    return {"ft": lambda: FT(layers=[1], loss="target_new", lr=1e-2, steps=2, norm_constraint=None),
            "rome": lambda: ROME(layer=1, values=values, mom2_adjustment=False, templates_per_seed=1, template_tokens=3),
            "memit": lambda: MEMIT(layers=[1, 2], preservation_weight=1e4, values=values, template_tokens=3)}[kind]()


def run(tmp_path, editor, rollback: bool, n: int = 4, batch_size: int = 2, families=("token",), folder: str = "run",
        **trainer_args):
    module = EditingModule(MODEL, editor, rollback=rollback, families=families, results_dir=str(tmp_path / folder),
                           cache_dir=str(tmp_path / "cache"), monitor_docs=8,
                           statistics=StatisticsConfig(corpus=str(FACTWORLD / "corpus" / "train.jsonl"),
                                                       cache_dir=str(tmp_path / "stats"), max_tokens=4000))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    data = EditDataModule(root=str(FACTWORLD), n=n, batch_size=batch_size)
    trainer = EditTrainer(**{"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                             "enable_model_summary": False, **trainer_args})
    trainer.test(module, datamodule=data, verbose=False)
    metrics = json.loads((tmp_path / folder / "metrics.json").read_text())
    return module, before, metrics


@pytest.mark.parametrize("kind", ["ft", "rome", "memit"])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_rollback_restores_every_parameter_bit_exactly(tmp_path, kind):
    module, before, metrics = run(tmp_path, small_editor(kind), rollback=True)
    after = module.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert metrics["mode"] == {"batch_size": 2, "rollback": True, "name": "batch-single"}
    assert metrics["final"] == metrics["immediate"] and metrics["n_edits"] == 4
    # the edits did change the weights while they were in place
    steps = (tmp_path / "run" / "steps.csv").read_text().splitlines()
    assert len(steps) == 3 and all(float(v) > 0 for v in _column(steps, next(
        c for c in steps[0].split(",") if c.startswith("update_fro/"))))
    with open(tmp_path / "run" / "requests.csv") as f:     # with rollback the final scores are the immediate ones
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["final/token/reliability"] == r["immediate/token/reliability"] != "" for r in rows)


class _ScaleLayer(Editor):
    """Step k multiplies layer 1's FFN output weight by −(k + 1): an edit that is easy to redo and to detect."""

    name = "scale-layer"

    def __init__(self):
        self.steps = 0

    def parameter_names(self, model, arch):
        return [f"{arch.ffn_out_at(1)}.weight"]

    def edit(self, model, tokenizer, arch, requests):
        before = snapshot(model, self.parameter_names(model, arch))
        self.steps += 1
        with torch.no_grad():
            arch.edit_weight(model, 1).mul_(-float(self.steps))
        return EditOutcome(changes(model, before))


def test_with_rollback_each_step_is_scored_on_its_edited_model_before_the_rollback(tmp_path):
    """Each request's immediate (= final) scores are those of the model holding its own step's edit, redone here
    on a fresh copy and scored directly, and differ from the pre-edit scores: the loop scored before restoring."""
    module, _, metrics = run(tmp_path, _ScaleLayer(), rollback=True)
    requests = EditDataModule(root=str(FACTWORLD), n=4, batch_size=2)
    requests.setup("test")
    batches = list(requests.test_dataloader())
    model, tokenizer = load_model_and_tokenizer(MODEL)
    arch = architecture_of(model)
    reference = pre_edit_reference(model, tokenizer, [r for b in batches for r in b], ["token"])
    with open(tmp_path / "run" / "requests.csv") as f:
        rows = {row["record_id"]: row for row in csv.DictReader(f)}
    moved = 0
    for step, batch in enumerate(batches):
        edited, _ = load_model_and_tokenizer(MODEL)
        with torch.no_grad():
            arch.edit_weight(edited, 1).mul_(-float(step + 1))
        for request, scores in zip(batch, score_requests(edited, tokenizer, batch, ["token"], reference)):
            row = rows[request.record_id]
            for key in ("token/reliability", "token/locality", "token/generality"):
                assert float(row[f"immediate/{key}"]) == pytest.approx(scores[key], abs=1e-6), (request.record_id, key)
                assert row[f"final/{key}"] == row[f"immediate/{key}"]
                moved += float(row[f"immediate/{key}"]) != pytest.approx(float(row[f"pre/{key}"]), abs=1e-6)
    assert moved >= 4, moved                                  # the edit shows in the scores
    assert metrics["immediate"]["token"]["locality"] < 1.0 == metrics["pre"]["token"]["locality"]


def _column(lines, name):
    index = lines[0].split(",").index(name)
    return [line.split(",")[index] for line in lines[1:]]


def test_sequential_run_keeps_edits_and_writes_the_run_folder(tmp_path):
    module, before, metrics = run(tmp_path, small_editor("ft"), rollback=False, n=6, batch_size=2,
                                  families=("token", "generation"), eval_every_n_batches=1)
    changed = [k for k in before if not torch.equal(before[k], module.model.state_dict()[k])]
    assert changed == ["transformer.h.1.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.bias"]
    assert metrics["method"] == "ft" and metrics["mode"]["name"] == "batch-sequential" and metrics["seconds"] > 0
    for when in ("pre", "final"):
        assert set(metrics[when]) == {"token", "generation"}
        assert set(metrics[when]["token"]) == {"reliability", "generality", "locality", "portability"}
    assert metrics["pre"]["token"]["locality"] == 1.0           # the unedited model agrees with itself
    assert [p["n_edits"] for p in metrics["periodic"]] == [2, 4, 6]
    assert [p["n_edits"] for p in metrics["retention"]] == [2, 4, 6]
    assert metrics["monitors"]["pre"]["perplexity"] > 1
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["edits"]["order"] == [f"zsre:{i}" for i in range(6)] and run_json["edits"]["sha256"]
    assert run_json["editor"]["name"] == "ft" and run_json["versions"]["torch"] == torch.__version__
    assert {p.name for p in (tmp_path / "run" / "plots").iterdir()} == {"edit_metrics.png", "retention.png",
                                                                       "monitors.png"}
    # requests.csv: one row per edit with its step and its scores at every stage; their means are metrics.json's
    with open(tmp_path / "run" / "requests.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["record_id"] for r in rows] == [f"zsre:{i}" for i in range(6)]
    assert [int(r["step"]) for r in rows] == [0, 0, 1, 1, 2, 2] and all(r["subject"] and r["relation"] for r in rows)
    for stage in ("pre", "immediate", "final"):
        for key in ("token/reliability", "token/locality", "generation/reliability"):
            mean = sum(float(r[f"{stage}/{key}"]) for r in rows) / 6
            family, metric = key.split("/")
            assert mean == pytest.approx(metrics[stage][family][metric]), (stage, key)


def test_pre_edit_references_are_cached(tmp_path):
    run(tmp_path, small_editor("ft"), rollback=True, n=2)
    cached = list((tmp_path / "cache" / "references").iterdir())
    assert len(cached) == 1
    cached[0].write_text(json.dumps({"locality_tokens": {"zsre:0": [[0]], "zsre:1": [[0]]},
                                     "locality_generations": {}}))
    _, _, metrics = run(tmp_path, small_editor("ft"), rollback=True, n=2, folder="again")   # a run of its own
    assert metrics["pre"]["token"]["locality"] < 1.0             # the (tampered) cache was used, not recomputed


def test_perplexity_stop_ends_the_run_early_with_results(tmp_path):
    editor = FT(layers=[1, 2], loss="target_new", lr=1.0, steps=3, norm_constraint=None)
    module = EditingModule(MODEL, editor, families=("token",), results_dir=str(tmp_path / "run"),
                           cache_dir=str(tmp_path / "cache"), monitor_docs=8, stop_perplexity_factor=1.5)
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=EditDataModule(root=str(FACTWORLD), n=6, batch_size=1), verbose=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped_early"].startswith("perplexity") and metrics["n_edits"] < 6


class _PoisonAfter(FT):
    """FT that writes NaN into its weight from the ``bad_step``-th edit on (a broken method, for the test)."""

    name = "poisoned-ft"

    def __init__(self, bad_step: int):
        super().__init__(layers=[1], loss="target_new", lr=1e-3, steps=1, norm_constraint=None)
        self.bad_step, self.calls = bad_step, 0

    def edit(self, model, tokenizer, arch, requests):
        outcome = super().edit(model, tokenizer, arch, requests)
        self.calls += 1
        if self.calls >= self.bad_step:
            with torch.no_grad():
                model.get_parameter(self.parameter_names(model, arch)[0])[0, 0] = float("nan")
        return outcome


def test_non_finite_update_stops_the_run_naming_the_records_and_keeps_earlier_steps(tmp_path):
    from lit_edit.modules.input_checks import NonFiniteUpdateError

    with pytest.raises(NonFiniteUpdateError, match=r"edit step 2 \(records zsre:4, zsre:5\) left NaN/inf in "
                                                   r"\['transformer.h.1.mlp.c_proj.weight'\]"):
        run(tmp_path, _PoisonAfter(bad_step=3), rollback=False, n=8, batch_size=2)
    steps = (tmp_path / "run" / "steps.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in steps[1:]] == ["0", "1"]     # the two good steps are on disk


class _Reporting(FT):
    """FT that reports what it did: a summary, a file of per-request numbers and a plot of its own."""

    def report(self, model, tokenizer, arch, requests):
        return EditorReport({"requests": len(requests)}, {"per_request": {r.record_id: len(r.prompt) for r in requests}})

    def plot_report(self, report, plots_dir):
        (plots_dir / "own.txt").write_text(str(report.summary["requests"]))


def test_an_editors_report_goes_into_metrics_json_and_its_files_and_plots_into_the_run_folder(tmp_path):
    editor = _Reporting(layers=[1], loss="target_new", lr=1e-2, steps=2, norm_constraint=None)
    module, _, metrics = run(tmp_path, editor, rollback=False, n=4)
    assert isinstance(module, EditingRun)        # what the loop drove
    assert metrics["editor_report"] == {"requests": 4}
    assert json.loads((tmp_path / "run" / "per_request.json").read_text()) == {
        r.record_id: len(r.prompt) for r in module.applied}
    assert (tmp_path / "run" / "plots" / "own.txt").read_text() == "4"


class _HalfARun(L.LightningModule):
    """Has the first call of the editing run's contract (``start_run``), not the others."""

    def start_run(self, evaluate_pre: bool) -> None:
        raise AssertionError("driven as an editing run")

    def test_step(self, batch, batch_idx):
        pass

    def test_dataloader(self):
        return [torch.zeros(1)]


def test_only_a_module_with_the_whole_contract_is_driven_as_an_editing_run(tmp_path):
    assert not isinstance(_HalfARun(), EditingRun)
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=str(tmp_path))
    trainer.test(_HalfARun(), verbose=False)            # a plain test: the loop calls nothing of the contract
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=str(tmp_path), resume_from=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="trainer.resume_from is set, but _HalfARun is not an editing run"):
        trainer.test(_HalfARun(), verbose=False)


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_hp_metric_is_the_final_token_reliability_and_the_plots_name_the_run(tmp_path, monkeypatch):
    """TensorBoard's HPARAMS view reads ``hp_metric``: the final token reliability; every plot of the run is titled
    with the model's folder, the method, the mode and the number of edits."""
    from lightning.pytorch.loggers import CSVLogger

    import lit_edit.plots

    titles, save = {}, lit_edit.plots._save

    def keep_title(figure, path, title=""):
        written = save(figure, path, *([title] if title else []))
        titles[path.name] = figure.get_suptitle()
        return written

    monkeypatch.setattr(lit_edit.plots, "_save", keep_title)
    logger = CSVLogger(str(tmp_path / "logs"), name="csv")
    _, _, metrics = run(tmp_path, small_editor("ft"), rollback=False, n=4, batch_size=2, eval_every_n_batches=1,
                        logger=logger)
    with open(logger.log_dir + "/metrics.csv") as f:
        logged = [row for row in csv.DictReader(f) if row.get("hp_metric")]
    assert len(logged) == 1 and float(logged[0]["hp_metric"]) == pytest.approx(
        metrics["final"]["token"]["reliability"], abs=1e-7)
    assert float(logged[0]["hp_metric"]) == pytest.approx(float(logged[0]["final/token/reliability"]), abs=1e-7)
    expected = f"factworld-gpt2 · {metrics['method']} · batch-sequential · 4 edits"
    assert set(titles) == {"edit_metrics.png", "retention.png", "monitors.png"}
    assert all(title == expected for title in titles.values()), titles


def test_the_plots_reach_tensorboard_as_images(tmp_path):
    """Each PNG of the run's plots is an image of the TensorBoard run (its IMAGES tab) at the final number of edits,
    with the pixels of the file."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from matplotlib.image import imread
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(str(tmp_path / "logs"), name="tb")
    _, _, metrics = run(tmp_path, small_editor("ft"), rollback=False, n=4, batch_size=2, eval_every_n_batches=1,
                        logger=logger)
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    pngs = sorted((tmp_path / "run" / "plots").glob("*.png"))
    assert sorted(events.Tags()["images"]) == sorted(f"plots/{png.stem}" for png in pngs) and len(pngs) == 3
    for png in pngs:
        (image,) = events.Images(f"plots/{png.stem}")
        assert image.step == metrics["n_edits"] == 4
        logged = imread(io.BytesIO(image.encoded_image_string), format="png")[..., :3]
        assert logged.shape == imread(png)[..., :3].shape
        assert abs(logged - imread(png)[..., :3]).max() <= 1 / 255 + 1e-6
