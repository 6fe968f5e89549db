"""LightningModules (they orchestrate and hold no math) and the plain parts an editing run composes."""

from lit_edit.modules.downstream import DownstreamEvalModule
from lit_edit.modules.editing import EditingModule
from lit_edit.modules.language_model import CausalLMModule
from lit_edit.modules.mend import MendModule

__all__ = ["CausalLMModule", "DownstreamEvalModule", "EditingModule", "MendModule"]
