"""Shared by the reliability tests: run command lines in processes, check refusals,
write hostile files."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

# A tiny adding run: 2 steps of a 4-unit GRU on 6-step sequences, a checkpoint each step.
TINY_ADDING = ["--device", "cpu", "--quiet", "--steps", "2", "--set", "model.layers.0.hidden_size=4",
               "--set", "data.options.seq_len=6", "--set", "data.options.val_size=8", "--set", "train.batch_size=4",
               "--set", "train.checkpoint_every=1", "--set", "train.probe_every=0", "--set", "train.eval_every=0",
               "--set", "train.num_threads=1"]

def run_batch(cases: list[dict], workdir: Path, timeout: int = 300, light: bool = False) -> dict[str, dict]:
    """Run each case ({"name", "argv", optional "env", "cwd"}) as its own `workbench`
    process (see tests/reliability/clirun.py); returns name -> {rc, stdout, stderr}.
    ``light``: the cases need no engine, so torch is not imported up front."""
    if not hasattr(os, "fork"):
        pytest.skip("the batch runner forks (POSIX)")
    workdir.mkdir(parents=True, exist_ok=True)
    cases_file, results_file = workdir / "cases.json", workdir / "results.json"
    cases_file.write_text(json.dumps(cases))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "WORKBENCH_DEBUG")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.run([sys.executable, "-m", "tests.reliability.clirun", str(cases_file), str(results_file)]
                          + (["--light"] if light else []),
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(results_file.read_text())


def run_workbench(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """A real `python -m workbench ARGS` process."""
    full = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "WORKBENCH_DEBUG")}
    full.update(OMP_NUM_THREADS="1", PYTHONPATH=str(PROJECT_ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=cwd or PROJECT_ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout)


def refusal(result, *needles: str) -> str:
    """Assert the command was refused as invalid input: exit 2, exactly one line on
    stderr ("workbench: error: ..."), no traceback, each needle in that line. Returns it."""
    rc = result["rc"] if isinstance(result, dict) else result.returncode
    err = result["stderr"] if isinstance(result, dict) else result.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit {rc}, stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("workbench: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


class Boom:
    """Unpickling this runs code: it writes the marker file ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('unpickled: code was executed')",))


def hostile_pickle(marker: Path) -> bytes:
    """A plain pickle (as pickle.dump / an old torch.save would write it) that creates
    ``marker`` when loaded."""
    return pickle.dumps({"weight": Boom(marker), "step": 1})


def hostile_torch_file(marker: Path) -> bytes:
    """A torch.save zip file whose data.pkl runs code when loaded without weights_only."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"optimizer": Boom(marker), "step": 1, "tensor": torch.zeros(2)}, buffer)
    return buffer.getvalue()
