"""EasyEdit's ROME and MEMIT as a worker process of ``bench/edit_latency.py --easyedit PATH``.

EasyEdit is not a dependency of lit-edit and none of its code is in this repository: its modules are imported at run
time from the folder the user names (a checkout of zjunlp/EasyEdit), under the interpreter the user names
(``--easyedit-python``; EasyEdit's own environment, or this one when its packages fit). This script imports neither
lit_edit nor anything else of the project, so that it runs in EasyEdit's environment.

The parent writes a setup file (``torch.save``) with the model folder, EasyEdit's hyperparameters for both methods,
the context templates, the second moment C of every edited layer and the requests; the worker loads the model, puts
the templates and C (for ROME C⁻¹) into EasyEdit's own caches, so that no timed edit samples
templates or collects statistics, and then answers one JSON line per command line on stdin:

    rome I [PATH]       ROME on request I from the unedited weights: {"seconds": ...}; PATH: also save ΔW there
    memit [PATH]        MEMIT on all requests as one batch, from the unedited weights
    profile rome|memit  the same edits under cProfile (ROME: every request): {"seconds": ..., "functions":
                        [[label, calls, own seconds, cumulative seconds], ...]} (:func:`profile_rows`)
    quit

The weights are restored after every edit, outside the timed region; EasyEdit's progress prints go to /dev/null.
"""

from __future__ import annotations

import contextlib
import cProfile
import importlib
import inspect
import json
import os
import pstats
import sys
import time
import types

import torch


def easyedit_folder_problem(source: str) -> str | None:
    """Why ``source`` is not a folder this worker can import EasyEdit's ROME and MEMIT from; None when it is."""
    missing = [part for part in ("rome/rome_main.py", "memit/memit_main.py")
               if not os.path.isfile(os.path.join(source, "easyeditor", "models", part))]
    if missing:
        return (f"--easyedit {source!r}: no easyeditor/models/{missing[0]} there; give the folder of a checkout of "
                f"zjunlp/EasyEdit (the one that holds easyeditor/)")
    return None


def import_easyedit(source: str) -> dict[str, types.ModuleType]:
    """EasyEdit's ROME and MEMIT modules from ``source``, without running ``easyeditor/__init__.py`` (which imports
    every method, the trainers and their optional dependencies): the packages above the two methods are registered
    empty, with their folders as search paths, and the methods' modules are imported from them."""
    problem = easyedit_folder_problem(source)
    if problem:
        raise SystemExit(problem)
    root = os.path.join(os.path.abspath(source), "easyeditor")
    for name, folder in (("easyeditor", root), ("easyeditor.models", os.path.join(root, "models")),
                         ("easyeditor.util", os.path.join(root, "util"))):
        package = types.ModuleType(name)
        package.__path__ = [folder]
        sys.modules[name] = package
    names = ("models.rome.rome_main", "models.rome.compute_u", "models.rome.rome_hparams",
             "models.memit.memit_main", "models.memit.memit_hparams")
    return {name.rsplit(".", 1)[1]: importlib.import_module(f"easyeditor.{name}") for name in names}


class EditedWeights:
    """A side's model and its unedited edit weights (``originals``): put them back, or what an edit changed."""

    model: torch.nn.Module
    originals: dict[str, torch.Tensor]

    def restore(self) -> None:
        with torch.no_grad():
            for name, value in self.originals.items():
                self.model.get_parameter(name).copy_(value)

    def deltas(self) -> dict[str, torch.Tensor]:
        return {name: self.model.get_parameter(name).detach() - value for name, value in self.originals.items()}


