"""What a user sees of the CLI: ``--help`` says what fit and test do here, ``test --help`` lists every editor with
its options, and a run's stderr carries none of the third-party notices that lit_edit/third_party_notices.py
silences (while other warnings still show)."""

import logging
import os
import subprocess
import sys
import warnings

import docstring_parser
import pytest

from lit_edit.cli import main
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import EDITORS
from lit_edit.editors.options import editor_options, option_docstrings
from lit_edit.third_party_notices import (
    IGNORED_LOG_PREFIXES,
    IGNORED_WARNINGS,
    LIGHTNING_RANK_ZERO_LOGGER,
    silence_third_party_notices,
)
from tests.conftest import ROOT
from tests.edit_configs import method_config


def _help(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def _joined(text: str) -> str:
    """The text without whitespace, so that wrapping does not matter."""
    return "".join(text.split())


def test_main_help_says_what_fit_and_test_do(capsys):
    out = _help(capsys)
    fit = out[out.index("    fit "):out.index("    validate ")]
    test = out[out.index("    test "):out.index("    predict ")]
    assert "pretrain" in fit and "MEND" in fit and "configs/fit/" in _joined(fit)
    assert "edit" in test and "downstream" in test and "configs/eval/tasks.yaml" in _joined(test)
    for lightning_generic in ("Runs the full optimization routine", "Perform one evaluation epoch over the test set",
                              "Lightning Trainer command line tool"):
        assert lightning_generic not in out


def _editor_block(out: str, name: str, cls: type) -> str:
    blocks = [block for block in out.split("\n\n") if block.startswith(f"  {name}: lit_edit.editors.{cls.__name__}.")]
    assert len(blocks) == 1, f"test --help lists {name} ({cls.__name__}) {len(blocks)} times"
    return blocks[0]


def test_test_help_lists_every_editor_and_its_options(capsys):
    out = _help(capsys, "test")
    assert set(EDITORS) >= {"ft", "memit", "rome", "kn", "mend", "rect", "d4s", "comeba", "alphaedit"}
    for name, cls in EDITORS.items():
        block = _joined(_editor_block(out, name, cls))
        for option in editor_options(cls):
            assert f"{option}=" in block, f"{name}: option {option} missing from test --help"
        documented = [param for doc in option_docstrings(cls) for param in docstring_parser.parse(doc).params]
        assert documented, (f"{cls.__name__} documents no option (Attributes: of its hyperparameter dataclass, or "
                            "Args: of its docstring)")
        first = documented[0]
        assert _joined(first.description) in block, f"{name}: the description of {first.arg_name} is missing"
    values = _joined(out[out.index("\n  values ("):])
    for field, text in (("steps", "S; at most S−1 Adam steps are taken."), ("kl_factor", "weight of the KL term.")):
        assert f"{field}={getattr(ValueHyperparams(), field)}:{_joined(text)}" in values


def test_filters_are_narrow():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_notices()
        for message, category, module in IGNORED_WARNINGS:
            warnings.warn_explicit(message + " ...", category, "third_party.py", 1, module=module)
            warnings.warn_explicit(message + " ...", category, "lit_edit/x.py", 1, module="lit_edit.x")
            warnings.warn_explicit(message + " ...", RuntimeWarning, "third_party.py", 1, module=module)
    shown = [(str(w.message), w.category, w.filename) for w in caught]
    assert len(shown) == 2 * len(IGNORED_WARNINGS)
    assert all(filename == "lit_edit/x.py" or category is RuntimeWarning for _, category, filename in shown)
    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)

    def passes(text: str) -> bool:
        return bool(logger.filter(logger.makeRecord(logger.name, logging.INFO, "x.py", 1, text, (), None)))

    assert not passes(IGNORED_LOG_PREFIXES[0] + " try installing litlogger")
    assert passes("GPU available: False, used: False")


def test_short_run_prints_no_silenced_notice(tmp_path):
    result = subprocess.run(
        [sys.executable, "main.py", "test", *method_config("ft"), "--data.init_args.n", "2",
         "--model.init_args.families", "[token]", "--model.init_args.monitor_text", "null",
         "--model.init_args.editor.init_args.steps", "2", "--trainer.logger.init_args.save_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[lit-edit] 2 edits" in result.stdout
    for message, _, _ in IGNORED_WARNINGS:
        assert message not in result.stderr
    for prefix in IGNORED_LOG_PREFIXES:
        assert prefix not in result.stderr


def _without_prog(help_text: str) -> str:
    """A help text with the program name taken out of its usage line (``usage: PROG [-c CONFIG] ...``)."""
    usage, _, rest = help_text.partition("\n")
    return usage.split(" ", 2)[2] + "\n" + rest


def test_main_help_alone_is_lightnings_text_without_importing_lightning(capsys, monkeypatch):
    """``python main.py --help`` is answered by a parser built without Lightning or torch; it must say exactly
    what LightningCLI's main parser says (options, subcommands, descriptions)."""
    monkeypatch.setenv("COLUMNS", "100")
    full = _help(capsys)
    script = ("import runpy, sys\nsys.argv = ['main.py', '--help']\ntry:\n    runpy.run_path('main.py', "
              "run_name='__main__')\nexcept SystemExit as exited:\n    assert exited.code == 0, exited.code\n"
              "print([m for m in sys.modules if m.split('.')[0] in ('lightning', 'torch')])\n")
    quick = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "COLUMNS": "100"})
    text, _, imported = quick.stdout.rstrip().rpartition("\n")
    assert imported == "[]"
    assert _without_prog(text.rstrip()) == _without_prog(full.rstrip())
    for name in ("fit", "validate", "test", "predict", "--print_config", "--config"):
        assert name in text
