"""Where files are found: the data root and the project, so that a command works from any working directory.

The **data root** holds the real data (``zsre/``, ``counterfact/``, ``tasks/``, ``wikitext-103-raw-v1/``, written by
``python -m lit_edit.tools fetch_data``): ``--data_root`` on the command line, else the environment variable
``LIT_EDIT_DATA``, else the project's ``data/`` folder (which also ships ``data/factworld``).

A relative path in a config or an option is looked up, in this order, under the data root (a leading ``data/``
stands for the data root itself, so ``data/zsre/x.json`` is ``<data root>/zsre/x.json``), in the working directory,
and in the project (the shipped fact world, models and configs); the first that exists is used. When none exists
the data-root reading is returned for a ``data/...`` path (so the error names the data root), else the path as
written.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository (the folder that holds ``lit_edit/``, ``configs/``, ``checkpoints/`` and ``data/``)."""

DATA_ROOT_ENV = "LIT_EDIT_DATA"
DATA_PREFIX = "data"
"""A relative path whose first part is this stands for the data root."""


def data_root() -> Path:
    """``$LIT_EDIT_DATA`` (set by ``--data_root``), else the project's ``data/`` folder."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(value).expanduser() if value else PROJECT_ROOT / DATA_PREFIX


def set_data_root(path: str | Path) -> Path:
    """Make ``path`` the data root of this process and of the processes it starts (``--data_root``)."""
    root = Path(path).expanduser().resolve()
    os.environ[DATA_ROOT_ENV] = str(root)
    return root


def candidates(path: str | Path) -> list[Path]:
    """Where a relative ``path`` is looked for, in order (see the module docstring); an absolute one is itself."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return [path]
    parts = path.parts
    under_root = data_root().joinpath(*parts[1:]) if parts[:1] == (DATA_PREFIX,) else data_root() / path
    return list(dict.fromkeys([under_root, Path.cwd() / path, PROJECT_ROOT / path]))


def resolve_path(path: str | Path) -> Path:
    """The first of :func:`candidates` that exists; when none does, the data-root reading of a ``data/...`` path,
    else ``path`` as written."""
    found = candidates(path)
    for candidate in found:
        if candidate.exists():
            return candidate
    written = Path(path).expanduser()
    return found[0] if written.parts[:1] == (DATA_PREFIX,) else written


def resolve_config_args(args: list[str]) -> list[str]:
    """``--config FILE`` arguments with a relative ``FILE`` that is not in the working directory but is in the
    project, made absolute (``python /path/to/lit-edit/main.py test --config configs/edit/default.yaml`` from
    anywhere)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = _project_file(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + _project_file(arg[len("--config="):])
    return out


def _project_file(value: str) -> str:
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists() or not (PROJECT_ROOT / path).exists():
        return value
    return str(PROJECT_ROOT / path)
