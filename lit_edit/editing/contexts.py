"""Context templates: short model-generated prefixes put before the edit prompt (docs/methods.md §0.4).

The reference samples them on every process start (top-k = 5) and caches them in a module global, so
they differ between runs. Here they are sampled once from the *unedited* model with a fixed seed, and
the caller stores them with the run (they are plain strings with one ``{}``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MEMIT_SEEDS = ("The", "Therefore", "Because", "I", "You")


@torch.no_grad()
def sample_context_templates(model, tokenizer, seed_words: Sequence[str] = MEMIT_SEEDS, per_seed: int = 1,
                             new_tokens: int = 8, seed: int = 0, top_k: int = 5) -> list[str]:
    """``"{}"`` followed by one ``"<generated text>. {}"`` per sample; braces in the text become spaces."""
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    templates = ["{}"]
    for word in seed_words:
        for _ in range(per_seed):
            ids = tokenizer(word, return_tensors="pt")["input_ids"].to(device)
            for _ in range(new_tokens):
                logits = model(input_ids=ids).logits[0, -1].float().cpu()
                top = logits.topk(top_k)
                choice = top.indices[torch.multinomial(top.values.softmax(-1), 1, generator=generator)]
                if int(choice) == tokenizer.eos_token_id:
                    break
                ids = torch.cat([ids, choice.view(1, 1).to(device)], dim=1)
            text = tokenizer.decode(ids[0], skip_special_tokens=True).replace("\n", " ")
            text = text.replace("{", " ").replace("}", " ").strip()
            templates.append(text + ". {}")
    return templates
