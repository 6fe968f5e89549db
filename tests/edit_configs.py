"""The shipped configs as they are run: a method config stacked on its model config (configs/edit/), and the stack
a config's header command names."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import ROOT

EDIT = ROOT / "configs/edit"


def method_config(method: str, model: str = "factworld") -> list[str]:
    """``--config`` arguments for ``configs/edit/methods/<model>/<method>.yaml`` on ``configs/edit/models/<model>.yaml``
    (absolute paths, so they work from any working directory)."""
    return ["--config", str(EDIT / f"models/{model}.yaml"), "--config", str(EDIT / f"methods/{model}/{method}.yaml")]


def registered_methods(accumulating: bool) -> list[str]:
    """The registered methods (``lit_edit.editors.EDITORS``) that do, or do not, carry their edits in their own
    state; each must have a fact-world config ``configs/edit/methods/factworld/<name>.yaml``. RECT wraps another
    method, so it has none of its own."""
    from lit_edit.editors import EDITORS, RECT

    names = [name for name, cls in EDITORS.items() if cls is not RECT and cls.accumulates == accumulating]
    missing = [name for name in names if not (EDIT / f"methods/factworld/{name}.yaml").exists()]
    assert not missing, f"methods without a fact-world config in configs/edit/methods/factworld/: {missing}"
    return names


def method_stacks() -> list[tuple[str, str]]:
    """Every method config with its model config, found by glob: ``(models/<model>.yaml, methods/<model>/<m>.yaml)``
    relative to the project root."""
    return [(f"configs/edit/models/{path.parent.name}.yaml", str(path.relative_to(ROOT)))
            for path in sorted(EDIT.glob("methods/*/*.yaml"))]


def header_command(config: str) -> str | None:
    """The first ``# python main.py`` command in ``config``'s header that names ``config`` (a line ending in ``\\``
    continues on the next comment line), or None."""
    lines = (ROOT / config).read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("# python main.py"):
            continue
        command = line[2:]
        while command.endswith("\\") and i + 1 < len(lines) and lines[i + 1].startswith("#"):
            i += 1
            command = command[:-1] + lines[i][1:]
        if f"--config {config}" in command:
            return command
    return None


def header_stack(config: str) -> tuple[str, ...] | None:
    """The configs ``config``'s header command stacks, in order (e.g. model, method, mode), or None."""
    command = header_command(config)
    return None if command is None else tuple(re.findall(r"--config (\S+)", command))


def printed_config(stack: tuple[str, ...], capsys) -> dict:
    """The config ``main.py --print_config`` prints for ``stack`` (paths relative to the project), parsed; ``fit``
    for the configs under configs/fit/, else ``test``."""
    from lit_edit.cli import LitEditCLI

    command = "fit" if stack[0].startswith("configs/fit/") else "test"
    args = [command, *[arg for config in stack for arg in ("--config", str(ROOT / config))], "--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        LitEditCLI(args=args)
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)
