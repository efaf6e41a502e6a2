"""Sweeps (workbench/sweep.py, `workbench sweep`): tiny studies on real storage, real runs.

Every trial trains adding_lstm cut down to 8 units, 10 time steps and 20 steps, so a
trial takes about a second; the multi-process and PostgreSQL studies cost a few seconds
more for their workers' start (a fresh interpreter each, importing torch).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from workbench import presets, spec, sweep  # noqa: E402
from workbench.cli import main  # noqa: E402
from workbench.errors import UsageError  # noqa: E402
from workbench.runs import RunHistory  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.options.seq_len=10", "data.options.val_size=64", "model.layers.0.hidden_size=8",
        "train.batch_size=16", "train.eval_every=5", "train.probe_every=0", "train.checkpoint_every=0",
        "train.device=cpu", "train.num_threads=1"]


def tiny(steps: int = 20):
    return spec.with_overrides(presets.resolve("adding_lstm"), TINY + [f"train.steps={steps}"])


def make(tmp_path, params=("train.lr=log:1e-6..1e-2",), **kw) -> sweep.Sweep:
    kw.setdefault("storage", str(tmp_path / "study.sqlite3"))
    kw.setdefault("runs_dir", tmp_path / "runs")
    kw.setdefault("study", "s")
    return sweep.Sweep(kw.pop("preset", None) or tiny(), [sweep.parse_param(p) for p in params], **kw)


def states(study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


# ----------------------------------------------------------------------------- parameters


def test_params_parse_and_take_their_type_from_the_field():
    preset = tiny()
    got = sweep.check_params(preset, [sweep.parse_param(t) for t in (
        "train.lr=log:1e-4..1e-2", "model.layers.0.hidden_size=8..64", "model.layers.0.cell=lstm,gru",
        "train.clip_value=0.1,1,10", "train.batch_size=int:log:8..64")])
    assert [(p.field, p.kind) for p in got] == [
        ("train.lr", "log"), ("model.layers.0.hidden_size", "int"), ("model.layers.0.cell", "choice"),
        ("train.clip_value", "choice"), ("train.batch_size", "int_log")]
    assert got[1].low == 8 and got[1].high == 64 and isinstance(got[1].low, int)
    assert got[3].choices == (0.1, 1, 10)
    # the canonical text reads back as the same parameter
    assert [sweep.check_params(preset, [sweep.parse_param(p.text())])[0] for p in got] == got


@pytest.mark.parametrize("text, words", [
    ("model.layers.0.hiden_size=8..64", ["model.layers.0.hiden_size", "unknown field"]),
    ("model.layers.3.hidden_size=8..64", ["model.layers.3", "out of range"]),
    ("model.layers.0.cell=log:1..10", ["model.layers.0.cell", "needs a number field", "text"]),
    ("model.layers.0.cell=", ["model.layers.0.cell", "choice list is empty"]),
    ("model.layers.0.cell=, ,", ["model.layers.0.cell", "choice list is empty"]),
    ("model.layers.0.cell=lstm,banana", ["banana", "not one of"]),
    ("train.lr=log:0..1e-2", ["train.lr", "above 0"]),
    ("train.lr=1e-2..1e-4", ["train.lr", "empty"]),
    ("model.layers.0.hidden_size=0..64", ["model.layers.0.hidden_size", "valid preset"]),
    ("train.lr", ["FIELD=RANGE"]),
])
def test_bad_params_are_refused_before_any_trial_naming_the_field(text, words):
    with pytest.raises(UsageError) as info:
        sweep.check_params(tiny(), [sweep.parse_param(text)])
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_grid_takes_choices_and_whole_number_ranges_but_not_a_continuous_one(tmp_path):
    job = make(tmp_path, ("model.layers.0.cell=lstm,gru", "model.layers.0.hidden_size=int:4..6"), sampler="grid")
    assert job.trials == 6  # every grid point
    with pytest.raises(UsageError, match="continuous range"):
        make(tmp_path, ("train.lr=log:1e-4..1e-2",), sampler="grid")


@pytest.mark.parametrize("args, words", [
    (["--param", "model.layers.0.bogus=1..2"], ["model.layers.0.bogus", "unknown field"]),
    (["--param", "model.layers.0.cell=1..2"], ["model.layers.0.cell", "needs a number field"]),
    (["--param", "model.layers.0.cell="], ["choice list is empty"]),
    (["--param", "train.lr=1e-4..1e-2", "--storage", "postgresql://nobody:secret@127.0.0.1:1/none"],
     ["--storage", "postgresql://nobody:***@127.0.0.1:1/none", "cannot open"]),
    (["--param", "train.lr=1e-4..1e-2", "--storage", "nosuchdb://x"], ["--storage", "nosuchdb://x"]),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    code = main(["sweep", "adding_lstm", "--runs-dir", str(tmp_path / "runs"),
                 *(["--storage", str(tmp_path / "s.sqlite3")] if "--storage" not in args else []), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("workbench: error:")
    for word in words:
        assert word in err[0]
    assert "secret" not in err[0]
    assert not (tmp_path / "runs").exists()  # refused before the first trial


# ----------------------------------------------------------------------------- a study end to end


@pytest.fixture(scope="module")
def pruned_study(tmp_path_factory):
    """Three trials in this process with pruning, in a fixed order: two good learning
    rates first (the median's startup trials), then one too small to learn in 5 steps."""
    tmp = tmp_path_factory.mktemp("pruned")
    job = make(tmp, ("train.lr=log:1e-6..1e-2", "model.layers.0.cell=lstm,gru"), prune=True, trials=3)
    study = job.open_study()
    for lr, cell in ((1e-2, "lstm"), (1e-2, "gru"), (1e-6, "lstm")):
        study.enqueue_trial({"train.lr": lr, "model.layers.0.cell": cell})
    lines: list[str] = []
    result = job.run(say=lines.append)
    return job, sweep.load_study(sweep.open_storage(job.storage), job.study), result, lines


def test_a_study_runs_each_trial_as_an_ordinary_run(pruned_study):
    job, study, result, lines = pruned_study
    assert result["ran"] == 3 and not result["stopped"]
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED"]
    rows = RunHistory().list(study="s")
    by_trial = {r.trial: r for r in rows if r.run_dir.startswith(str(Path(job.runs_dir).resolve()))}
    assert sorted(by_trial) == [0, 1, 2]
    for t in study.trials:
        row = by_trial[t.number]
        assert row.run_dir == t.user_attrs["run_dir"] and row.id == t.user_attrs["run_id"]
        assert (Path(row.run_dir) / "metrics.jsonl").is_file() and (Path(row.run_dir) / "preset.json").is_file()
        trained = spec.load(Path(row.run_dir) / "preset.json")
        assert trained.train.lr == t.params["train.lr"]
        assert trained.model.layers[0].cell == t.params["model.layers.0.cell"]
    # the completed trials' values are their runs' final metric; evaluations were reported
    for t in study.trials[:2]:
        assert t.value == pytest.approx(by_trial[t.number].metrics["val_loss"])
        assert sorted(t.intermediate_values) == [5, 10, 15, 20]
    assert by_trial[2].status == "stopped" and "pruned" in by_trial[2].message
    assert by_trial[2].step == 5 and list(study.trials[2].intermediate_values) == [5]


def test_show_prints_trials_best_and_importances_and_saves_the_best(pruned_study, capsys):
    job, study, _, _ = pruned_study
    assert main(["sweep", "show", "s", "--storage", job.storage, "--save-best", "tuned_adding"]) == 0
    out = capsys.readouterr().out
    best = study.best_trial
    assert f"best: trial {best.number}" in out and "pruned" in out and "importances:" in out
    saved = presets.resolve("tuned_adding")
    assert saved.name == "tuned_adding"
    assert saved.model.layers[0].cell == best.params["model.layers.0.cell"]
    assert saved.train.lr == best.params["train.lr"]
    assert main(["runs", "--study", "s"]) == 0  # the trials in the run history, tagged
    listed = capsys.readouterr().out
    assert all(f"[s#{n}]" in listed for n in range(3))
    assert main(["sweep", "show", "nope", "--storage", job.storage]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_a_study_under_the_same_name_must_ask_the_same_question(pruned_study):
    job, _, _, _ = pruned_study
    with pytest.raises(UsageError, match="another params"):
        make(Path(job.runs_dir).parent, ("train.lr=log:1e-5..1e-2", "model.layers.0.cell=lstm,gru"),
             prune=True, trials=3).run(say=lambda _t: None)


def test_a_stopped_study_resumes_with_the_interrupted_point_first(tmp_path):
    stop = threading.Event()
    lines: list[str] = []

    def say(text):  # the stop arrives while trial 1 trains (as a Ctrl-C would)
        lines.append(text)
        if text.startswith("trial 1:") and "->" in text:
            stop.set()

    job = make(tmp_path, trials=3, sampler="random")
    result = job.run(say=say, stop=stop)
    study = sweep.load_study(sweep.open_storage(job.storage), "s")
    assert result["stopped"] and states(study) == ["COMPLETE", "FAIL", "WAITING"]
    interrupted = study.trials[1]
    assert interrupted.user_attrs["interrupted"] is True
    row = RunHistory().get(interrupted.user_attrs["run_id"])
    assert row.status == "stopped" and row.step < 20

    result = make(tmp_path, trials=3, sampler="random").run(say=lines.append)
    study = sweep.load_study(sweep.open_storage(job.storage), "s")
    assert result["ran"] == 2 and not result["stopped"]
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[2].params == interrupted.params  # the queued point ran first
    assert len({t.user_attrs["run_dir"] for t in study.trials}) == 4


def test_two_worker_processes_share_one_study_file_and_record_each_trial_once(tmp_path):
    job = make(tmp_path, trials=4, jobs=2, sampler="random", study=f"two-{uuid.uuid4().hex[:6]}")
    _check_two_workers(job)


def _check_two_workers(job):
    result = job.run(say=lambda _t: None)
    study = sweep.load_study(sweep.open_storage(job.storage), job.study)
    assert result["ran"] == 4
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert states(study) == ["COMPLETE"] * 4
    # the workers trained, not this process (which of the two took how many trials is their race)
    pids = {t.user_attrs["pid"] for t in study.trials}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    rows = RunHistory().list(study=job.study)
    assert sorted(r.trial for r in rows) == [0, 1, 2, 3]  # one history row per trial
    assert {r.run_dir for r in rows} == {t.user_attrs["run_dir"] for t in study.trials}
    # the workers shared the cores: each trial trained with cores // 2 threads
    from workbench.engine.cpu_policy import cpu_cores

    for r in rows:
        assert r.preset().train.num_threads == max(1, cpu_cores() // 2)


def test_two_workers_on_postgresql(tmp_path):
    url = os.environ.get("WORKBENCH_TEST_POSTGRES_URL", "")
    if not url:
        pytest.skip("no PostgreSQL server (set WORKBENCH_TEST_POSTGRES_URL; .ci/run starts one)")
    pytest.importorskip("psycopg")
    job = make(tmp_path, trials=4, jobs=2, sampler="random", storage=url, study=f"pg-{uuid.uuid4().hex[:8]}")
    _check_two_workers(job)


def test_ctrl_c_stops_the_cli_sweep_cleanly(tmp_path):
    """A real SIGINT to `workbench sweep`: the trial stops after its step, is recorded
    as interrupted, and the command says how to resume (exit 1)."""
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "WORKBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    storage = str(tmp_path / "study.sqlite3")
    cmd = [sys.executable, "-m", "workbench", "sweep", "adding_lstm", *[a for s in TINY for a in ("--set", s)],
           "--set", "train.steps=100000", "--param", "train.lr=log:1e-4..1e-2", "--trials", "2",
           "--storage", storage, "--study", "cc", "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        history = RunHistory(home / "history.sqlite3")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:  # wait until trial 0 trains
            if home.joinpath("history.sqlite3").exists() and any(r.step > 0 for r in history.list(study="cc")):
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "run the same command to resume" in err and "Traceback" not in err
    study = sweep.load_study(sweep.open_storage(f"sqlite:///{storage}"), "cc")
    assert states(study) == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs["interrupted"] is True
    (row,) = history.list(study="cc")
    assert row.status == "stopped" and 0 < row.step < 100000


def test_an_older_history_file_gains_the_study_and_trial_columns(tmp_path):
    """A history written before sweeps (no study/trial columns) is read and tagged as before."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    RunHistory(path).start(tiny(), tmp_path / "a")
    with sqlite3.connect(path) as conn:  # back to the file as an older workbench left it
        conn.execute("ALTER TABLE runs DROP COLUMN trial")
        conn.execute("ALTER TABLE runs DROP COLUMN study")
    history = RunHistory(path)
    (old,) = history.list()
    assert old.study is None and old.trial is None
    history.start(tiny(), tmp_path / "b", study="s", trial=3)
    assert [(r.study, r.trial) for r in history.list(study="s")] == [("s", 3)]


def test_a_metric_the_task_does_not_report_stops_the_sweep_naming_it(tmp_path):
    job = make(tmp_path, metric="accuracy", trials=3)
    with pytest.raises(UsageError, match=r"--metric accuracy: .*reports: .*val_loss"):
        job.run(say=lambda _t: None)
    study = sweep.load_study(sweep.open_storage(job.storage), "s")
    assert states(study) == ["FAIL"]  # the first trial, and no other


def test_a_grid_visits_each_point_once(tmp_path):
    job = make(tmp_path, ("model.layers.0.cell=lstm,gru,rnn_tanh",), sampler="grid",
               preset=spec.with_overrides(tiny(), ["train.steps=5"]))
    assert job.run(say=lambda _t: None)["ran"] == 3
    study = sweep.load_study(sweep.open_storage(job.storage), "s")
    assert sorted(t.params["model.layers.0.cell"] for t in study.trials) == ["gru", "lstm", "rnn_tanh"]
    assert states(study) == ["COMPLETE"] * 3


def test_no_trial_starts_once_the_minutes_are_up(tmp_path):
    lines: list[str] = []
    result = make(tmp_path, minutes=1e-9, trials=2).run(say=lines.append)
    assert result["ran"] == 0 and "minutes are up" in lines[-1]
