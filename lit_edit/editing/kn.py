"""KN: knowledge neurons (Dai et al., 2022), in the EasyEdit variant, with its quirks fixed (docs/methods.md §4, §13).

For a prompt x and the *old* answer g = g_1..g_T, let a_l ∈ R^m be the FFN activation of layer l ("input_ff":
GPT-2 ``c_fc``, GPT-J ``fc_in``, LLaMA ``gate_proj``; before the nonlinearity, so the zero baseline switches the
neuron off) at the position that predicts g_j. Integrated gradients (Eq. 3 of Dai et al., Riemann form):

    IG_j(l) = a_l ⊙ (1/S) Σ_{s=0}^{S−1} ∂P(g_j | a_l ← α_s a_l) / ∂(α_s a_l),     α = linspace(0, 1, S)      (1)
    A_l = mean_j IG_j(l),     A ∈ R^{n_layers × m}                                                         (2)

Selection: coarse(x) = {(l, i) : A_{l,i} > τ · max A} (3); with refinement over prompts x_1..x_n (the edit prompt
and its rephrases) a neuron is kept when it is in ≥ p·n of the coarse sets (4). With one prompt (4) keeps every
coarse neuron: a neuron in 1 of 1 sets is in a fraction 1 ≥ p of them.

Edit: o = o_1..o_T the model's greedy completion of the edit prompt, t = t_1..t_T the tokens of ``target_new``
(T = len(t)), E an embedding matrix [V, d]. Every selected neuron's value vector w ∈ R^d (row i of a GPT-2 Conv1D
``c_proj.weight[m, d]``, column i of an ``nn.Linear`` ``down_proj/fc_out.weight[d, m]``) becomes

    w ← w + c_t · Σ_j E[t_j] − c_o · Σ_j E[o_j]                                                                (5)

with c_t = c_o = 2 for a one-token target and 1 otherwise (default, ``one_token_edit="doubled"``: what the
reference's code means to do; ``scale`` sets both). The reference *executes* c_t = 1, c_o = 2 for T = 1
(``one_token_edit="reference"``): its target ids are a list, so E[t] is a [1, d] matrix and goes through the
branch that adds each row once, while the old answer's single id gives a vector that is doubled
(``docs/fidelity.md``, "KN").

Deliberate departures from the reference code (docs/methods.md §13), each fixed on purpose:

- Sub-token j is scored by *teacher forcing* on prompt + g_{<j} for every architecture. The reference extends the
  prompt with its own greedy argmax instead of g_j, and for GPT-2/GPT-J does not extend it at all (its
  re-tokenisation condition is false there), scoring every sub-token at the bare prompt.
- g and t are encoded as the model sees them after the prompt: with a leading space and no special tokens
  (``scoring.encode_pairs``); the reference encodes them without the space on GPT-2.
- The same S for every architecture; the reference's LLaMA setting S = 1 gives α = [0], a degenerate IG.
- E defaults to the *output* embedding (the unembedding ``lm_head``), the space the value vectors write into; the
  reference uses the input embedding, which differs from it for untied models such as LLaMA-2 (``embedding="input"``
  restores it). For tied models (GPT-2) both are the same matrix.
- Attribution is batched: rows (layer, α-step, sub-token) share forward/backward passes (docs/methods.md §12.8), see
  :func:`integrated_gradients`. :func:`integrated_gradients_per_layer` keeps the reference's loop structure.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from lit_edit.editing.options import checked_layers
from lit_edit.editing.requests import EditRequest, EditRequestError
from lit_edit.generation import greedy_decode
from lit_edit.hooks import forward_until, record, rewrite_output
from lit_edit.models.architectures import Architecture

EMBEDDINGS = ("output", "input")
ONE_TOKEN_EDITS = ("doubled", "reference")


@dataclass
class KnHyperparams:
    """KN's settings (EasyEdit's GPT-2 XL values as defaults).

    Attributes:
        layers: the attributed (and so editable) layers; None: all layers.
        steps: S, the integration steps of (1), the same for every architecture.
        batch_size: attribution rows (layer × α-step × sub-token) per forward/backward pass.
        threshold: τ of the coarse selection (3): 0.2 for GPT-2 XL and LLaMA, 0.1 for GPT-J.
        refine: select by (4) over the edit prompt and its rephrases (the reference runs with false).
        sharing_ratio: p of (4).
        max_neurons: keep at most this many selected neurons (the largest attribution first); None: no cap.
        embedding: E of (5): ``"output"`` (the unembedding, default) or ``"input"`` (the reference).
        scale: c_t = c_o of (5); None: 2 for one target token, 1 for more.
        one_token_edit: (5) for a one-token target: ``"doubled"`` (default) w += 2(E[t] − E[o]), or ``"reference"``
            w += E[t] − 2E[o], what the reference executes (needs ``scale`` None). Longer targets: c_t = c_o.
    """

    layers: tuple[int, ...] | None = None
    steps: int = 20
    batch_size: int = 256
    threshold: float = 0.2
    refine: bool = False
    sharing_ratio: float = 0.4
    max_neurons: int | None = None
    embedding: str = "output"
    scale: float | None = None
    one_token_edit: str = "doubled"

    def __post_init__(self) -> None:
        if self.layers is not None:
            self.layers = checked_layers(self.layers)
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"KN needs steps >= 1 and batch_size >= 1, got {self.steps} and {self.batch_size}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"KN threshold τ must be in [0, 1], got {self.threshold}")
        if not 0.0 < self.sharing_ratio <= 1.0:
            raise ValueError(f"KN sharing_ratio p must be in (0, 1], got {self.sharing_ratio}")
        if self.max_neurons is not None and self.max_neurons < 1:
            raise ValueError(f"KN max_neurons must be >= 1 or None, got {self.max_neurons}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"KN embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.one_token_edit not in ONE_TOKEN_EDITS:
            raise ValueError(f"KN one_token_edit must be one of {ONE_TOKEN_EDITS}, got {self.one_token_edit!r}")
        if self.one_token_edit == "reference" and self.scale is not None:
            raise ValueError(f"KN scale={self.scale} sets c_t = c_o, which one_token_edit 'reference' (c_t = 1, "
                             "c_o = 2) contradicts: set scale to null or one_token_edit to 'doubled'")
        if self.layers is not None:
            self.layers = tuple(self.layers)


# ------------------------------------------------------------------------------------------------ encoding


@dataclass
class KnInputs:
    """A request's token ids: the prompts (edit prompt first, with special tokens), g (old answer), t (new)."""

    prompts: list[list[int]]
    true_ids: list[int]
    new_ids: list[int]


