"""An edited model on disk: only what the edits changed (``edits.safetensors``), or a whole Hugging Face folder.

``edits.safetensors`` holds, for a method that edits parameters (ROME, MEMIT, FT, KN, D4S, AlphaEdit,
COMEBA w/o HK...), the **exact new values** of the parameters that differ from the base model, under their own
names (so the file is also a partial ``state_dict``), in their stored dtype. Not deltas: W0 + (W − W0) need not
round back to W in floating point, and a dense ΔW is no smaller than W; with the base checked by its digest,
the new values make a fresh base plus the file bit-identical to the edited model (``tests/unit/run/test_export.py``).

For COMEBA-HK, whose edits live in hook layers beside the untouched base (``lit_edit.editing.hook_layers``), the
file holds the hook bank's state: each edited layer's float32 ΔW master (``hooks.layer{l}.delta``, math layout)
and threshold α (``hooks.layer{l}.alpha``), and the metadata names the positions the gate's statistics run over
(``hook_gate_statistics``; a file without it has the default, ``real_tokens``). The gate needs nothing else: its
statistics are computed per sequence from ΔW k. :func:`apply_edits` rebuilds a :class:`HookBank` on the fresh
base, loads that state, installs its hooks and sets them to ``validated`` (the gated mode the run scores with),
and returns it: the model then computes exactly as the edited one did, generation included; ``bank.remove()``
takes the edits off again.

The safetensors metadata (str → str) says what the file is for: ``format``/``version``, ``base_model``
(name_or_path), ``base_weights_sha256`` (:func:`lit_edit.stats.weights_sha256` of the unedited base),
``base_architecture``, ``method``, ``n_edits``, ``parameters`` (JSON list), ``base_shapes`` (JSON: every base
parameter the file touches, with its shape) and ``hook_layers`` (JSON: layer → module). :func:`apply_edits`
refuses a model that lacks a parameter or has another shape (naming both models); a model with the same shapes
but another digest (another training, an edited copy, another dtype) is refused too unless
``allow_other_base=True``, which only warns.

:func:`export_model` writes the edited model as a Hugging Face folder (atomically, and only where
``lit_edit.export_folder`` allows: a new or empty folder, or a previous lit-edit export with the overwrite option;
never the current folder, a symbolic link, the run's results or the base model). A folder holds weights only,
so it cannot carry the hook layers' gate: with hook layers it refuses, unless ``fold_hooks=True`` writes
W0 + ΔW into the weights — every token then gets the edit (a warning says so).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from lit_edit.editing.hook_layers import HookBank
from lit_edit.export_folder import ExportFolderError, ExportTarget, export_hf
from lit_edit.io import atomic_write_bytes
from lit_edit.models.architectures import architecture_of
from lit_edit.run_state import load_run_state
from lit_edit.stats import weights_sha256

FORMAT = "lit-edit edits"
VERSION = "1"
EDITS_FILE = "edits.safetensors"
HOOKS = "hooks."
WHAT = "edited model"      # what an exported Hugging Face folder is (its lit-edit-export.json)


class EditsFileError(ValueError):
    """An edits file that is not one, or that does not fit the model it is applied to (both are named)."""


@dataclass
class AppliedEdits:
    """What :func:`apply_edits` did.

    Attributes:
        parameters: the parameters overwritten with their edited values.
        bank: the installed hook layers (COMEBA-HK files; the model computes through them until
            ``bank.remove()``), else None.
        metadata: the file's metadata (base model, method, number of edits...).
    """

    parameters: list[str]
    bank: HookBank | None
    metadata: dict[str, str]


# ------------------------------------------------------------------------------------------- helpers


def model_name(model) -> str:
    """How a loaded model names itself (its ``name_or_path``), for messages and metadata."""
    return str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "") or "<unnamed model>")


def changed_parameters(model, names: Sequence[str], originals: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The parameters among ``names`` that differ from ``originals`` (bitwise), as CPU copies in their dtype."""
    out = {}
    for name in names:
        value = model.get_parameter(name).detach()
        if name not in originals or not torch.equal(value, originals[name].to(value)):
            out[name] = value.cpu().clone()
    return out


