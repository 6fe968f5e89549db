"""The MEND editor network (docs/methods.md §5; Mitchell et al., 2022, §3.1).

One :class:`GradientTransform` per weight shape serves every edited layer of that shape (``shared``), told
apart by a per-layer *mode* that scales and shifts its hidden units. A transform normalises the layer input
``x`` and the output gradient ``δ`` by running moments, concatenates them, passes ``[x̂; δ̂]`` through residual
low-rank layers that start as the identity, and splits the result into ``(x̃, δ̃)``. :class:`MendNetwork` holds
the transforms and one learnable edit learning rate ``η_p`` per edited parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

Reduce = Callable[[torch.Tensor], torch.Tensor]
"""Sums a tensor over processes (DDP all-reduce), so that every rank keeps the same running moments."""


class RunningMoments(nn.Module):
    """Running mean and standard deviation of vectors, updated only in training mode.

    Stored as float64 count, sum and sum of squares so that batches from several processes combine exactly by
    summation; ``σ = sqrt((Σx² − nμ²)/(n − 1))`` (1 until two samples were seen). Normalises
    ``x̂ = (x − μ)/(σ + 1e-7)`` (the reference's ε).
    """

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("total_squares", torch.zeros(size, dtype=torch.float64))

    def update(self, rows: torch.Tensor, reduce: Reduce | None = None) -> None:
        batch = torch.cat([rows.new_tensor([len(rows)], dtype=torch.float64),
                           rows.double().sum(0), rows.double().square().sum(0)])
        if reduce is not None:
            batch = reduce(batch)
        size = self.total.numel()
        self.count += batch[0]
        self.total += batch[1:1 + size]
        self.total_squares += batch[1 + size:]

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count < 2:
            return torch.zeros_like(self.total), torch.ones_like(self.total)
        mean = self.total / self.count
        variance = (self.total_squares - self.count * mean.square()) / (self.count - 1)
        return mean, variance.clamp_min(0).sqrt()

    def normalise(self, rows: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return (rows - mean.to(rows.dtype)) / (std.to(rows.dtype) + 1e-7)


class LowRankResidual(nn.Module):
    """``y = x + max(s_mode ⊙ (U V x + b) + t_mode, 0)`` with ``U`` = 0 at initialisation (identity).

    The rectifier is ``clamp_min(0)``, not ``relu``: at initialisation every pre-activation is exactly 0, where
    ``relu`` passes no gradient (the branch would never start learning) and ``clamp_min`` passes it.

    ``V ~ N(0, 1/D)``: the reference draws N(0, 1), whose hidden units then grow with √D; the scaled draw keeps
    them at unit size, so the learning rate does not depend on the layer width. The rectifier is applied in every
    layer, as in the reference.
    """

    def __init__(self, size: int, rank: int, n_modes: int):
        super().__init__()
        rank = min(rank, size)
        self.down = nn.Parameter(torch.randn(rank, size) / size ** 0.5)
        self.up = nn.Parameter(torch.zeros(size, rank))
        self.bias = nn.Parameter(torch.zeros(size))
        self.mode_scale = nn.Embedding(n_modes, size)
        self.mode_shift = nn.Embedding(n_modes, size)
        nn.init.ones_(self.mode_scale.weight)
        nn.init.zeros_(self.mode_shift.weight)

    def forward(self, x: torch.Tensor, mode: int) -> torch.Tensor:
        hidden = (x @ self.down.T) @ self.up.T + self.bias
        mode_index = torch.tensor(mode, device=x.device)
        return x + (self.mode_scale(mode_index) * hidden + self.mode_shift(mode_index)).clamp_min(0)


class GradientTransform(nn.Module):
    """``(x, δ) ↦ (x̃, δ̃)`` for one weight shape: normalise, ``n_hidden + 1`` residual low-rank layers on the
    concatenation ``[x̂; δ̂]`` (MEND's ``combine``), split."""

    def __init__(self, input_size: int, output_size: int, rank: int, n_hidden: int, n_modes: int):
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.input_moments = RunningMoments(input_size)
        self.output_grad_moments = RunningMoments(output_size)
        self.layers = nn.ModuleList(LowRankResidual(input_size + output_size, rank, n_modes)
                                    for _ in range(n_hidden + 1))

    def forward(self, inputs: torch.Tensor, output_grads: torch.Tensor, mode: int,
                reduce: Reduce | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            self.input_moments.update(inputs, reduce)
            self.output_grad_moments.update(output_grads, reduce)
        hidden = torch.cat([self.input_moments.normalise(inputs), self.output_grad_moments.normalise(output_grads)],
                           -1)
        for layer in self.layers:
            hidden = layer(hidden, mode)
        return hidden[:, :self.input_size], hidden[:, self.input_size:]


def shape_key(shape: Sequence[int]) -> str:
    return "x".join(str(size) for size in shape)


class MendNetwork(nn.Module):
    """The editor network for a fixed list of edited modules.

    Args:
        module_shapes: edited module name -> (input size, output size), in a fixed order.
        rank: rank of the low-rank layers (capped at the concatenated size).
        n_hidden: hidden layers (MEND: 1, i.e. two residual layers).
        edit_lr: initial value of every learnable edit learning rate ``η_p``.
        shared: one transform per (input, output) shape with a mode per module (MEND's default), or one per
            module.
    """

    def __init__(self, module_shapes: dict[str, tuple[int, int]], rank: int = 1920, n_hidden: int = 1,
                 edit_lr: float = 1e-4, shared: bool = True):
        super().__init__()
        if not module_shapes:
            raise ValueError("MendNetwork needs at least one edited module")
        self.module_names = list(module_shapes)
        self.module_shapes = {name: tuple(shape) for name, shape in module_shapes.items()}
        self._route: dict[str, tuple[str, int]] = {}
        members: dict[str, list[str]] = {}
        for name, shape in self.module_shapes.items():
            key = shape_key(shape) if shared else f"module{len(members)}"
            members.setdefault(key, []).append(name)
            self._route[name] = (key, len(members[key]) - 1)
        self.transforms = nn.ModuleDict({key: GradientTransform(*self.module_shapes[names[0]], rank, n_hidden,
                                                                len(names)) for key, names in members.items()})
        self.edit_lrs = nn.Parameter(torch.full((len(self.module_names),), float(edit_lr)))

    def forward(self, name: str, inputs: torch.Tensor, output_grads: torch.Tensor,
                reduce: Reduce | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        key, mode = self._route[name]
        return self.transforms[key](inputs, output_grads, mode, reduce)

    def edit_lr(self, name: str) -> torch.Tensor:
        return self.edit_lrs[self.module_names.index(name)]