def _check_ids(request: EditRequest, field: str, ids: list[int], tokenizer: PreTrainedTokenizerBase,
               vocab_size: int) -> list[int]:
    """``ids`` of ``request.<field>`` if they exist for the model (and, for a target, are no special token)."""
    fail = lambda problem: EditRequestError(request.record_id, field, problem)
    if not ids:
        raise fail("encodes to no tokens")
    outside = [i for i in ids if not 0 <= i < vocab_size]
    if outside:
        raise fail(f"encodes to token ids {outside} outside the model's embedding (ids 0..{vocab_size - 1}): "
                   "the tokenizer does not belong to this model")
    special = [i for i in ids if i in set(tokenizer.all_special_ids) or i == tokenizer.unk_token_id]
    if special and field.startswith("target"):
        names = tokenizer.convert_ids_to_tokens(special)
        raise fail(f"encodes to the tokenizer's unknown/special token(s) {names} (ids {special}): the model has "
                   "no embedding that means this text")
    return ids


def encode_request(tokenizer: PreTrainedTokenizerBase, request: EditRequest, vocab_size: int, refine: bool) -> KnInputs:
    """Token ids of ``request``, checked; errors (:class:`EditRequestError`) name the record and the field.

    KN attributes the *old* answer, so ``target_true`` is required (no fallback to the model's own prediction:
    attributing what the model happens to say would locate a different fact without telling anyone).
    """
    answers = {}
    for field in ("target_true", "target_new"):
        text = getattr(request, field)
        if text is None:
            raise EditRequestError(request.record_id, field, "KN attributes the old answer and needs it; the "
                                   "request has none")
        if not text.strip():
            raise EditRequestError(request.record_id, field, "target is empty")
        ids = tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]   # as in scoring.encode_pairs
        answers[field] = _check_ids(request, field, ids, tokenizer, vocab_size)
    texts = [("prompt", request.text)]
    if refine:
        texts += [(f"rephrase_prompts[{k}]", p) for k, p in enumerate(request.rephrase_prompts)]
    prompts = [_check_ids(request, field, tokenizer(text, add_special_tokens=True)["input_ids"], tokenizer,
                          vocab_size) for field, text in texts]
    return KnInputs(prompts, answers["target_true"], answers["target_new"])


