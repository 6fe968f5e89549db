"""A byte-level BPE tokenizer trained on the fact-world corpus (any real text still tokenizes)."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
BOS = "<s>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, add_bos: bool = False,
                    model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE (no prefix space); ``add_bos`` makes a LLaMA-style tokenizer
    that prepends ``<s>`` to every encoded text."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(tokenizer, add_bos, model_max_length)


def wrap_tokenizer(tokenizer: Tokenizer, add_bos: bool, model_max_length: int) -> PreTrainedTokenizerFast:
    """Give a trained ``tokenizers.Tokenizer`` the special tokens and post-processor of its family."""
    if add_bos:
        bos_id = tokenizer.token_to_id(BOS)
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                                 special_tokens=[(BOS, bos_id)])
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, pad_token=EOS, unk_token=EOS,
        bos_token=BOS if add_bos else EOS, model_max_length=model_max_length)
