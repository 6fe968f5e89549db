"""What ``main.py`` and ``python -m lit_edit.tools`` print when they refuse an input: one ``error:`` line naming the
option, file or record at fault and the fix, exit status 2, no traceback, no usage text or configuration dump;
``LIT_EDIT_DEBUG=1`` raises the exception with its traceback instead. Nothing is written for a refused run."""

from __future__ import annotations

import json
import shutil

import pytest

from lit_edit.cli import main
from lit_edit.editors import EDITORS
from tests.cli.reliability.refusals import assert_refused, refusal, run_command
from tests.conftest import FACTWORLD, ROOT
from tests.edit_configs import method_config

FT_CONFIG = method_config("ft")


def _quiet(tmp_path) -> list[str]:
    return ["--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar",
            "false", "--model.init_args.results_dir", str(tmp_path / "run"),
            "--model.init_args.cache_dir", str(tmp_path / "cache")]


def test_an_option_typo_is_one_line_without_the_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *FT_CONFIG, "--model.init_args.editor.init_args.layerz", "[1]", *_quiet(tmp_path)])
    text = refusal(capsys.readouterr().err, exit_info.value.code)
    assert text == ("error: option model.init_args.editor.init_args.layerz is not accepted (a typo? --help lists the "
                    "options)")


def test_an_edit_record_past_the_context_is_refused_before_the_run_folder_exists(tmp_path):
    records = json.loads((FACTWORLD / "zsre" / "zsre_factworld.json").read_text())[:2]
    records[1]["src"] = "so " * 300 + records[1]["src"]
    (tmp_path / "edits.json").write_text(json.dumps(records))
    result = run_command("main.py", "test", *FT_CONFIG, "--data.init_args.path",
                         str(tmp_path / "edits.json"), "--data.init_args.n", "null", *_quiet(tmp_path))
    assert_refused(result, r"edits.json\[1\]: record zsre:1 field 'prompt \+ target_new' is \d+ tokens long, past the "
                           r"model's limit of 256 positions; shorten the record")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_the_tools_refuse_a_model_folder_in_one_line(tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(ROOT / "checkpoints" / "factworld-gpt2" / name, folder / name)
    result = run_command("-m", "lit_edit.tools", "acceptance", "--model", str(folder),
                         "--out", str(tmp_path / "a.json"))
    assert_refused(result, r"^error: '.*weights-only' holds no tokenizer")
    assert not (tmp_path / "a.json").exists()


def test_an_unknown_editor_lists_the_editors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *FT_CONFIG, "--model.init_args.editor.class_path", "lit_edit.editors.MEMITT",
              *_quiet(tmp_path)])
    text = refusal(capsys.readouterr().err, exit_info.value.code)
    assert "option model.init_args.editor.class_path: module 'lit_edit.editors' has no attribute 'MEMITT'" in text
    assert text.endswith("the editors are " + ", ".join(f"lit_edit.editors.{c.__name__}" for c in EDITORS.values()))


def test_a_missing_edit_file_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *FT_CONFIG, "--data.init_args.path", str(tmp_path / "nowhere.json"),
              *_quiet(tmp_path)])
    text = refusal(capsys.readouterr().err, exit_info.value.code)
    assert text == f"error: edit set {tmp_path / 'nowhere.json'} does not exist"
    assert not (tmp_path / "run").exists()


def test_lit_edit_debug_raises_the_exception_instead(tmp_path, monkeypatch, capsys):
    args = ["test", *FT_CONFIG, "--data.init_args.path", str(tmp_path / "nowhere.json"), *_quiet(tmp_path)]
    for value in ("", "0"):
        monkeypatch.setenv("LIT_EDIT_DEBUG", value)
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        refusal(capsys.readouterr().err, exit_info.value.code)
    monkeypatch.setenv("LIT_EDIT_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="nowhere.json does not exist") as raised:
        main(args)
    assert raised.traceback and "error:" not in capsys.readouterr().err