# --------------------------------------------------------------------------------------------- attribution


def alphas(steps: int) -> torch.Tensor:
    """α_s of (1): ``linspace(0, 1, S)`` (the reference's grid, both ends included)."""
    return torch.linspace(0.0, 1.0, steps)


def _teacher_forced(prompt_ids: Sequence[int], target_ids: Sequence[int], device) -> tuple[torch.Tensor, list[int]]:
    """prompt + g_{<T} as one row, and the position predicting each g_j (causal attention: the logits at
    position p depend only on tokens ≤ p, so this one row scores every sub-token as prompt + g_{<j} would)."""
    ids = list(prompt_ids) + list(target_ids[:-1])
    return torch.tensor([ids], device=device), [len(prompt_ids) - 1 + j for j in range(len(target_ids))]


@torch.no_grad()
def clean_activations(model, arch: Architecture, input_ids: torch.Tensor, layers: Sequence[int],
                      positions: Sequence[int]) -> torch.Tensor:
    """a of (1): the ffn_in outputs at ``positions`` of one clean pass, ``[len(layers), len(positions), m]``."""
    names = [arch.ffn_in_at(layer) for layer in layers]
    with record(model, names, stop_after=arch.ffn_in_at(max(layers))) as seen:
        forward_until(model, input_ids=input_ids, use_cache=False)
    return torch.stack([seen[name].output[0, list(positions)] for name in names])


