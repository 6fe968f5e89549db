"""Every shipped config against the data files it names: a config cannot ask for more records than its file holds.

Each config is parsed as its header says to run it (a method config stacked on its model config and the mode file
it names, an overlay on the base config), then its data module is built and set up. Files of the project (the fact
world) are read as they are; third-party files nobody may commit (the data root ``data/``, or a root outside the
project) are replaced by a folder of fixtures with the same names, each holding as many records as the real file
(``RECORDS``); a downstream overlay of the real test sets is read from the shared data where it is present, and
skipped where it is not. Also: the paper configs name the model of their folder, edit layers their model has (MEND
its last three) and use the side-effects study's ROME setting."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from lit_edit.tasks.suite import load_task_records
from tests.conftest import ROOT, SHARED_DATA
from tests.edit_configs import EDIT, header_stack, printed_config

BASE = ("configs/edit/models/factworld.yaml", "configs/edit/methods/factworld/memit.yaml")
OVERLAY_FOLDERS = ("configs/edit/downstream/", "configs/edit/strategies/")

# Records of the third-party edit files configs name, by path under the data root, and whether the count is exact
# (else a lower bound: a fixture of that many records lets a config ask for no more than is certain).
RECORDS = {
    # the side-effects study's edit set (shared/data README; checked against the file where it is present)
    "zsre/zsre_mend_eval_portability_gpt4.json": (1037, True),
    # EasyEdit's 10,000-record ZsRE training subset, the D4S script's edit set
    "zsre/zsre_mend_train_10000.json": (10000, True),
    # MEMIT's ZsRE file (AlphaEdit's edit set, MEND's validation file): MEMIT's zsRE runs edit 10,000 of its records
    "zsre/zsre_mend_eval.json": (10000, False),
    # EasyEdit's ZsRE training split: its 10,000-record subset is drawn from it
    "zsre/zsre_mend_train.json": (10000, False),
}


def _configs() -> list[str]:
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))
    # experiment files are the sweep's input, not main.py's (tests/unit/experiments/test_shipped_experiments.py)
    return [c for c in found if "/modes/" not in c and not c.startswith("configs/experiments/")]


def _stacks() -> list[tuple[str, ...]]:
    """Each config as its header says to run it (its first ``# python main.py`` command naming it, with every config
    that command stacks: its model config, a mode file), else an overlay of configs/edit/ on the base stack, else the
    config alone. The mode files change the batch size and rollback, never which records a run reads."""
    stacks = []
    for config in _configs():
        stack = header_stack(config)
        if stack is None and config.startswith(OVERLAY_FOLDERS):
            stack = (*BASE, config)
        stacks.append(stack or (config,))
    return stacks


def _zsre_record(i: int) -> dict:
    return {"subject": f"Subject {i}", "src": f"What is Subject {i} known for?", "pred": "p", "alt": f"new {i}",
            "answers": [f"old {i}"], "rephrase": f"What made Subject {i} known?", "loc": f"nq question: q {i}",
            "loc_ans": "a", "cond": "c"}


def _inside_project(root: str) -> bool:
    return (ROOT / root).resolve().is_relative_to(ROOT)


def _third_party(root: str, names: list[str]) -> bool:
    """Files nobody may commit: a root outside the project, or the data root (``data``, where ``fetch_data`` puts
    the published sets) for any file but the fact world's."""
    resolved = (ROOT / root).resolve()
    return not resolved.is_relative_to(ROOT) or (resolved == ROOT / "data"
                                                 and not all(n.startswith("factworld/") for n in names))


def _root(root: str, fixtures: Path, names: list[str], stack) -> Path:
    """The folder a data module reads: the project's own, or fixtures of ``names`` with the real files' counts."""
    if not _third_party(root, names):
        return ROOT / root
    for name in names:
        if name not in RECORDS:
            pytest.fail(f"{' + '.join(stack)} names {root}/{name}, a file of unknown size: add its record count to "
                        "RECORDS in tests/cli/test_config_data.py")
        path = fixtures / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps([_zsre_record(i) for i in range(RECORDS[name][0])]))
    return fixtures


def _setup(data: dict, fixtures: Path, stack) -> None:
    module_name, class_name = data["class_path"].rsplit(".", 1)
    args = dict(data["init_args"])
    if class_name == "EditDataModule":
        args["root"] = str(_root(args["root"], fixtures, [args["path"]], stack))
    elif class_name == "MendDataModule":
        names = [args["train_path"]] + ([args["val_path"]] if args["val_path"] else [])
        args["root"] = str(_root(args["root"], fixtures, names, stack))
    elif class_name == "TextCorpusDataModule":      # no record counts: the corpus files it names exist
        corpus = fixtures / "corpus-root"
        (corpus / "corpus").mkdir(parents=True, exist_ok=True)
        for name in ["train", "heldout", *(args.get("train_files") or [])]:
            (corpus / "corpus" / f"{name}.jsonl").touch()
        args["root"], args["generate_factworld"] = str(corpus), False
    module = getattr(importlib.import_module(module_name), class_name)(**args)
    module.prepare_data()
    if class_name != "TextCorpusDataModule":
        module.setup("fit" if class_name == "MendDataModule" else "test")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data-root")


