"""One description per model family: where the parts an editor touches live, and how they are laid out.

Editors never hard-code module names; they ask an :class:`Architecture` for them. To support a new
family, add one entry to :data:`ARCHITECTURES` (keyed by the Hugging Face ``config.model_type``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Module paths (``{}`` = layer index) and layouts of one model family.

    Attributes:
        name: the family, e.g. ``gpt2``.
        layers: the list of blocks, e.g. ``transformer.h``.
        ffn_out: the FFN output projection, the matrix locate-and-edit methods rewrite (W in ``out = W k + b``).
        ffn_in: the FFN input projection whose activation gives the key (for gated FFNs: the gate).
        ffn: the whole FFN (MLP) module.
        ffn_out_transposed: True when the stored weight is ``[m, d]`` (GPT-2 ``Conv1D``), False for
            ``nn.Linear`` ``[d, m]``. Stated explicitly because a shape test fails when m == d.
        final_norm: the norm before the unembedding.
        unembedding: the output embedding (``lm_head``).
        embedding: the input token embedding.
        n_layers_attr / hidden_attr / inner_attr: config attributes for depth, d and m.
    """

    name: str
    layers: str
    ffn_out: str
    ffn_in: str
    ffn: str
    ffn_out_transposed: bool
    final_norm: str
    unembedding: str
    embedding: str
    n_layers_attr: str
    hidden_attr: str
    inner_attr: str | None

    def layer(self, index: int) -> str:
        return f"{self.layers}.{index}"

    def ffn_out_at(self, index: int) -> str:
        return self.ffn_out.format(index)

    def ffn_in_at(self, index: int) -> str:
        return self.ffn_in.format(index)

    def ffn_at(self, index: int) -> str:
        return self.ffn.format(index)

    def n_layers(self, model: nn.Module) -> int:
        return getattr(model.config, self.n_layers_attr)

    def hidden_size(self, model: nn.Module) -> int:
        return getattr(model.config, self.hidden_attr)

    def inner_size(self, model: nn.Module) -> int:
        inner = getattr(model.config, self.inner_attr, None) if self.inner_attr else None
        return inner or 4 * self.hidden_size(model)

    def check_layer(self, model: nn.Module, index: int) -> None:
        n = self.n_layers(model)
        if not 0 <= index < n:
            raise IndexError(f"layer {index} is out of range: the {self.name} model has layers 0..{n - 1}")

    def edit_weight(self, model: nn.Module, index: int) -> torch.Tensor:
        """The stored FFN output weight of layer ``index`` (a live parameter, in its stored layout)."""
        self.check_layer(model, index)
        return model.get_submodule(self.ffn_out_at(index)).weight

    def to_math(self, weight: torch.Tensor) -> torch.Tensor:
        """Stored layout -> math layout ``W[d, m]`` (a view)."""
        return weight.T if self.ffn_out_transposed else weight

    def from_math(self, delta: torch.Tensor) -> torch.Tensor:
        """Math layout ``ΔW[d, m]`` -> the stored layout of the FFN output weight."""
        return delta.T if self.ffn_out_transposed else delta


_LLAMA_LIKE = dict(layers="model.layers", ffn_out="model.layers.{}.mlp.down_proj",
                   ffn_in="model.layers.{}.mlp.gate_proj", ffn="model.layers.{}.mlp", ffn_out_transposed=False,
                   final_norm="model.norm", unembedding="lm_head", embedding="model.embed_tokens",
                   n_layers_attr="num_hidden_layers", hidden_attr="hidden_size", inner_attr="intermediate_size")

ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": Architecture("gpt2", layers="transformer.h", ffn_out="transformer.h.{}.mlp.c_proj",
                         ffn_in="transformer.h.{}.mlp.c_fc", ffn="transformer.h.{}.mlp", ffn_out_transposed=True,
                         final_norm="transformer.ln_f", unembedding="lm_head", embedding="transformer.wte",
                         n_layers_attr="n_layer", hidden_attr="n_embd", inner_attr="n_inner"),
    "gptj": Architecture("gptj", layers="transformer.h", ffn_out="transformer.h.{}.mlp.fc_out",
                         ffn_in="transformer.h.{}.mlp.fc_in", ffn="transformer.h.{}.mlp", ffn_out_transposed=False,
                         final_norm="transformer.ln_f", unembedding="lm_head", embedding="transformer.wte",
                         n_layers_attr="n_layer", hidden_attr="n_embd", inner_attr="n_inner"),
    "gpt_neox": Architecture("gpt_neox", layers="gpt_neox.layers", ffn_out="gpt_neox.layers.{}.mlp.dense_4h_to_h",
                             ffn_in="gpt_neox.layers.{}.mlp.dense_h_to_4h", ffn="gpt_neox.layers.{}.mlp",
                             ffn_out_transposed=False, final_norm="gpt_neox.final_layer_norm",
                             unembedding="lm_head", embedding="gpt_neox.embed_in",
                             n_layers_attr="num_hidden_layers", hidden_attr="hidden_size",
                             inner_attr="intermediate_size"),
    "llama": Architecture("llama", **_LLAMA_LIKE),
    "mistral": Architecture("mistral", **_LLAMA_LIKE),
    "qwen2": Architecture("qwen2", **_LLAMA_LIKE),
}


class UnsupportedArchitectureError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def architecture_of(model: nn.Module) -> Architecture:
    """The description of ``model``'s family, from ``model.config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"model type {model_type!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}. "
            "To add one, describe its module paths in lit_edit/models/architectures.py:ARCHITECTURES.")
    return ARCHITECTURES[model_type]
