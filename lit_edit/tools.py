"""Jobs that are neither ``fit`` nor ``test``: ``python -m lit_edit.tools {build-world,acceptance} --help``."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from jsonargparse import CLI

from lit_edit.factworld.build import WorldSettings, build
from lit_edit.io import atomic_write_text


def build_world(out: str = "data/factworld", seed: int = 0, n_people: int = 200, n_edits: int = 1000,
                n_task_train: int = 600, n_task_test: int = 200, vocab_size: int = 4096) -> None:
    """Generate the fact world (world, corpus, edit sets, mini tasks, tokenizers) into ``out``.

    Args:
        out: output folder.
        seed: generator seed.
        n_people: number of people.
        n_edits: records per edit set.
        n_task_train: training examples per mini task.
        n_task_test: test examples per mini task.
        vocab_size: BPE vocabulary size.
    """
    settings = WorldSettings(seed=seed, n_people=n_people, n_edits=n_edits, n_task_train=n_task_train,
                             n_task_test=n_task_test, vocab_size=vocab_size)
    build(out, settings)
    print(f"fact world written to {out}: {json.dumps(asdict(settings))}")


def acceptance(model: str = "checkpoints/factworld-gpt2", world: str = "data/factworld", out: str | None = None,
               device: str = "cpu") -> dict:
    """Measure whether a model knows its fact world (recall, held-out wordings, perplexity, mini tasks).

    Args:
        model: the model folder.
        world: the fact-world folder.
        out: also write the report as JSON here.
        device: torch device.
    """
    from lit_edit.factworld.acceptance import acceptance as measure
    from lit_edit.models import load_model_and_tokenizer

    started = time.time()
    lm, tokenizer = load_model_and_tokenizer(model, device=device)
    report = {"model": model, "world": world, **measure(lm, tokenizer, world), "seconds": None}
    report["seconds"] = round(time.time() - started, 1)
    for key in ("fact_recall_train_templates", "fact_recall_heldout_templates", "one_hop_recall",
                "heldout_perplexity"):
        print(f"{key:32s} {report[key]:.4f}")
    for task, r in report["tasks"].items():
        extra = f"  (unhinted {r['score_unhinted']:.3f})" if "score_unhinted" in r else ""
        print(f"{task:18s} {r['metric']:12s} {r['score']:.3f}  chance {r['chance']:.3f}{extra}")
    if out:
        atomic_write_text(out, json.dumps(report, indent=2))
    return report


def main() -> None:
    CLI([build_world, acceptance], as_positional=False)


if __name__ == "__main__":
    main()
