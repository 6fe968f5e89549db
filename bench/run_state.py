"""Size and cost of an editing run's run state (``trainer.checkpoint_every_n_batches``), per method on the
fact-world model: the size of ``run_state.pt`` and of its parts (edited weights, editor state, history), the
time of one save, and that time against the edit of one batch (steps.csv ``seconds``: the editor alone, no
scoring, so the ratio is an upper bound of the overhead of a run state after every batch); ``run s/step`` is
the whole run's wall time per batch, setup and evaluation included.

    python bench/run_state.py [--methods memit comeba d4s alphaedit] [--n 20] [--batch-size 10]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lit_edit.cli import LitEditCLI
from lit_edit.run_state import STATE_FILE, load_run_state


def _nbytes(obj) -> int:
    """Serialised size of ``obj`` (what it adds to the file)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def measure(method: str, n: int, batch_size: int, folder: Path) -> dict:
    """One run of ``configs/edit/methods/factworld/<method>.yaml`` with a run state after every batch."""
    cli = LitEditCLI(args=["--config", "configs/edit/models/factworld.yaml",
                           "--config", f"configs/edit/methods/factworld/{method}.yaml", "--data.init_args.n", str(n),
                           "--data.init_args.batch_size", str(batch_size), "--trainer.eval_every_n_batches", "0",
                           "--trainer.checkpoint_every_n_batches", "1", "--trainer.logger", "false",
                           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(folder),
                           "--model.init_args.results_dir", str(folder / method)], run=False)
    started = time.perf_counter()
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    wall = time.perf_counter() - started
    steps = list(csv.DictReader((folder / method / "steps.csv").open()))
    state = load_run_state(folder / method)
    saves = cli.trainer.test_loop.save_seconds
    return {"method": cli.model.editor.name, "file_mb": (folder / method / STATE_FILE).stat().st_size / 2**20,
            "weights_mb": _nbytes(state["weights"]) / 2**20, "editor_mb": _nbytes(state["editor"]) / 2**20,
            "history_kb": len(state["history"]) / 2**10, "saves": len(saves), "save_s": statistics.median(saves),
            "edit_s": statistics.median(float(r["seconds"]) for r in steps), "step_s": wall / len(steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["memit", "comeba", "d4s", "alphaedit"])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    print(f"{'method':<12} {'file MB':>8} {'weights':>8} {'editor':>8} {'history':>9} {'save s':>7} "
          f"{'edit s':>7} {'run s/step':>10} {'save/edit':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            r = measure(method, args.n, args.batch_size, Path(tmp))
            print(f"{r['method']:<12} {r['file_mb']:8.2f} {r['weights_mb']:8.2f} {r['editor_mb']:8.2f} "
                  f"{r['history_kb']:7.1f}KB {r['save_s']:7.3f} {r['edit_s']:7.2f} {r['step_s']:7.2f} "
                  f"{r['save_s'] / r['step_s']:9.2%}   ({r['saves']} saves)", flush=True)


if __name__ == "__main__":
    main()
