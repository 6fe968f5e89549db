"""Hook layers of COMEBA-HK: edited FFN weights beside the frozen originals, gated per token (docs/methods.md §8.2).

For each edited layer l the hook keeps W_h^l = W0^l + ΔW^l (a float32 master of ΔW; the model's own weight W0 is
never modified) and a threshold α^l. On the FFN output projection's input k_t (token t of a sequence) the
original module gives P_t = W0 k_t (+ b); the hook adds D_t = ΔW k_t, computed with one linear map on the
difference only (§12.11), so the hooked output O_t = P_t + D_t. Modes:

- ``temporary``: O_t for every token (during an edit step);
- ``validated`` (eqs. 16–17): M_t = ‖D_t‖₂, z_t = (M_t − mean M)/std M over the sequence, and the output is
  O_t where z_t ≥ α^l, else P_t;
- ``recording``: the output is P_t; the per-sequence max z_t is recorded (the threshold update, eq. 18:
  α^l ← min(α^l, min over the batch of max_t z^l_t), applied by :meth:`HookBank.lower_thresholds`).

**Decisions** (the reference's quirks, fixed on purpose):

1. The statistics skip padding (the attention mask), where the reference's unbiased std ran over all T
   positions, padding included; std is unbiased, as there. A sequence with fewer than two real tokens, or
   with all M_t equal, never swaps (z = −inf), where the reference produced NaN. ``gate_statistics=
   "all_positions"`` restores the reference's rule: every position counts as a token, padding included (its z
   enters the per-sequence max of the threshold update, as there). A row's z then depends on how far the batch
   pads it, so the values, optimised in padded passes under the validated gate, equal the reference's only
   when they are optimised one request at a time as there (``values.requests_per_pass: 1``), and COMEBA-HK
   then reads the residual's h^L in a pass over the bare prompts alone, as there (``docs/fidelity.md``,
   "COMEBA-HK").
2. **Generation with a KV cache.** The reference computes z over the chunk it is given, so a decoding step
   (one token, std over one value) never swaps. Here the statistics of a sequence are kept across the
   forward passes of a generation: token t is scored against M over the real tokens at positions
   ≤ max(t, P − 1), where P is the length of the first pass (the prompt). For a plain forward pass (scoring,
   teacher forcing) P = T and the rule is the paper's. For a prompt followed by decoding steps, the prompt's
   tokens are gated exactly as in a plain pass, and generated token t against the history up to itself —
   a causal rule, so a run with the KV cache (the history kept as count, Σ M, Σ M² per sequence and layer)
   and a run without it (the whole sequence re-run inside :meth:`HookBank.generation`, which remembers P)
   compute the same gates and generate the same tokens (``tests/unit/editing/test_hook_layers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from lit_edit.hooks import first_tensor, replace_first
from lit_edit.models.architectures import Architecture

MODES = ("off", "temporary", "validated", "recording")
GATE_STATISTICS = ("real_tokens", "all_positions")


def check_gate_statistics(rule: str) -> str:
    """``rule`` if it is one of :data:`GATE_STATISTICS`, else a ValueError naming the option and the choices."""
    if rule not in GATE_STATISTICS:
        raise ValueError(f"unknown gate_statistics {rule!r}; choose from {GATE_STATISTICS} (real_tokens: the "
                         "z-scores over the real tokens; all_positions: over every position, padding included, as "
                         "the reference code)")
    return rule


def gate_zscores(norms: torch.Tensor, mask: torch.Tensor, history: torch.Tensor | None = None,
                 prompt_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """z_t of M_t against the unbiased mean/std of M over the real tokens at positions ≤ max(t, P − 1).

    Args:
        norms: M ``[B, T]`` (float64 recommended).
        mask: ``[B, T]``, true at real tokens.
        history: ``[B, 3]`` (count, Σ M, Σ M²) of earlier passes of the same sequences (KV-cache decoding);
            None for a pass that starts at position 0.
        prompt_length: P; None means T (a plain pass). Ignored when ``history`` is given (every new token is
            then past the prompt).
    Returns:
        z ``[B, T]`` (−inf where the token is padding or the window has < 2 real tokens or zero spread) and the
        history after this pass ``[B, 3]``.
    """
    m = norms.double() * mask
    real = mask.double()
    b, t = m.shape
    start = history.double() if history is not None else torch.zeros(b, 3, dtype=torch.float64, device=m.device)
    count = start[:, :1] + real.cumsum(1)
    total = start[:, 1:2] + m.cumsum(1)
    squares = start[:, 2:3] + (m * m).cumsum(1)
    if history is None:
        p = t if prompt_length is None else min(prompt_length, t)
        end = torch.arange(t, device=m.device).clamp_min(p - 1).expand(b, t)
        count, total, squares = count.gather(1, end), total.gather(1, end), squares.gather(1, end)
    mean = total / count.clamp_min(1)
    variance = (squares - count * mean * mean) / (count - 1).clamp_min(1)
    std = variance.clamp_min(0).sqrt()
    z = (norms.double() - mean) / std
    valid = mask.bool() & (count >= 2) & (std > 0)
    z = torch.where(valid, z, torch.full_like(z, float("-inf")))
    after = torch.stack([start[:, 0] + real.sum(1), start[:, 1] + m.sum(1), start[:, 2] + (m * m).sum(1)], dim=1)
    return z, after


class HookLayer:
    """One edited layer's hook state: ΔW = W_h − W0 (float32 master, math layout ``[d, m]``) and α."""

    def __init__(self, layer: int, module_name: str, out_features: int, in_features: int, alpha: float,
                 device: torch.device):
        self.layer, self.module_name = layer, module_name
        self.delta = torch.zeros(out_features, in_features, dtype=torch.float32, device=device)
        self.alpha = float(alpha)
        self.mode = "off"
        self.history: torch.Tensor | None = None
        self.recorded_max: list[torch.Tensor] = []
        self.recorded_z: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []   # (z, mask, M) per pass
        self._cast: torch.Tensor | None = None

    def add(self, delta: torch.Tensor) -> None:
        """W_h += Δ (math layout)."""
        self.delta += delta.to(self.delta)
        self._cast = None

    def set_delta(self, delta: torch.Tensor) -> None:
        self.delta.copy_(delta)
        self._cast = None

    def difference(self, k: torch.Tensor) -> torch.Tensor:
        """D = ΔW k in the activation dtype (ΔW cast once per update, the master stays float32)."""
        if self._cast is None or self._cast.dtype != k.dtype or self._cast.device != k.device:
            self._cast = self.delta.to(device=k.device, dtype=k.dtype)
        return torch.nn.functional.linear(k, self._cast)

    @property
    def nbytes(self) -> int:
        return self.delta.numel() * self.delta.element_size() + (
            self._cast.numel() * self._cast.element_size() if self._cast is not None and
            self._cast.dtype != self.delta.dtype else 0)


