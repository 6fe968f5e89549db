"""Keys k: the input of the edited FFN output projection at the subject token (docs/methods.md §0.1, §3).

A request's key is averaged over context templates: within each group of templates first, then over
the groups (MEMIT's groups are the bare prompt and the generated prefixes, so the bare prompt gets half
the weight; ROME uses one group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lit_edit.editing.positions import subject_token_indices
from lit_edit.hooks import forward_until, record
from lit_edit.models.architectures import Architecture
from lit_edit.scoring import pad_right


@torch.no_grad()
def subject_io(model, tokenizer, modules: Sequence[str], prompts: Sequence[str], subjects: Sequence[str],
               rule: str = "subject_last", stop_after: str | None = None, stop_when_all_seen: bool = False
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (input, output)} at the subject token of each prompt (``{}`` = subject), in one forward pass
    over one batch, optionally stopped right after ``stop_after`` or once every module in ``modules`` has run."""
    encoded = [tokenizer(p.format(s), add_special_tokens=True)["input_ids"] for p, s in zip(prompts, subjects, strict=True)]
    device = next(model.parameters()).device
    lookup = torch.tensor(subject_token_indices(tokenizer, prompts, subjects, rule), device=device)
    input_ids, mask = pad_right(encoded, tokenizer.pad_token_id, device)
    with record(model, modules, stop_after=stop_after, stop_when_all_seen=stop_when_all_seen) as seen:
        forward_until(model, input_ids=input_ids, attention_mask=mask)
    rows = torch.arange(len(encoded), device=device)
    return {name: (seen[name].input[rows, lookup], seen[name].output[rows, lookup]) for name in modules}


def module_io_at_subject(model, tokenizer, module: str, prompts: Sequence[str], subjects: Sequence[str],
                         rule: str = "subject_last") -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of one ``module`` at the subject token of each prompt; the pass stops after it."""
    return subject_io(model, tokenizer, [module], prompts, subjects, rule, stop_after=module)[module]


@dataclass
class TemplateKeys:
    """Keys of each request under each context template, and (optionally) another module's output at the
    subject in the bare-prompt rows, all from one forward pass."""

    per_template: torch.Tensor            # [templates, N, m]
    group_sizes: tuple[int, ...]
    bare_output: torch.Tensor | None = None  # [N, d] output of ``also`` for the "{}" template

    def averaged(self) -> torch.Tensor:
        """K ∈ R^{m×N}: the mean within each template group, then across the groups."""
        groups = self.per_template.split(list(self.group_sizes))
        return torch.stack([g.mean(0) for g in groups]).mean(0).T


def template_keys(model, tokenizer, arch: Architecture, layer: int, prompts: Sequence[str], subjects: Sequence[str],
                  template_groups: Sequence[Sequence[str]], rule: str = "subject_last",
                  also: str | None = None) -> TemplateKeys:
    """The FFN-output input of ``layer`` for every (template, request); with ``also``, that module's output at
    the bare prompt (the first template, which must be ``"{}"``) from the same pass. The pass stops once both
    modules have run: nothing after the later of the two (further blocks, the final norm, the unembedding)."""
    arch.check_layer(model, layer)
    contexts = [t for group in template_groups for t in group]
    if also is not None and contexts[0] != "{}":
        raise ValueError(f"the first template must be the bare '{{}}' to read {also!r} there, got {contexts[0]!r}")
    texts = [template.format(p) for template in contexts for p in prompts]
    key_module = arch.ffn_out_at(layer)
    modules = [key_module] + ([also] if also and also != key_module else [])
    # the pass stops once every module read has run (MEMIT reads the block output of its last layer, above the keys)
    seen = subject_io(model, tokenizer, modules, texts, list(subjects) * len(contexts), rule, stop_when_all_seen=True)
    keys = seen[key_module][0].view(len(contexts), len(prompts), -1)
    bare = seen[also][1][: len(prompts)] if also else None
    return TemplateKeys(keys, tuple(len(g) for g in template_groups), bare)

