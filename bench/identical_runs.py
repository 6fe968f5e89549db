"""Whether two run folders hold the same results: every number of ``metrics.json`` but the wall times,
``steps.csv`` and ``requests.csv`` cell by cell (the ``seconds`` column aside), and ``edits.safetensors`` tensor by
tensor, bit for bit. Prints each difference and exits 1 if there is one.

    python bench/identical_runs.py RUN_A RUN_B
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from safetensors.torch import load_file


def json_differences(a, b, path: str = "") -> list[tuple[str, object, object]]:
    """Every place where two JSON values differ, keys named ``seconds`` aside."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key == "seconds":
                continue
            if key not in a or key not in b:
                out.append((f"{path}/{key}", a.get(key, "<absent>"), b.get(key, "<absent>")))
            else:
                out += json_differences(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, a, b)]


def csv_differences(a: Path, b: Path) -> list[tuple[str, object, object]]:
    rows_a, rows_b = list(csv.DictReader(a.open())), list(csv.DictReader(b.open()))
    if len(rows_a) != len(rows_b):
        return [(a.name, f"{len(rows_a)} rows", f"{len(rows_b)} rows")]
    return [(f"{a.name}[{i}].{column}", x.get(column), y.get(column)) for i, (x, y) in enumerate(zip(rows_a, rows_b))
            for column in sorted(set(x) | set(y)) if column != "seconds" and x.get(column) != y.get(column)]


def tensor_differences(a: Path, b: Path) -> list[tuple[str, object, object]]:
    ta, tb = load_file(a), load_file(b)
    if set(ta) != set(tb):
        return [(a.name, sorted(ta), sorted(tb))]
    return [(f"{a.name}:{name}", "differs", "") for name in sorted(ta)
            if ta[name].dtype != tb[name].dtype or ta[name].shape != tb[name].shape or not (ta[name] == tb[name]).all()]


def main(a: Path, b: Path) -> int:
    differences = json_differences(json.loads((a / "metrics.json").read_text()),
                                   json.loads((b / "metrics.json").read_text()), "metrics.json")
    for name in ("steps.csv", "requests.csv"):
        differences += csv_differences(a / name, b / name)
    differences += tensor_differences(a / "edits.safetensors", b / "edits.safetensors")
    for where, left, right in differences:
        print(f"{where}: {left!r} | {right!r}")
    print(f"{len(differences)} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
