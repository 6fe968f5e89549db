"""The attention function used while training with the subject bottleneck (``lit_edit.data.corpus``).

It is scaled-dot-product attention that, in the first layer, swaps in the ``first_layer_mask`` passed with the
batch (Hugging Face models forward extra keyword arguments to the attention function). Registered under
:data:`NAME` with ``transformers.AttentionInterface``; a model is switched to it only while training and back to
``sdpa`` before it is exported, so saved models never refer to it.
"""

from __future__ import annotations

from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "lit_edit_subject_bottleneck"


def bottleneck_attention(module, query, key, value, attention_mask, first_layer_mask=None, **kwargs):
    if first_layer_mask is not None and getattr(module, "layer_idx", None) == 0:
        attention_mask = first_layer_mask
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(NAME, bottleneck_attention)
