"""lit-edit: knowledge editing of causal language models, measured honestly and fast.

``lit_edit.edit`` and ``lit_edit.evaluate`` are the Python API (``lit_edit/api.py``); they are imported on first use,
so that ``import lit_edit`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "edit", "evaluate"]


def __getattr__(name: str):
    if name in ("edit", "evaluate"):
        from lit_edit import api

        return getattr(api, name)
    raise AttributeError(f"module 'lit_edit' has no attribute {name!r}")
