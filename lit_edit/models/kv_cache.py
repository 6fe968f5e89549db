"""The KV cache as each transformers release takes it."""

from __future__ import annotations

import inspect

from transformers import DynamicCache


def cache_keyword(model) -> str:
    """The name under which ``model.forward`` takes the KV cache: ``cache`` in the transformers releases that
    renamed it, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def new_cache(model) -> DynamicCache:
    """An empty :class:`~transformers.DynamicCache` for ``model`` (filled in place by each forward pass)."""
    return DynamicCache(config=getattr(model, "config", None))
