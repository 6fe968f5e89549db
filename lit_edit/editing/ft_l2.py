"""FT-L2: FT (docs/methods.md §1), then each trained tensor's change bounded in Frobenius norm.

FT's L∞ constraint bounds every entry of ΔW = W − W0 by ε, so the total change can still grow with the size of the
matrix. FT-L2 bounds the change as a whole: after FT's training, each trained tensor's change is projected onto the
ball ‖ΔW‖_F ≤ ρ (``max_delta_norm``),

    ΔW ← ΔW · min(1, ρ / ‖ΔW‖_F),

the Euclidean projection onto that ball: a change inside it is kept as it is, a larger one keeps its direction and
is shortened to norm ρ. FT's own options apply to the training (its L∞ clamp is off by default here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lit_edit.editing.ft import FtHyperparams, FtResult, apply_ft
from lit_edit.editing.options import EditorOptionError
from lit_edit.editing.values import ValueTarget
from lit_edit.models.architectures import Architecture


@dataclass
class FtL2Hyperparams(FtHyperparams):
    """FT-L2's settings: FT's (:class:`~lit_edit.editing.ft.FtHyperparams`, without the L∞ clamp by default) and
    the bound on each change.

    Attributes:
        max_delta_norm: ρ: after training, each trained tensor's change is scaled down to Frobenius norm ρ when it
            is larger (the projection onto the ball ‖ΔW‖_F ≤ ρ).
    """

    norm_constraint: float | None = None
    max_delta_norm: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.max_delta_norm > 0:
            raise EditorOptionError(f"model.editor.max_delta_norm must be > 0, got {self.max_delta_norm}")


def project_to_ball(delta: torch.Tensor, radius: float) -> torch.Tensor:
    """ΔW · min(1, ρ / ‖ΔW‖_F): the point of the ball ‖·‖_F ≤ ρ nearest to ``delta`` (module docstring)."""
    norm = torch.linalg.vector_norm(delta.double())
    if norm <= radius:
        return delta
    return (delta.double() * (radius / norm)).to(delta.dtype)


def apply_ft_l2(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: FtL2Hyperparams
                ) -> FtResult:
    """Fine-tune ``model`` in place as FT does, then set each trained tensor to W0 + its projected change; return
    the changes (FT's losses and epochs are those of the training)."""
    modules = [arch.ffn_out_at(layer) for layer in hp.layers]
    originals = {f"{module}.{name}": p.detach().clone() for module in modules
                 for name, p in model.get_submodule(module).named_parameters()}
    trained = apply_ft(model, tokenizer, arch, targets, hp)
    with torch.no_grad():
        for name, delta in trained.deltas.items():
            model.get_parameter(name).copy_(originals[name] + project_to_ball(delta, hp.max_delta_norm))
    deltas = {name: model.get_parameter(name).detach() - original for name, original in originals.items()}
    return FtResult(deltas, trained.first_loss, trained.last_loss, trained.epochs)
