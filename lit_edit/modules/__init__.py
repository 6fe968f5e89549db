"""LightningModules: they orchestrate and hold no math."""

from lit_edit.modules.language_model import CausalLMModule

__all__ = ["CausalLMModule"]