@pytest.mark.parametrize("stack", _stacks(), ids=lambda stack: "+".join(Path(c).stem for c in stack))
def test_config_fits_the_data_files_it_names(stack, fixtures, capsys):
    printed = printed_config(stack, capsys)
    _setup(printed["data"], fixtures, stack)
    downstream = printed["model"]["init_args"].get("downstream")
    if downstream:
        root = Path(downstream["root"])
        if root.parts[:1] == ("data",) and root.parts[1:2] != ("factworld",):    # the real sets, under the data root
            root = SHARED_DATA.joinpath(*root.parts[1:])
            if not root.is_dir():
                pytest.skip(f"{stack}: the real test sets ({root}) are not on this machine")
        else:
            assert _inside_project(downstream["root"]), f"{stack}: downstream root {root} has no fixtures"
            root = ROOT / root
        for task in downstream["tasks"]:
            assert load_task_records(root, task, downstream["subset"], downstream["seed"])


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_record_counts_match_the_real_files(name):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    count, exact = RECORDS[name]
    real = len(json.loads(path.read_text()))
    assert real == count if exact else real >= count


MODEL_NAMES = {"gpt2-xl": ("gpt2-xl", "GPT-2 XL"), "gpt-j-6b": ("gpt-j-6b", "GPT-J"),
               "llama-2-7b": ("llama-2-7b", "LLaMA-2-7B"), "llama-2-13b": ("llama-2-13b", "LLaMA-2-13B")}


@pytest.mark.parametrize("config", sorted(str(p.relative_to(EDIT)) for folder in MODEL_NAMES
                                          for p in [EDIT / f"models/{folder}.yaml", *EDIT.glob(f"methods/{folder}/*")]))
def test_a_paper_config_names_its_own_model_and_no_other(config):
    folder = config.removeprefix("models/").removeprefix("methods/").split("/")[0].removesuffix(".yaml")
    first = (EDIT / config).read_text().splitlines()[0]
    assert any(name in first for name in MODEL_NAMES[folder]), first
    others = [name for key, names in MODEL_NAMES.items() if key != folder for name in names]
    assert not any(name in first for name in others), first


# Each real model's depth, num_hidden_layers (n_layer) of its Hugging Face config.
DEPTHS = {"gpt2-xl": 48, "gpt-j-6b": 28, "llama-2-7b": 32, "llama-2-13b": 40}


def _edited_layers(editor: dict) -> list[int]:
    """The layer indices an editor entry names (RECT's: its inner editor's); KN's ``layers: null`` (all) names none."""
    args = editor["init_args"]
    if "editor" in args:
        return _edited_layers(args["editor"])
    return [*(args.get("layers") or []), *([args["layer"]] if "layer" in args else [])]


def test_every_real_model_has_its_depth_listed():
    assert set(DEPTHS) == set(MODEL_NAMES) == {p.stem for p in EDIT.glob("models/*.yaml")} - {"factworld"}


@pytest.mark.parametrize("model", sorted(DEPTHS))
def test_a_real_models_configs_edit_layers_it_has_and_mend_its_last_three(model):
    """Every layer a method config edits exists in the model; MEND (the method config and the fit config that trains
    its editor) edits the last three, and the method config reads the editor the fit config writes."""
    depth = DEPTHS[model]
    configs = sorted(EDIT.glob(f"methods/{model}/*.yaml"))
    assert {p.stem for p in configs} >= {"rome", "memit", "mend"}, f"configs/edit/methods/{model}/ lacks configs"
    for config in configs:
        layers = _edited_layers(yaml.safe_load(config.read_text())["model"]["init_args"]["editor"])
        assert all(0 <= layer < depth for layer in layers), f"{config.name}: {layers} on {depth} layers"
    mend = yaml.safe_load((EDIT / f"methods/{model}/mend.yaml").read_text())["model"]["init_args"]["editor"]
    fit = yaml.safe_load((ROOT / f"configs/fit/mend_{model}.yaml").read_text())["model"]["init_args"]
    assert mend["init_args"]["layers"] == fit["layers"] == list(range(depth - 3, depth))
    assert mend["init_args"]["checkpoint"] == fit["export_dir"]


@pytest.mark.parametrize("config", [f"{model}/{method}" for model in ("gpt2-xl", "llama-2-7b", "llama-2-13b")
                                    for method in ("rome", "rome-rect")])
def test_side_effects_rome_configs_use_the_studys_mom2_adjustment(config):
    """The side-effects study's hparams/ROME/{gpt2-xl,llama-7b}.yaml set mom2_adjustment false (llama-2-13b carries
    llama-2-7b's setting)."""
    editor = yaml.safe_load((EDIT / f"methods/{config}.yaml").read_text())["model"]["init_args"]["editor"]
    rome = editor["init_args"]["editor"] if "rect" in config else editor
    assert rome["class_path"] == "lit_edit.editors.ROME" and rome["init_args"]["mom2_adjustment"] is False
