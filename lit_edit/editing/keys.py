"""Keys k: the input of the edited FFN output projection at the subject token (methods.md §0.1, §3).

A request's key is averaged over context templates: within each group of templates first, then over
the groups (MEMIT's groups are the bare prompt and the generated prefixes, so the bare prompt gets half
the weight; ROME uses one group).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_edit.editing.positions import subject_token_index
from lit_edit.hooks import forward_until, record
from lit_edit.models.architectures import Architecture
from lit_edit.scoring import pad_right


@torch.no_grad()
def module_io_at_subject(model, tokenizer, module: str, prompts: Sequence[str], subjects: Sequence[str],
                         rule: str = "subject_last") -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of ``module`` at the subject token of each prompt (``{}`` = subject), one batch.

    The forward pass stops right after ``module``.
    """
    encoded = [tokenizer(p.format(s), add_special_tokens=True)["input_ids"] for p, s in zip(prompts, subjects, strict=True)]
    lookup = torch.tensor([subject_token_index(tokenizer, p, s, rule) for p, s in zip(prompts, subjects)])
    device = next(model.parameters()).device
    input_ids, mask = pad_right(encoded, tokenizer.pad_token_id, device)
    with record(model, [module], stop_after=module) as seen:
        forward_until(model, input_ids=input_ids, attention_mask=mask)
    rows = torch.arange(len(encoded), device=device)
    lookup = lookup.to(device)
    return seen[module].input[rows, lookup], seen[module].output[rows, lookup]


def average_keys(model, tokenizer, arch: Architecture, layer: int, prompts: Sequence[str], subjects: Sequence[str],
                 template_groups: Sequence[Sequence[str]], rule: str = "subject_last") -> torch.Tensor:
    """K ∈ R^{m×N}: each request's key averaged within, then across, template groups."""
    arch.check_layer(model, layer)
    contexts = [t for group in template_groups for t in group]
    texts, owners = [], []
    for template in contexts:
        texts += [template.format(p) for p in prompts]
        owners += list(subjects)
    keys, _ = module_io_at_subject(model, tokenizer, arch.ffn_out_at(layer), texts, owners, rule)
    keys = keys.view(len(contexts), len(prompts), -1)
    group_means, start = [], 0
    for group in template_groups:
        group_means.append(keys[start:start + len(group)].mean(0))
        start += len(group)
    return torch.stack(group_means).mean(0).T
