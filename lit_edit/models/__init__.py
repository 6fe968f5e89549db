"""Model access: architecture descriptions and loading."""

from lit_edit.models.architectures import ARCHITECTURES, Architecture, architecture_of
from lit_edit.models.loading import ModelLoadError, load_model, load_model_and_tokenizer, load_tokenizer

__all__ = ["ARCHITECTURES", "Architecture", "ModelLoadError", "architecture_of", "load_model",
           "load_model_and_tokenizer", "load_tokenizer"]
