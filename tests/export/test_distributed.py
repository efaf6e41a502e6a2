"""The workbench's own trainer under torchrun: two CPU processes (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.export.ddp_worker import tiny_preset
from workbench.engine import distributed
from workbench.engine.checkpoint import read_weights
from workbench.engine.model import build_model
from workbench.engine.trainer import Trainer
from workbench.runs import RunHistory
from workbench.spec import SpecError
from workbench.tasks import make_task
from workbench.tasks.adding import make_adding_batch

PROJECT = Path(__file__).resolve().parents[2]
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def torchrun(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(PROJECT), WORKBENCH_HOME=str(home))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_alone_the_distributed_hooks_change_nothing():
    assert not distributed.is_distributed() and distributed.is_main_process()
    loss = torch.tensor(2.5, requires_grad=True)
    assert distributed.average_gradients([], loss) is loss
    assert distributed.setup_device(torch.device("cpu")) == torch.device("cpu")


def test_more_processes_than_gpus_is_refused_on_every_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        with pytest.raises(SpecError, match="--nproc_per_node 1"):
            distributed.setup_device(torch.device("cuda"))
    with pytest.raises(SpecError, match="cpu"):
        distributed.setup_device(torch.device("mps"))


def test_ranks_train_in_step_on_different_data(tmp_path, monkeypatch):
    steps = 6
    run = torchrun([str(PROJECT / "tests" / "export" / "ddp_worker.py"), str(tmp_path), str(steps)], tmp_path,
                   tmp_path / "home")
    assert run.returncode == 0, run.stderr[-4000:]
    w0, w1 = read_weights(tmp_path / "rank0.safetensors"), read_weights(tmp_path / "rank1.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # averaged gradients: the same update everywhere
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["losses"] == r1["losses"] and len(r0["losses"]) == steps  # the loss every rank acts on
    assert r0["run_dir"] and r1["run_dir"] is None  # only rank 0 writes
    # each rank applied the process policy itself (a script of its own, no CLI) and recorded it
    assert [r["cpu_policy"]["entry"] for r in (r0, r1)] == [f"trainer (torchrun rank {r} of 2)" for r in (0, 1)]
    assert r0["cpu_policy"]["allocator"]["policy"] in ("keep freed memory", "default")
    assert (tmp_path / "run" / "model.safetensors").is_file()
    # Step 1's loss is the mean over the two ranks' own batches at the shared initial weights.
    preset = tiny_preset(steps)
    torch.manual_seed(preset.train.seed)
    model = build_model(preset.model, make_task(preset).model_io())
    g0 = torch.Generator().manual_seed(preset.train.seed)
    g1 = torch.Generator()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    distributed.reseed_for_rank(g1, preset.train.seed, 0)
    with torch.no_grad():
        per_rank = [float(torch.nn.functional.mse_loss(model(b.x), b.y))
                    for b in (make_adding_batch(8, 8, g0), make_adding_batch(8, 8, g1))]
    assert per_rank[0] != pytest.approx(per_rank[1])
    assert r0["losses"][0] == pytest.approx(sum(per_rank) / 2, rel=1e-5)
    # ... and one process alone ends elsewhere.
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    alone = Trainer(tiny_preset(steps))
    list(alone.run())
    assert not all(torch.equal(alone.model.state_dict()[k], w0[k]) for k in w0)


def test_workbench_train_under_torchrun_writes_once(tmp_path):
    home = tmp_path / "home"
    run = torchrun(["-m", "workbench", "train", "adding_gru", "--steps", "12", "--device", "cpu", "--quiet",
                    "--set", "data.options.seq_len=8", "--set", "model.layers.0.hidden_size=8",
                    "--set", "train.eval_every=0", "--set", "train.checkpoint_every=6", "--set", "train.probe_every=0",
                    "--set", "data.options.val_size=32", "--run-dir", str(tmp_path / "run")], tmp_path, home)
    assert run.returncode == 0, run.stderr[-4000:]
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("start") == 1
    assert records[0]["cpu_policy"]["entry"] == "cli train (torchrun rank 0 of 2)"  # applied first thing in the rank
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 13))
    assert (tmp_path / "run" / "model.safetensors").is_file()
    runs = RunHistory(home / "history.sqlite3").list()
    assert len(runs) == 1 and runs[0].status == "finished" and runs[0].step == 12
