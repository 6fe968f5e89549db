"""Why value optimisation barely moves on real ZsRE records with the fact-world models, and why its loss rises on a
random tiny LLaMA (``docs/results/value_optimisation.md``). Three measurements, on CPU:

1. ``gradient``: per request, at δ = 0, the norm of the NLL's gradient with respect to δ at the subject's last token
   (ROME's module, the FFN output of ``--layer``) against the norm of the penalty's gradient, weight_decay/‖h‖²
   (the reference's ‖δ‖/‖h‖² term once δ ≠ 0), and the attention the answer positions pay to the subject's last
   token in each layer — real ZsRE records vs fact-world records.
2. ``swap``: value optimisation with ``configs/edit/methods/factworld/memit.yaml``'s settings (δ at block 1's output,
   the bare prompt) on requests whose prompt, subject and target each come from the real or the fact-world records.
3. ``free``: on the real records, ROME's δ at the FFN output of ``--layer`` (40 steps, the bare prompt) with the
   config's penalty, KL term and clamp, and without them at lr 0.5 and 5: can any δ at the subject move the NLL?
4. ``penalty``: a random tiny LLaMA (``bench/gpu_check.py``'s, or the tests' with ``--tiny tests``), ROME's δ at the
   FFN output of ``--layer``: the final loss split into the NLL of the target, the penalty and the KL term (the
   rest), with weight decay 0.5 (the reference), 0, and 0.5 with lr 0.005.

    python bench/value_optimisation.py gradient --model checkpoints/factworld-gpt2
    python bench/value_optimisation.py swap --model checkpoints/factworld-gpt2
    python bench/value_optimisation.py free --model checkpoints/factworld-gpt2 --n 5
    python bench/value_optimisation.py penalty --tiny bench --layer 1
"""

from __future__ import annotations

import argparse
import statistics as stats
import sys
import tempfile
from pathlib import Path

import torch

from lit_edit.editing.positions import subject_token_index
from lit_edit.editing.requests import read_zsre
from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values
from lit_edit.hooks import record, rewrite_output
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.scoring import score_answers

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "zsre" / "zsre_mend_eval_portability_gpt4.json"
WORLD = ROOT / "data" / "factworld" / "zsre" / "zsre_factworld.json"
# configs/edit/methods/factworld/memit.yaml's value settings
MEMIT_VALUES = ValueHyperparams(steps=25, lr=0.5, kl_factor=0.0625, weight_decay=0.5, clamp_norm_factor=4.0)


def at_subject(prompt_template: str, subject: str, tokenizer, delta: torch.Tensor):
    """A :func:`rewrite_output` function adding ``delta`` at the subject's last token of the (unpadded) prompt."""
    position = subject_token_index(tokenizer, prompt_template, subject)

    def add(out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, position] = out[:, position] + delta.to(out.dtype)
        return out
    return add


def gradient(args) -> None:
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.config._attn_implementation = "eager"          # attention weights are returned only by eager attention
    module = architecture_of(model).ffn_at(args.layer)
    for name, path in (("real ZsRE", args.zsre), ("fact-world", WORLD)):
        rows = []
        for r in read_zsre(path).requests[:args.n]:
            prompt_ids = tokenizer(r.prompt.format(r.subject))["input_ids"]
            answer = tokenizer(" " + r.target_new.lstrip(), add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + answer[:-1]])
            position = subject_token_index(tokenizer, r.prompt, r.subject)
            with torch.no_grad(), record(model, [module]) as seen:
                model(input_ids=ids)
            h = seen[module].output[0, position]
            delta = torch.zeros_like(h, requires_grad=True)
            with rewrite_output(model, {module: at_subject(r.prompt, r.subject, tokenizer, delta)}):
                out = model(input_ids=ids, output_attentions=True)
            answer_positions = list(range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(answer)))
            log_probs = out.logits[0, answer_positions].log_softmax(-1)
            nll = -log_probs[torch.arange(len(answer)), answer].mean()
            (grad,) = torch.autograd.grad(nll, [delta])
            attention = [float(a[0, :, answer_positions, position].mean()) for a in out.attentions]
            rows.append((float(grad.norm()), MEMIT_VALUES.weight_decay / float(h.norm()) ** 2, float(h.norm()),
                         attention))
            print(f"  {name:10s} {r.prompt.format(r.subject)[:48]!r:52s} -> {r.target_new[:20]!r:22s} "
                  f"|∇NLL| {rows[-1][0]:.1e}  penalty gradient {rows[-1][1]:.1e}  |h| {rows[-1][2]:6.1f}")
        below = sum(g < p for g, p, _, _ in rows)
        layers = torch.tensor([a for *_, a in rows]).mean(0)
        print(f"{name}: median |∇NLL| {stats.median(g for g, *_ in rows):.1e}, median penalty gradient "
              f"{stats.median(p for _, p, *_ in rows):.1e} (|∇NLL| below it for {below}/{len(rows)}); median |h| "
              f"{stats.median(h for _, _, h, _ in rows):.0f}; attention of the answer positions to the subject's last "
              f"token per layer {[round(float(x), 3) for x in layers]}")


