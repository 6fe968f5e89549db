"""MEND's gradient factorisation and its low-rank edit (docs/methods.md §5; Mitchell et al., 2022, §3).

For a linear layer ``out = x W + b`` run over tokens t, the gradient of a loss is a sum of rank-one terms,
``∇W = Σ_t x_t δ_tᵀ`` with ``x_t`` the layer input and ``δ_t = ∂L/∂out_t`` (MEND Eq. 2). MEND maps each pair
``(x_t, δ_t)`` through an editor network to ``(x̃_t, δ̃_t)`` and edits ``W̃ = W − η ∇̃W`` with the pseudo-gradient
``∇̃W = Σ_t x̃_t δ̃_tᵀ`` (Eq. 3; the network is in :mod:`lit_edit.editing.mend_network`).

Layouts: GPT-2's ``Conv1D`` stores ``W[in, out]`` (``∇W = Xᵀ Δ``), ``nn.Linear`` stores ``W[out, in]`` (``∇W = Δᵀ X``).

Edits are *grouped*: tokens of the same group form one ``ΔW`` (one batch edit at test time, one training
example each during training). :func:`edited_forward` runs the model with every row's own group edit without
forming ``ΔW``: ``x ΔW = −η (x X̃ᵀ) Δ̃`` touches only the edited layers' outputs and leaves the model's weights
alone — the same values as ``torch.func.functional_call`` with ``W + ΔW`` (tested), at the cost of the rank.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lit_edit.editing.mend_network import MendNetwork, Reduce


@dataclass
class GradientFactors:
    """The per-token factors of one layer's gradient: rows of ``inputs`` [N, in] and ``output_grads`` [N, out],
    and the edit group of each row [N]."""

    inputs: torch.Tensor
    output_grads: torch.Tensor
    groups: torch.Tensor


def stored_as_input_by_output(module: nn.Module) -> bool:
    """True for ``W[in, out]`` (GPT-2 ``Conv1D``), False for ``nn.Linear``'s ``W[out, in]``."""
    if isinstance(module, nn.Linear):
        return False
    if type(module).__name__ == "Conv1D":
        return True
    raise TypeError(f"MEND edits linear layers (nn.Linear or Conv1D); {type(module).__name__} is neither")


def module_io_sizes(module: nn.Module) -> tuple[int, int]:
    """(input size, output size) of a linear layer in either layout."""
    rows, columns = module.weight.shape
    return (rows, columns) if stored_as_input_by_output(module) else (columns, rows)


def per_row_target_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL of each row's labelled tokens (``labels`` −100 elsewhere; the logit at t−1 scores token t)."""
    labels = labels[:, 1:]
    nll = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                      reduction="none").view(labels.shape)
    counts = (labels != -100).sum(1)
    if bool((counts == 0).any()):
        raise ValueError("a row has no labelled token: every edit example needs a target")
    return nll.sum(1) / counts


