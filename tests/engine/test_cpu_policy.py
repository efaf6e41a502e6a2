"""The process's CPU policy (workbench/engine/cpu_policy.py): the allocator kept from
returning freed memory, the thread count; applied and recorded by every entry point,
turned off by WORKBENCH_ALLOCATOR=default, and with no effect on the numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.reliability.helpers import run_batch
from workbench.engine import cpu_policy

TINY = ["--device", "cpu", "--quiet", "--steps", "4", "--set", "model.layers.0.hidden_size=16",
        "--set", "data.options.seq_len=12", "--set", "data.options.val_size=16", "--set", "train.batch_size=8",
        "--set", "train.checkpoint_every=0", "--set", "train.probe_every=2", "--set", "train.eval_every=0",
        "--set", "train.num_threads=1"]
GLIBC = cpu_policy._glibc() is not None
KEEP = "keep freed memory" if GLIBC else "default"


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "WORKBENCH_ALLOCATOR")}
    full.update(OMP_NUM_THREADS="1", PYTHONPATH=str(PROJECT_ROOT), QT_QPA_PLATFORM="offscreen", **(env or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300,
                          cwd=PROJECT_ROOT)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """One batch of command lines (each its own process): train with and without the
    policy, then eval, try and export of the first run."""
    root = tmp_path_factory.mktemp("policy")
    train = ["train", "adding_lstm", *TINY]
    cases = [{"name": "policy", "argv": [*train, "--run-dir", str(root / "policy")]},
             {"name": "default", "argv": [*train, "--run-dir", str(root / "default")],
              "env": {"WORKBENCH_ALLOCATOR": "default"}}]
    results = run_batch(cases, root / "batch1")
    run = str(root / "policy")
    cases = [{"name": "eval", "argv": ["eval", run, "--max-batches", "1"]},
             {"name": "eval_env", "argv": ["eval", run, "--max-batches", "1"], "env": {"WORKBENCH_THREADS": "1"}},
             {"name": "eval_flag", "argv": ["eval", run, "--max-batches", "1", "--threads", "1"]},
             {"name": "eval_bad", "argv": ["eval", run], "env": {"WORKBENCH_THREADS": "many"}},
             {"name": "try", "argv": ["try", run, "--text", "0.1 0.5* 0.3 0.2*"]},
             {"name": "export", "argv": ["export", run, "--script", str(root / "script")]}]
    results.update(run_batch(cases, root / "batch2"))
    return root, results


def test_losses_are_bit_identical_with_and_without_the_policy(cli_runs):
    root, results = cli_runs
    assert results["policy"]["rc"] == 0 and results["default"]["rc"] == 0, results["policy"]["stderr"][-2000:]
    on, off = _records(root / "policy"), _records(root / "default")
    losses = [[r["loss"] for r in records if r["kind"] == "step"] for records in (on, off)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]  # exactly, not approximately
    probes = [[r["hidden_grad_norms"] for r in records if r["kind"] == "probe"] for records in (on, off)]
    assert probes[0] and probes[0] == probes[1]


def test_train_records_the_policy_and_the_environment_turns_it_off(cli_runs):
    root, _ = cli_runs
    policy = _records(root / "policy")[0]["cpu_policy"]
    assert policy["entry"] == "cli train" and policy["allocator"]["policy"] == KEEP
    if GLIBC:
        assert policy["allocator"]["mmap_threshold"] == 32 * 1024 * 1024
    assert policy["threads"] == 1  # train.num_threads
    off = _records(root / "default")[0]["cpu_policy"]
    assert off["allocator"] == {"policy": "default", "why": "WORKBENCH_ALLOCATOR=default"}


def test_eval_and_try_use_the_training_thread_policy(cli_runs):
    _, results = cli_runs
    for name in ("eval", "eval_env", "eval_flag", "try"):
        assert results[name]["rc"] == 0, (name, results[name]["stderr"][-2000:])
    policy = {name: json.loads(results[name]["stdout"])["cpu_policy"] for name in ("eval", "eval_env", "eval_flag", "try")}
    cores = cpu_policy.cpu_cores()
    assert policy["eval"]["entry"] == "cli eval" and policy["eval"]["allocator"]["policy"] == KEEP
    assert policy["eval"]["threads"] == max(1, cores - 1)
    assert policy["try"]["entry"] == "cli try" and policy["try"]["threads"] == max(1, cores - 1)
    assert policy["eval_env"]["threads"] == 1 and policy["eval_flag"]["threads"] == 1
    bad = results["eval_bad"]
    assert bad["rc"] == 2 and "WORKBENCH_THREADS" in bad["stderr"] and len(bad["stderr"].strip().splitlines()) == 1


def test_the_exported_script_applies_and_records_the_policy(cli_runs, tmp_path):
    root, results = cli_runs
    assert results["export"]["rc"] == 0, results["export"]["stderr"][-2000:]
    script = root / "script" / "train.py"
    for env, want in (({}, KEEP), ({"WORKBENCH_ALLOCATOR": "default"}, "default")):
        out = tmp_path / want.replace(" ", "_")
        run = _python(f"import runpy, sys; sys.modules['workbench'] = None; "
                      f"sys.argv = ['train.py', '--steps', '1', '--out', {str(out)!r}]; "
                      f"runpy.run_path({str(script)!r}, run_name='__main__')", env)
        assert run.returncode == 0, run.stderr[-3000:]
        start = _records(out)[0]
        assert start["kind"] == "start" and start["allocator"]["policy"] == want


def test_the_window_applies_the_policy_first():
    run = _python("import json; from workbench.gui.app import create_app; create_app(); "
                  "import sys; assert 'torch' not in sys.modules; "
                  "from workbench.engine import cpu_policy; print(json.dumps(cpu_policy.describe()))")
    assert run.returncode == 0, run.stderr[-3000:]
    policy = json.loads(run.stdout.strip().splitlines()[-1])
    assert policy["entry"] == "gui" and policy["allocator"]["policy"] == KEEP


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator")
def test_the_policy_keeps_freed_memory_mapped():
    """Large blocks allocated, touched and freed over and over, as a training step's
    activations are: by default glibc gives the freed top of its heap back past twice the
    largest block freed, and each round faults its pages in afresh; with the policy only
    the first round does."""
    code = """
