"""Value optimisation ("compute_z" / "compute_v"), batched across all requests of an edit batch.

docs/methods.md §0.6. For request i a vector δ_i ∈ R^d is added, at the subject's last token, to the output
of one module (the block output h^{L*} for MEMIT-style methods, the FFN output for ROME) and optimised:

    L_i(δ_i) = mean_{templates} NLL(target_new | prompt)                  (rewriting loss)
             + kl_factor · KL(p_δ ‖ p_0) on "{subject} is a" at the subject   (essence drift)
             + weight_decay · ‖δ_i‖ / ‖h_i‖²                                  (the reference's unsquared norm)

with Adam, at most S−1 steps, a request stopping for good once L_i < 5e-2, and δ_i projected onto
the ball ‖δ_i‖ ≤ clamp · ‖h_i‖ after every step; h_i is the module output at the subject in the bare
prompt. The result is v*_i = h_i + δ_i.

All requests run in one padded batch with one row of δ per request. The per-request losses are
separable and Adam is per-coordinate, so the joint run equals independent runs (checked in the tests
to 1e-5); rows that stopped are restored after every step so that momentum cannot move them. For the
same reason a large batch can be optimised in chunks of ``requests_per_pass`` requests: the activations
saved for the backward pass scale with the rows of one pass, the result does not change. Only δ is
differentiated (``torch.autograd.grad``), so the backward pass stops at the edited module and no parameter
gradient is computed or left behind, whether or not the model's parameters require grad. δ enters inside block l, so
the blocks below l see the same rows at every step: their result is kept from the first pass and each step runs
blocks l… only (:mod:`lit_edit.models.upper_layers`; the same numbers as the full pass). Where δ is added to the
output of block l itself (MEMIT), block l is kept too: each step adds δ to its output from the first pass and runs
blocks l+1… only. With ``reuse_prefix`` each step also runs only the positions from each row's subject token on
(:mod:`lit_edit.models.prefix_reuse`): δ cannot reach the earlier ones, whose keys and values come from the first
pass; the result equals the full rows' to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch

from lit_edit.editing.positions import subject_token_index
from lit_edit.hooks import record, rewrite_output
from lit_edit.models.architectures import architecture_of
from lit_edit.models.prefix_reuse import PrefixReuse, prefix_reuse_supported
from lit_edit.models.upper_layers import layer_of, record_upper_layers, upper_layers_supported
from lit_edit.scoring import pad_right


@dataclass(frozen=True)
class ValueTarget:
    """What value optimisation needs of a request: ``prompt`` has one ``{}`` for ``subject``."""

    prompt: str
    subject: str
    target: str


@dataclass
class ValueHyperparams:
    """Hyperparameters of value optimisation (docs/methods.md §0.6; GPT-2 XL MEMIT values as defaults).

    Attributes:
        steps: S; at most S−1 Adam steps are taken.
        lr: Adam learning rate.
        kl_factor: weight of the KL term.
        weight_decay: weight of ‖δ‖/‖h‖².
        clamp_norm_factor: δ is projected to ‖δ‖ ≤ clamp_norm_factor·‖h‖.
        fact_token: the position rule for the subject token.
        stop_loss: a request stops once its loss falls below this (the reference's fixed 5e-2).
        requests_per_pass: optimise at most this many requests in one padded batch (memory: GPT-2 XL needs about
            1 GiB of activations per request in fp32); None: all requests of the step at once.
        reuse_prefix: each step re-runs only the positions from the subject's last token on, attending to the keys
            and values the first pass gave the earlier ones (δ cannot change them under causal attention;
            :mod:`lit_edit.models.prefix_reuse`). Fewer tokens per step; the same result up to float32 rounding,
            not bit for bit, so off by default. Families whose attention takes no 4-D mask run the full rows.
    """

    steps: int = 20
    lr: float = 0.5
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    clamp_norm_factor: float = 0.75
    fact_token: str = "subject_last"
    stop_loss: float = 5e-2
    requests_per_pass: int | None = None
    reuse_prefix: bool = False

    def __post_init__(self):
        if self.requests_per_pass is not None and self.requests_per_pass < 1:
            raise ValueError(f"values.requests_per_pass must be >= 1 (null: all at once), got {self.requests_per_pass}")


@dataclass
class ValueResult:
    """Per request: v* = h + δ, the module output h it started from, and the loss at the first and last step."""

    values: torch.Tensor
    initial_outputs: torch.Tensor
    first_loss: torch.Tensor
    last_loss: torch.Tensor
    steps_taken: torch.Tensor


@dataclass
class _Rows:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lookup: torch.Tensor          # [rows] subject position of each row
    owner: torch.Tensor           # [rows] request index of each row
    is_kl: torch.Tensor           # [rows] True for the "{} is a" rows
    target_positions: list[list[int]]  # per row: logit positions scoring the target tokens
    target_ids: list[list[int]]


def _build_rows(tokenizer, targets: Sequence[ValueTarget], templates: Sequence[str], rule: str) -> _Rows:
    ids, lookup, owner, is_kl, positions, target_ids = [], [], [], [], [], []
    for i, t in enumerate(targets):
        target = tokenizer(" " + t.target.lstrip(), add_special_tokens=False)["input_ids"]
        if not target:
            raise ValueError(f"request {i}: target {t.target!r} tokenizes to nothing")
        for template in templates:
            prompt = template.format(t.prompt)
            prompt_ids = tokenizer(prompt.format(t.subject), add_special_tokens=True)["input_ids"]
            ids.append(prompt_ids + target[:-1])
            lookup.append(subject_token_index(tokenizer, prompt, t.subject, rule))
            owner.append(i), is_kl.append(False)
            positions.append(list(range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(target))))
            target_ids.append(target)
        kl_prompt = "{} is a"
        ids.append(tokenizer(kl_prompt.format(t.subject), add_special_tokens=True)["input_ids"])
        lookup.append(subject_token_index(tokenizer, kl_prompt, t.subject, rule))
        owner.append(i), is_kl.append(True), positions.append([]), target_ids.append([])
    input_ids, mask = pad_right(ids, tokenizer.pad_token_id)
    return _Rows(input_ids, mask, torch.tensor(lookup), torch.tensor(owner), torch.tensor(is_kl), positions,
                 target_ids)


Forward = Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]
"""The base model's last hidden state with ``module``'s output replaced by ``edit(output)``."""


@dataclass
class _Pass:
    """What every step repeats: ``forward`` (the last hidden state, ``module``'s output edited), ``module``'s output
    in the first pass, and per row the first position the pass covers (0, or the subject's position when each step
    re-runs only the positions from the subject on): position p of row r is column p − ``offset[r]``."""

    output: torch.Tensor
    forward: Forward
    offset: torch.Tensor


def _first_pass(model, module: str, input_ids: torch.Tensor, mask: torch.Tensor, lookup: torch.Tensor,
                reuse_lower_layers: bool, reuse_prefix: bool, pad_id: int) -> _Pass:
    """One pass without gradients: ``module``'s output on every row, and the forward pass each step repeats (the base
    model's last hidden state, ``module``'s output edited) — blocks from ``module``'s layer on when the lower ones
    can be kept, from the next layer on when ``module`` is a whole block (its output is then the same at every step
    and is edited directly), else all; with ``reuse_prefix``, over the positions from each row's subject on."""
    from lit_edit.sharding import is_sharded

    # a model in training mode draws new dropout masks in every block at every step: nothing below is fixed then
    upper = reuse_lower_layers and upper_layers_supported(model, module) and not model.training
    prefix = reuse_prefix and prefix_reuse_supported(model)
    if is_sharded(model):
        upper = prefix = False
    if prefix:
        reuse = PrefixReuse.record(model, input_ids, mask, lookup, pad_id)
        inputs, offset = reuse.suffix_inputs, lookup
    else:
        inputs, offset = (lambda _: {"input_ids": input_ids, "attention_mask": mask, "use_cache": False}), None
    offset = torch.zeros_like(lookup) if offset is None else offset
    if not upper:
        with torch.no_grad(), record(model, [module]) as seen:
            model(**inputs(model))

        def full_pass(edit):
            with rewrite_output(model, {module: edit}):
                return model.base_model(**inputs(model.base_model)).last_hidden_state
        return _Pass(seen[module].output, full_pass, offset)
    arch = architecture_of(model)
    layer = layer_of(arch, module)
    whole_block = module == arch.layer(layer)
    # the whole model, not its base: hooks on the model's inputs (COMEBA-HK's gate reads the batch's mask there)
    # must see this batch before the steps re-run its upper blocks
    with (torch.no_grad(), record(model, [module]) as seen,
          record_upper_layers(model, layer + 1 if whole_block else layer) as blocks):
        model(**inputs(model))
    output = seen[module].output
    fresh_cache = (lambda: reuse.cache(model)) if prefix else (lambda: None)
    if whole_block:
        return _Pass(output, lambda edit: blocks.run(edit(output), cache=fresh_cache()), offset)

    def upper_pass(edit):
        with rewrite_output(model, {module: edit}):
            return blocks.run(cache=fresh_cache())
    return _Pass(output, upper_pass, offset)


def optimize_values(model, tokenizer, module: str, targets: Sequence[ValueTarget], hp: ValueHyperparams,
                    context_templates: Sequence[str] = ("{}",), reuse_lower_layers: bool = True) -> ValueResult:
    """Optimise one δ per request at the output of ``module`` (see the module docstring).

    Args:
        module: the module whose (first tensor) output receives δ: a block (MEMIT) or an FFN (ROME).
        context_templates: prefixes with ``{}`` for the prompt; the first must be the bare ``"{}"``.
        reuse_lower_layers: keep the blocks below ``module``'s layer from the first pass (False: every step runs the
            whole model; the result is the same, for comparison).
    """
    if not targets:
        raise ValueError("no requests")
    if context_templates[0] != "{}":
        raise ValueError(f"the first context template must be the bare '{{}}', got {context_templates[0]!r}")
    chunk = hp.requests_per_pass
    if chunk is not None and len(targets) > chunk:   # independent requests: the same result, less memory
        parts = [optimize_values(model, tokenizer, module, targets[i:i + chunk], hp, context_templates,
                                 reuse_lower_layers)
                 for i in range(0, len(targets), chunk)]
        return ValueResult(*(torch.cat([getattr(part, f.name) for part in parts]) for f in fields(ValueResult)))
    device = next(model.parameters()).device
    rows = _build_rows(tokenizer, targets, context_templates, hp.fact_token)
    input_ids, mask = rows.input_ids.to(device), rows.attention_mask.to(device)
    n, n_rows = len(targets), rows.input_ids.shape[0]
    arange = torch.arange(n_rows, device=device)
    lookup, owner = rows.lookup.to(device), rows.owner.to(device)
    bare_rows = torch.tensor([rows.owner.tolist().index(i) for i in range(n)], device=device)
    kl_rows = rows.is_kl.nonzero().squeeze(1).to(device)
    # every scored target token as (row, logit position, token id, weight); weight = 1/(|y| · #templates),
    # so summing per request gives the mean over templates of the per-prompt mean NLL
    flat = [(row, pos, tok, 1.0 / (len(toks) * len(context_templates)))
            for row, (positions, toks) in enumerate(zip(rows.target_positions, rows.target_ids))
            for pos, tok in zip(positions, toks)]
    tok_row, tok_pos, tok_id, tok_weight = (torch.tensor(col, device=device) for col in zip(*flat))
    tok_owner = owner[tok_row]

    first = _first_pass(model, module, input_ids, mask, lookup, reuse_lower_layers, hp.reuse_prefix,
                        tokenizer.pad_token_id)
    # positions in the columns of the pass each step repeats
    lookup, tok_pos = lookup - first.offset, tok_pos - first.offset[tok_row]
    d = first.output.shape[-1]
    initial = first.output[bare_rows, lookup[bare_rows]].float()
    delta = torch.zeros(n, d, device=device, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=hp.lr)
    active = torch.ones(n, dtype=torch.bool, device=device)
    first_loss = torch.full((n,), float("nan"), device=device)
    last_loss = torch.full((n,), float("nan"), device=device)
    steps_taken = torch.zeros(n, dtype=torch.long, device=device)
    init_kl_logprobs = None
    max_norm = hp.clamp_norm_factor * initial.norm(dim=1)

    def add_delta(out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[arange, lookup] = out[arange, lookup] + delta[owner].to(out.dtype)
        return out

    # only the positions the loss reads go through the unembedding (docs/methods.md §12.1): the scored target tokens,
    # then the KL prompts' subject positions
    score_rows = torch.cat([tok_row, kl_rows])
    score_positions = torch.cat([tok_pos, lookup[kl_rows]])
    scored = torch.arange(tok_row.shape[0], device=device)
    unembedding = model.get_output_embeddings()
    for step in range(hp.steps):
        hidden = first.forward(add_delta)
        logprobs = torch.log_softmax(unembedding(hidden[score_rows, score_positions]).float(), dim=-1)
        token_nll = -logprobs[scored, tok_id] * tok_weight
        nll = torch.zeros(n, device=device).index_add(0, tok_owner, token_nll)
        kl_logprobs = logprobs[len(scored):]
        if init_kl_logprobs is None:
            init_kl_logprobs = kl_logprobs.detach().clone()
        kl = hp.kl_factor * (kl_logprobs.exp() * (kl_logprobs - init_kl_logprobs)).sum(-1)
        weight_decay = hp.weight_decay * delta.norm(dim=1) / initial.norm(dim=1) ** 2
        loss = nll + kl + weight_decay
        with torch.no_grad():
            if step == 0:
                first_loss.copy_(loss)
            last_loss[active] = loss[active]
            active &= loss >= hp.stop_loss
        if step == hp.steps - 1 or not active.any():
            break
        # the gradient of δ alone: no parameter gradients are computed or accumulated, whether or not the
        # model's parameters require grad
        (delta.grad,) = torch.autograd.grad(loss[active].sum(), [delta])
        frozen = delta.detach()[~active].clone()
        optimizer.step()
        with torch.no_grad():
            delta[~active] = frozen
            norms = delta.norm(dim=1)
            scale = torch.where(norms > max_norm, max_norm / norms.clamp_min(1e-12), torch.ones_like(norms))
            delta[active] *= scale[active, None]
            steps_taken[active] += 1
    values = initial + delta.detach()
    if not torch.isfinite(values).all():
        bad = (~torch.isfinite(values).all(dim=1)).nonzero().squeeze(1).tolist()
        raise FloatingPointError(f"value optimisation produced non-finite values for requests {bad}")
    return ValueResult(values, initial, first_loss, last_loss, steps_taken)


MIN_CHANGE = 0.1
"""The fraction of its starting value by which an optimisation's loss must fall (:func:`loss_trend`): rising by
more is a divergence, moving by less either way is a stall."""


def loss_trend(first: float, last: float, stop_loss: float) -> str | None:
    """How an edit's optimisation went, from its loss at the first and the last step: ``"diverged"`` when the loss
    ended non-finite or more than :data:`MIN_CHANGE` above where it started, ``"stalled"`` when it fell by less than
    that (or rose by less), None when it fell as it should or reached ``stop_loss``. The editing run warns about and
    counts the first two (``lit_edit.modules.loss_watch``)."""
    if not (math.isfinite(first) and math.isfinite(last)):
        return "diverged"
    if last < stop_loss:
        return None
    if last > (1 + MIN_CHANGE) * first:
        return "diverged"
    return "stalled" if last > (1 - MIN_CHANGE) * first else None
