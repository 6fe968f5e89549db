"""Direct computations the editing tests compare the package against.

Each works one prompt at a time, without padding, with plain ``register_forward_hook`` calls and explicit inverses,
and follows the equations of ``docs/`` as written — none of the package's batching, hook helpers, position rule or
solvers. Only the module names and the stored layout come from the architecture description (tested on its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch

from lit_edit.editing.values import ValueHyperparams

# value optimisation with every per-request term live on the tiny test models: weight decay, KL and a clamp that binds
# (the tests check that it does); the terms a batch could couple requests through
LIVE_VALUES = ValueHyperparams(steps=6, lr=0.05, kl_factor=0.25, weight_decay=1e-4, clamp_norm_factor=0.75)


def clamp_binds(values) -> bool:
    """Whether some request's δ ended on the clamp radius (a :class:`ValueResult`)."""
    ratio = (values.values - values.initial_outputs).norm(dim=1) / values.initial_outputs.norm(dim=1)
    return bool(((ratio - LIVE_VALUES.clamp_norm_factor).abs() < 1e-5).any())


def subject_last_index(tokenizer, text: str, subject: str) -> int:
    """The position of the subject's last token in ``text`` (one ``{}`` for the subject): the length of the
    tokenised text up to the subject's end, minus one (checked to be a prefix of the whole text's tokens)."""
    prefix = tokenizer(text.split("{}")[0] + subject)["input_ids"]
    whole = tokenizer(text.format(subject))["input_ids"]
    assert whole[: len(prefix)] == prefix, (text, subject)
    return len(prefix) - 1


@contextmanager
def hooked(model, module_name: str, seen: dict, add: tuple[int, torch.Tensor] | None = None):
    """Store the named module's first input and (first) output in ``seen``; with ``add`` = (position, vector),
    add the vector to its output at that position of the (single) sequence."""
    def hook(module, inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if add is not None:
            position, vector = add
            hidden = hidden.clone()
            hidden[0, position] = hidden[0, position] + vector.to(hidden.dtype)
        seen["input"], seen["output"] = inputs[0], hidden
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = model.get_submodule(module_name).register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@torch.no_grad()
def at_subject(model, tokenizer, module_name: str, text: str, subject: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of the named module at the subject's last token of ``text`` (one ``{}``)."""
    seen: dict = {}
    with hooked(model, module_name, seen):
        model(input_ids=torch.tensor([tokenizer(text.format(subject))["input_ids"]]))
    position = subject_last_index(tokenizer, text, subject)
    return seen["input"][0, position], seen["output"][0, position]


def averaged_key(model, tokenizer, arch, layer: int, prompt: str, subject: str,
                 groups: Sequence[Sequence[str]]) -> torch.Tensor:
    """A request's key at ``layer``: the FFN output projection's input at the subject, averaged within each template
    group, then over the groups (docs/methods.md §3)."""
    module = arch.ffn_out_at(layer)
    means = [torch.stack([at_subject(model, tokenizer, module, t.format(prompt), subject)[0].double() for t in group])
             .mean(0) for group in groups]
    return torch.stack(means).mean(0)


def keys_and_outputs(model, tokenizer, arch, layer: int, last: int, targets, groups):
    """K ``[m, N]`` at ``layer`` and H ``[d, N]``, the block output of layer ``last`` at the subject of each bare
    prompt, both on the model as it is now."""
    keys = torch.stack([averaged_key(model, tokenizer, arch, layer, t.prompt, t.subject, groups) for t in targets], 1)
    outputs = torch.stack([at_subject(model, tokenizer, arch.layer(last), t.prompt, t.subject)[1].double()
                           for t in targets], 1)
    return keys, outputs


def add_math_delta(model, arch, layer: int, delta: torch.Tensor) -> None:
    weight = arch.edit_weight(model, layer)
    with torch.no_grad():
        weight += arch.from_math(delta).to(weight.dtype)


def memit_replica(model, tokenizer, arch, targets, values: torch.Tensor, layers: Sequence[int], groups,
                  solve) -> list[torch.Tensor]:
    """MEMIT's layer loop on ``model`` (edited in place), each layer's K and residual measured by a fresh forward
    pass on the model with the earlier layers' updates applied (docs/methods.md §3):

        R_p = (Z − H_p) / (P − p),   ΔW_p = solve(layer, R_p, K_p)   (then applied before layer p + 1).

    ``values`` Z is ``[N, d]``; ``solve`` is the method's closed form; returns the ΔW_p (math layout)."""
    deltas = []
    for p, layer in enumerate(layers):
        keys, outputs = keys_and_outputs(model, tokenizer, arch, layer, max(layers), targets, groups)
        residuals = (values.double().T - outputs) / (len(layers) - p)
        delta = solve(layer, residuals, keys)
        add_math_delta(model, arch, layer, delta)
        deltas.append(delta)
    return deltas


def optimise_one_value(model, tokenizer, module_name: str, target, hp, templates: Sequence[str]):
    """Value optimisation of one request, written out from docs/methods.md §0.6 (module docstring of
    ``lit_edit/editing/values.py``): δ at the subject's last token of every prompt, the loss

        mean_templates NLL(target) + kl_factor · KL(p_δ ‖ p_0) on "{subject} is a" + weight_decay · ‖δ‖ / ‖h‖²,

    Adam; stop once the loss is below ``stop_loss`` (checked before each step), at most ``steps − 1`` steps, δ
    projected onto ‖δ‖ ≤ clamp · ‖h‖ after each. Returns (h + δ, h, first loss, last loss, steps taken)."""
    answer = tokenizer(" " + target.target, add_special_tokens=False)["input_ids"]
    texts = [template.format(target.prompt) for template in templates]
    h = at_subject(model, tokenizer, module_name, texts[0], target.subject)[1].float()
    delta = torch.zeros_like(h, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=hp.lr)
    kl_text = "{} is a"
    initial_kl, first, last, steps = None, None, None, 0

    def logits(text: str, extra: list[int]) -> torch.Tensor:
        ids = tokenizer(text.format(target.subject))["input_ids"] + extra
        with hooked(model, module_name, {}, (subject_last_index(tokenizer, text, target.subject), delta)):
            return model(input_ids=torch.tensor([ids])).logits[0].double()

    for step in range(hp.steps):
        nlls = []
        for text in texts:
            start = len(tokenizer(text.format(target.subject))["input_ids"]) - 1
            log_probs = logits(text, answer[:-1]).log_softmax(-1)
            nlls.append(-torch.stack([log_probs[start + j, token] for j, token in enumerate(answer)]).mean())
        kl_log_probs = logits(kl_text, [])[subject_last_index(tokenizer, kl_text, target.subject)].log_softmax(-1)
        if initial_kl is None:
            initial_kl = kl_log_probs.detach()
        kl = (kl_log_probs.exp() * (kl_log_probs - initial_kl)).sum()
        loss = (torch.stack(nlls).mean() + hp.kl_factor * kl).float() + hp.weight_decay * delta.norm() / h.norm() ** 2
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
        if loss < hp.stop_loss or step == hp.steps - 1:
            break
        (delta.grad,) = torch.autograd.grad(loss, [delta])      # δ only: the model's parameters get no gradient
        optimizer.step()
        with torch.no_grad():
            limit = hp.clamp_norm_factor * h.norm()
            if delta.norm() > limit:
                delta *= limit / delta.norm()
        steps += 1
    return h + delta.detach(), h, first, last, steps
