"""Checkpoint and resume of an editing run (``trainer.checkpoint_every_n_batches``, ``trainer.resume_from``).

A run interrupted part-way and resumed from its run state ends bit-identical to an uninterrupted run: the
effective weights, the editor's state, ``metrics.json`` (but its wall-clock ``seconds``) and ``steps.csv`` (but
its ``seconds`` column). In process on a tiny GPT-2 for MEMIT (stateless), D4S, COMEBA-HK (hook layers, α, the
Woodbury inverse mid-chain), an editor that draws from every RNG and RECT's random selection around it; with a
real SIGKILL of the CLI on the fact-world model (about 18 s: three processes, two at a time). A state from another
model or configuration is refused, naming each field.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import Callback

from lit_edit.data import EditDataModule
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import COMEBA, D4S, MEMIT, RECT
from lit_edit.editors.base import Editor, EditOutcome, changes, ffn_weight_names, snapshot
from lit_edit.loops import EditTrainer
from lit_edit.modules import EditingModule
from lit_edit.run_state import STATE_FILE, ResumeError, capture_rng, load_run_state, restore_rng, save_run_state
from lit_edit.stats import StatisticsConfig
from lit_edit.tasks.suite import DownstreamConfig
from tests.conftest import FACTWORLD, ROOT, make_tiny_model
from tests.edit_configs import method_config


class _Noisy(Editor):
    """Adds noise from python's, numpy's and torch's generators to layer 1's FFN weight: a resume continues it
    bit-identically only if it restores all three generator states."""

    name = "noisy"

    def parameter_names(self, model, arch) -> list[str]:
        return ffn_weight_names(arch, [1])

    def edit(self, model, tokenizer, arch, requests) -> EditOutcome:
        before = snapshot(model, self.parameter_names(model, arch))
        weight = arch.edit_weight(model, 1)
        with torch.no_grad():
            weight.add_(1e-3 * (torch.randn_like(weight) + random.random() + float(np.random.rand())))
        return EditOutcome(changes(model, before))


def _editor(kind: str, preservation_weight: float = 300.0, template_tokens: int = 3) -> Editor:
    common = {"layers": [0, 1], "preservation_weight": preservation_weight, "values": ValueHyperparams(steps=3),
              "template_tokens": template_tokens}
    return {"memit": lambda: MEMIT(**common),
            "d4s": lambda: D4S(**common, refactor_every=3),        # the resume lands inside a Woodbury chain
            "comeba": lambda: COMEBA(**common, refactor_every=3),
            "noisy": lambda: _Noisy(),
            "rect": lambda: RECT(_Noisy(), keep_fraction=0.4, selection="random")}[kind]()   # its own generator


class _Interrupted(RuntimeError):
    pass


class _InterruptAt(Callback):
    """Ends the run with an exception when batch ``index`` starts (a crash: no end-of-run state is written)."""

    def __init__(self, index: int):
        self.index = index

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == self.index:
            raise _Interrupted(f"interrupted at batch {batch_idx}")


class _EditedBatches(Callback):
    """The indices of the batches the run edited (skipped, restored batches never reach the step hooks)."""

    def __init__(self):
        self.indices: list[int] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.indices.append(batch_idx)


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("caches")      # statistics and pre-edit references, shared by the runs


def _run(folder: Path, model_dir: Path, caches: Path, editor: Editor, callbacks=(), n: int = 8, batch_size: int = 2,
         downstream: DownstreamConfig | None = None, **trainer_args) -> EditingModule:
    """A small batch-sequential run (4 batches of 2 by default), seeded like the CLI's ``seed_everything: 0``."""
    seed_everything(0, verbose=False)
    module = EditingModule(str(model_dir), editor, families=("token",), results_dir=str(folder),
                           cache_dir=str(caches / "cache"), monitor_docs=4, downstream=downstream,
                           statistics=StatisticsConfig(corpus=str(FACTWORLD / "corpus" / "train.jsonl"),
                                                       cache_dir=str(caches / "stats"), max_tokens=2000))
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                          eval_every_n_batches=2, callbacks=list(callbacks), **trainer_args)
    trainer.test(module, datamodule=EditDataModule(root=str(FACTWORLD), n=n, batch_size=batch_size), verbose=False)
    return module