class EasyEditSide(EditedWeights):
    """The loaded model, EasyEdit's modules with their caches filled, and the unedited weights."""

    def __init__(self, setup: dict):
        torch.set_num_threads(setup["threads"])
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.modules = import_easyedit(setup["source"])
        self.model = AutoModelForCausalLM.from_pretrained(setup["model"], dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(setup["model"])
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.requests = setup["requests"]
        self.rome = self.modules["rome_hparams"].ROMEHyperParams(**setup["rome"])
        self.memit = self.modules["memit_hparams"].MEMITHyperParams(**setup["memit"])
        self.fill_caches(setup)
        names = {f"{hp.rewrite_module_tmp.format(layer)}.weight" for hp in (self.rome, self.memit)
                 for layer in hp.layers}
        self.originals = {name: self.model.get_parameter(name).detach().clone() for name in sorted(names)}

    def fill_caches(self, setup: dict) -> None:
        """The context templates and C where EasyEdit keeps them once computed: ROME's C⁻¹ where its ``get_inv_cov``
        keeps it (its ``torch.inverse`` of C cast to float32; taken here in float64 before the cast, so that the
        comparison is not blurred by a float32 inverse), MEMIT's C where its ``get_cov`` keeps it (read back as
        ``cov.double()`` in the solve: handed over in float64, with the parent's ridge already added)."""
        model_name = self.model.config._name_or_path.replace("/", "_")
        self.modules["rome_main"].CONTEXT_TEMPLATES_CACHE = list(setup["rome_templates"])
        self.modules["memit_main"].CONTEXT_TEMPLATES_CACHE = [list(group) for group in setup["memit_templates"]]
        for layer in self.rome.layers:
            key = (model_name, self.rome.rewrite_module_tmp.format(layer))
            inverse = torch.inverse(setup["rome_moments"][layer].double()).float()
            self.modules["compute_u"].inv_mom2_cache[key] = inverse
        for layer in self.memit.layers:
            key = (model_name, self.memit.rewrite_module_tmp.format(layer))
            self.modules["memit_main"].COV_CACHE[key] = setup["memit_moments"][layer].double().cpu()

    def edit(self, method: str, index: int | None) -> float:
        """Seconds of one EasyEdit edit (the weights stay edited until :meth:`restore`)."""
        self.restore()
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            start = time.perf_counter()
            if method == "rome":
                self.modules["rome_main"].apply_rome_to_model(self.model, self.tokenizer, [self.requests[index]],
                                                              self.rome)
            else:
                self.modules["memit_main"].apply_memit_to_model(self.model, self.tokenizer, self.requests,
                                                                self.memit)
            return time.perf_counter() - start


def qualified_names(files) -> dict[tuple[str, int, str], str]:
    """(file, first line, name) -> qualified name, for the functions and methods of the loaded modules in ``files``."""
    modules = {getattr(m, "__file__", None): m for m in list(sys.modules.values())}
    names = {}
    for file in files:
        module = modules.get(file)
        if module is None:
            continue
        for item in list(vars(module).values()) + [v for c in vars(module).values() if isinstance(c, type)
                                                  for v in vars(c).values()]:
            code = getattr(inspect.unwrap(item), "__code__", None) if callable(item) else None
            if isinstance(code, types.CodeType) and code.co_filename == file:
                names[(file, code.co_firstlineno, code.co_name)] = getattr(code, "co_qualname", code.co_name)
    return names


def profile_rows(profile: cProfile.Profile, least: float = 1e-3) -> list[list]:
    """[label, calls, own seconds, cumulative seconds] of every function with at least ``least`` cumulative seconds;
    the label is ``file:qualified name`` (file without its folder) or a built-in's name."""
    stats = {key: value for key, value in pstats.Stats(profile).stats.items() if value[3] >= least}
    names = qualified_names({file for file, _, _ in stats})
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.items():
        label = name if file == "~" else f"{os.path.basename(file)}:{names.get((file, line, name), name)}"
        rows.append([label, calls, own, cumulative])
    return rows


def profiled(side, method: str) -> dict:
    """The edits of ``method`` (ROME: every request; MEMIT: the batch) under cProfile, on either side (an object
    with ``requests``, ``edit(method, index)`` returning seconds, and ``restore()``)."""
    profile = cProfile.Profile()
    seconds = 0.0
    for index in range(len(side.requests)) if method == "rome" else [None]:
        profile.enable()
        seconds += side.edit(method, index)
        profile.disable()
    side.restore()
    return {"seconds": seconds, "functions": profile_rows(profile)}


def answer(side: EasyEditSide, command: list[str]) -> dict:
    if command[0] == "rome":
        reply = {"seconds": side.edit("rome", int(command[1]))}
    elif command[0] == "memit":
        reply = {"seconds": side.edit("memit", None)}
    elif command[0] == "profile":
        return profiled(side, command[1])
    else:
        return {"error": f"unknown command {command[0]!r}"}
    path = command[-1] if len(command) > (2 if command[0] == "rome" else 1) else None
    if path:
        torch.save(side.deltas(), path)
    side.restore()
    return reply


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")   # the replies' own channel: any other print goes to stderr
    sys.stdout = sys.stderr
    side = EasyEditSide(torch.load(sys.argv[1], weights_only=False))
    replies.write(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}) + "\n")
    replies.flush()
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        replies.write(json.dumps(answer(side, command)) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
