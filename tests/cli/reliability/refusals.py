"""How a refusal must look to the user, shared by the reliability tests: exit status 2, one ``error:`` line (and at
most one more), no traceback, no usage text or configuration dump before it."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def run_command(*args: str, cwd=ROOT, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python <args>`` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def refusal(stderr: str, returncode: int | None) -> str:
    """The error text of a refused command, after checking its form."""
    assert returncode == 2, f"exit status {returncode}, expected 2:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "usage:" not in stderr and "Given value" not in stderr, stderr[-3000:]
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(starts) == 1, stderr[-3000:]
    block = lines[starts[0]:]
    assert len(block) <= 2, f"the error takes {len(block)} lines:\n" + "\n".join(block)
    return "\n".join(block)


def assert_refused(result: subprocess.CompletedProcess, *patterns: str) -> str:
    """The error text of a refused subprocess, checked for its form and for each regex in ``patterns``."""
    text = refusal(result.stderr, result.returncode)
    for pattern in patterns:
        assert re.search(pattern, text), f"{pattern!r} not in {text!r}"
    return text