def _metrics(folder: Path) -> dict:
    """metrics.json without its provenance: the wall-clock time and whether the pre-edit downstream scores were
    read from the cache (the second of two runs finds them there)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics.pop("seconds") > 0
    if "downstream_setup" in metrics:
        metrics["downstream_setup"].pop("pre_from_cache")
    return metrics


def _steps(folder: Path) -> list[dict]:
    rows = list(csv.DictReader((folder / "steps.csv").open()))
    for row in rows:
        row.pop("seconds")
    return rows


def _requests(folder: Path) -> list[dict]:
    rows = list(csv.DictReader((folder / "requests.csv").open()))
    assert rows and all(row["pre/token/reliability"] and row["final/token/reliability"] for row in rows)
    return rows


def _assert_equal_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"not bit-identical: {different}"


# ------------------------------------------------------------------------------- (a) in-process resume


@pytest.mark.parametrize("kind", ["memit", "d4s", "comeba", "noisy", "rect"])
def test_interrupted_run_resumes_bit_identical_to_an_uninterrupted_one(tmp_path, tiny_gpt2_dir, caches, kind):
    # the cheap editor also carries a downstream curve (scored after batches 2 and 4) through the resume
    downstream = DownstreamConfig(root=str(FACTWORLD / "tasks"), tasks=["sentiment", "nli"], subset=4,
                                  periodic=True, bootstrap_resamples=20) if kind == "noisy" else None
    full = _run(tmp_path / "full", tiny_gpt2_dir, caches, _editor(kind), downstream=downstream,
                checkpoint_every_n_batches=2)
    cut = tmp_path / "cut"
    with pytest.raises(_Interrupted):
        _run(cut, tiny_gpt2_dir, caches, _editor(kind), [_InterruptAt(3)], downstream=downstream,
             checkpoint_every_n_batches=2)
    assert len(_steps(cut)) == 3 and not (cut / "metrics.json").exists()
    assert load_run_state(cut)["batches_done"] == 2          # batch 2 was done but not saved: it is redone

    edited = _EditedBatches()
    resumed = _run(cut, tiny_gpt2_dir, caches, _editor(kind), [edited], downstream=downstream,
                   checkpoint_every_n_batches=2, resume_from=str(cut))
    assert edited.indices == [2, 3]                          # batches 0 and 1 restored, not edited again
    _assert_equal_tensors(full.editor.effective_weights(full.model, full.arch),
                          resumed.editor.effective_weights(resumed.model, resumed.arch))
    _assert_equal_tensors(full.model.state_dict(), resumed.model.state_dict())
    _assert_equal_tensors(full.editor.state_dict(), resumed.editor.state_dict())
    # the immediate scores' sums and counts (on this random model every batch may score alike, so the means
    # alone could not tell a history restored from one that restarted)
    _assert_equal_tensors(full.scores.immediate.metric_state, resumed.scores.immediate.metric_state)
    assert _metrics(tmp_path / "full") == _metrics(cut)
    assert _steps(tmp_path / "full") == _steps(cut)
    assert _requests(tmp_path / "full") == _requests(cut)      # per-request scores of every stage
    assert [p["n_edits"] for p in _metrics(cut)["periodic"]] == [4, 8]    # the restored point and the new one
    if downstream is not None:
        assert [p["n_edits"] for p in _metrics(cut)["downstream_curve"]] == [0, 4, 8]
    _assert_holds_the_edits(load_run_state(tmp_path / "full"), full, kind)


EDITED_LAYERS = {"memit": [0, 1], "d4s": [0, 1], "comeba": [], "noisy": [1], "rect": [1]}


def _assert_holds_the_edits(state: dict, module: EditingModule, kind: str) -> None:
    """The end state holds exactly the changed parameters (none for COMEBA-HK: its edits are in the hook layers)."""
    assert state["batches_done"] == 4
    assert sorted(state["weights"]) == [f"transformer.h.{layer}.mlp.c_proj.weight" for layer in EDITED_LAYERS[kind]]
    for name, value in state["weights"].items():
        assert torch.equal(value, module.model.get_parameter(name))
    if kind == "comeba":      # ΔW masters, α, the accumulated keys and the Woodbury-updated inverse
        assert {"hooks.layer0.delta", "hooks.layer1.alpha", "accumulated.layer0.key_sum",
                "accumulated.layer1.inverse"} <= set(state["editor"])
        assert state["editor"]["hooks.layer0.delta"].abs().sum() > 0
    history = json.loads(state["history"])
    assert history["applied"] == [f"zsre:{i}" for i in range(8)] and len(history["steps"]) == 4




# ------------------------------------------------------------------------ (b) a real kill of the CLI


def _cli(tmp_path: Path, name: str, *extra: str) -> subprocess.Popen:
    """COMEBA-HK on the fact-world model via ``main.py test``, 3 batches of 2, a run state after every batch."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    args = [*method_config("comeba"), "--data.init_args.n", "6",
            "--data.init_args.batch_size", "2", "--trainer.eval_every_n_batches", "2",
            "--trainer.checkpoint_every_n_batches", "1", "--model.init_args.editor.init_args.values.steps", "3",
            "--model.init_args.editor.init_args.refactor_every", "2", "--model.init_args.monitor_docs", "4",
            "--model.init_args.cache_dir", str(tmp_path / "cache"), "--model.init_args.results_dir", str(folder),
            "--trainer.logger.init_args.save_dir", str(folder / "logs"),      # the config's TensorBoard logger
            "--trainer.enable_progress_bar", "false", *extra]
    log = open(tmp_path / f"{name}-{len(extra)}.log", "w")    # a file, not a pipe: nothing blocks on its output
    return subprocess.Popen([sys.executable, "main.py", "test", *args], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, tmp_path: Path) -> None:
    process.wait(timeout=600)
    if process.returncode != 0:
        logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*.log"))
        raise AssertionError(f"main.py test failed ({process.returncode}):\n{logs}")


