"""`--ckpt_path` never unpickles code: Lightning checkpoints load with weights_only=True even where torch or
Lightning would default to False (torch before 2.6; any URL), and `--weights_only false` is refused for a URL."""

from __future__ import annotations

import configparser
import os
import re
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.plugins.io import torch_io
from lightning.pytorch.cli import LightningCLI

from tests.conftest import ROOT
from tests.edit_configs import method_config

CONFIG = method_config("ft")


class _Payload:
    """A pickle that creates a folder when it is loaded: the proof that loading ran its code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.makedirs, (self.path,)


@pytest.fixture
def old_torch_default(monkeypatch):
    """torch.load as torch < 2.6 had it: weights_only unset means False."""
    load = torch.load

    def load_as_before(*args, weights_only=None, **kwargs):
        return load(*args, weights_only=bool(weights_only), **kwargs)

    monkeypatch.setattr(torch, "load", load_as_before)


def _cli(tmp_path, *args: str):
    from lit_edit.cli import LitEditCLI

    return LitEditCLI(args=["test", *CONFIG, "--data.init_args.n", "1", "--trainer.logger", "false",
                            "--trainer.default_root_dir", str(tmp_path), "--model.init_args.results_dir",
                            str(tmp_path / "run"), "--model.init_args.cache_dir", str(tmp_path / "cache"),
                            "--trainer.enable_progress_bar", "false", *args])


def test_a_malicious_checkpoint_runs_nothing_even_with_the_old_torch_default(tmp_path, old_torch_default,
                                                                             monkeypatch):
    # the trainer's own load, not LightningCLI's first look at the checkpoint's hyperparameters (which recent
    # Lightning releases make with weights_only=True, older ones not at all)
    monkeypatch.setattr(LightningCLI, "_parse_ckpt_path", lambda self: None)
    proof = tmp_path / "code-ran"
    torch.save({"state_dict": {}, "payload": _Payload(str(proof))}, tmp_path / "evil.ckpt")
    with pytest.raises(Exception) as raised:
        _cli(tmp_path, "--ckpt_path", str(tmp_path / "evil.ckpt"))
    assert not proof.exists()                                     # the pickle's code did not run
    assert "Weights only load failed" in str(raised.value)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_remote_checkpoint_loads_tensors_only(tmp_path, monkeypatch):
    asked = {}

    def download(url, *args, weights_only=None, **kwargs):
        asked["weights_only"] = weights_only
        raise ConnectionError(f"offline: {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    monkeypatch.setattr(torch_io, "get_filesystem", lambda path: SimpleNamespace(exists=lambda path: True))  # offline
    with pytest.raises(ConnectionError):
        _cli(tmp_path, "--ckpt_path", "https://example.invalid/run.ckpt")
    assert asked == {"weights_only": True}


def test_weights_only_false_is_refused_for_a_remote_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", pytest.fail)
    with pytest.raises(Exception, match=r"--weights_only false with the remote --ckpt_path "
                                        r"https://example.invalid/run.ckpt: unpickling a downloaded checkpoint can "
                                        r"run any code in it"):
        _cli(tmp_path, "--ckpt_path", "https://example.invalid/run.ckpt", "--weights_only", "false")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_torch_floor_is_the_first_release_that_loads_tensors_only_by_default():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    floor = re.search(r"^\s*torch>=([\d.]+)", config["options"]["install_requires"], re.M).group(1)
    assert tuple(int(part) for part in floor.split(".")) >= (2, 6)
