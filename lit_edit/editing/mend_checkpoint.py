"""A trained MEND editor on disk: ``mend.safetensors`` (the network) and ``mend.json`` (what it was trained for).

The folder is written atomically, only where ``lit_edit.export_folder`` allows it (a new or empty folder, or a
previous lit-edit export with the overwrite option). Loading checks that the editor fits the model it is asked to
edit: the same family, and every edited module present with the trained shape; another layer list is refused,
naming both. The weights' digest is compared too; a different one (a fine-tuned or edited base) only warns.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file, save_file

from lit_edit.editing.mend import module_io_sizes
from lit_edit.editing.mend_network import MendNetwork
from lit_edit.export_folder import ExportTarget, export_folder
from lit_edit.models.architectures import Architecture
from lit_edit.paths import resolve_path

FORMAT = "lit-edit-mend/1"


class MendCheckpointError(ValueError):
    """A MEND checkpoint that cannot edit this model; the message names the checkpoint and the model."""


def save_mend_checkpoint(folder: ExportTarget | Path | str, network: MendNetwork, description: dict) -> Path:
    """Write the network and ``description`` (base model, architecture, layers, hyperparameters, training
    summary) to ``folder`` (a path or an :class:`ExportTarget`), replacing it atomically."""
    state = {key: value.detach().contiguous().cpu() for key, value in network.state_dict().items()}
    meta = {"format": FORMAT, "modules": {name: list(shape) for name, shape in network.module_shapes.items()},
            **description}
    target = ExportTarget.of(folder)
    with export_folder(target, "MEND editor") as tmp:
        save_file(state, str(tmp / "mend.safetensors"))
        (tmp / "mend.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return Path(target.path)


def read_mend_description(folder: Path | str) -> dict:
    """``mend.json``: what the editor was trained for (read before the network, to check it fits)."""
    folder = resolve_path(folder)
    if not (folder / "mend.json").exists() or not (folder / "mend.safetensors").exists():
        raise FileNotFoundError(f"{folder} is not a MEND checkpoint: it needs mend.json and mend.safetensors "
                                "(written by `python main.py fit --config configs/fit/mend_*.yaml`)")
    try:
        meta = json.loads((folder / "mend.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MendCheckpointError(f"{folder}/mend.json is not valid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise MendCheckpointError(f"{folder}/mend.json has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_mend_checkpoint(folder: Path | str) -> tuple[MendNetwork, dict]:
    """The network (in evaluation mode) and its description."""
    folder = resolve_path(folder)
    meta = read_mend_description(folder)
    network = MendNetwork({name: tuple(shape) for name, shape in meta["modules"].items()}, **meta["network"])
    try:
        state = load_file(str(Path(folder) / "mend.safetensors"))
    except Exception as e:   # a truncated file or another format altogether
        raise MendCheckpointError(f"{folder}/mend.safetensors is not a readable safetensors file ({e})") from None
    try:
        network.load_state_dict(state)
    except RuntimeError as e:
        raise MendCheckpointError(f"{folder}: mend.safetensors does not hold the network mend.json describes: "
                                  f"{e}") from None
    return network.eval(), meta


def check_checkpoint_fits(folder: Path | str, meta: dict, model, arch: Architecture, model_name: str,
                          layers: Sequence[int] | None, weights_digest: str) -> None:
    """Refuse a checkpoint trained for another family, other layers or other module shapes (naming both
    sides); warn when only the weights differ."""
    trained = f"MEND checkpoint {folder} was trained for {meta['base_model']!r} ({meta['architecture']}, layers " \
              f"{meta['layers']})"
    if meta["architecture"] != arch.name:
        raise MendCheckpointError(f"{trained}, but {model_name!r} is a {arch.name} model")
    if layers is not None and list(layers) != list(meta["layers"]):
        raise MendCheckpointError(f"{trained}, but this editor is configured for layers {list(layers)}")
    for name, shape in meta["modules"].items():
        try:
            found = list(module_io_sizes(model.get_submodule(name)))
        except AttributeError:
            raise MendCheckpointError(f"{trained}: module {name} does not exist in {model_name!r}") from None
        if found != list(shape):
            raise MendCheckpointError(f"{trained}: module {name} has (input, output) sizes {tuple(shape)} there "
                                      f"but {tuple(found)} in {model_name!r}")
    if meta.get("base_weights_sha256") and meta["base_weights_sha256"] != weights_digest:
        warnings.warn(f"{trained}; {model_name!r} has the same shapes but other weights (a fine-tuned or edited "
                      "base?): its edits may be weaker", stacklevel=2)
