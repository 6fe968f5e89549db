"""Re-running only the blocks from one layer on, with the lower blocks' result kept from one recorded pass.

When a forward pass is repeated with a change that enters at layer ``l`` (value optimisation adds δ inside block
``l``, docs/methods.md §0.6), the blocks below ``l`` see the same input every time: their output, the input of block
``l``, is recorded once and only blocks ``l, l+1, …`` and the final norm run again.

    with record_upper_layers(model, first_layer=5) as upper:
        model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
    hidden = upper.run()          # == model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state

When the change is made to a block's output itself (MEMIT's δ at the output of block ``l``), block ``l`` sees the same
input every time too: record from ``first_layer=l + 1`` (``n_layers`` for the last block: the final norm alone) and
pass the changed output of block ``l`` to ``upper.run(hidden)``.

Each block is called again with exactly the arguments the model gave it in the recorded pass (attention mask,
position ids, rotary embeddings, the per-layer mask of sliding-window families), its hidden-state input replaced, so
the family's own code decides what they are and the result equals the full pass bit for bit. Hooks on the modules
(e.g. :func:`lit_edit.hooks.rewrite_output`) fire as in a full pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache

from lit_edit.hooks import first_tensor
from lit_edit.models.architectures import Architecture, UnsupportedArchitectureError, architecture_of


@dataclass
class _Call:
    """The arguments one block received, except its hidden-state input."""

    args: tuple
    kwargs: dict[str, Any]


@dataclass
class UpperLayers:
    """Blocks ``first_layer…`` of a model, the input of the first one and the arguments each received."""

    blocks: list[nn.Module]
    final_norm: nn.Module
    calls: list[_Call] = field(default_factory=list)
    first_input: torch.Tensor | None = None

    def run(self, first_input: torch.Tensor | None = None, cache: Cache | None = None) -> torch.Tensor:
        """The base model's last hidden state, computed from the recorded input of the first block, or from
        ``first_input`` in its place (the output of the block below, changed). ``cache`` replaces the KV cache the
        recorded pass gave the blocks (which that pass has filled): a pass that attends to recorded keys and values
        (:mod:`lit_edit.models.prefix_reuse`) gives a fresh one each time."""
        if len(self.calls) != len(self.blocks) or (self.first_input is None and first_input is None):
            raise RuntimeError("no forward pass was recorded: run the model inside record_upper_layers first")
        hidden = self.first_input if first_input is None else first_input
        for block, call in zip(self.blocks, self.calls):
            args, kwargs = call.args, call.kwargs
            if cache is not None:
                args = tuple(cache if isinstance(arg, Cache) else arg for arg in args)
                kwargs = {key: cache if isinstance(value, Cache) else value for key, value in kwargs.items()}
            hidden = first_tensor(block(hidden, *args, **kwargs))
        return self.final_norm(hidden)


def layer_of(arch: Architecture, module: str) -> int | None:
    """The index of the block containing ``module`` (the block itself included), None when outside the blocks."""
    prefix = arch.layers + "."
    if not module.startswith(prefix):
        return None
    index = module[len(prefix):].split(".", 1)[0]
    return int(index) if index.isdigit() else None


def upper_layers_supported(model: nn.Module, module: str) -> bool:
    """Whether the blocks from ``module``'s layer on can be re-run alone: a described family and a module inside a
    block."""
    try:
        arch = architecture_of(model)
    except UnsupportedArchitectureError:
        return False
    return layer_of(arch, module) is not None


@contextmanager
def record_upper_layers(model: nn.Module, first_layer: int) -> Iterator[UpperLayers]:
    """Record, during the forward passes inside the block (run one, with ``use_cache=False``, or with a KV cache that
    :meth:`UpperLayers.run` is then given afresh each time), what blocks
    ``first_layer…`` receive; the yielded :class:`UpperLayers` then re-runs them alone. ``first_layer`` may be the
    number of blocks: no block is re-run, only the final norm, on the input given to :meth:`UpperLayers.run`."""
    arch = architecture_of(model)
    if first_layer != arch.n_layers(model):
        arch.check_layer(model, first_layer)
    blocks = [model.get_submodule(arch.layer(i)) for i in range(first_layer, arch.n_layers(model))]
    upper = UpperLayers(blocks, model.get_submodule(arch.final_norm))

    def hook(block, args, kwargs, position):
        hidden_in_kwargs = not args
        hidden = kwargs["hidden_states"] if hidden_in_kwargs else args[0]
        if position == 0:
            upper.calls.clear()
            upper.first_input = hidden.detach()
        if hidden_in_kwargs:
            kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        upper.calls.append(_Call(tuple(args[1:]), dict(kwargs)))

    handles = [block.register_forward_pre_hook(lambda b, a, k, p=p: hook(b, a, k, p), with_kwargs=True)
               for p, block in enumerate(blocks)]
    try:
        yield upper
    finally:
        for handle in handles:
            handle.remove()
