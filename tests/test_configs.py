"""Every shipped config parses against the current code (`--print_config`), so a renamed option cannot leave a
config behind; mode and overlay configs are parsed on top of a base config."""

from __future__ import annotations

import pytest
import yaml

from lit_edit.cli import LitEditCLI

from .conftest import ROOT

OVERLAYS = {"configs/edit/factworld/downstream.yaml", "configs/edit/strategies/fsdp.yaml"}
BASE = "configs/edit/factworld/memit.yaml"


def _configs() -> list[str]:
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))
    return [c for c in found if "/modes/" not in c]


def _parse(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        LitEditCLI(args=args)
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("config", _configs())
def test_config_parses_and_round_trips(config, capsys):
    command = "fit" if config.startswith("configs/fit/") else "test"
    stack = ["--config", str(ROOT / BASE)] if config in OVERLAYS else []
    printed = _parse([command, *stack, "--config", str(ROOT / config), "--print_config"], capsys)
    assert printed["model"]["class_path"].startswith("lit_edit.")
    assert "class_path" in printed["data"]


@pytest.mark.parametrize("mode", sorted(p.stem for p in (ROOT / "configs/edit/modes").glob("*.yaml")))
def test_every_mode_overlay_parses_on_a_base_config(mode, capsys):
    printed = _parse(["test", "--config", str(ROOT / BASE), "--config", str(ROOT / f"configs/edit/modes/{mode}.yaml"),
                      "--print_config"], capsys)
    assert printed["data"]["init_args"]["batch_size"] == (1 if "instance" in mode or mode == "single" else 10)
