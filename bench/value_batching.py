"""Value optimisation for one batch of requests: all requests in one padded batch vs one request at a time.

Both runs use the same model, requests, templates and hyperparameters (a fixed number of steps: stop_loss 0 so
no request stops early and the work is the same); the script prints the wall times, the ratio, and the largest
difference between the two results (they must agree: the batched loss is separable per request).

It also times the **bound**: the same number of forward passes over the batched run's padded rows, each with a
backward pass from the edited module's output (the work every step must do), and nothing else. One request at a
time over the bound is the **ceiling**: the most any implementation that does this work in one batch could gain.
    python bench/value_batching.py [--requests 32] [--steps 20] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from lit_edit.editing import read_zsre
from lit_edit.editing.contexts import sample_context_templates
from lit_edit.editing.values import ValueHyperparams, ValueTarget, _build_rows, optimize_values
from lit_edit.hooks import rewrite_output
from lit_edit.models import architecture_of, load_model_and_tokenizer


def time_bound(model, tokenizer, module, targets, templates, hp, sync) -> float:
    """Seconds for ``hp.steps`` forward passes over the batched run's rows plus a backward pass from ``module``'s
    output (to a zero probe added there), scoring each row's last position only."""
    rows = _build_rows(tokenizer, targets, templates, hp.fact_token)
    input_ids, mask = rows.input_ids.to(model.device), rows.attention_mask.to(model.device)
    last = mask.sum(1) - 1
    arange = torch.arange(input_ids.shape[0], device=model.device)
    unembedding = model.get_output_embeddings()
    probe = None

    def add_probe(out):
        nonlocal probe
        if probe is None:
            probe = torch.zeros_like(out, requires_grad=True)
        return out + probe

    sync()
    start = time.perf_counter()
    for _ in range(hp.steps):
        with rewrite_output(model, {module: add_probe}):
            hidden = model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        torch.autograd.grad(unembedding(hidden[arange, last]).float().logsumexp(-1).sum(), [probe])
    sync()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="checkpoints/factworld-gpt2")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    arch = architecture_of(model)
    requests = read_zsre("data/factworld/zsre/zsre_factworld.json").requests[: args.requests]
    targets = [ValueTarget(r.prompt, r.subject, r.target_new) for r in requests]
    templates = sample_context_templates(model, tokenizer, per_seed=1, new_tokens=10)
    hp = ValueHyperparams(steps=args.steps, stop_loss=0.0)
    module = arch.layer(args.layer)
    optimize_values(model, tokenizer, module, targets[:2], hp, templates)        # warm-up

    sync()
    start = time.perf_counter()
    batched = optimize_values(model, tokenizer, module, targets, hp, templates)
    sync()
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = [optimize_values(model, tokenizer, module, [t], hp, templates) for t in targets]
    sync()
    t_single = time.perf_counter() - start
    t_bound = time_bound(model, tokenizer, module, targets, templates, hp, sync)

    gap = max(float((batched.values[i] - s.values[0]).abs().max()) for i, s in enumerate(single))
    relative = max(float((batched.values[i] - s.values[0]).norm() / s.values[0].norm()) for i, s in enumerate(single))
    print(f"model {args.model}, {len(targets)} requests, {len(templates)} templates, {args.steps} steps, "
          f"{torch.cuda.get_device_name(model.device) if model.device.type == 'cuda' else f'{torch.get_num_threads()} threads'}")
    print(f"  batched        {t_batched:8.2f} s")
    print(f"  one at a time  {t_single:8.2f} s")
    print(f"  speed-up       {t_single / t_batched:8.2f} x   (max |v_batched - v_single| = {gap:.2e}, "
          f"max relative ‖Δv‖/‖v‖ = {relative:.1e})")
    print(f"  bound          {t_bound:8.2f} s   (batched / bound {t_batched / t_bound:.2f}; "
          f"ceiling = one at a time / bound {t_single / t_bound:.2f} x)")


if __name__ == "__main__":
    main()