def _logits_at_last(model, input_ids: torch.Tensor, keep: int) -> torch.Tensor:
    """The logits of the last ``keep`` positions, ``[rows, keep, V]`` (only those are computed when the model
    takes ``logits_to_keep``)."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        return model(input_ids=input_ids, use_cache=False, logits_to_keep=keep).logits
    return model(input_ids=input_ids, use_cache=False).logits[:, -keep:]


def _scaling_hook(scaled: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor):
    """ffn_in output → the same with ``out[rows[r], positions[r]] = scaled[r]`` (out of place, so the graph runs
    from ``scaled``)."""
    return lambda out: out.index_put((rows, positions), scaled.to(out.dtype))


def integrated_gradients(model, arch: Architecture, prompt_ids: Sequence[int], target_ids: Sequence[int],
                         layers: Sequence[int], steps: int = 20, batch_size: int = 256) -> torch.Tensor:
    """IG_j(l) of (1) for every layer and sub-token, batched; ``[len(layers), T, m]`` in float32.

    One row per (layer l, sub-token j, step s); ``batch_size`` rows per forward/backward pass. Every row is the
    teacher-forced sequence prompt + g_{<T}. A hook on each layer's ffn_in output writes, in the rows of that layer
    only, a leaf tensor x_r = α_s a_l,j at the position predicting g_j (a from one clean pass). The rows do not
    interact, so one backward of Σ_r P_r(g_j) gives every row its own ∂P_r/∂x_r exactly.

    Cost: rows are ordered by layer, and a pass back-propagates all its rows down to its lowest layer (a dense batch
    cannot stop a row early), where the loop stops each pass at its own layer: the same passes do up to ~1.3× the
    loop's arithmetic on a 4-layer model, in far fewer and larger passes. That wins when passes are launch- or
    overhead-bound (GPU, small models), not when compute-bound (one CPU thread); ``bench/kn_attribution.py``.
    """
    device = next(model.parameters()).device
    n_tokens = len(target_ids)
    input_ids, positions = _teacher_forced(prompt_ids, target_ids, device)
    clean = clean_activations(model, arch, input_ids, layers, positions).float()     # [L, T, m]
    grid = alphas(steps).to(device)
    layer_of, token_of, step_of = (g.flatten().to(device) for g in torch.meshgrid(
        torch.arange(len(layers)), torch.arange(n_tokens), torch.arange(steps), indexing="ij"))
    position_of = torch.tensor(positions, device=device)[token_of]
    targets = torch.tensor(list(target_ids), device=device)[token_of]
    summed = torch.zeros_like(clean)
    for start in range(0, len(layer_of), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(layer_of)), device=device)
        scaled = (grid[step_of[rows], None] * clean[layer_of[rows], token_of[rows]]).requires_grad_()
        hooks = {}
        for k in layer_of[rows].unique().tolist():
            mine = (layer_of[rows] == k).nonzero().flatten()
            hooks[arch.ffn_in_at(layers[k])] = _scaling_hook(scaled[mine], mine, position_of[rows][mine])
        with torch.enable_grad(), rewrite_output(model, hooks):
            logits = _logits_at_last(model, input_ids.expand(len(rows), -1), n_tokens)
            probs = logits[torch.arange(len(rows), device=device), token_of[rows]].float().softmax(-1)
            (grad,) = torch.autograd.grad(probs.gather(1, targets[rows, None]).sum(), scaled)
        summed.index_put_((layer_of[rows], token_of[rows]), grad, accumulate=True)
    return clean * summed / steps


def integrated_gradients_per_layer(model, arch: Architecture, prompt_ids: Sequence[int], target_ids: Sequence[int],
                                   layers: Sequence[int], steps: int = 20, batch_size: int = 20) -> torch.Tensor:
    """The same IG as :func:`integrated_gradients`, with the reference's loop: per sub-token j and layer l, a clean
    pass on prompt + g_{<j}, then the S scaled copies in chunks of ``batch_size``, the last position's activation
    replaced. n_layers × T × ⌈S / batch_size⌉ forward/backward passes (teacher forced, not greedy)."""
    device = next(model.parameters()).device
    grid = alphas(steps).to(device)
    result = []
    for layer in layers:
        per_token = []
        for j, target in enumerate(target_ids):
            input_ids = torch.tensor([list(prompt_ids) + list(target_ids[:j])], device=device)
            a = clean_activations(model, arch, input_ids, [layer], [input_ids.shape[1] - 1])[0, 0].float()
            summed = torch.zeros_like(a)
            for start in range(0, steps, batch_size):
                scaled = (grid[start:start + batch_size, None] * a).requires_grad_()
                rows = torch.arange(len(scaled), device=device)
                last = _scaling_hook(scaled, rows, torch.full_like(rows, input_ids.shape[1] - 1))
                with torch.enable_grad(), rewrite_output(model, {arch.ffn_in_at(layer): last}):
                    logits = model(input_ids=input_ids.expand(len(rows), -1), use_cache=False).logits
                    (grad,) = torch.autograd.grad(logits[:, -1].float().softmax(-1)[:, target].sum(), scaled)
                summed += grad.sum(0)
            per_token.append(a * summed / steps)
        result.append(torch.stack(per_token))
    return torch.stack(result)


# ----------------------------------------------------------------------------------------------- selection


def coarse_neurons(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """(3): the mask of A_{l,i} > τ · max A over all layers (``scores`` = A, ``[L, m]``)."""
    return scores > threshold * scores.max()


def refine_neurons(masks: Sequence[torch.Tensor], sharing_ratio: float) -> torch.Tensor:
    """(4): neurons in at least ``p · n`` of the ``n`` prompts' coarse masks (one prompt: its mask unchanged)."""
    counts = torch.stack(list(masks)).sum(0)
    return counts >= sharing_ratio * len(masks)


def cap_neurons(mask: torch.Tensor, scores: torch.Tensor, max_neurons: int | None) -> torch.Tensor:
    """The ``max_neurons`` selected neurons of largest score (ties by position); all of them when None or fewer."""
    if max_neurons is None or int(mask.sum()) <= max_neurons:
        return mask
    ranked = scores.masked_fill(~mask, float("-inf")).flatten().topk(max_neurons).indices
    capped = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
    capped[ranked] = True
    return capped.view_as(mask)


# ---------------------------------------------------------------------------------------------------- edit


def reference_scale(n_tokens: int) -> float:
    """c of (5) as the reference's code means it: 2 for a one-token target, 1 otherwise."""
    return 2.0 if n_tokens == 1 else 1.0


def edit_scales(n_tokens: int, hp: KnHyperparams) -> tuple[float, float]:
    """(c_t, c_o) of (5) for a target of ``n_tokens`` tokens under ``hp.scale`` and ``hp.one_token_edit``."""
    if hp.scale is not None:
        return hp.scale, hp.scale
    c = reference_scale(n_tokens)
    return (1.0, c) if hp.one_token_edit == "reference" else (c, c)