import ctypes, json, resource, sys
from workbench.engine import cpu_policy
cpu_policy.apply("test")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
sizes = [4 << 20] * 6 + [2 << 20] * 6 + [40 << 20]  # blocks of a few MiB, and one past glibc's 32 MiB mmap limit
def round_():
    blocks = [libc.malloc(n) for n in sizes]
    for p, n in zip(blocks, sizes):
        ctypes.memset(p, 1, n)
    for p in reversed(blocks):
        libc.free(p)
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""
    pages = 10 * (36 + 40) * 256  # 4 KiB pages touched in the 10 rounds
    faults = {}
    for allocator in ("policy", "default"):
        run = _python(code, {"WORKBENCH_ALLOCATOR": allocator})
        assert run.returncode == 0, run.stderr[-2000:]
        faults[allocator] = int(run.stdout.strip().splitlines()[-1])
    assert faults["default"] > pages // 4  # glibc gave the memory back and faulted it in again
    assert faults["policy"] < pages // 20  # kept mapped: touched again without a fault


def test_describe_without_an_entry_point_and_the_switches(monkeypatch):
    monkeypatch.setattr(cpu_policy, "_applied", None)
    assert cpu_policy.describe()["allocator"] == {"policy": "not applied"}
    monkeypatch.setenv("WORKBENCH_ALLOCATOR", "default")
    assert cpu_policy.set_allocator() == {"policy": "default", "why": "WORKBENCH_ALLOCATOR=default"}
    monkeypatch.delenv("WORKBENCH_ALLOCATOR")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cpu_policy.set_allocator()["policy"] == "default"
    monkeypatch.setattr(sys, "platform", "linux")
    if GLIBC:  # the user's own glibc variable wins (glibc read it at start; mallopt would override it)
        monkeypatch.setenv("MALLOC_TOP_PAD_", "1048576")
        assert cpu_policy.set_allocator()["top_pad"] == "MALLOC_TOP_PAD_=1048576"
    monkeypatch.setenv("WORKBENCH_THREADS", "3")
    assert cpu_policy.default_threads() == 3
    monkeypatch.setenv("WORKBENCH_THREADS", "0")
    with pytest.raises(ValueError, match="WORKBENCH_THREADS"):
        cpu_policy.default_threads()
    monkeypatch.delenv("WORKBENCH_THREADS")
    assert cpu_policy.default_threads() == max(1, cpu_policy.cpu_cores() - 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_window_trainer_thread_and_the_threads_it_starts_run_below_the_interface():
    import threading

    seen = {}

    def child() -> None:
        seen["child"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def trainer() -> None:
        cpu_policy.lower_this_thread(10)
        seen["after"] = cpu_policy.lower_this_thread(10)  # again (a reused thread): not lower still
        t = threading.Thread(target=child)  # as torch's OpenMP team is started by this thread
        t.start()
        t.join()

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=trainer)
    t.start()
    t.join()
    want = min(19, base + 10)
    assert seen == {"after": want, "child": want}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's thread only
    assert cpu_policy.lower_this_thread(0) == 0


def test_the_window_plan_and_its_fallback(monkeypatch):
    cores = cpu_policy.cpu_cores()
    monkeypatch.delenv("WORKBENCH_TRAINER_NICE", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert cpu_policy.window_plan() == {"policy": "every core, below the interface", "threads": cores,
                                        "nice": cpu_policy.TRAINER_NICE}
    assert cpu_policy.window_plan(3)["threads"] == 3  # train.num_threads set: kept
    monkeypatch.setenv("WORKBENCH_TRAINER_NICE", "0")  # off: the old cores - 1 at the normal priority
    assert cpu_policy.window_plan() == {"policy": "cores - 1", "threads": max(1, cores - 1), "nice": 0,
                                        "why": "WORKBENCH_TRAINER_NICE=0"}
    monkeypatch.setenv("WORKBENCH_TRAINER_NICE", "high")
    with pytest.raises(ValueError, match="WORKBENCH_TRAINER_NICE"):
        cpu_policy.window_plan()
    monkeypatch.delenv("WORKBENCH_TRAINER_NICE")
    monkeypatch.setattr(sys, "platform", "darwin")  # no per-thread priority: cores - 1
    assert cpu_policy.window_plan()["policy"] == "cores - 1" and "darwin" in cpu_policy.window_plan()["why"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_window_falls_back_to_cores_less_one_where_the_priority_cannot_be_lowered(monkeypatch):
    import threading

    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("WORKBENCH_TRAINER_NICE", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(cpu_policy, "lower_this_thread", lambda increment: 0)  # refused
    seen = {}
    t = threading.Thread(target=lambda: seen.update(cpu_policy.window_training()))
    t.start()
    t.join()
    torch.set_num_threads(before)
    if os.getpriority(os.PRIO_PROCESS, os.getpid()) >= 0:
        assert seen == {"policy": "cores - 1", "threads": max(1, cpu_policy.cpu_cores() - 1), "nice": 0,
                        "why": "the training thread's priority could not be lowered"}


class _FakeClock:
    """Time that moves only when a step 'runs': each step costs cost[threads] seconds."""

    def __init__(self, cost: dict[int, float]):
        self.now, self.cost, self.steps = 0.0, cost, []

    def __call__(self) -> float:
        return self.now

    def step(self, threads: int) -> None:
        self.steps.append(threads)
        self.now += self.cost[threads]


def test_the_thread_trial_keeps_the_faster_count_within_its_budget():
    small = _FakeClock({2: 0.004, 1: 0.002})  # a small model: one thread is faster
    got = cpu_policy.choose_threads([2, 1], small.step, budget_s=1.0, clock=small)
    assert got["threads"] == 1 and got["step_ms"] == {"2": 4.0, "1": 2.0}
    # one untimed step, then rounds up to the cap (each round takes 6 ms of the 1 s)
    assert small.steps == [2] + [2, 1] * cpu_policy.TRIAL_MAX_ROUNDS
    wide = _FakeClock({2: 0.15, 1: 0.2})  # every core wins; the budget ends the rounds
    got = cpu_policy.choose_threads([2, 1], wide.step, budget_s=1.0, clock=wide)
    assert got["threads"] == 2 and len(wide.steps) == 1 + 2 * 3  # 3 rounds of 0.35 s pass 1 s
    tie = _FakeClock({4: 0.01, 1: 0.01})
    assert cpu_policy.choose_threads([4, 1], tie.step, clock=tie)["threads"] == 1  # a tie: fewer threads
    slow = _FakeClock({2: 5.0, 1: 2.0})  # steps past the budget (a loaded machine): one round, still timed
    got = cpu_policy.choose_threads([2, 1], slow.step, budget_s=1.0, clock=slow)
    assert got["threads"] == 1 and slow.steps == [2, 2, 1] and got["trial_s"] == 12.0


def _tiny(threads: int, steps: int = 4):
    from workbench import cli

    return cli.load_preset_with_overrides(
        "adding_lstm", ["model.layers.0.hidden_size=16", "data.options.seq_len=12", "data.options.val_size=16",
                        "train.batch_size=8", "train.checkpoint_every=0", "train.probe_every=2",
                        "train.eval_every=0", f"train.num_threads={threads}"], steps, "cpu", 3)


def _losses_and_start(preset) -> tuple[list[float], dict]:
    from workbench.engine.records import Start, Step
    from workbench.engine.trainer import Trainer

    records = list(Trainer(preset).run())
    start = next(r for r in records if isinstance(r, Start))
    return [r.loss for r in records if isinstance(r, Step)], start.cpu_policy


@pytest.mark.skipif(cpu_policy.cpu_cores() < 2, reason="a trial needs two thread counts")
def test_the_thread_trial_leaves_the_losses_of_the_count_it_chose(monkeypatch, tmp_path):
    """Automatic threads: the trial's timed steps are outside the run (forked RNG, no
    update), so its losses are bit-identical to a run given the chosen count. (Across
    thread counts they are not: 1 and 2 threads differ in the last bits of some losses.)"""
    import types

    import torch

    from workbench.engine.trainer import Trainer

    monkeypatch.delenv("WORKBENCH_THREAD_TRIAL", raising=False)  # (tests/conftest.py turns it off)
    before = torch.get_num_threads()
    clock = _FakeClock({1: 0.001, 2: 0.002})  # one thread "faster", so that the run itself is quick
    real = cpu_policy.choose_threads

    def timed(candidates, run_step):  # the real steps, timed by the fake clock
        return real(candidates, lambda n: (run_step(n), clock.step(n)), clock=clock)

    monkeypatch.setattr(cpu_policy, "choose_threads", timed)
    monkeypatch.setattr(cpu_policy, "TRIAL_MAX_ROUNDS", 1)  # (the fake clock never spends the budget)
    try:
        torch.set_num_threads(2)  # torch's automatic count on two cores
        losses, policy = _losses_and_start(_tiny(0))
        assert clock.steps == [2, 2, 1]  # one untimed step, one timed round
        # a resumed run takes the count its checkpoint's trial chose: no second trial
        torch.set_num_threads(2)
        list(Trainer(_tiny(0, steps=2), run_dir=tmp_path / "run").run())
        torch.set_num_threads(2)
        resumed = list(Trainer(_tiny(0, steps=3), run_dir=tmp_path / "run", resume=True).run())
        assert resumed[0].cpu_policy["thread_trial"] == {"threads": 1, "from": "the checkpoint resumed"}
        assert resumed[0].cpu_policy["threads"] == 1 and clock.steps == [2, 2, 1] * 2  # (the first run's trial)
        due = types.SimpleNamespace(device=torch.device("cpu"), train=types.SimpleNamespace(num_threads=0))
        torch.set_num_threads(2)
        assert Trainer._thread_trial_due(due)
        monkeypatch.setenv("WORKBENCH_THREAD_TRIAL", "off")
        assert not Trainer._thread_trial_due(due)
    finally:
        torch.set_num_threads(before)
    assert policy["thread_trial"]["threads"] == 1 and policy["threads"] == 1
    given, given_policy = _losses_and_start(_tiny(1))
    assert "thread_trial" not in given_policy  # a count given: no trial
    assert len(losses) == 4 and losses == given  # exactly


def _window_run(tmp_path, name: str, threads: int, env: dict, monkeypatch) -> tuple[list[float], dict]:
    """What the window's worker records, trained in a thread of its own (as in its QThread)."""
    import threading

    pytest.importorskip("PySide6.QtCore")
    from workbench.engine.records import Start, Step, read_metrics
    from workbench.gui.worker import TrainWorker
    from workbench.runs import RunHistory

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    worker = TrainWorker(_tiny(threads), tmp_path / name, history=RunHistory(tmp_path / "home"))
    t = threading.Thread(target=worker.run)
    t.start()
    t.join()
    for key in env:
        monkeypatch.delenv(key)
    assert worker.error == "", worker.error
    records = read_metrics(tmp_path / name / "metrics.jsonl")  # (its signals would need an event loop)
    start = next(r for r in records if isinstance(r, Start))
    return [r.loss for r in records if isinstance(r, Step)], start.cpu_policy


def test_the_window_records_its_policy_and_a_lower_priority_changes_no_loss(tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        low, policy = _window_run(tmp_path, "low", 1, {}, monkeypatch)
        normal, off = _window_run(tmp_path, "normal", 1, {"WORKBENCH_TRAINER_NICE": "0"}, monkeypatch)
        monkeypatch.delenv("WORKBENCH_THREAD_TRIAL", raising=False)  # (tests/conftest.py turns it off)
        auto, automatic = _window_run(tmp_path, "auto", 0, {}, monkeypatch)
    finally:
        torch.set_num_threads(before)
    assert len(low) == 4 and low == normal  # bit-identical, the same thread count at either priority
    if sys.platform.startswith("linux"):
        assert policy["window"]["policy"] == "every core, below the interface"
        assert policy["window"]["nice"] == min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + cpu_policy.TRAINER_NICE)
    assert policy["window"]["threads"] == 1 and policy["threads"] == 1  # train.num_threads given: kept
    assert off["window"] == {"policy": "cores - 1", "threads": 1, "nice": 0, "why": "WORKBENCH_TRAINER_NICE=0"}
    cores = cpu_policy.cpu_cores()
    assert automatic["window"]["threads"] == (cores if sys.platform.startswith("linux") else max(1, cores - 1))
    if automatic["window"]["threads"] > 1:  # automatic on several cores: the trial chose
        assert automatic["thread_trial"]["threads"] in (1, automatic["window"]["threads"])
        assert automatic["threads"] == automatic["thread_trial"]["threads"]


def test_out_of_memory_in_the_thread_trial_is_reported_as_the_first_steps(monkeypatch):
    """The trial runs the first step's forward before the loop: memory running out there
    must end the run as memory running out at step 1 does (the hint names what to
    change), not as an unexplained error."""
    import torch

    from workbench.engine.model import RecurrentModel
    from workbench.engine.records import End, Start
    from workbench.engine.trainer import Trainer

    monkeypatch.delenv("WORKBENCH_THREAD_TRIAL", raising=False)
    original = RecurrentModel.forward

    def forward(model, *args, **kwargs):
        if torch.is_grad_enabled():
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")
        return original(model, *args, **kwargs)

    monkeypatch.setattr(RecurrentModel, "forward", forward)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # automatic on two cores: the trial is due
        records = list(Trainer(_tiny(0)).run())
    finally:
        torch.set_num_threads(before)
    start = next(r for r in records if isinstance(r, Start))
    end = next(r for r in records if isinstance(r, End))
    assert start.cpu_policy["thread_trial"] == {"threads": 2, "skipped": "out of memory"}
    assert end.status == "failed" and "out of memory" in end.message and "train.batch_size" in end.message
