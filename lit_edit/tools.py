"""Jobs that are neither ``fit`` nor ``test``:
``python -m lit_edit.tools {build_world,build_skills,build_edit_sets,acceptance,apply_edits,export_edits,fetch_data}
--help``, and ``python -m lit_edit.tools {sweep,report} --help`` (grids of runs and their tables:
``lit_edit/experiments/``).

Each job imports the heavier modules it needs inside its function, for start-up speed: ``--help`` and the light jobs do
not load the models, the export or the acceptance measurement."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

from jsonargparse import CLI

from lit_edit.data.fetch import fetch_data
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


def build_skills(world: str = "data/factworld", tasks: list[str] | None = None, n_per_task: int = 20000,
                 seed: int = 7, name: str = "skills") -> None:
    """Write ``corpus/{name}.jsonl`` into the fact world: many training examples of the comparison mini tasks
    (or ``tasks``), their answers marked, none a test prompt (``lit_edit.factworld.skills``).

    Args:
        world: the fact-world folder.
        tasks: mini tasks to generate (default: closed_domain_qa, nli, dialogue), or the direct variants
            closed_domain_qa_direct, nli_direct (the passage or premise holds only the statement in question) and
            closed_domain_qa_search, nli_search (that statement among one or two of the person's other facts).
        n_per_task: examples per task.
        seed: generator seed.
        name: the file's name in ``corpus/`` (a fit config lists it in ``data.init_args.train_files``).
    """
    from lit_edit.factworld.skills import COMPARISON_TASKS
    from lit_edit.factworld.skills import build_skills as write

    started = time.time()
    path = write(world, tuple(tasks or COMPARISON_TASKS), n_per_task, seed, name)
    print(f"skills corpus written to {path} in {time.time() - started:.1f} s")


def build_edit_sets(world: str = "data/factworld", out: str = "data/factworld/zsre/sets",
                    lengths: list[int] | None = None, levels: list[str] | None = None, seed: int = 0) -> None:
    """Write ZsRE edit sets of the fact world that vary in diversity (``levels``) and length (``lengths``), one file
    per (level, length), and ``index.json`` / ``index.csv`` with what each spans (``lit_edit.factworld.edit_sets``).

    Args:
        world: the fact-world folder (its ``world.json``).
        out: the folder to write.
        lengths: requests per set (default 10 20 50 100 200); a level's longer set extends its shorter ones.
        levels: diversity levels (default all): one_relation, all_relations, subject_pairs, shared_subjects.
        seed: generator seed.
    """
    from pathlib import Path

    from lit_edit.factworld import edit_sets
    from lit_edit.factworld.acceptance import load_world

    if not (Path(world) / "world.json").is_file():
        raise FileNotFoundError(f"--world {world}: no world.json there; build the fact world first "
                                f"(python -m lit_edit.tools build_world --out {world})")
    rows = edit_sets.build_edit_sets(load_world(Path(world)), out, list(levels or edit_sets.LEVELS),
                                     list(lengths or edit_sets.DEFAULT_LENGTHS), seed)
    for row in rows:
        print(f"{row['file']:28s} relations {row['relations']:2d}  subjects {row['subjects']:3d}  "
              f"requests per subject {row['mean_requests_per_subject']:g}")
    print(f"{len(rows)} edit sets and index.json / index.csv written to {out}")


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
        extra = f"  p {r['p_value']:.1e}" if "p_value" in r else ""
        if "score_unhinted" in r:
            extra += f"  (unhinted {r['score_unhinted']:.3f}, p {r['p_value_unhinted']:.1e})"
        print(f"{task:18s} {r['metric']:12s} {r['score']:.3f}  chance {r['chance']:.3f}{extra}")
    if out:
        atomic_write_text(out, json.dumps(report, indent=2))
    return report


def apply_edits(base: str, edits: str, out: str, allow_other_base: bool = False, fold_hooks: bool = False,
                dtype: str = "float32", overwrite: bool = False) -> str:
    """Apply an edits file (a run's ``edits.safetensors``) to its base model and write the edited model as a
    Hugging Face folder.

    Args:
        base: the unedited model folder the edits were made on.
        edits: the edits file.
        out: the Hugging Face folder to write (atomically): a new or empty folder, or a previous export of
            lit-edit with ``--overwrite true``; never the current folder, the base model's or the edits' run folder.
        allow_other_base: apply to a model with the base's shapes but other weights (warns).
        fold_hooks: for hook-layer edits (COMEBA-HK), write W0 + ΔW into the weights; the per-token gate is lost.
        dtype: the dtype to load the base in (the one the run used).
        overwrite: replace a previous lit-edit export in ``out``.
    """
    from pathlib import Path

    from lit_edit import export
    from lit_edit.export_folder import ExportTarget
    from lit_edit.models import load_model_and_tokenizer

    target = ExportTarget(Path(out), "--out", "--overwrite", overwrite,
                          (("the base model (--base)", Path(base)), ("the run folder of --edits", Path(edits).parent)))
    target.check()     # before the model is loaded
    model, tokenizer = load_model_and_tokenizer(base, dtype)
    applied = export.apply_edits(model, edits, allow_other_base)
    export.export_model(model, tokenizer, target, hooks=applied.bank, fold_hooks=fold_hooks)
    print(f"{applied.metadata['n_edits']} edits ({applied.metadata['method']}) of {base} written to {out}")
    return out


def export_edits(run: str, out: str | None = None, overwrite: bool = False) -> str:
    """Write a run's ``edits.safetensors`` from its run state (``trainer.checkpoint_every_n_batches``).

    Args:
        run: the run folder (or its ``run_state.pt``).
        out: the file to write; default: ``edits.safetensors`` in the run folder. A new file, or an edits file
            with ``--overwrite true``.
        overwrite: replace an edits file already at ``out``.
    """
    from lit_edit.export import export_run_state

    path = export_run_state(run, out, overwrite)
    print(f"edits written to {path} ({path.stat().st_size} bytes)")
    return str(path)


def main(args: list[str] | None = None) -> None:
    from lit_edit.error_report import run_reporting_errors
    from lit_edit.experiments.cli import COMMANDS
    from lit_edit.experiments.cli import main as experiments_main

    if (sys.argv[1:] if args is None else args)[:1] in [[command] for command in COMMANDS]:
        return run_reporting_errors(lambda: experiments_main(args))     # their own parser: positional arguments
    run_reporting_errors(lambda: CLI([build_world, build_skills, build_edit_sets, acceptance, apply_edits,
                                      export_edits, fetch_data],
                                     as_positional=False, args=args, exit_on_error=False,
                                     description="Also: sweep, report (python -m lit_edit.tools sweep --help)."))


if __name__ == "__main__":
    main()
