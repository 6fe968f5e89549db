"""lit-edit's ROME and MEMIT side by side with EasyEdit's (``bench/edit_latency.py --easyedit PATH``).

Both sides get the same model, requests, hyperparameters, context templates (lit-edit's, sampled once) and second
moments C (lit-edit's statistics cache); EasyEdit runs in a worker process (``bench/easyedit_worker.py``) under the
interpreter the user names and imports its code from the folder the user names. The two sides run one after the
other, request by request (ROME) and batch by batch (MEMIT), so that other jobs on the machine slow both alike; each
edit starts from the unedited weights, setup and weight restoration are outside the clock.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import torch
import yaml
from easyedit_worker import EditedWeights
from easyedit_worker import profiled as profiled_edits

from lit_edit.editing.solver import SecondMomentSolver
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import MEMIT, ROME
from lit_edit.editors.base import snapshot, value_targets

WORKER = Path(__file__).with_name("easyedit_worker.py")
COMPARED_SOLVER = SecondMomentSolver(method="ridge")
"""MEMIT's solver in the comparison: the shipped model's layer-1 C is singular, and so is λC + KKᵀ there, where
EasyEdit's LU solve fails; with C + ε·λ_max(C)·I on both sides (handed to EasyEdit in float64, which its solve reads
as ``cov.double()``) the two solve the same system. lit-edit's shipped solver (``pinv``) is timed beside it."""


def configured_editor(path: str):
    """The editor a method config (``configs/edit/methods/...``) builds, with its value-optimisation settings."""
    with open(path) as file:
        editor = yaml.safe_load(file)["model"]["init_args"]["editor"]
    module, name = editor["class_path"].rsplit(".", 1)
    arguments = dict(editor["init_args"])
    arguments["values"] = ValueHyperparams(**arguments.get("values", {}))
    return getattr(importlib.import_module(module), name)(**arguments)


def with_settings(editor, **changes):
    """A new editor of ``editor``'s class and settings, ``changes`` replacing some (``values`` a dict of changes to
    the value-optimisation settings)."""
    settings = {f.name: getattr(editor.hp, f.name) for f in fields(editor.hp)}
    if "values" in changes:
        changes = changes | {"values": replace(editor.hp.values, **changes["values"])}
    return type(editor)(**settings | changes)


def easyedit_hyperparameters(rome: ROME, memit: MEMIT, arch, model) -> tuple[dict, dict]:
    """EasyEdit's ``ROMEHyperParams`` and ``MEMITHyperParams`` fields for lit-edit's two editors. The statistics
    fields name no data: C is handed over, never collected (``mom2_*``, ``stats_dir``); ``context_template_length_params``
    is unused for the same reason (the templates are handed over); ``v_loss_layer`` is the last layer, as in EasyEdit's
    configs; ``attn_module_tmp`` is read by neither method. EasyEdit's MEMIT reads the unembedding as a parameter by
    name: a model with tied embeddings lists it under the input embedding only."""
    parameters = dict(model.named_parameters())
    unembedding = arch.unembedding if f"{arch.unembedding}.weight" in parameters else arch.embedding
    modules = dict(rewrite_module_tmp=arch.ffn_out, layer_module_tmp=f"{arch.layers}.{{}}", mlp_module_tmp=arch.ffn,
                   attn_module_tmp=f"{arch.layers}.{{}}.attn", ln_f_module=arch.final_norm,
                   lm_head_module=unembedding)
    common = dict(v_loss_layer=arch.n_layers(model) - 1, mom2_dataset="handed over", mom2_n_samples=0,
                  mom2_dtype="float32", device="cpu", model_name=model.config._name_or_path, stats_dir="unused",
                  **modules)

    def values(hp) -> dict:
        v = hp.values
        return dict(fact_token=v.fact_token, v_num_grad_steps=v.steps, v_lr=v.lr, v_weight_decay=v.weight_decay,
                    clamp_norm_factor=v.clamp_norm_factor, kl_factor=v.kl_factor)

    rome_fields = dict(alg_name="ROME", layers=[rome.hp.layer], mom2_adjustment=rome.hp.mom2_adjustment,
                       context_template_length_params=[], **values(rome.hp), **common)
    memit_fields = dict(alg_name="MEMIT", layers=list(memit.hp.layers), layer_selection="all", mom2_adjustment=True,
                        mom2_update_weight=memit.hp.preservation_weight, **values(memit.hp), **common)
    return rome_fields, memit_fields


def easyedit_requests(requests) -> list[dict]:
    """EasyEdit's request dicts; it puts the space before the target itself."""
    return [{"prompt": t.prompt, "subject": t.subject, "target_new": t.target.lstrip()} for t in value_targets(requests)]