def swap(args) -> None:
    model, tokenizer = load_model_and_tokenizer(args.model)
    module = architecture_of(model).layer(1)
    real, world = read_zsre(args.zsre).requests[:args.n], read_zsre(WORLD).requests[:args.n]
    sources = (("real", real), ("fact-world", world))
    print(f"{'prompts':12s} {'subjects':12s} {'targets':12s} loss first -> last (mean)   median |δ|/|h|")
    for prompt_name, prompts in sources:
        for subject_name, subjects in sources:
            for target_name, answers in sources:
                targets = [ValueTarget(p.prompt, s.subject, t.target_new)
                           for p, s, t in zip(prompts, subjects, answers)]
                result = optimize_values(model, tokenizer, module, targets, MEMIT_VALUES, ("{}",))
                moved = (result.values - result.initial_outputs).norm(dim=1) / result.initial_outputs.norm(dim=1)
                print(f"{prompt_name:12s} {subject_name:12s} {target_name:12s} {result.first_loss.mean():6.2f} -> "
                      f"{result.last_loss.mean():6.2f}            {moved.median():.2f}")


def free(args) -> None:
    model, tokenizer = load_model_and_tokenizer(args.model)
    module = architecture_of(model).ffn_at(args.layer)
    targets = [ValueTarget(r.prompt, r.subject, r.target_new) for r in read_zsre(args.zsre).requests[:args.n]]
    config = {"weight_decay": 0.5, "kl_factor": 0.0625, "clamp_norm_factor": 4.0}
    unconstrained = {"weight_decay": 0.0, "kl_factor": 0.0, "clamp_norm_factor": 1e6}
    variants = {"config (weight decay 0.5, KL 0.0625, clamp 4)": config, "no penalty, KL, clamp; lr 0.5":
                unconstrained, "no penalty, KL, clamp; lr 5": {**unconstrained, "lr": 5.0}}
    for name, settings in variants.items():
        hp = ValueHyperparams(**{"steps": 40, "lr": 0.5, **settings})
        result = optimize_values(model, tokenizer, module, targets, hp, ("{}",))
        moved = (result.values - result.initial_outputs).norm(dim=1) / result.initial_outputs.norm(dim=1)
        print(f"{name:46s} loss {result.first_loss.mean():.2f} -> {result.last_loss.mean():.2f}; |δ|/|h| "
              f"{moved.min():.2f}..{moved.max():.2f}")


def tiny_llama(kind: str, folder: Path) -> Path:
    if kind == "tests":
        sys.path.insert(0, str(ROOT))
        from tests.conftest import make_tiny_model
        return make_tiny_model("llama", folder)
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_check import build_tiny_llama
    return build_tiny_llama(folder, hidden=128, layers=4, inner=352, heads=4, kv_heads=2)


def penalty(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = load_model_and_tokenizer(str(tiny_llama(args.tiny, Path(tmp) / "llama")))
    module = architecture_of(model).ffn_at(args.layer)
    requests = read_zsre(WORLD).requests[1:args.n + 1]
    variants = {"weight decay 0.5": {}, "weight decay 0": {"weight_decay": 0.0}, "weight decay 0.5, lr 0.005":
                {"lr": 0.005}}
    for name, change in variants.items():
        hp = ValueHyperparams(**{"steps": 25, "lr": 0.5, "clamp_norm_factor": 4.0, "weight_decay": 0.5, **change})
        rows = []
        for r in requests:
            result = optimize_values(model, tokenizer, module, [ValueTarget(r.prompt, r.subject, r.target_new)], hp,
                                     ("{}",))
            h, delta = result.initial_outputs[0], result.values[0] - result.initial_outputs[0]
            with torch.no_grad(), rewrite_output(model, {module: at_subject(r.prompt, r.subject, tokenizer, delta)}):
                [score] = score_answers(model, tokenizer, [r.prompt.format(r.subject)], [r.target_new])
            term = hp.weight_decay * float(delta.norm()) / float(h.norm()) ** 2
            last = float(result.last_loss[0])
            rows.append((float(result.first_loss[0]), last, score.mean_nll, term, last - score.mean_nll - term,
                         float(h.norm()), float(delta.norm() / h.norm())))
        first, last, nll, term, kl, h_norm, moved = zip(*rows)
        print(f"{name:26s} loss {stats.mean(first):.2f} -> {min(last):.1f}..{max(last):.1f}; at the end NLL "
              f"{stats.mean(nll):.2f}, penalty {stats.mean(term):.1f}, KL {stats.mean(kl):.3f}; |h| "
              f"{min(h_norm):.3f}..{max(h_norm):.3f}, |δ|/|h| {stats.mean(moved):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("measurement", choices=["gradient", "swap", "free", "penalty"])
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "factworld-gpt2"))
    parser.add_argument("--zsre", default=str(REAL), help="the real ZsRE file")
    parser.add_argument("--n", type=int, default=10, help="requests per set")
    parser.add_argument("--layer", type=int, default=0, help="gradient / free / penalty: the FFN layer δ is added to")
    parser.add_argument("--tiny", choices=["bench", "tests"], default="bench", help="penalty: which tiny LLaMA")
    args = parser.parse_args()
    torch.manual_seed(0)
    {"gradient": gradient, "swap": swap, "free": free, "penalty": penalty}[args.measurement](args)


if __name__ == "__main__":
    main()