def test_a_cli_run_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path):
    full = _cli(tmp_path, "full")
    killed = _cli(tmp_path, "killed")
    state_path = tmp_path / "killed" / STATE_FILE
    deadline = time.monotonic() + 500
    while not state_path.exists():                            # the first run state: after batch 1 of 3
        assert killed.poll() is None, (tmp_path / "killed-0.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no run state appeared"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert 1 <= load_run_state(tmp_path / "killed")["batches_done"] < 3

    resumed = _cli(tmp_path, "killed", "--trainer.resume_from", str(tmp_path / "killed"))
    _finish(full, tmp_path)
    _finish(resumed, tmp_path)
    assert "[lit-edit] resumed from" in (tmp_path / "killed-2.log").read_text()
    a, b = load_run_state(tmp_path / "full"), load_run_state(tmp_path / "killed")
    assert a["batches_done"] == b["batches_done"] == 3
    assert a["weights"] == {} == b["weights"]                 # COMEBA-HK: the edits are in the hook layers
    _assert_equal_tensors(a["editor"], b["editor"])           # ΔW masters, α, accumulated keys and inverse
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "killed")
    assert _steps(tmp_path / "full") == _steps(tmp_path / "killed")
    assert _requests(tmp_path / "full") == _requests(tmp_path / "killed")
    assert (tmp_path / "full" / "gate_max_z.json").read_text() == (tmp_path / "killed" / "gate_max_z.json").read_text()
    assert f"resume_from: {tmp_path / 'killed'}" in (tmp_path / "killed" / "config.yaml").read_text()
    versions = sorted((tmp_path / "killed" / "logs" / "factworld-comeba").iterdir())
    assert [v.name for v in versions] == ["version_0", "version_1"]           # the killed run's and the resumed one's
    assert list(versions[1].glob("events.out.tfevents*"))                    # the history replayed into the new one


# -------------------------------------------------------------------------------------- (c) bad input


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny_gpt2_dir, caches) -> Path:
    """A finished MEMIT run (2 batches of 2) with its run state."""
    folder = tmp_path_factory.mktemp("saved") / "run"
    _run(folder, tiny_gpt2_dir, caches, _editor("memit"), n=4, checkpoint_every_n_batches=1)
    return folder


def test_a_resume_of_a_finished_state_redoes_only_the_final_evaluation(tmp_path, saved_run, tiny_gpt2_dir, caches):
    edited = _EditedBatches()
    again = _run(tmp_path / "again", tiny_gpt2_dir, caches, _editor("memit"), [edited], n=4,
                 resume_from=str(saved_run / STATE_FILE))
    assert edited.indices == []
    for name, value in load_run_state(saved_run)["weights"].items():
        assert torch.equal(value, again.model.get_parameter(name))
    assert _metrics(saved_run) == _metrics(tmp_path / "again")
    assert _steps(saved_run) == _steps(tmp_path / "again")
    assert not (tmp_path / "again" / STATE_FILE).exists()    # checkpointing is off in the second run


