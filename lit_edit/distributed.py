"""Sharing the work of a run across processes (DDP): which part a rank does and how the parts are put together.

The edit stream is never sharded: every rank applies every edit, so all ranks hold the same weights (docs/lightning.md
§2.2; the editing module compares a digest of every rank's edited weights at the end of a run). What is sharded is
the work around the edits that does not change the model: scoring the edit metrics (:func:`map_chunks`) and
collecting the statistics C (``lit_edit.stats``; the sums are added over ranks with :meth:`Ranks.sum_`). The
downstream tasks shard their records themselves (``lit_edit.tasks.suite``).

Scoring is sharded in **fixed chunks of consecutive items**: chunk ``i`` is scored by rank ``i % world_size`` and
the results are gathered in item order. A single process scores the same chunks, so every forward pass sees the
same batch whatever the number of processes, and the numbers are the same bit for bit (given the same number of
threads per process: CPU kernels may block differently with another thread count).

With a **sharded model** (``lit_edit.sharding``: FSDP, each rank holds a slice of most weights) every forward pass
is a collective, so the ranks must run the same passes in the same order: they do not share the work then
(``Ranks.shares_work`` false), every rank scores everything, and the results need no gathering.

All functions here are collectives when ``world_size > 1``: every rank must call them, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ``world_size`` processes of a run (one process: rank 0 of 1).

    ``shares_work``: the ranks split the scoring and the statistics pass between them (DDP); false when the model
    is sharded, so that every rank runs every forward pass (and each computes all results itself)."""

    rank: int = 0
    world_size: int = 1
    shares_work: bool = True

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def mine(self, n_chunks: int) -> range:
        """The chunks this rank handles: ``rank, rank + world_size, ...`` (uneven shards are fine); all of them
        when the ranks do not share the work."""
        if not self.shares_work:
            return range(n_chunks)
        return range(self.rank, n_chunks, self.world_size)

    def handles(self, index: int) -> bool:
        """Whether this rank handles item ``index`` of a sequence shared out as :meth:`mine` does."""
        return not self.shares_work or index % self.world_size == self.rank

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order, on every rank (any picklable object)."""
        if self.world_size == 1:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out

    def add_shares_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Add up the ranks' shares of a sum (``tensor``, in place; every rank gets the same bits); nothing to add
        when every rank computed the whole sum."""
        if self.world_size > 1 and self.shares_work:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


SINGLE = Ranks()


def ranks_of(trainer, shares_work: bool = True) -> Ranks:
    """The :class:`Ranks` of a Lightning trainer's run (one process when there is no trainer or no process group);
    ``shares_work`` false for a sharded model."""
    if trainer is None or trainer.world_size == 1 or not torch.distributed.is_initialized():
        return SINGLE
    return Ranks(trainer.global_rank, trainer.world_size, shares_work)


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` cut into consecutive chunks of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


def map_chunks(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], size: int, ranks: Ranks = SINGLE) -> list[R]:
    """``fn`` over consecutive chunks of ``size`` items, one result per item; chunk ``i`` is computed by rank
    ``i % world_size`` and every rank returns all results in item order."""
    parts = chunks(items, size)
    local = {}
    for i in ranks.mine(len(parts)):
        results = fn(parts[i])
        if len(results) != len(parts[i]):
            raise ValueError(f"chunk {i}: {len(parts[i])} items gave {len(results)} results")
        local[i] = results
    merged: dict[int, list[R]] = {}
    for part in ranks.gather(local) if ranks.shares_work else [local]:
        merged.update(part)
    return [result for i in range(len(parts)) for result in merged[i]]