def value_delta(embeddings: torch.Tensor, old_ids: Sequence[int], new_ids: Sequence[int], scale: float,
                old_scale: float | None = None) -> torch.Tensor:
    """Δw of (5): c_t · Σ_j E[t_j] − c_o · Σ_j E[o_j] in float32, ``[d]`` (c_t = ``scale``; c_o = ``old_scale``,
    None: the same)."""
    e = embeddings.detach().float()
    old_scale = scale if old_scale is None else old_scale
    return scale * e[list(new_ids)].sum(0) - old_scale * e[list(old_ids)].sum(0)


def add_to_value_vectors(model, arch: Architecture, layers: Sequence[int], mask: torch.Tensor,
                         delta: torch.Tensor) -> None:
    """w ← w + Δw for every selected neuron (``mask[k, i]``: neuron i of ``layers[k]``), in place."""
    with torch.no_grad():
        for k, layer in enumerate(layers):
            neurons = mask[k].nonzero().flatten().to(delta.device)
            if len(neurons):
                weight = arch.to_math(arch.edit_weight(model, layer))             # a [d, m] view of the stored weight
                weight[:, neurons] += delta.to(weight.dtype)[:, None]


def embedding_matrix(model, arch: Architecture, which: str) -> torch.Tensor:
    """E of (5): the unembedding (``"output"``) or the input token embedding (``"input"``), ``[V, d]``."""
    return model.get_submodule(arch.unembedding if which == "output" else arch.embedding).weight


def vocabulary_size(model, arch: Architecture) -> int:
    """Token ids a target may use: rows of both the input and the output embedding."""
    return min(embedding_matrix(model, arch, which).shape[0] for which in EMBEDDINGS)


@torch.no_grad()
def greedy_tokens(model, prompt_ids: Sequence[int], n: int, pad_id: int) -> list[int]:
    """o of (5): the model's ``n`` greedy next tokens after the prompt (no stop at EOS: exactly ``n``)."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids)], device=device)
    return greedy_decode(model, ids, torch.ones_like(ids), n, eos_id=-1, pad_id=pad_id)[0].tolist()


# ------------------------------------------------------------------------------------------------ requests


@dataclass
class KnEdit:
    """What KN did for one request: the selected neurons (layer, index), the coarse-set size of each prompt, the
    largest attribution, o and t of (5) and Δw."""

    record_id: str
    neurons: list[tuple[int, int]]
    coarse_sizes: list[int]
    max_attribution: float
    old_ids: list[int]
    new_ids: list[int]
    delta: torch.Tensor


def select_neurons(model, arch: Architecture, inputs: KnInputs, layers: Sequence[int],
                   hp: KnHyperparams) -> tuple[torch.Tensor, list[int], float]:
    """(1)–(4) and the cap: the mask ``[len(layers), m]``, each prompt's coarse-set size, max A (edit prompt)."""
    scores = [integrated_gradients(model, arch, p, inputs.true_ids, layers, hp.steps, hp.batch_size).mean(1)
              for p in inputs.prompts]
    masks = [coarse_neurons(s, hp.threshold) for s in scores]
    mask = refine_neurons(masks, hp.sharing_ratio) if hp.refine else masks[0]
    mask = cap_neurons(mask, torch.stack(scores).mean(0), hp.max_neurons)
    return mask, [int(m.sum()) for m in masks], float(scores[0].max())


def apply_kn(model, tokenizer: PreTrainedTokenizerBase, arch: Architecture, requests: Sequence[EditRequest],
             hp: KnHyperparams) -> list[KnEdit]:
    """Edit ``model`` in place, one request after the other (each attributed on the model edited by the previous
    ones); every request is checked before the first edit, so a bad one changes nothing."""
    layers = list(range(arch.n_layers(model))) if hp.layers is None else list(hp.layers)
    for layer in layers:
        arch.check_layer(model, layer)
    vocab = vocabulary_size(model, arch)
    encoded = [encode_request(tokenizer, r, vocab, hp.refine) for r in requests]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    edits = []
    for request, inputs in zip(requests, encoded):
        mask, sizes, top = select_neurons(model, arch, inputs, layers, hp)
        old = greedy_tokens(model, inputs.prompts[0], len(inputs.new_ids), pad_id)
        delta = value_delta(embedding_matrix(model, arch, hp.embedding), old, inputs.new_ids,
                            *edit_scales(len(inputs.new_ids), hp))
        add_to_value_vectors(model, arch, layers, mask, delta)
        neurons = [(layers[k], i) for k, i in mask.nonzero().tolist()]
        edits.append(KnEdit(request.record_id, neurons, sizes, top, old, inputs.new_ids, delta))
    return edits