def test_a_state_from_another_configuration_is_refused_naming_each_field(tmp_path, saved_run, tiny_gpt2_dir, caches):
    with pytest.raises(ResumeError) as error:
        _run(tmp_path / "run", tiny_gpt2_dir, caches, _editor("memit", preservation_weight=100.0, template_tokens=4),
             n=6, batch_size=1, resume_from=str(saved_run))
    message = str(error.value)
    assert message.startswith(f"trainer.resume_from: {saved_run / STATE_FILE} was saved by a run with other settings")
    for line in ("model.editor.preservation_weight: saved 300.0, this run 100.0",
                 "data.batch_size: saved 2, this run 1", "data.n: saved 4, this run 6",
                 "mode: saved 'batch-sequential', this run 'instance-sequential'",
                 "model.editor.context_templates: saved ["):      # sampled with the other template_tokens
        assert line in message
    assert "model.name_or_path" not in message and "edited_weights" not in message
    assert not (tmp_path / "run" / "steps.csv").exists()      # refused before anything ran


def test_a_state_from_another_model_is_refused_naming_it(tmp_path, saved_run, tiny_gpt2_dir, caches):
    other = make_tiny_model("gpt2", tmp_path / "other", seed=1)
    with pytest.raises(ResumeError, match=r"model.edited_weights_sha256: saved '\w+', this run '\w+'") as error:
        _run(tmp_path / "run", other, caches, _editor("memit"), n=4, resume_from=str(saved_run))
    assert f"model.name_or_path: saved '{tiny_gpt2_dir}', this run '{other}'" in str(error.value)


def test_a_model_whose_weights_changed_under_the_same_path_is_refused(tmp_path, tiny_gpt2_dir, caches):
    model_dir = make_tiny_model("gpt2", tmp_path / "model", seed=0)
    _run(tmp_path / "run", model_dir, caches, _editor("noisy"), n=2, checkpoint_every_n_batches=1)
    shutil.rmtree(model_dir)
    make_tiny_model("gpt2", model_dir, seed=1)
    with pytest.raises(ResumeError) as error:
        _run(tmp_path / "again", model_dir, caches, _editor("noisy"), n=2, resume_from=str(tmp_path / "run"))
    differing = str(error.value).split("differing:\n")[1].splitlines()
    assert [line.split(":")[0].strip() for line in differing] == ["model.edited_weights_sha256",
                                                                  "model.weights_sha256"]


def test_a_missing_or_foreign_resume_path_is_refused_naming_the_option(tmp_path):
    with pytest.raises(ResumeError, match=r"trainer.resume_from=.*nowhere: no such file or folder"):
        load_run_state(tmp_path / "nowhere")
    with pytest.raises(ResumeError, match=r"the folder holds no run_state.pt \(was the run made with "
                                          r"trainer.checkpoint_every_n_batches set\?\)"):
        load_run_state(tmp_path)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ResumeError, match="is not a readable run state"):
        load_run_state(tmp_path / "metrics.json")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ResumeError, match=r"is not a lit-edit run state \(it holds \['state_dict'\]\)"):
        load_run_state(tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="trainer.checkpoint_every_n_batches must be >= 1"):
        EditTrainer(logger=False, checkpoint_every_n_batches=0)


# ---------------------------------------------------------------------------------------- the pieces


def test_a_failed_write_keeps_the_previous_run_state(tmp_path, monkeypatch):
    path = tmp_path / STATE_FILE
    save_run_state(path, {"format": "lit-edit run state", "version": 1, "batches_done": 1})

    def dies_half_way(obj, f):
        f.write(b"half a state")
        raise KeyboardInterrupt   # what a kill looks like from inside the process

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_run_state(path, {"format": "lit-edit run state", "version": 1, "batches_done": 2})
    monkeypatch.undo()
    assert load_run_state(path)["batches_done"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]       # no temporary file left behind


def test_rng_states_are_restored_for_every_generator():
    state = capture_rng()
    drawn = (random.random(), float(np.random.rand()), torch.rand(3))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    restore_rng(state)
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert drawn[:2] == again[:2] and torch.equal(drawn[2], again[2])
