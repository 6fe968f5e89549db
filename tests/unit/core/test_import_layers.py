"""The import contracts (``[importlinter]`` in setup.cfg, docs/architecture.md): the package keeps them; a module that
imports upwards or across independent siblings, a module placed in no layer, or Lightning imported below the run
breaks them, with the import or the module named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import importlinter  # noqa: F401  (the test extras install it: pip install -e ".[test]")

from tests.conftest import ROOT

LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def check_contract(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``lit_edit`` package and the setup.cfg found under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def package_copy(tmp_path: Path) -> Path:
    """The package's sources and its setup.cfg, copied under ``tmp_path``."""
    shutil.copytree(ROOT / "lit_edit", tmp_path / "lit_edit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    return tmp_path


def test_the_package_keeps_the_import_contracts():
    result = check_contract(ROOT)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "2 kept, 0 broken" in report, report


def test_an_upward_import_from_the_core_breaks_the_contract(tmp_path):
    root = package_copy(tmp_path)
    io = root / "lit_edit" / "io.py"
    line = len(io.read_text(encoding="utf-8").splitlines()) + 1
    with open(io, "a", encoding="utf-8") as f:
        f.write("import lit_edit.modules\n")
    result = check_contract(root)
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "lit_edit.io is not allowed to import lit_edit.modules" in report, report
    assert f"lit_edit.io -> lit_edit.modules (l.{line})" in report, report


def test_an_import_between_independent_siblings_breaks_the_contract(tmp_path):
    root = package_copy(tmp_path)
    with open(root / "lit_edit" / "editing" / "rank_one.py", "a", encoding="utf-8") as f:
        f.write("import lit_edit.tasks.formats\n")
    result = check_contract(root)
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "lit_edit.editing is not allowed to import lit_edit.tasks" in report, report
    assert "lit_edit.editing.rank_one -> lit_edit.tasks.formats" in report, report


def test_a_module_in_no_layer_breaks_the_contract(tmp_path):
    root = package_copy(tmp_path)
    (root / "lit_edit" / "unplaced.py").write_text('"""A module the contract does not place."""\n', encoding="utf-8")
    result = check_contract(root)
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "unplaced" in report, report


def test_lightning_below_the_run_breaks_the_contract(tmp_path):
    root = package_copy(tmp_path)
    with open(root / "lit_edit" / "scoring.py", "a", encoding="utf-8") as f:
        f.write("import lightning\n")
    result = check_contract(root)
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "lit_edit.scoring is not allowed to import lightning" in report, report
    assert "lit_edit.scoring -> lightning" in report, report
