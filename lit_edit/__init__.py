"""lit-edit: knowledge editing of causal language models, measured honestly and fast."""

__version__ = "0.1.0"
