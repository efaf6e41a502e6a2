"""The code's rules, checked by the tools that own them: import-linter keeps the rooms
apart (contracts in pyproject.toml: the engine, tasks, readers and exporters never reach
Qt or the GUI; the commands never import the GUI; the GUI never imports torch itself) and
ruff lints the tree. Both run from the virtual environment's bin folder, beside python."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: install the test extra (pip install -e '.[test]')")
    return path


def test_import_contracts_hold():
    proc = subprocess.run([str(_tool("lint-imports")), "--no-cache"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout



def test_ruff_finds_nothing():
    proc = subprocess.run([str(_tool("ruff")), "check", "--no-cache", "workbench", "tests", "bench", "docs"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