class HookBank:
    """The hook layers of one model: installs the forward hooks, holds the modes, the per-sequence statistics and
    the thresholds (see the module docstring).

    Args:
        model: the causal LM (its parameters are never modified).
        arch: its architecture description.
        layers: the edited layers.
        alpha: α0, the initial threshold of every layer (the reference's code default 2.2).
        gate_statistics: the positions z is computed over: ``real_tokens`` (the attention mask; default) or
            ``all_positions`` (padding included, the reference's rule; decision 1 of the module docstring).
    """

    def __init__(self, model: nn.Module, arch: Architecture, layers: Sequence[int], alpha: float = 2.2,
                 gate_statistics: str = "real_tokens"):
        self.model, self.arch = model, arch
        self.gate_statistics = check_gate_statistics(gate_statistics)
        self.layers: dict[int, HookLayer] = {}
        for layer in sorted(layers):
            arch.check_layer(model, layer)
            weight = arch.to_math(arch.edit_weight(model, layer))
            self.layers[layer] = HookLayer(layer, arch.ffn_out_at(layer), *weight.shape, alpha=alpha,
                                           device=weight.device)
        self._handles: list = []
        self._mask: torch.Tensor | None = None
        self._continuing = False
        self._session: dict | None = None

    # ---------------------------------------------------------------------------------------- install

    def install(self) -> HookBank:
        """Register the hooks (idempotent); they do nothing until a layer's mode is set."""
        if self._handles:
            return self
        self._handles.append(self.model.register_forward_pre_hook(self._see_inputs, with_kwargs=True))
        for hook in self.layers.values():
            module = self.model.get_submodule(hook.module_name)
            self._handles.append(module.register_forward_hook(lambda mod, args, out, hook=hook: self._forward(
                hook, args[0], out)))
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    # ----------------------------------------------------------------------------------------- modes

    def set_mode(self, mode: str, layers: Sequence[int] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown hook mode {mode!r}; choose from {MODES}")
        for layer in self.layers if layers is None else layers:
            self.layers[layer].mode = mode

    @contextmanager
    def mode(self, mode: str) -> Iterator[HookBank]:
        """Every layer in ``mode`` inside the block, the previous modes restored after it."""
        before = {layer: hook.mode for layer, hook in self.layers.items()}
        self.set_mode(mode)
        try:
            yield self
        finally:
            for layer, previous in before.items():
                self.layers[layer].mode = previous

    @contextmanager
    def generation(self) -> Iterator[HookBank]:
        """A generation without the KV cache: the first pass inside the block fixes the prompt length P for the
        passes that re-run the growing sequence (with the cache nothing is needed)."""
        self._session = {"prompt_length": None}
        try:
            yield self
        finally:
            self._session = None

    # ----------------------------------------------------------------------------------- the forward

    def _see_inputs(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        shape = ids.shape if ids is not None else embeds.shape[:2]
        mask = kwargs.get("attention_mask")
        length = shape[1]
        if mask is None:
            self._mask, past = None, 0
        else:
            past = mask.shape[1] - length
            self._mask = mask[:, past:].bool()
        self._continuing = past > 0
        if self._session is not None and not self._continuing and self._session["prompt_length"] is None:
            self._session["prompt_length"] = length

    def _forward(self, hook: HookLayer, k: torch.Tensor, output):
        if hook.mode == "off":
            return None
        out = first_tensor(output)
        difference = hook.difference(k)
        if hook.mode == "temporary":
            return replace_first(output, out + difference)
        known = self._mask is not None and self._mask.shape == k.shape[:2] and self.gate_statistics == "real_tokens"
        mask = self._mask if known else torch.ones(k.shape[:2], dtype=torch.bool, device=k.device)
        norms = difference.float().norm(dim=-1)
        history = hook.history if self._continuing else None
        if history is not None and history.shape[0] != k.shape[0]:
            raise RuntimeError(f"layer {hook.layer}: a decoding step for {k.shape[0]} sequences follows a prompt of "
                               f"{history.shape[0]}; the gate's history does not fit")
        prompt_length = self._session["prompt_length"] if self._session is not None else None
        z, hook.history = gate_zscores(norms, mask, history, prompt_length)
        if hook.mode == "recording":
            hook.recorded_max.append(z.max(dim=1).values)
            hook.recorded_z.append((z.float().cpu(), mask.cpu(), norms.float().cpu()))
            return None
        gate = (z >= hook.alpha).unsqueeze(-1).to(out.dtype)
        return replace_first(output, out + gate * difference)

    # ------------------------------------------------------------------------------------ thresholds

    @torch.no_grad()
    def record_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[int, list]:
        """Run one pass with every layer recording; return {layer: [(z, mask, M)]} of that pass (each ``[B, T]``;
        M = ‖ΔW k‖ per token)."""
        for hook in self.layers.values():
            hook.recorded_max, hook.recorded_z = [], []
        with self.mode("recording"):
            self.model(input_ids=input_ids, attention_mask=attention_mask)
        return {layer: hook.recorded_z for layer, hook in self.layers.items()}

    def lower_thresholds(self, dynamic: bool = True) -> dict[int, int]:
        """α^l ← min(α^l, min over the recorded prompts of their max z^l) (eq. 18).

        A prompt whose max z is −inf (fewer than two real tokens, or no spread) cannot be gated and does not
        lower α (in the reference its z is NaN, α becomes NaN, and from then on the gate opens for no token; letting
        −inf through would open it for every token). Returns, per layer,
        how many recorded prompts stay below the threshold (their edit never shows): 0 with ``dynamic``
        unless a prompt cannot be gated.
        """
        missed = {}
        for layer, hook in self.layers.items():
            if not hook.recorded_max:
                continue
            maxima = torch.cat(hook.recorded_max)
            finite = maxima[torch.isfinite(maxima)]
            if dynamic and finite.numel():
                hook.alpha = min(hook.alpha, float(finite.min()))
            missed[layer] = int((maxima < hook.alpha).sum())
            hook.recorded_max = []
        return missed

    # ----------------------------------------------------------------------------------------- state

    @property
    def nbytes(self) -> int:
        """Memory of the hook layers: the edited layers' ΔW masters (and their activation-dtype copies)."""
        return sum(hook.nbytes for hook in self.layers.values())

    def state_dict(self) -> dict:
        return {f"layer{layer}.delta": hook.delta for layer, hook in self.layers.items()} | {
            f"layer{layer}.alpha": torch.tensor(hook.alpha, dtype=torch.float64) for layer, hook in self.layers.items()}

    def load_state_dict(self, state: dict) -> None:
        for layer, hook in self.layers.items():
            key = f"layer{layer}.delta"
            if key not in state:
                raise ValueError(f"the saved hook state has no layer {layer} (it holds {sorted(state)})")
            if state[key].shape != hook.delta.shape:
                raise ValueError(f"the saved hook layer {layer} has shape {tuple(state[key].shape)}, this model's is "
                                 f"{tuple(hook.delta.shape)}: the state comes from another model")
            hook.set_delta(state[key])
            hook.alpha = float(state[f"layer{layer}.alpha"])


@torch.no_grad()
def gate_scores_by_group(bank: HookBank, tokenizer, groups: dict[str, Sequence[str]], batch_size: int = 64
                         ) -> tuple[dict[int, dict[str, list[float]]], dict[int, dict[str, list[float]]]]:
    """Per layer and group of prompts: each prompt's max z (over its real tokens) under the current hook weights —
    the number the gate compares with α (a prompt's edit shows where its max z ≥ α) — and M = ‖ΔW k‖ at that
    token, what the hook adds to the output there if the gate opens (z is scale-free: a prompt can pass the gate
    with a small M)."""
    from lit_edit.scoring import pad_right

    device = next(bank.model.parameters()).device
    max_z: dict[int, dict[str, list[float]]] = {layer: {} for layer in bank.layers}
    difference: dict[int, dict[str, list[float]]] = {layer: {} for layer in bank.layers}
    for group, prompts in groups.items():
        for layer in max_z:
            max_z[layer][group], difference[layer][group] = [], []
        for start in range(0, len(prompts), batch_size):
            encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts[start: start + batch_size]]
            recorded = bank.record_scores(*pad_right(encoded, tokenizer.pad_token_id, device))
            for layer, passes in recorded.items():
                z, _, norms = passes[0]
                top = z.max(dim=1)
                max_z[layer][group] += top.values.tolist()
                difference[layer][group] += norms.gather(1, top.indices[:, None]).squeeze(1).tolist()
    for hook in bank.layers.values():      # a report is not a threshold update
        hook.recorded_max, hook.recorded_z = [], []
    return max_z, difference
