"""Editing a model too large for one device: FSDP (``torch.distributed.fsdp.fully_shard``) over the ranks of a run,
with the matrices the editor changes kept **whole** on every rank.

The methods read and write whole FFN matrices (keys, ΔW = R Kᵀ A⁻¹, rollback, norms, hook layers), so those stay
plain tensors, replicated; every other weight of the transformer blocks — attention, norms, the FFN layers not
edited — is split over the ranks, and each block gathers its weights for its forward pass (each block is its own
FSDP unit). The embeddings, the final norm and the unembedding stay whole as well: value optimisation runs the
blocks and then the unembedding on the few positions its loss reads, and KN reads the embedding matrix. A rank
then holds ``1/N`` of the blocks plus the edited matrices and the embeddings (LLaMA-2-7B, five edited
``down_proj``, bf16, by tensor size: 12.5 GB / N + 0.45 GB + 0.52 GB).

Every forward pass of a sharded model is a collective, so every rank must run the same passes in the same order:
the ranks of a sharded run do not split the scoring or the statistics pass between them
(``lit_edit.distributed.Ranks.shares_work`` false); the edit stream was never split. Sharding buys memory, not
speed.

Lightning's ``ModelParallelStrategy`` builds the device mesh and calls ``EditingModule.configure_model``, which
calls :func:`shard_for_editing` (``lit_edit.strategies``, ``configs/edit/strategies/fsdp.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lit_edit.models.architectures import Architecture
from lit_edit.sharded_tensors import full_value, is_dtensor, is_sharded

__all__ = ["Sharding", "data_parallel_mesh", "full_value", "is_sharded", "shard_for_editing"]


@dataclass(frozen=True)
class Sharding:
    """What :func:`shard_for_editing` did (``metrics.json`` ``processes.sharding``)."""

    ranks: int
    blocks: int
    kept_whole: list[str]
    local_parameter_bytes: int
    full_parameter_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def data_parallel_mesh(mesh):
    """The 1-D mesh to shard over: ``mesh`` itself, or the ``data_parallel`` dimension of Lightning's
    ``ModelParallelStrategy`` mesh (its ``tensor_parallel`` dimension must have size 1)."""
    names = mesh.mesh_dim_names or ()
    if mesh.ndim == 1:
        return mesh
    if "tensor_parallel" in names and mesh["tensor_parallel"].size() > 1:
        size = mesh["tensor_parallel"].size()
        raise ValueError(f"trainer.strategy: tensor parallelism (tensor_parallel_size={size}) "
                         "is not supported — the editing methods read and write whole FFN matrices; use "
                         "lit_edit.strategies.ShardedEditingStrategy (configs/edit/strategies/fsdp.yaml), which "
                         "shards the model with FSDP over all devices")
    if "data_parallel" not in names:
        raise ValueError(f"cannot shard over a device mesh with dimensions {names}: expected a 1-D mesh or "
                         "Lightning's (data_parallel, tensor_parallel) mesh")
    return mesh["data_parallel"]


def _bytes(parameters: Iterable[torch.Tensor], local: bool) -> int:
    total = 0
    for p in parameters:
        value = p.to_local() if local and is_dtensor(p) else p
        total += value.numel() * value.element_size()
    return total


def shard_for_editing(model: nn.Module, arch: Architecture, keep_whole: Iterable[str], mesh,
                      reshard_after_forward: bool = True) -> Sharding:
    """Shard ``model``'s transformer blocks in place with FSDP, one unit per block, every parameter named in
    ``keep_whole`` left whole on each rank (so are the embeddings, the final norm and the unembedding).

    Args:
        model: a Hugging Face causal LM described by ``arch``.
        keep_whole: parameter names the editor changes (``Editor.parameter_names``).
        mesh: a 1-D ``DeviceMesh`` or Lightning's ``ModelParallelStrategy`` mesh (see :func:`data_parallel_mesh`).
        reshard_after_forward: free each block's gathered weights after its forward (least memory).
    """
    from torch.distributed.fsdp import fully_shard

    if is_sharded(model):
        raise ValueError("the model is already sharded")
    mesh = data_parallel_mesh(mesh)
    names = list(dict.fromkeys(keep_whole))
    keep = set()
    for name in names:
        try:
            keep.add(model.get_parameter(name))
        except AttributeError as error:
            raise ValueError(f"cannot keep {name!r} whole: the model has no such parameter") from error
    full_bytes = _bytes(model.parameters(), local=False)
    blocks = model.get_submodule(arch.layers)
    for block in blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward, ignored_params=keep)
    return Sharding(mesh.size(), len(blocks), names, _bytes(model.parameters(), local=True), full_bytes)

