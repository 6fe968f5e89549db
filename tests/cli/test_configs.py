"""Every shipped config parses against the current code (``--print_config``), so a renamed option cannot leave a
config behind. Editing configs parse as they are run: each method config (``configs/edit/methods/<model>/``) stacked
on its model config (``configs/edit/models/<model>.yaml``), mode and overlay configs on a base stack. The parsed run
config holds every value the stacked files give, a later file's value winning (a plain merge of the YAML files)."""

from __future__ import annotations

import importlib

import pytest
import yaml

from lit_edit.editors import EDITORS
from tests.conftest import ROOT
from tests.edit_configs import EDIT, header_stack, method_stacks, printed_config

BASE = ("configs/edit/models/factworld.yaml", "configs/edit/methods/factworld/memit.yaml")
STACKED = ("models", "methods", "modes", "downstream", "strategies")   # folders of configs/edit/ run only stacked


def _overlay_stacks() -> list[tuple[str, ...]]:
    """A downstream overlay on its model's MEMIT config (the real test sets' overlay on GPT-2 XL's), a strategy on
    the base stack."""
    def model(overlay) -> str:
        return overlay.stem if (EDIT / "models" / f"{overlay.stem}.yaml").is_file() else "gpt2-xl"
    downstream = [(f"configs/edit/models/{model(p)}.yaml", f"configs/edit/methods/{model(p)}/memit.yaml",
                   str(p.relative_to(ROOT))) for p in sorted(EDIT.glob("downstream/*.yaml"))]
    strategies = [(*BASE, str(p.relative_to(ROOT))) for p in sorted(EDIT.glob("strategies/*.yaml"))]
    return downstream + strategies


def _alone() -> list[tuple[str]]:
    """The configs run alone: all but the folders of stacked configs."""
    found = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))
    # experiment files are the sweep's input, not main.py's (tests/unit/experiments/test_shipped_experiments.py)
    return [(str(p),) for p in found if not (p.parts[1] == "edit" and p.parts[2] in STACKED)
            and p.parts[1] != "experiments"]


def _merge(earlier, later, path: str = "the config"):
    """Two YAML documents merged: mappings key by key, anything else replaced by the later one. A shipped stack never
    switches a class (the parser would keep the earlier class's options the new one accepts)."""
    if not (isinstance(earlier, dict) and isinstance(later, dict)):
        return later
    assert earlier.get("class_path", later.get("class_path")) == later.get("class_path", earlier.get("class_path")), \
        f"{path}: a later file switches {earlier['class_path']} to {later['class_path']}"
    return {**earlier, **{key: _merge(earlier[key], value, f"{path}.{key}") if key in earlier else value
                          for key, value in later.items()}}


def _mismatch(printed, given, path: str = "") -> str | None:
    """The first place where ``printed`` lacks a value of ``given`` (mappings may hold more keys, lists match item by
    item), or None."""
    if isinstance(given, dict) and given:
        if not isinstance(printed, dict):
            return path or "the config"
        for key, value in given.items():
            where = f"{path}.{key}".lstrip(".")
            found = _mismatch(printed[key], value, where) if key in printed else where
            if found:
                return found
        return None
    if isinstance(given, list) and isinstance(printed, list) and len(given) == len(printed):
        return next(filter(None, (_mismatch(p, g, f"{path}[{i}]") for i, (p, g) in enumerate(zip(printed, given)))),
                    None)
    return None if printed == given else path


@pytest.mark.parametrize("stack", [*_alone(), *method_stacks(), *_overlay_stacks()], ids="+".join)
def test_config_parses_to_the_values_its_files_give(stack, capsys):
    printed = printed_config(stack, capsys)
    assert printed["model"]["class_path"].startswith("lit_edit.")
    assert "class_path" in printed["data"]
    merged = {}
    for config in stack:
        merged = _merge(merged, yaml.safe_load((ROOT / config).read_text()))
    assert _mismatch(printed, merged) is None, f"{' + '.join(stack)}: {_mismatch(printed, merged)}"


def test_a_later_editor_class_keeps_the_options_of_the_earlier_one_it_also_takes(tmp_path, capsys):
    """What the parser does when a later file names another editor class: the later class and the options the later
    file gives win, the earlier editor's options the new class does not take are dropped, and those it also takes
    stay (so a method config runs on a model config, which names no editor, never on another method config)."""
    later = tmp_path / "alphaedit.yaml"
    later.write_text(yaml.safe_dump({"model": {"init_args": {"editor": {
        "class_path": "lit_edit.editors.AlphaEdit", "init_args": {"layers": [1]}}}}}))
    printed = printed_config((*BASE, str(later)), capsys)
    editor = printed["model"]["init_args"]["editor"]
    assert editor["class_path"] == "lit_edit.editors.AlphaEdit" and editor["init_args"]["layers"] == [1]
    assert "preservation_weight" not in editor["init_args"]                          # MEMIT's own option: dropped
    memit = yaml.safe_load((ROOT / BASE[1]).read_text())["model"]["init_args"]["editor"]["init_args"]
    assert editor["init_args"]["template_length_rule"] == memit["template_length_rule"] == "new"   # kept
    assert editor["init_args"]["values"]["steps"] == memit["values"]["steps"]


@pytest.mark.parametrize("mode", sorted(p.stem for p in (ROOT / "configs/edit/modes").glob("*.yaml")))
def test_every_mode_overlay_parses_on_a_base_config(mode, capsys):
    printed = printed_config((*BASE, f"configs/edit/modes/{mode}.yaml"), capsys)
    assert printed["data"]["init_args"]["batch_size"] == (1 if "instance" in mode or mode == "single" else 10)


def test_every_model_config_has_a_folder_of_method_configs_and_back():
    models = {p.stem for p in EDIT.glob("models/*.yaml")}
    folders = {p.name for p in EDIT.glob("methods/*") if p.is_dir()}
    assert models == folders and models
    assert all(any((EDIT / "methods" / folder).glob("*.yaml")) for folder in folders)


def _editor_class(config) -> type:
    class_path = yaml.safe_load(config.read_text())["model"]["init_args"]["editor"]["class_path"]
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_every_editor_has_a_fact_world_method_config(name):
    assert EDITORS[name] in {_editor_class(p) for p in EDIT.glob("methods/factworld/*.yaml")}


@pytest.mark.parametrize("model, method", method_stacks(), ids=lambda config: config.rsplit("/", 2)[-1])
def test_a_method_config_holds_its_editor_and_leaves_the_model_to_the_model_config(model, method):
    """The editor with class_path and init_args; the model, data and logger classes and the model folder are the
    model config's. Its header command runs it on its model."""
    config = yaml.safe_load((ROOT / method).read_text())
    assert set(config["model"]["init_args"]["editor"]) == {"class_path", "init_args"}
    assert "class_path" not in config["model"] and "name_or_path" not in config["model"]["init_args"]
    assert "class_path" not in config.get("data", {})
    assert "class_path" not in config.get("trainer", {}).get("logger", {})
    assert header_stack(method)[:2] == (model, method)


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in EDIT.glob("*/*.yaml")
                                          if p.parent.name in ("models", "downstream")))
def test_a_model_or_overlay_config_header_shows_a_stack_to_run(config):
    stack = header_stack(config)
    assert stack and config in stack and all((ROOT / path).is_file() for path in stack)
