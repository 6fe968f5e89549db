"""The saved state of an editing run: a run killed part-way resumes from it to the same end as an uninterrupted one.

With ``trainer.checkpoint_every_n_batches: N`` the loop writes ``run_state.pt`` into the run folder after every N
edit steps and after the last one, atomically (a kill during the write keeps the previous state);
``trainer.resume_from`` (that file or its folder) continues a run from it. A run state holds:

- ``batches_done``: the position in the edit stream; on resume those batches are skipped, not edited again;
- ``weights``: the edited parameters that differ from the loaded model, exact (their stored dtype). The deltas
  would be no smaller (dense) and W0 + ΔW need not round back to W. COMEBA-HK keeps its edits in hook layers, so
  its ``weights`` are empty and its ΔW masters are in ``editor``; so are the rollback modes' (weights restored);
- ``editor``: ``editor.state_dict()`` (D4S's sums, COMEBA's accumulated keys, inverse, hook ΔW and α, AlphaEdit's
  keys, RECT's generator);
- ``rng``: the python, numpy, torch CPU (and CUDA) generator states;
- ``history``: what the run recorded so far (the entries of ``metrics.json``, the rows of ``steps.csv``, the
  record ids applied, the downstream curve) as JSON, and the immediate-score sums as tensors;
- ``fingerprint``: the settings that decide the results (:meth:`EditingModule.fingerprint` and the schedule);
  a run whose settings differ is refused with every differing field named, both values given.

The file loads with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_edit.io import atomic_torch_save

STATE_FILE = "run_state.pt"
FORMAT = "lit-edit run state"
VERSION = 1
OPTION = "trainer.resume_from"


class ResumeError(ValueError):
    """A run state that cannot continue this run (a missing or foreign file, or another configuration)."""


# ---------------------------------------------------------------------------------------------- file


def state_file(resume_from: str | Path) -> Path:
    """The run-state file that ``resume_from`` names: the file itself, or ``run_state.pt`` in a run folder.

    Raises:
        ResumeError: the path does not exist, or the folder holds no run state.
    """
    path = Path(resume_from)
    if not path.exists():
        raise ResumeError(f"{OPTION}={resume_from}: no such file or folder")
    if path.is_dir():
        if not (path / STATE_FILE).is_file():
            raise ResumeError(f"{OPTION}={resume_from}: the folder holds no {STATE_FILE} (was the run made with "
                              "trainer.checkpoint_every_n_batches set?)")
        return path / STATE_FILE
    return path


def save_run_state(path: Path | str, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a kill at any moment leaves the previous state or the new one."""
    atomic_torch_save(path, dict(state))


def load_run_state(resume_from: str | Path) -> dict:
    """Read and check the run state that ``resume_from`` names (see :func:`state_file`).

    Raises:
        ResumeError: the file is not a run state of this format version.
    """
    path = state_file(resume_from)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:   # a truncated file, a pickle of other objects, not a torch file at all
        raise ResumeError(f"{OPTION}={resume_from}: {path} is not a readable run state ({error})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ResumeError(f"{OPTION}={resume_from}: {path} is not a lit-edit run state (it holds {keys})")
    if state.get("version") != VERSION:
        raise ResumeError(f"{OPTION}={resume_from}: {path} has run-state version {state.get('version')}, this "
                          f"lit-edit reads version {VERSION}")
    state["path"] = str(path)
    return state


def new_run_state(batches_done: int, fingerprint: Mapping[str, Any], module_state: Mapping[str, Any]) -> dict:
    """A complete run state: the module's part (weights, editor, history) with the position, RNG and fingerprint."""
    return {"format": FORMAT, "version": VERSION, "batches_done": int(batches_done),
            "fingerprint": json.dumps(dict(fingerprint), sort_keys=True), "rng": capture_rng(),
            "versions": {"torch": str(torch.__version__), "numpy": str(np.__version__)}, **module_state}


# ------------------------------------------------------------------------------------------------ RNG


def capture_rng() -> dict:
    """The python, numpy, torch CPU and (where initialised) CUDA generator states, as tensors and numbers."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set every generator :func:`capture_rng` saw to its saved state (CUDA only where saved and present)."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------- fingerprint


def plain(value: Any) -> Any:
    """``value`` as JSON would give it back: tuples become lists, numbers stay exact; an object that JSON cannot
    write becomes its type name (never its address), so two runs describe it alike."""
    return json.loads(json.dumps(value, default=lambda obj: f"<{type(obj).__name__}>"))


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` under ``prefix`` → ``{"prefix.a.b": 1}`` (lists stay whole); values made :func:`plain`."""
    value = plain(value)
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out |= flatten(f"{prefix}.{key}", item)
    return out


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors`` (a bit-exact identity)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprint_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``field: saved X, this run Y`` for every field whose values differ (a missing field shows as absent)."""
    lines = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if old != new:
            lines.append(f"{key}: saved {old!r}, this run {new!r}")
    return lines


def check_fingerprint(state: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse a run state made with other settings, naming each differing field with both values.

    Raises:
        ResumeError: one or more fields differ.
    """
    differences = fingerprint_differences(json.loads(state["fingerprint"]), plain(dict(current)))
    if differences:
        raise ResumeError(f"{OPTION}: {state['path']} was saved by a run with other settings, so it cannot continue "
                          "this one; differing:\n  " + "\n  ".join(differences))


# ------------------------------------------------------------------------------------------- history


def history_to_json(history: Mapping[str, Any]) -> str:
    """The recorded history as JSON (floats exact, NaN and inf kept); tensors and numpy scalars become numbers."""
    def number(obj):
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(f"the run history holds a {type(obj).__name__}, which a run state cannot store")
    return json.dumps(history, default=number)