# ------------------------------------------------------------------------------------------------ save


def save_edits(path: Path | str, *, base_model: str, base_sha256: str, method: str, n_edits: int,
               weights: Mapping[str, torch.Tensor] | None = None, hooks: HookBank | None = None,
               architecture: str | None = None) -> Path:
    """Write what the edits changed to a safetensors file, atomically (see the module docstring).

    Args:
        path: the file to write (``edits.safetensors`` in a run folder).
        base_model: name_or_path of the unedited model.
        base_sha256: :func:`lit_edit.stats.weights_sha256` of the unedited model.
        method: the editor's name.
        n_edits: how many edit requests the file holds.
        weights: the edited parameters that differ from the base (exact values, stored layout and dtype).
        hooks: the hook layers holding the edits (COMEBA-HK).
        architecture: the base's family (``Architecture.name``; default: the hooks').
    Returns:
        ``path``.
    """
    weights = dict(weights or {})
    tensors = {name: value.detach().cpu().contiguous() for name, value in weights.items()}
    shapes = {name: list(value.shape) for name, value in weights.items()}
    hook_layers = {}
    if hooks is not None:
        architecture = architecture or hooks.arch.name
        for key, value in hooks.state_dict().items():
            tensors[HOOKS + key] = value.detach().cpu().contiguous()
        for layer, hook in hooks.layers.items():
            hook_layers[str(layer)] = hook.module_name
            shapes[f"{hook.module_name}.weight"] = list(hooks.model.get_parameter(f"{hook.module_name}.weight").shape)
    metadata = {"format": FORMAT, "version": VERSION, "base_model": str(base_model),
                "base_weights_sha256": base_sha256, "base_architecture": architecture or "",
                "method": method, "n_edits": str(int(n_edits)), "parameters": json.dumps(sorted(weights)),
                "base_shapes": json.dumps(shapes, sort_keys=True), "hook_layers": json.dumps(hook_layers)}
    if hooks is not None:
        metadata["hook_gate_statistics"] = hooks.gate_statistics
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata))
    return Path(path)


