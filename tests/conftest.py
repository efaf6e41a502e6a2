"""Shared test set-up: headless Qt, one torch thread (2-core machines run several suites)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Runs whose thread count a timing trial chooses may differ in the last bits from one
# run to the next (1 and 2 threads reduce in other orders), and the trial's extra steps
# would shift tests that count forward calls: the trial's own tests turn it back on.
os.environ.setdefault("WORKBENCH_THREAD_TRIAL", "off")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # the no-Qt/no-torch import checks run without it
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True, scope="session")
def _workbench_home(tmp_path_factory):
    """The run history and user presets of every test go to a temporary folder, never
    the real user's data folder (workbench.userdirs honours WORKBENCH_HOME)."""
    if not os.environ.get("WORKBENCH_HOME"):
        os.environ["WORKBENCH_HOME"] = str(tmp_path_factory.mktemp("workbench_home"))
    yield


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is not present")
    return SHARED_DATA
