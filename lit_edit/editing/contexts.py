"""Context templates: short model-generated prefixes put before the edit prompt (docs/methods.md §0.4).

Each template is ``"<sampled text>. {}"``: a seed word, continued by top-k sampling from the model, then the prompt.
The set is ``"{}"`` (the bare prompt) followed by, for each template length in turn, ``per_seed`` samples of every
seed word. A length is counted under one of two rules:

- ``"total"`` (the reference's ``generate_fast(max_out_len=length)``): the length counts the seed's tokens too,
  special tokens included (LLaMA's ``<s>``), so a seed of p tokens is continued by max(length − p, 0) tokens.
  ROME's reference set is lengths 5 and 10, 2 samples of each of the 5 seed words per length (21 templates);
  MEMIT's is length 10, 1 sample per seed word (6 templates). On GPT-2 every seed word is one token: 4 and 9 new
  tokens.
- ``"new"``: the length is the number of sampled tokens, whatever the seed's length.

The reference samples them on every process start and caches them in a module global, so they differ between runs.
Here they are sampled once from the *unedited* model with a fixed seed, and the caller stores them with the run
(they are plain strings with one ``{}``). Differences from the reference that remain: sampling stops at an EOS
token (the reference samples on and drops it from the text), newlines become spaces (the reference replaces
``"\\n\\n"`` only) and the text is stripped (``docs/fidelity.md``, "Context templates").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lit_edit.editing.options import EditorOptionError

MEMIT_SEEDS = ("The", "Therefore", "Because", "I", "You")
LENGTH_RULES = ("total", "new")


def new_token_count(length: int, seed_tokens: int, rule: str) -> int:
    """Tokens to sample after a seed of ``seed_tokens`` tokens for a template of ``length`` tokens under ``rule``."""
    if rule not in LENGTH_RULES:
        raise ValueError(f"context template length rule must be one of {LENGTH_RULES}, got {rule!r}")
    return max(length - seed_tokens, 0) if rule == "total" else length


def check_template_settings(per_seed: int, lengths: Sequence[int], rule: str) -> tuple[int, ...]:
    """``lengths`` as a tuple, once the settings are checked (messages name the editor option at fault)."""
    lengths = (lengths,) if isinstance(lengths, int) else tuple(lengths)
    if per_seed < 1:
        raise ValueError(f"templates_per_seed must be >= 1, got {per_seed}")
    if not lengths or any(length < 1 for length in lengths):
        raise ValueError(f"template_tokens must be one or more lengths >= 1, got {list(lengths)}")
    if rule not in LENGTH_RULES:
        raise ValueError(f"template_length_rule must be one of {LENGTH_RULES}, got {rule!r}")
    return lengths


@dataclass(kw_only=True)   # keyword-only: listed after the fields of the method that includes them
class ContextTemplateHyperparams:
    """The context templates of a locate-and-edit method (ROME, MEMIT and its descendants), sampled once from the
    unedited model (module docstring; docs/methods.md §0.4). A method's hyperparameters include these fields and
    may give them defaults of their own (ROME: the reference's 2 per seed word of lengths 5 and 10).

    Attributes:
        templates_per_seed: samples of each seed word per template length.
        template_tokens: the template length(s): one length or several.
        template_seed: the sampling seed.
        template_length_rule: ``total`` counts the seed word's tokens in the length (the reference's rule), ``new``
            only the sampled ones.
    """

    templates_per_seed: int = 1
    template_tokens: int | Sequence[int] = 10
    template_seed: int = 0
    template_length_rule: str = "total"

    def __post_init__(self) -> None:
        _ = self.template_lengths   # refuse settings that cannot work when the hyperparameters are built

    @property
    def template_lengths(self) -> tuple[int, ...]:
        """``template_tokens`` as a tuple of lengths, once the template settings are checked."""
        try:
            return check_template_settings(self.templates_per_seed, self.template_tokens, self.template_length_rule)
        except ValueError as error:
            raise EditorOptionError(f"model.editor.{error}") from error


@torch.no_grad()
def sample_continuations(model, tokenizer, seed_words: Sequence[str] = MEMIT_SEEDS, per_seed: int = 1,
                         lengths: Sequence[int] = (10,), length_rule: str = "total", seed: int = 0,
                         top_k: int = 5) -> list[list[int]]:
    """The token ids (seed then sampled tokens) of every template, length by length, seed word by seed word."""
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    samples = []
    for length in lengths:
        for word in seed_words:
            for _ in range(per_seed):
                ids = tokenizer(word, return_tensors="pt")["input_ids"].to(device)
                for _ in range(new_token_count(length, ids.shape[1], length_rule)):
                    logits = model(input_ids=ids).logits[0, -1].float().cpu()
                    top = logits.topk(top_k)
                    choice = top.indices[torch.multinomial(top.values.softmax(-1), 1, generator=generator)]
                    if int(choice) == tokenizer.eos_token_id:
                        break
                    ids = torch.cat([ids, choice.view(1, 1).to(device)], dim=1)
                samples.append(ids[0].tolist())
    return samples


def sample_context_templates(model, tokenizer, seed_words: Sequence[str] = MEMIT_SEEDS, per_seed: int = 1,
                             lengths: Sequence[int] = (10,), length_rule: str = "total", seed: int = 0,
                             top_k: int = 5) -> list[str]:
    """``"{}"`` followed by one ``"<sampled text>. {}"`` per sample of :func:`sample_continuations`; braces in the
    text become spaces."""
    templates = ["{}"]
    for ids in sample_continuations(model, tokenizer, seed_words, per_seed, lengths, length_rule, seed, top_k):
        text = tokenizer.decode(ids, skip_special_tokens=True).replace("\n", " ")
        text = text.replace("{", " ").replace("}", " ").strip()
        templates.append(text + ". {}")
    return templates
