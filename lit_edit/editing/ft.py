"""FT: constrained fine-tuning of the FFN output projection of chosen layers (docs/methods.md §1).

Only the weight and bias of ``arch.ffn_out_at(l)`` for l in ``layers`` are trained (exact module names; the
reference's substring match, which also catches ``h.2x`` for ``h.2``, is not reproduced). Adam with L2 inside
(``weight_decay``, as the reference), ``steps`` epochs over the requests in chunks of ``batch_size``; an optimiser
step is skipped when the chunk loss is below ``stop_loss`` and training stops when the epoch mean is. After every
step each trained tensor is clamped element-wise to ``[W0 − ε, W0 + ε]`` (the L∞ norm constraint, ε =
``norm_constraint``; ``None`` for none).

Losses:
- ``"prompt_last"`` (FT-L, the reference default): every target token's log-probability is read from the
  next-token distribution at the *last prompt token*. This is the reference's loss as written — exact for
  single-token targets, a bag-of-tokens objective for longer ones (docs/methods.md §13); kept so that FT-L numbers
  are comparable with the papers.
- ``"target_new"`` (FT-M): teacher-forced cross-entropy over the target tokens of ``prompt + target``, mean per
  request, then over the chunk.
Token ids are concatenated (prompt ids + target ids with its leading space), so no BOS enters the target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from lit_edit.editing.options import checked_layers
from lit_edit.editing.values import ValueTarget
from lit_edit.models.architectures import Architecture
from lit_edit.scoring import encode_pairs, pad_right

LOSSES = ("prompt_last", "target_new")


@dataclass
class FtHyperparams:
    """FT's settings (GPT-2 XL values of the ROME/MEMIT baselines where they apply).

    Attributes:
        layers: the layers whose FFN output projection (weight and bias) is trained.
        loss: ``prompt_last`` (FT-L: every target token read at the prompt's last position) or ``target_new``
            (FT-M: teacher-forced cross-entropy over the target tokens).
        lr: Adam's learning rate.
        steps: epochs over the requests of an edit step.
        batch_size: requests per optimiser step.
        weight_decay: Adam's L2 term.
        norm_constraint: ε: each trained weight is clamped to its original value ± ε after every optimiser step;
            null: unconstrained.
        stop_loss: an optimiser step is skipped when its chunk's loss is below this, and training stops when an
            epoch's mean is.
    """

    layers: tuple[int, ...] = (0,)
    loss: str = "prompt_last"
    lr: float = 5e-4
    steps: int = 25
    batch_size: int = 64
    weight_decay: float = 0.0
    norm_constraint: float | None = 5e-4
    stop_loss: float = 1e-2

    def __post_init__(self) -> None:
        self.layers = checked_layers(self.layers)
        if self.loss not in LOSSES:
            raise ValueError(f"FT loss {self.loss!r} is not one of {LOSSES}")


@dataclass
class FtResult:
    """The change of every trained tensor (name → W − W0) and the loss of the first and last epoch."""

    deltas: dict[str, torch.Tensor]
    first_loss: float
    last_loss: float
    epochs: int


@contextmanager
def trainable_only(model: torch.nn.Module, names: Sequence[str]) -> Iterator[list[torch.nn.Parameter]]:
    """Within the block only the named parameters require gradients; every flag is restored on exit."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    params = dict(model.named_parameters())
    try:
        for p in params.values():
            p.requires_grad_(False)
        chosen = [params[name] for name in names]
        for p in chosen:
            p.requires_grad_(True)
        yield chosen
    finally:
        for name, p in params.items():
            p.requires_grad_(flags[name])


def ft_loss(model, tokenizer, targets: Sequence[ValueTarget], loss: str) -> torch.Tensor:
    """Mean over ``targets`` of the FT-L or FT-M loss (module docstring)."""
    device = next(model.parameters()).device
    pairs = encode_pairs(tokenizer, [t.prompt.format(t.subject) for t in targets], [t.target for t in targets])
    input_ids, mask = pad_right([p.ids for p in pairs], tokenizer.pad_token_id, device)
    if loss == "prompt_last":  # feed the prompt only: the target tokens are all scored at its last position
        mask = torch.zeros_like(mask)
        for row, pair in enumerate(pairs):
            mask[row, : pair.answer_start] = 1
    log_probs = model(input_ids=input_ids, attention_mask=mask).logits.float().log_softmax(-1)
    per_request = []
    for row, pair in enumerate(pairs):
        answer = torch.tensor(pair.ids[pair.answer_start:], device=device)
        if loss == "prompt_last":
            scored = log_probs[row, pair.answer_start - 1].gather(0, answer)
        else:
            positions = torch.arange(pair.answer_start - 1, len(pair.ids) - 1, device=device)
            scored = log_probs[row, positions].gather(1, answer[:, None])[:, 0]
        per_request.append(-scored.mean())
    return torch.stack(per_request).mean()


def apply_ft(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: FtHyperparams) -> FtResult:
    """Fine-tune ``model`` in place on ``targets``; return the per-tensor changes."""
    names = []
    for layer in hp.layers:
        arch.check_layer(model, layer)
        module = arch.ffn_out_at(layer)
        names += [f"{module}.{name}" for name, _ in model.get_submodule(module).named_parameters()]
    originals = {name: model.get_parameter(name).detach().clone() for name in names}
    first = last = float("nan")
    epochs = 0
    with torch.inference_mode(False), torch.enable_grad(), trainable_only(model, names) as params:
        optimizer = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        for epoch in range(hp.steps):
            losses = []
            for start in range(0, len(targets), hp.batch_size):
                loss = ft_loss(model, tokenizer, targets[start:start + hp.batch_size], hp.loss)
                losses.append(float(loss))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"FT loss is {float(loss)} at epoch {epoch}, requests from {start}")
                if float(loss) < hp.stop_loss:
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if hp.norm_constraint is not None:
                    with torch.no_grad():
                        for name, p in zip(names, params):
                            p.copy_(torch.clamp(p, originals[name] - hp.norm_constraint,
                                                originals[name] + hp.norm_constraint))
            epochs = epoch + 1
            mean = sum(losses) / len(losses)
            first = mean if epoch == 0 else first
            last = mean
            if mean < hp.stop_loss:
                break
        for p in params:
            p.grad = None
    deltas = {name: (model.get_parameter(name).detach() - originals[name]) for name in names}
    return FtResult(deltas, first, last, epochs)
