"""Reading and rewriting module inputs and outputs with forward hooks, as context managers.

    with record(model, ["transformer.h.3.mlp.c_proj"]) as seen:
        model(**batch)
    keys = seen["transformer.h.3.mlp.c_proj"].input        # what the module received

    with rewrite_output(model, {"transformer.h.3": lambda h: h + delta}):
        loss = model(**batch).loss                            # the block output is changed in flight

Hooks are removed when the block exits, also when it raises. Hugging Face blocks return a tuple in
older versions and a tensor in newer ones; both are handled (the first tensor is the hidden state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lit_edit.sharded_tensors import is_sharded

TensorFn = Callable[[torch.Tensor], torch.Tensor]


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (nothing after the module is computed)."""


@dataclass
class Recording:
    """What one module received (its first positional input) and returned (its first tensor output)."""

    input: torch.Tensor | None = None
    output: torch.Tensor | None = None


def first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


def replace_first(value: Any, tensor: torch.Tensor) -> Any:
    return (tensor, *value[1:]) if isinstance(value, tuple) else tensor


def _modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    found = {}
    for name in names:
        try:
            found[name] = model.get_submodule(name)
        except AttributeError as e:
            raise KeyError(f"the model has no module named {name!r}") from e
    return found


@contextmanager
def _hooked(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record(model: nn.Module, names: Iterable[str], detach: bool = True,
           stop_after: str | None = None, stop_when_all_seen: bool = False) -> Iterator[dict[str, Recording]]:
    """Record the input and output of each named module during the forward passes inside the block.

    Args:
        detach: store detached tensors (False keeps the graph, for gradients through the recording).
        stop_after: raise :class:`StopForward` once this module has run; use :func:`forward_until`. Ignored for a
            sharded model (``lit_edit.sharding``): a forward pass cut inside an FSDP block would leave the block's
            gathered weights in place, so the pass runs to the end.
        stop_when_all_seen: raise :class:`StopForward` once every named module has run, whichever comes last
            (ignored for a sharded model, as ``stop_after``).
    """
    if (stop_after is not None or stop_when_all_seen) and is_sharded(model):
        stop_after, stop_when_all_seen = None, False
    modules = _modules(model, names)
    recordings = {name: Recording() for name in modules}
    handles = []
    for name, module in modules.items():
        def hook(mod, args, output, name=name):
            x, y = (args[0] if args else None), first_tensor(output)
            recordings[name].input = x.detach() if detach and x is not None else x
            recordings[name].output = y.detach() if detach else y
            if name == stop_after or (stop_when_all_seen and all(r.output is not None for r in recordings.values())):
                raise StopForward(name)
        handles.append(module.register_forward_hook(hook))
    with _hooked(handles):
        yield recordings


@contextmanager
def rewrite_output(model: nn.Module, edits: dict[str, TensorFn]) -> Iterator[None]:
    """Replace each named module's (first tensor) output by ``fn(output)`` inside the block."""
    handles = []
    for name, module in _modules(model, edits).items():
        fn = edits[name]
        handles.append(module.register_forward_hook(
            lambda mod, args, output, fn=fn: replace_first(output, fn(first_tensor(output)))))
    with _hooked(handles):
        yield


@contextmanager
def rewrite_input(model: nn.Module, edits: dict[str, TensorFn]) -> Iterator[None]:
    """Replace each named module's first positional input by ``fn(input)`` inside the block."""
    handles = []
    for name, module in _modules(model, edits).items():
        fn = edits[name]
        handles.append(module.register_forward_pre_hook(
            lambda mod, args, fn=fn: (fn(args[0]), *args[1:])))
    with _hooked(handles):
        yield


def forward_until(model: nn.Module, **inputs: Any) -> None:
    """Run ``model(**inputs)``, treating a :class:`StopForward` from a recording hook as a normal end."""
    try:
        model(**inputs)
    except StopForward:
        pass
