"""The headless CLI contract: presets, train writes its files, bad input exits 2 in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT
from workbench.presets import BUILTIN_DIR

SMALL = ["--set", "model.layers.0.hidden_size=16", "--set", "data.options.seq_len=20", "--quiet"]


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=cwd or PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_presets_lists_names_first():
    proc = run_cli("presets")
    assert proc.returncode == 0
    names = [line.split("\t")[0] for line in proc.stdout.splitlines()]
    assert {"adding_lstm", "adding_rnn_tanh", "exploding_relu_noclip", "exploding_relu_clip"} <= set(names)


def test_train_adding_50_steps_writes_the_three_files(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("train", "adding_lstm", "--steps", "50", "--device", "cpu", "--run-dir", str(run_dir), *SMALL)
    assert proc.returncode == 0, proc.stderr
    preset = json.loads((run_dir / "preset.json").read_text())
    assert preset["train"]["steps"] == 50 and preset["model"]["layers"][0]["hidden_size"] == 16
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == 50 and steps[-1]["step"] == 50
    assert len(steps[0]["timestep_grad_norms"]["layers.0"]) == 20
    assert records[-1]["kind"] == "end" and records[-1]["status"] == "finished"
    assert (run_dir / "model.safetensors").stat().st_size > 0
    assert "gradient through time" in proc.stdout and "layers.0" in proc.stdout
    # beside the gradient's decay, why: W_hh's spectral radius and the leading Lyapunov exponent per layer
    dyn = proc.stdout.split("dynamics (step ", 1)[1]
    assert "layers.0: spectral radius of W_hh " in dyn and "leading Lyapunov exponent " in dyn
    assert any(r["kind"] == "dynamics" for r in records)


def test_train_dynamics_false_leaves_the_instruments_out(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("train", "adding_lstm", "--steps", "2", "--device", "cpu", "--run-dir", str(run_dir), *SMALL,
                   "--set", "train.dynamics=false")
    assert proc.returncode == 0, proc.stderr
    assert "gradient through time" in proc.stdout and "dynamics (step" not in proc.stdout
    assert not any(json.loads(line)["kind"] == "dynamics" for line in (run_dir / "metrics.jsonl").open())


@pytest.mark.parametrize("args,needle", [
    (["--set", "model.layers.0.hidden_size=-5"], "model.layers.0.hidden_size"),
    (["--set", "train.optimizer=adamax"], "train.optimizer"),
    (["--set", "model.layers.0.colour=red"], "model.layers.0.colour"),
    (["--set", "data.options.seq_len=1"], "data.options.seq_len"),
    (["--set", "data.options.lenght=10"], "data.options.lenght"),
    (["--set", "data.task=poetry"], "data.task"),
    (["--set", "train.dynamics=maybe"], "train.dynamics"),
])
def test_bad_field_exits_2_with_one_line_naming_it(tmp_path, args, needle):
    proc = run_cli("train", "adding_lstm", "--steps", "2", "--run-dir", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()  # nothing was started


def test_bad_preset_files_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    raw = json.loads((BUILTIN_DIR / "adding_lstm.json").read_text())
    raw["train"]["batch_size"] = "many"
    bad.write_text(json.dumps(raw))
    proc = run_cli("train", str(bad), "--steps", "1")
    assert proc.returncode == 2 and "train.batch_size" in proc.stderr and str(bad) in proc.stderr
    (tmp_path / "junk.json").write_text("not json at all")
    proc = run_cli("train", str(tmp_path / "junk.json"))
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    proc = run_cli("train", "no_such_preset")
    assert proc.returncode == 2 and "no_such_preset" in proc.stderr


def test_no_display_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "workbench"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 2
    assert "no display" in proc.stderr and "workbench train" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli("train", "adding_lstm", "--steps", "6", "--run-dir", str(run_dir), *SMALL)
    assert first.returncode == 0, first.stderr
    again = run_cli("train", "adding_lstm", "--steps", "6", "--run-dir", str(run_dir), *SMALL)
    assert again.returncode == 2 and "--resume" in again.stderr
    more = run_cli("train", "adding_lstm", "--steps", "10", "--run-dir", str(run_dir), "--resume", *SMALL)
    assert more.returncode == 0, more.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    starts = [r for r in records if r["kind"] == "start"]
    assert starts[-1]["step"] == 6 and starts[-1]["resumed_from"]
    assert [r["step"] for r in records if r["kind"] == "step"][-4:] == [7, 8, 9, 10]