def read_edits(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of an edits file.

    Raises:
        EditsFileError: the file is missing, not safetensors, or not an edits file of this version.
    """
    path = Path(path)
    if not path.is_file():
        raise EditsFileError(f"edits file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:   # a truncated file or another format altogether
        raise EditsFileError(f"{path} is not a readable safetensors file ({error})") from error
    if metadata.get("format") != FORMAT:
        raise EditsFileError(f"{path} is not a lit-edit edits file (metadata format {metadata.get('format')!r})")
    if metadata.get("version") != VERSION:
        raise EditsFileError(f"{path} has edits-file version {metadata.get('version')!r}; this lit-edit reads "
                             f"version {VERSION}")
    return tensors, metadata


# ----------------------------------------------------------------------------------------------- apply


def check_base(model, metadata: Mapping[str, str], where: str, allow_other_base: bool = False) -> None:
    """Refuse a model that is not the file's base: a missing parameter or another shape always; the same shapes
    with another weights digest unless ``allow_other_base`` (then a warning). Messages name both models."""
    made_for = (f"{where} holds edits of {metadata['base_model']!r} ({metadata['base_architecture'] or 'weights'}, "
                f"weights_sha256 {metadata['base_weights_sha256'][:16]})")
    this = model_name(model)
    for name, shape in json.loads(metadata["base_shapes"]).items():
        try:
            found = list(model.get_parameter(name).shape)
        except AttributeError:
            raise EditsFileError(f"{made_for}, but {this!r} ({type(model).__name__}) has no parameter {name}: "
                                 "another base model") from None
        if found != shape:
            raise EditsFileError(f"{made_for}, but parameter {name} has shape {tuple(shape)} there and "
                                 f"{tuple(found)} in {this!r}: another base model")
    digest = weights_sha256(model)
    if digest != metadata["base_weights_sha256"]:
        message = (f"{made_for}, but {this!r} has the same shapes and other weights (weights_sha256 {digest[:16]}: "
                   "another training, an already edited copy or another dtype)")
        if not allow_other_base:
            raise EditsFileError(message + "; pass allow_other_base=True to apply them anyway")
        warnings.warn(message + "; applying them anyway (allow_other_base)", stacklevel=3)


def apply_edits(model, path: Path | str, allow_other_base: bool = False) -> AppliedEdits:
    """Apply an edits file to a freshly loaded base model, in place.

    Edited parameters are overwritten with their exact values; hook layers are rebuilt, installed on ``model``
    in the ``validated`` (gated) mode and returned in :attr:`AppliedEdits.bank` (keep it to remove them).

    Args:
        model: the unedited base model (any device and dtype the file's base had).
        path: the edits file (:func:`save_edits`).
        allow_other_base: apply to a model with the base's shapes but other weights, with a warning.
    Raises:
        EditsFileError: not an edits file, or a model it was not made for.
    """
    tensors, metadata = read_edits(path)
    check_base(model, metadata, str(path), allow_other_base)
    parameters = json.loads(metadata["parameters"])
    with torch.no_grad():
        for name in parameters:
            model.get_parameter(name).copy_(tensors[name])
    bank = _install_hooks(model, tensors, json.loads(metadata["hook_layers"]), str(path),
                          metadata.get("hook_gate_statistics", "real_tokens"))
    return AppliedEdits(parameters, bank, dict(metadata))


def _install_hooks(model, tensors: Mapping[str, torch.Tensor], hook_layers: Mapping[str, str],
                   where: str, gate_statistics: str) -> HookBank | None:
    """Rebuild, load and install the hook layers of an edits file (None when it has none)."""
    if not hook_layers:
        return None
    arch = architecture_of(model)
    for layer, module in hook_layers.items():
        if arch.ffn_out_at(int(layer)) != module:
            raise EditsFileError(f"{where}: hook layer {layer} sits on {module}, but in {model_name(model)!r} that "
                                 f"layer's FFN output is {arch.ffn_out_at(int(layer))}: another architecture")
    try:
        bank = HookBank(model, arch, [int(layer) for layer in hook_layers], gate_statistics=gate_statistics)
    except ValueError as error:
        raise EditsFileError(f"{where}: metadata hook_gate_statistics: {error}") from None
    bank.load_state_dict({key.removeprefix(HOOKS): value for key, value in tensors.items() if key.startswith(HOOKS)})
    bank.install()
    bank.set_mode("validated")
    return bank


def check_edits_target(out: Path, overwrite: bool = False, option: str = "--out") -> None:
    """Refuse to write an edits file over anything but a previous edits file (and over that one only with
    ``overwrite``): a file lit-edit did not write, a folder, a symbolic link.

    Raises:
        ExportFolderError: naming the option and the path.
    """
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise ExportFolderError(f"{option}={out} is {'a symbolic link' if out.is_symlink() else 'a folder'}; name a "
                                "new file")
    if not out.exists():
        return
    try:
        with safe_open(str(out), framework="pt") as f:
            ours = (f.metadata() or {}).get("format") == FORMAT
    except Exception:   # not safetensors at all
        ours = False
    if not ours:
        raise ExportFolderError(f"{option}={out} is a file lit-edit did not write; name a new file")
    if not overwrite:
        raise ExportFolderError(f"{option}={out} holds an edits file already; pass --overwrite true to replace it, or "
                                "name a new file")


def export_run_state(run: Path | str, out: Path | str | None = None, overwrite: bool = False) -> Path:
    """Write the edits file of a run from its run state (``run_state.pt``, the folder or the file), e.g. of a run
    made before ``export_edits`` existed or stopped part-way: the base is loaded from the state's fingerprint
    (name_or_path, dtype) and must still have the digest the run saw.

    Args:
        run: the run folder or its ``run_state.pt``.
        out: the file to write; default: ``edits.safetensors`` beside the run state.
        overwrite: replace an edits file already at ``out`` (anything else there is refused).
    Raises:
        EditsFileError: the base model's weights changed since the run.
        ExportFolderError: ``out`` holds something else, or an edits file and ``overwrite`` is false.
    """
    from lit_edit.models.loading import load_model

    state = load_run_state(run)
    out = Path(out) if out else Path(state["path"]).parent / EDITS_FILE
    check_edits_target(out, overwrite)     # before the base model is loaded
    fingerprint = json.loads(state["fingerprint"])
    base = fingerprint["model.name_or_path"]
    model = load_model(base, fingerprint.get("model.dtype", "float32"))
    digest = weights_sha256(model)
    if digest != fingerprint["model.weights_sha256"]:
        raise EditsFileError(f"{state['path']} was saved by a run on {base!r} with weights_sha256 "
                             f"{fingerprint['model.weights_sha256'][:16]}, that folder now holds {digest[:16]}")
    hooks = {key.removeprefix(HOOKS): value for key, value in state["editor"].items() if key.startswith(HOOKS)}
    bank = None
    if hooks:
        layers = sorted({int(key.split(".")[0].removeprefix("layer")) for key in hooks})
        bank = HookBank(model, architecture_of(model), layers,
                        gate_statistics=fingerprint.get("model.editor.gate_statistics", "real_tokens"))
        bank.load_state_dict(hooks)
    return save_edits(out, base_model=base, base_sha256=digest,
                      method=fingerprint["model.editor.name"], n_edits=len(json.loads(state["history"])["applied"]),
                      weights=state["weights"], hooks=bank, architecture=architecture_of(model).name)


# ---------------------------------------------------------------------------------------------- export


def has_forward_hooks(model) -> bool:
    """Whether any module of ``model`` has a forward (pre-)hook: computation a weights-only folder would drop."""
    return any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


@contextmanager
def folded(bank: HookBank) -> Iterator[None]:
    """Inside the block, the model's FFN weights hold W0 + ΔW of every hook layer; W0 is restored (bitwise) after."""
    model, arch = bank.model, bank.arch
    originals = {layer: arch.edit_weight(model, layer).detach().clone() for layer in bank.layers}
    try:
        with torch.no_grad():
            for layer, hook in bank.layers.items():
                weight = arch.edit_weight(model, layer)
                weight.copy_(weight.float() + arch.from_math(hook.delta).to(weight.device))
        yield
    finally:
        with torch.no_grad():
            for layer, original in originals.items():
                arch.edit_weight(model, layer).copy_(original)


def export_model(model, tokenizer, out_dir: ExportTarget | Path | str, hooks: HookBank | None = None,
                 fold_hooks: bool = False) -> Path:
    """Write the edited model as a Hugging Face folder (config, safetensors, tokenizer), atomically.

    Args:
        model: the edited model.
        tokenizer: its tokenizer.
        out_dir: the folder (replaced as a whole), or an :class:`ExportTarget` naming the options that chose it.
        hooks: the hook layers holding the edits, if any (COMEBA-HK).
        fold_hooks: write W0 + ΔW of the hook layers into the weights; the gate is lost (warned).
    Raises:
        ValueError: the edits live in hook layers (or other forward hooks) and ``fold_hooks`` is false.
        ExportFolderError: the folder may not be replaced (:meth:`ExportTarget.check`).
    """
    target = ExportTarget.of(out_dir)
    out_dir = target.path
    if hooks is None and has_forward_hooks(model):
        raise ValueError(f"{model_name(model)!r} computes through forward hooks, which a Hugging Face folder "
                         f"({out_dir}) cannot hold; pass the HookBank as hooks= (to fold it) or remove the hooks")
    if hooks is None:
        return export_hf(model, tokenizer, target, WHAT)
    layers = list(hooks.layers)
    if not fold_hooks:
        raise ValueError(f"the edits live in hook layers (layers {layers}, switched on per token by the z-score gate); "
                         f"a Hugging Face folder ({out_dir}) holds weights only and cannot carry the gate. Keep "
                         f"{EDITS_FILE} and apply it to the base (lit_edit.export.apply_edits), or fold the hooks "
                         "into the weights with fold_hooks=True (every token then gets the edit)")
    warnings.warn(f"folding the hook layers {layers} into the weights of {out_dir}: the gate is lost, every token "
                  "gets the edit (the exported model is COMEBA w/o HK's, not COMEBA-HK's)", stacklevel=2)
    with folded(hooks):
        return export_hf(model, tokenizer, target, WHAT + " (hook layers folded into the weights)")
