"""The main job's value optimisation at two commits, alternated in fresh processes on the same machine.

MEMIT's values of the main job (configs/edit/default.yaml): δ at the output of block 1 of
``checkpoints/factworld-gpt2``, its value settings (25 steps, lr 0.5, KL 0.0625, weight decay 0.5, clamp 4), its
context templates (one sample of 10 new tokens per MEMIT seed word, seed 0) and its first ``--batches`` batches of 10
edit requests, each optimised on the unedited model. Each commit's tree is exported (``git archive``) and a child
process (this script with ``--child``, ``PYTHONPATH`` at that tree) times the batches; the commits alternate
``--repeats`` times and the fastest of each is kept. The children also print a digest of every result, so equal
digests show bit-identical values.

    python bench/value_steps_pair.py BASELINE [CANDIDATE=HEAD] [--batches 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from main_job_pair import export  # noqa: E402


def child(batches: int) -> None:
    import dataclasses

    import torch

    from lit_edit.data import EditDataModule
    from lit_edit.editing.contexts import sample_context_templates
    from lit_edit.editing.values import ValueHyperparams, optimize_values
    from lit_edit.editors.base import value_targets
    from lit_edit.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer("checkpoints/factworld-gpt2")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    data = EditDataModule(root="data/factworld", n=10 * batches, batch_size=10)
    data.setup("test")
    templates = sample_context_templates(model, tokenizer, lengths=(10,), length_rule="new")
    hp = ValueHyperparams(steps=25, lr=0.5, kl_factor=0.0625, weight_decay=0.5, clamp_norm_factor=4.0)
    digest = hashlib.sha256()
    started = time.perf_counter()
    for start in range(0, len(data.requests), 10):
        result = optimize_values(model, tokenizer, "transformer.h.1", value_targets(data.requests[start:start + 10]),
                                 hp, templates)
        for field in dataclasses.fields(result):
            digest.update(getattr(result, field.name).cpu().numpy().tobytes())
    print(f"{time.perf_counter() - started:.3f} {digest.hexdigest()[:16]} {torch.get_num_threads()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", nargs="?")
    parser.add_argument("candidate", nargs="?", default="HEAD")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.batches)
        return
    with tempfile.TemporaryDirectory() as tmp:
        trees = {label: (Path(tmp) / label, export(commit, Path(tmp) / label))
                 for label, commit in (("baseline", args.baseline), ("candidate", args.candidate))}
        times: dict[str, list[float]] = {label: [] for label in trees}
        digests: dict[str, set[str]] = {label: set() for label in trees}
        for _ in range(args.repeats):
            for label, (tree, commit) in trees.items():
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--batches",
                                      str(args.batches)], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                                     check=True, capture_output=True, text=True).stdout.split()
                times[label].append(float(out[0]))
                digests[label].add(out[1])
                print(f"{label} {commit}: {out[0]} s, results {out[1]}, {out[2]} thread(s), load average "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
        best = {label: min(seconds) for label, seconds in times.items()}
        print(f"best: baseline {best['baseline']:.2f} s, candidate {best['candidate']:.2f} s, "
              f"ratio {best['baseline'] / best['candidate']:.2f}x; results bit-identical: "
              f"{digests['baseline'] == digests['candidate'] and len(digests['baseline']) == 1}")


if __name__ == "__main__":
    main()
