"""Editor options that cannot work are refused when the editor is built (before the model is loaded), or, for a
layer past the model's last, when the editing module has loaded the model: before any statistics, scoring or run
folder. Each message names the option as a config names it."""

from __future__ import annotations

import pytest

from lit_edit.editors import D4S, FT, KN, MEMIT, MEND, ROME, AlphaEdit
from lit_edit.modules import EditingModule
from tests.cli.reliability.refusals import refusal
from tests.edit_configs import method_config


@pytest.mark.parametrize("build, problem", [
    (lambda: MEMIT(layers=[]), r"model.editor.layers is empty; name at least one layer to edit"),
    (lambda: MEMIT(layers=[1, 1]), r"model.editor.layers names layer\(s\) \[1\] more than once: \[1, 1\]"),
    (lambda: D4S(layers=[]), r"model.editor.layers is empty"),
    (lambda: AlphaEdit(layers=[2, 3, 2]), r"model.editor.layers names layer\(s\) \[2\] more than once"),
    (lambda: FT(layers=[0, -1]), r"model.editor.layers: \[-1\] are not layer indices \(whole numbers >= 0\)"),
    (lambda: KN(layers=[]), r"model.editor.layers is empty"),
    (lambda: MEND(layers=[4, 4]), r"model.editor.layers names layer\(s\) \[4\] more than once"),
    (lambda: ROME(layer=-2), r"model.editor.layer: \[-2\] are not layer indices"),
    (lambda: MEMIT(layers=[1], preservation_weight=-5.0), r"model.editor.preservation_weight must be >= 0, got -5.0"),
    (lambda: MEMIT(layers=[1], template_tokens=0),
     r"model.editor.template_tokens must be one or more lengths >= 1, got \[0\]"),
], ids=["memit-empty", "memit-repeat", "d4s-empty", "alphaedit-repeat", "ft-negative", "kn-empty", "mend-repeat",
        "rome-negative", "memit-lambda", "memit-templates"])
def test_editor_options_are_refused_when_the_editor_is_built(build, problem):
    with pytest.raises(ValueError, match=problem):
        build()


def test_a_layer_past_the_model_is_refused_when_the_model_is_loaded(tiny_gpt2_dir, tmp_path):
    with pytest.raises(ValueError, match=r"model.editor.layers: layer\(s\) \[5\] are outside the gpt2 model, which "
                                         r"has layers 0..2"):
        EditingModule(str(tiny_gpt2_dir), MEMIT(layers=[1, 5]), results_dir=str(tmp_path / "run"),
                      cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_main_refuses_an_empty_layer_list_in_one_line(tmp_path, capsys):
    from lit_edit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["test", *method_config("memit"),
              "--model.init_args.editor.init_args.layers", "[]", "--trainer.logger", "false",
              "--model.init_args.results_dir", str(tmp_path / "run"),
              "--model.init_args.cache_dir", str(tmp_path / "cache")])
    text = refusal(capsys.readouterr().err, exit_info.value.code)
    assert "model.editor.layers is empty; name at least one layer to edit" in text
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