class EasyEditWorker:
    """The worker process: started with the setup file, one JSON reply per command."""

    def __init__(self, python: str, setup: dict, folder: str):
        path = os.path.join(folder, "setup.pt")
        torch.save(setup, path)
        env = dict(os.environ, OMP_NUM_THREADS=str(setup["threads"]), MKL_NUM_THREADS=str(setup["threads"]))
        self.process = subprocess.Popen([python, str(WORKER), path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.info = self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the EasyEdit worker stopped (exit code {self.process.wait()}); its messages are above")
        reply = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"the EasyEdit worker: {reply['error']}")
        return reply

    def ask(self, *command) -> dict:
        self.process.stdin.write(" ".join(map(str, command)) + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        self.process.wait()


class LitEditSide(EditedWeights):
    """lit-edit's two editors on the loaded model, each edit from the unedited weights."""

    def __init__(self, model, tokenizer, arch, requests, editors: dict):
        self.model, self.tokenizer, self.arch, self.requests = model, tokenizer, arch, requests
        self.editors = editors
        names = sorted({n for e in self.editors.values() for n in e.parameter_names(model, arch)})
        self.originals = snapshot(model, names)

    def edit(self, method: str, index: int | None) -> float:
        self.restore()
        batch = self.requests if index is None else [self.requests[index]]
        start = time.perf_counter()
        self.editors[method].edit(self.model, self.tokenizer, self.arch, batch)
        return time.perf_counter() - start

    def profiled(self, method: str) -> dict:
        return profiled_edits(self, method)


def relative_difference(ours: dict, theirs: dict, names) -> str:
    parts = []
    for name in names:
        a, b = ours[name].double(), theirs[name].double()
        parts.append(f"{name}: {float((a - b).norm() / b.norm()):.1e}")
    return ", ".join(parts)


# what the profile of each side is broken into: (part, lit-edit's functions, EasyEdit's functions); a function is
# "file:qualified name" (file without folder) or a piece of a built-in's name (a label "<built-in ...>"); the parts
# may nest (indented)
PARTS = [
    ("value optimisation", ["values.py:optimize_values"], ["compute_v.py:compute_v", "compute_z.py:compute_z"]),
    ("  block forwards (all passes)", ["modeling_gpt2.py:GPT2Block.forward"], ["modeling_gpt2.py:GPT2Block.forward"]),
    ("  backward", ["run_backward"], ["run_backward"]),
    ("  Adam steps", ["adam.py:Adam.step"], ["adam.py:Adam.step"]),
    ("  log-softmax", ["log_softmax"], ["log_softmax"]),
    ("keys and residual passes", ["keys.py:subject_io"], ["repr_tools.py:get_reprs_at_idxs"]),
    ("tokenising", ["tokenization_utils_tokenizers.py:TokenizersBackend.__call__",
                    "tokenization_utils_base.py:PreTrainedTokenizerBase.__call__"],
     ["tokenization_utils_base.py:PreTrainedTokenizerBase.__call__",
      "tokenization_utils_base.py:PreTrainedTokenizerBase.encode"]),
    ("solve (u = C⁻¹k̄, ΔW)", ["rank_one.py:rome_direction", "rank_one.py:rank_one_update",
                              "least_squares.py:least_squares_update"], ["linalg_solve", "linalg_inv"]),
    ("printing", ["builtins.print"], ["builtins.print"]),
]


def part_seconds(rows: list, names: list[str]) -> tuple[int, float]:
    """Calls and cumulative seconds of the functions ``names`` (summed; each chosen so that none nests another)."""
    calls, seconds = 0, 0.0
    for label, count, _own, cumulative in rows:
        if any(label == name or (":" not in name and label.startswith("<") and name in label) for name in names):
            calls, seconds = calls + count, seconds + cumulative
    return calls, seconds


def print_breakdown(method: str, edits: int, ours: dict, theirs: dict) -> None:
    print(f"  {method} profile per edit ({edits} edit{'s' if edits > 1 else ''}; calls, seconds):")
    print(f"    {'part':34s} {'lit-edit':>16s} {'EasyEdit':>16s}")
    print(f"    {'whole edit (profiled)':34s} {'':6s}{ours['seconds'] / edits:10.3f} {'':6s}{theirs['seconds'] / edits:10.3f}")
    for part, lit_names, easy_names in PARTS:
        cells = []
        for side, names in ((ours, lit_names), (theirs, easy_names)):
            calls, seconds = part_seconds(side["functions"], names)
            cells.append(f"{calls / edits:6.0f}{seconds / edits:10.3f}")
        print(f"    {part:34s} {cells[0]} {cells[1]}")


def compare(model, tokenizer, arch, requests, context, rome: ROME, memit: MEMIT, source: str, python: str,
            memit_repeats: int, profile: bool) -> None:
    """Set both sides up, check that they compute the same updates, time them alternately and print the ratios."""
    shipped_memit = memit
    memit = with_settings(memit, solver=COMPARED_SOLVER)
    # the same editors re-running only the positions from the subject on at each value-optimisation step
    rome_prefix = with_settings(rome, values={"reuse_prefix": True})
    memit_prefix = with_settings(memit, values={"reuse_prefix": True})
    for editor in (rome, memit, shipped_memit, rome_prefix, memit_prefix):
        editor.setup(model, tokenizer, arch, context)
    assert rome_prefix.context_templates == rome.context_templates
    assert memit_prefix.template_groups == memit.template_groups
    rome_fields, memit_fields = easyedit_hyperparameters(rome, memit, arch, model)
    memit_moments = {layer: m.float64(COMPARED_SOLVER).cpu() for layer, m in memit._context.second_moments.items()}
    setup = dict(source=source, model=model.config._name_or_path, threads=torch.get_num_threads(), rome=rome_fields,
                 memit=memit_fields, rome_templates=rome.context_templates, memit_templates=memit.template_groups,
                 rome_moments={rome.hp.layer: rome.second_moment.matrix.cpu()}, memit_moments=memit_moments,
                 requests=easyedit_requests(requests))
    ours = LitEditSide(model, tokenizer, arch, requests, {"rome": rome, "memit": memit, "memit-pinv": shipped_memit,
                                                          "rome-prefix": rome_prefix, "memit-prefix": memit_prefix})
    with tempfile.TemporaryDirectory() as folder:
        worker = EasyEditWorker(python, setup, folder)
        try:
            print(f"EasyEdit from {source} (torch {worker.info['torch']}, {worker.info['threads']} thread(s)); "
                  f"load average before {os.getloadavg()[0]:.2f}")
            delta_path = os.path.join(folder, "delta.pt")
            for method, index in (("rome", 0), ("memit", None)):   # also the warm-up of both sides
                worker.ask(method, *([] if index is None else [index]), delta_path)
                theirs = torch.load(delta_path)
                for variant in (method, f"{method}-prefix"):
                    ours.edit(variant, index)
                    names = ours.editors[variant].parameter_names(model, arch)
                    print(f"  ΔW relative difference, {variant} ({'request 0' if index == 0 else 'the batch'}): "
                          f"{relative_difference(ours.deltas(), theirs, names)}")
            ours.restore()
            times = {name: [] for name in ("rome", "rome-prefix", "memit", "memit-prefix", "memit-pinv",
                                           "easyedit rome", "easyedit memit")}
            runs = [("rome", i) for i in range(len(requests))] + [("memit", None)] * memit_repeats
            for method, index in runs:
                times[method].append(ours.edit(method, index))
                times[f"easyedit {method}"].append(worker.ask(method, *([] if index is None else [index]))["seconds"])
                times[f"{method}-prefix"].append(ours.edit(f"{method}-prefix", index))
                if method == "memit":
                    times["memit-pinv"].append(ours.edit("memit-pinv", None))
            ours.restore()
            print(f"  load average after {os.getloadavg()[0]:.2f}")
            mean = {name: sum(t) / len(t) for name, t in times.items()}
            print(f"  ROME, {len(requests)} requests one at a time: lit-edit {mean['rome']:.3f} s, EasyEdit "
                  f"{mean['easyedit rome']:.3f} s per edit  -> EasyEdit / lit-edit {mean['easyedit rome'] / mean['rome']:.2f} x")
            print(f"  MEMIT, one batch of {len(requests)} ({memit_repeats} batches per side), ridge on both sides: "
                  f"lit-edit {mean['memit']:.3f} s, EasyEdit {mean['easyedit memit']:.3f} s per batch  -> "
                  f"EasyEdit / lit-edit {mean['easyedit memit'] / mean['memit']:.2f} x; lit-edit with its shipped "
                  f"solver (pinv) {mean['memit-pinv']:.3f} s ({mean['easyedit memit'] / mean['memit-pinv']:.2f} x)")
            for method in ("rome", "memit"):
                print(f"  {method.upper()} with values.reuse_prefix: lit-edit {mean[f'{method}-prefix']:.3f} s  -> "
                      f"EasyEdit / lit-edit {mean[f'easyedit {method}'] / mean[f'{method}-prefix']:.2f} x")
            if profile:
                for method in ("rome", "memit"):
                    edits = len(requests) if method == "rome" else 1
                    print_breakdown(method, edits, ours.profiled(method), worker.ask("profile", method))
        finally:
            worker.close()
    ours.restore()
