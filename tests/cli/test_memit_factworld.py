"""MEMIT on the shipped fact-world model through the editing loop, batch-single: 10 edits in one batch at λ 100
("small batches work", docs/limitations.md, item 1) and 100 edits in one batch at the config's λ 300.

The runs are ``configs/edit/methods/factworld/memit.yaml`` with ``configs/edit/modes/batch_single.yaml``, built by the CLI
itself so the tests follow the config; both share one statistics cache. The floors are the levels measured on the
2-core development machine (one thread, token family) minus a margin, so a method that improves passes; the 100-edit
run's 0.9 / 0.9 criterion is a strict xfail of its own that only that criterion can satisfy.
"""

import csv
import json

import pytest
import yaml

from tests.conftest import ROOT, run_edit_cli
from tests.edit_configs import method_config


class CriterionNotMet(AssertionError):
    """The 100-edit run is short of reliability 0.9 with locality 0.9 (and nothing else went wrong)."""


@pytest.fixture(scope="module")
def statistics(tmp_path_factory):
    return tmp_path_factory.mktemp("memit-stats")


def _batch_single(folder, statistics, n: int, *overrides: str) -> dict:
    run_edit_cli(folder, *method_config("memit"),
                 "--config", str(ROOT / "configs/edit/modes/batch_single.yaml"),
                 "--data.init_args.n", str(n), "--data.init_args.batch_size", str(n),
                 "--model.init_args.families", "[token]", "--model.init_args.monitor_docs", "16",
                 "--model.init_args.statistics.cache_dir", str(statistics), *overrides)
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    assert metrics["mode"]["name"] == "batch-single" and metrics["n_edits"] == n
    return metrics


@pytest.fixture(scope="module")
def hundred(tmp_path_factory, statistics) -> dict:
    return _batch_single(tmp_path_factory.mktemp("memit-100"), statistics, 100)


def test_batch_single_memit_on_10_edits_at_lambda_100_flips_them_and_keeps_locality(tmp_path, statistics):
    # measured: token reliability 0.80, generality 0.60, locality 1.00 (pre-edit 0.10 / 0.10 / 1.00)
    metrics = _batch_single(tmp_path, statistics, 10, "--model.init_args.editor.init_args.preservation_weight", "100")
    token, pre = metrics["final"]["token"], metrics["pre"]["token"]
    assert token["reliability"] >= 0.6, token
    assert metrics["immediate"]["token"]["reliability"] >= pre["reliability"] + 0.5, metrics
    assert token["generality"] >= pre["generality"] + 0.3, (token, pre)
    assert token["locality"] >= 0.9, token


def test_batch_single_memit_on_100_edits_holds_its_measured_level(hundred):
    # measured: token reliability 0.495, generality 0.185, locality 0.835, portability 0.167 (pre-edit 0.11 / 0.11 /
    # 1.00 / 0.25); docs/limitations.md, item 1
    token, pre = hundred["final"]["token"], hundred["pre"]["token"]
    assert pre["reliability"] < 0.2, pre
    assert token["reliability"] >= 0.4, token
    assert hundred["immediate"]["token"]["reliability"] >= pre["reliability"] + 0.25, hundred
    assert token["locality"] >= 0.75, token
    assert token["generality"] >= pre["generality"] + 0.04, (token, pre)   # the held-out wording moves a little
    assert 0.0 <= token["portability"] <= 1.0, token                       # measured on the one-hop questions


@pytest.mark.xfail(strict=True, raises=CriterionNotMet,
                   reason="100 edits in one batch leak onto other subjects' keys in this 4-layer model, and 27 of them "
                   "share a subject with another (docs/limitations.md, item 1): on the shipped model at λ 300, "
                   "the config's 25 value steps, token reliability 0.495, locality 0.835 "
                   "(stage-2 model, 40 steps: 0.69 / 0.62)")
def test_batch_single_memit_on_100_edits_reaches_reliability_and_locality_0_9(hundred):
    token = hundred["final"]["token"]
    if not (token["reliability"] >= 0.9 and token["locality"] >= 0.9):
        raise CriterionNotMet(f"reliability {token['reliability']:.3f}, locality {token['locality']:.3f}: "
                              "short of 0.9 / 0.9")


def test_reuse_prefix_runs_through_the_cli_records_itself_and_gives_the_default_update(tmp_path, statistics):
    """``values.reuse_prefix`` from the command line reaches value optimisation, the run's config says it, and the
    batch's update and value loss equal the default run's to float32 rounding (docs/methods.md §0.6)."""
    runs = {}
    for setting in ("false", "true"):
        folder = tmp_path / setting
        runs[setting] = _batch_single(folder, statistics, 10,
                                      "--model.init_args.editor.init_args.values.reuse_prefix", setting)
        config = yaml.safe_load((folder / "run" / "config.yaml").read_text())
        assert config["model"]["init_args"]["editor"]["init_args"]["values"]["reuse_prefix"] is (setting == "true")
        with open(folder / "run" / "steps.csv") as file:
            runs[setting] = next(csv.DictReader(file))
    columns = [name for name in runs["false"] if name.startswith("update_fro/") or name == "value_loss_last"]
    assert len(columns) == 3, columns
    for name in columns:
        assert float(runs["true"][name]) == pytest.approx(float(runs["false"][name]), rel=1e-4), name
    # other matrix shapes round otherwise: a run that ignored the setting would repeat the default bit for bit
    assert any(runs["true"][name] != runs["false"][name] for name in columns), runs