def gradient_factors(model: nn.Module, module_names: Sequence[str], input_ids: torch.Tensor,
                     attention_mask: torch.Tensor, labels: torch.Tensor,
                     row_groups: torch.Tensor | None = None) -> tuple[dict[str, GradientFactors], torch.Tensor]:
    """Factors ``(x_t, δ_t)`` of ``∇W`` for every module in ``module_names`` (MEND Eq. 2), and the loss.

    The loss is the sum over rows of each row's mean target NLL, so a row's factors do not depend on how many
    rows share the batch. The model's parameters need no gradient: a zero tensor that requires one is added
    to each module's output, and its gradient is ``δ``. Tokens where ``δ`` is zero (after the last target,
    padding) are dropped, as they add nothing to ``∇W``.

    Args:
        row_groups: the edit group of each row (default: all rows one group).
    """
    row_groups = torch.zeros(len(input_ids), dtype=torch.long, device=input_ids.device) \
        if row_groups is None else row_groups.to(input_ids.device)
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def capture(name: str):
        def hook(module, args, output):
            probe = torch.zeros_like(output, requires_grad=True)
            captured[name] = (args[0].detach(), probe)
            return output + probe
        return hook

    handles = [model.get_submodule(name).register_forward_hook(capture(name)) for name in module_names]
    try:
        with torch.enable_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            loss = per_row_target_nll(logits, labels).sum()
            grads = torch.autograd.grad(loss, [captured[name][1] for name in module_names], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    factors = {}
    groups = row_groups[:, None].expand(attention_mask.shape)
    for name, grad in zip(module_names, grads):
        x = captured[name][0]
        if grad is None:
            grad = torch.zeros(*x.shape[:-1], captured[name][1].shape[-1], dtype=x.dtype, device=x.device)
        keep = attention_mask.bool() & (grad != 0).any(-1)
        factors[name] = GradientFactors(x[keep].float(), grad[keep].float(), groups[keep])
    return factors, loss.detach()


def grouped_rows(rows: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``rows`` [N, k] split by group into a zero-padded [G, N_max, k] (zero rows add nothing to ``Σ x̃ δ̃ᵀ``)."""
    counts = torch.bincount(groups, minlength=n_groups)
    out = rows.new_zeros(n_groups, max(int(counts.max()), 1) if len(groups) else 1, rows.shape[-1])
    order = torch.argsort(groups, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(groups), device=rows.device) - starts[groups[order]]
    out[groups[order], slot] = rows[order]
    return out


def pseudo_gradient(inputs: torch.Tensor, output_grads: torch.Tensor, input_by_output: bool) -> torch.Tensor:
    """``∇̃W = Σ_t x̃_t δ̃_tᵀ`` (MEND Eq. 3) in the stored layout: ``X̃ᵀΔ̃`` [in, out] or ``Δ̃ᵀX̃`` [out, in]."""
    return inputs.T @ output_grads if input_by_output else output_grads.T @ inputs


def weight_delta(inputs: torch.Tensor, output_grads: torch.Tensor, lr: torch.Tensor | float,
                 input_by_output: bool) -> torch.Tensor:
    """``ΔW = −η ∇̃W`` (the MEND paper's descent sign; the reference code adds ``+η∇̃W`` — docs/methods.md §13)."""
    return -lr * pseudo_gradient(inputs, output_grads, input_by_output)


@contextmanager
def edited_forward(model: nn.Module, edits: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                   row_groups: torch.Tensor) -> Iterator[None]:
    """Run ``model`` as if each edited module's weight were ``W + ΔW_g`` for row b's group g = ``row_groups[b]``.

    Args:
        edits: module name -> (X̃ [G, N, in], Δ̃ [G, N, out], η) with ``ΔW_g = −η X̃_gᵀ Δ̃_g`` (zero-padded rows).
        row_groups: [B] the group of each row of the batch run inside the context.

    The output gains ``x ΔW_g = −η (x X̃_gᵀ) Δ̃_g`` (either layout gives this product); gradients flow into X̃, Δ̃
    and η, never into the model's weights.
    """
    def hook(name: str):
        inputs, output_grads, lr = edits[name]

        def add_edit(module, args, output):
            x = args[0]
            if x.shape[0] != len(row_groups):
                raise ValueError(f"edited_forward: {len(row_groups)} row groups for a batch of {x.shape[0]} rows")
            scores = torch.einsum("bti,bni->btn", x.to(inputs.dtype), inputs[row_groups])
            return output + (-lr * torch.einsum("btn,bno->bto", scores, output_grads[row_groups])).to(output.dtype)
        return add_edit

    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in edits]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def transformed_factors(network: MendNetwork, factors: dict[str, GradientFactors], n_groups: int,
                        lr_scale: float = 1.0,
                        reduce: Reduce | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(x̃, δ̃)`` of every edited module, grouped for :func:`edited_forward`, with its edit learning rate
    ``η_p · lr_scale``. In training mode the network's running moments see these tokens first."""
    edits = {}
    for name in network.module_names:
        f = factors[name]
        inputs, output_grads = network(name, f.inputs, f.output_grads, reduce)
        edits[name] = (grouped_rows(inputs, f.groups, n_groups), grouped_rows(output_grads, f.groups, n_groups),
                       network.edit_lr(name) * lr_scale)
    return edits


def edit_weights(model: nn.Module, network: MendNetwork, factors: dict[str, GradientFactors],
                 lr_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Apply one edit in place, ``W ← W − η_p ∇̃W`` over all factor rows (one group); returns each
    ``{module}.weight``'s change in its stored layout."""
    deltas = {}
    with torch.no_grad():
        for name in network.module_names:
            module = model.get_submodule(name)
            f = factors[name]
            inputs, output_grads = network(name, f.inputs, f.output_grads)
            delta = weight_delta(inputs, output_grads, network.edit_lr(name) * lr_scale,
                                 stored_as_input_by_output(module)).to(module.weight.dtype)
            module.weight += delta
            deltas[f"{name}.weight"] = delta
    return deltas
