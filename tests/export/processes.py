"""A workbench child process killed mid-run (SIGKILL), for the tests that check what a hard
kill leaves behind: its environment and the wait-then-kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """A child's environment: its own WORKBENCH_HOME, one thread, this checkout first, and
    none of torchrun's variables (a test run under torchrun must not make the child a rank)."""
    env = {**os.environ, "WORKBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT), **extra}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def start_child(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """``python args...`` with stderr kept for the failure message."""
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def sigkill_when(proc: subprocess.Popen, ready, what: str, while_running=None, timeout_s: float = 120) -> None:
    """Poll ready() until true (failing with the child's stderr if it exits first, or with
    ``what`` after timeout_s), call while_running() while the child still runs, then SIGKILL
    it and wait; the child never outlives the call."""
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
            time.sleep(0.05)
        if while_running is not None:
            while_running()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
