"""How responsive the window stays while a model trains at full speed on the CPU.

Starts the workbench window offscreen, trains a medium LSTM (2 x 256, T=100, batch 64 by
default) in the worker thread and records, for --seconds:

- the event-loop delay: a 10 ms precise QTimer's actual interval minus 10 ms (what a
  click or a key press waits for, at worst, before the window reacts);
- the plot frame time: the frame timer's redraw of the plots from the buffers (setData),
  and separately, a full frame (setData + a synchronous repaint of every plot);
- then the same redraw with 10^6 points per series (a long run), to show it stays smooth.

The idle event-loop delay (window open, not training) is measured first, in the same
run, as the baseline. Targets (issue 4): p99 <= 25 ms and max <= 50 ms while training.

    .venv/bin/python bench/gui_latency.py [--seconds 30] [--threads N] [--nice N]

--threads sets train.num_threads (default 0: automatic, as the window does: every core
with the training threads below the interface's priority, workbench/engine/cpu_policy.py).
--nice sets WORKBENCH_TRAINER_NICE (0: the old policy, cores - 1 at the normal priority;
with --compare, the new policy's increment).

--compare (issue 22): the window's training against the CLI's, in one run of about 2.5
minutes, on the idle machine and beside a busy process (a busy loop in a session of its
own, as another program would be; --busy off|on|both), each phase --seconds long:

- cli: the engine's trainer in a plain thread of this process with the window closed,
  torch threads automatic as `workbench train` has them (every core, then the timed
  thread trial): the CLI's speed;
- window, old policy (WORKBENCH_TRAINER_NICE=0: cores - 1 threads at the interface's
  priority) and window, new policy (every core at nice +TRAINER_NICE): steps/s and
  their ratio to the cli phase, with the event-loop delay (p50, p99, max), the nice
  values of the busy threads (the trainer and torch's team: all below the interface?),
  the interface thread's CPU time per second of training (thread CPU time: meaningful
  on a loaded machine, where the wall-clock ratios are not) and the plot frames drawn
  per second (workbench/gui/pacing.py paces them).

It prints a Markdown table for BENCHMARKS.md. Targets: >= 0.9x the CLI's steps/s with
p99 <= 25 ms. The load average is printed: other processes inflate every number here.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def row(name: str, values_s, unit_ms: bool = True) -> str:
    v = np.asarray(values_s, dtype=np.float64) * (1000.0 if unit_ms else 1.0)
    if not v.size:
        return f"{name:<44} (no samples)"
    return f"{name:<44} n={v.size:<6} p50 {pct(v, 50):7.2f}  p99 {pct(v, 99):7.2f}  max {v.max():7.2f}  ms"


class LoopProbe:
    """A precise timer (10 ms by default) whose lateness is the event loop's delay; measure(seconds)
    runs a real event loop (not processEvents polling) for that long and returns the
    delays in seconds. A local QEventLoop, not app.exec(): once the application's own
    loop has quit, Qt treats the application as closing."""

    def __init__(self, interval_ms: int = 10):
        from PySide6.QtCore import Qt, QTimer

        self.interval_ms = interval_ms
        self.stamps: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(self.interval_ms)
        self.timer.timeout.connect(lambda: self.stamps.append(time.perf_counter()))

    def measure(self, seconds: float) -> list[float]:
        from PySide6.QtCore import QEventLoop, QTimer

        self.stamps.clear()
        self.timer.start()
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()
        self.timer.stop()
        return list(np.maximum(np.diff(np.asarray(self.stamps)) - self.interval_ms / 1000.0, 0.0))


def bench_window(tmp: Path):
    """The window as a user has it (1280x800), its settings and data in ``tmp``."""
    from PySide6.QtCore import QSettings

    from workbench.gui.main_window import MainWindow

    window = MainWindow(settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat), data_dir=tmp / "data")
    window.dialog_answers = {"keep_run": "discard", "save_changes": "discard"}
    window.resize(1280, 800)
    return window


def thread_cpu() -> dict[int, tuple[float, int]]:
    """{thread id: (CPU seconds so far, nice)} of this process's threads (Linux; {} elsewhere)."""
    out = {}
    try:
        names = os.listdir("/proc/self/task")
    except OSError:
        return out
    hz = os.sysconf("SC_CLK_TCK")
    for name in names:
        try:
            with open(f"/proc/self/task/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
            out[int(name)] = ((int(fields[11]) + int(fields[12])) / hz, int(fields[16]))  # utime + stime, nice
        except (OSError, IndexError, ValueError):
            continue
    return out


def busy_nices(before: dict, after: dict, seconds: float, skip: int) -> str:
    """The nice values of the threads (other than ``skip``, the interface's) that used more
    than 10% of a core between the two thread_cpu() snapshots: torch's team, e.g. "10 10"."""
    nices = sorted(nice for tid, (cpu, nice) in after.items()
                   if tid != skip and cpu - before.get(tid, (0.0, 0))[0] > 0.1 * seconds)
    return " ".join(map(str, nices)) or "—"


def pump(app, seconds: float, until=None) -> None:
    """Process events for up to ``seconds``, until ``until()`` holds."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.001)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=None,
                    help="how long to measure while training (default 30; with --compare 12 a phase)")
    ap.add_argument("--idle-seconds", type=float, default=5.0, help="the idle baseline's length")
    ap.add_argument("--threads", type=int, default=0, help="train.num_threads (0: automatic, as the window does)")
    ap.add_argument("--nice", type=int, default=None,
                    help="WORKBENCH_TRAINER_NICE (default: the environment's, else the window's default)")
    ap.add_argument("--compare", action="store_true",
                    help="the window's old and new thread policies against the CLI, idle and beside a busy process")
    ap.add_argument("--repeats", type=int, default=1, help="--compare: rounds of the three phases per condition")
    ap.add_argument("--busy", choices=("off", "on", "both"), default="both",
                    help="--compare: with a busy process beside it (default: both, one after the other)")
    ap.add_argument("--probe-ms", type=int, default=10,
                    help="the event-loop probe's interval: its wake-ups are part of what training shares the "
                         "cores with (100 Hz: 24 ms/s of interface CPU on its own)")
    ap.add_argument("--no-replay", action="store_true", help="skip the long-run redraw check")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--points", type=int, default=1_000_000, help="series length for the long-run frame check")
    args = ap.parse_args(argv)
    if args.compare:
        args.seconds = args.seconds or 12.0
        return compare(args)
    args.seconds = args.seconds or 30.0

    from PySide6.QtCore import QTimer

    from workbench.gui.app import create_app

    app = create_app()
    from workbench.engine import cpu_policy

    if args.nice is not None:
        os.environ[cpu_policy.ENV_TRAINER_NICE] = str(args.nice)
    from workbench.gui.rundata import RunData

    tmp = Path(tempfile.mkdtemp(prefix="workbench-bench-"))
    window = bench_window(tmp)
    window.show()
    window.welcome.hide()
    probe = LoopProbe(args.probe_ms)

    load0 = os.getloadavg()
    threads = args.threads
    pump(app, 20, until=lambda: window.resolver.task_info("adding") is not None)  # task modules (torch) loaded

    # ---- idle baseline
    idle = probe.measure(args.idle_seconds)

    # ---- training at full speed
    window.open_builtin("adding_lstm", quiet=True)
    doc = window.doc
    doc.edit("bench", lambda p: (
        setattr(p.model, "layers", [type(p.model.layers[0])("lstm", args.hidden) for _ in range(args.layers)]),
        p.data.options.update(seq_len=args.seq_len),
        setattr(p.train, "batch_size", args.batch),
        setattr(p.train, "steps", 10**7),
        setattr(p.train, "num_threads", threads),
        setattr(p.train, "checkpoint_every", 0),
        setattr(p.train, "eval_every", 100),
        setattr(p.train, "probe_every", 50),
        setattr(p.train, "device", "cpu"),
    ))
    assert window.start_training(), window.validation_errors()
    run = window.current_run
    pump(app, 120, until=lambda: run.last_step >= 3 or not window.training_active)  # past set-up and the first steps
    if run.last_step < 3:
        print(f"training did not start: {run.status}; {window.info.label.text()}", file=sys.stderr)
        return 1
    first_step = run.last_step
    frames_before = len(window.frame_times)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    busy = probe.measure(args.seconds)
    elapsed = time.perf_counter() - t0
    gui_ms_s = 1000 * (time.thread_time() - cpu0) / elapsed
    frames = window.frame_times[frames_before:]
    steps = run.last_step - first_step
    window.stop_training()
    pump(app, 120, until=lambda: not window.training_active)

    # ---- a long run: 10^6 points per series, growing by 30 steps every 33 ms (a fast
    # live run), drawn by the window's own frame timer; a 2,000-point run is the baseline.
    def long_run(n: int) -> RunData:
        big = RunData(f"{n:,} points", colour="#9467bd", live=True, clip="norm", clip_value=1.0)
        rng = np.random.default_rng(0)
        steps_arr = np.arange(1, n + 1, dtype=np.float64)
        for series, values in ((big.steps, steps_arr), (big.loss, 1.0 / np.sqrt(steps_arr) + 0.05 * rng.random(n)),
                               (big.lr, np.full(n, 1e-3)), (big.grad_norm, 1 + rng.random(n)),
                               (big.grad_norm_clipped, np.ones(n)), (big.units_per_s, np.full(n, 1e4)),
                               (big.clip_steps, steps_arr), (big.clip_norms, 1 + rng.random(n))):
            series._buf = np.empty(max(2 * series.capacity, n))
            series._buf[:n] = values
            series._start, series._len = 0, n
        for s in range(max(1, n - 400), n + 1):
            big._add_profiles("inputs", s, taps)
        return big

    taps = {"layers.0": np.geomspace(1e-6, 1e-2, args.seq_len), "layers.1": np.geomspace(1e-5, 1e-2, args.seq_len)}

    def replay(run: RunData, seconds: float) -> tuple[list[float], list[float]]:
        window.runs = [run]
        window.current_run = run
        window._plots_changed()
        counter = [run.last_step]

        def grow() -> None:
            recs = []
            for _ in range(30):
                counter[0] += 1
                recs.append({"kind": "step", "step": counter[0], "loss": 0.01, "lr": 1e-3, "grad_norm": 1.5,
                             "grad_norm_clipped": 1.0, "clipped": True, "timestep_grad_norms": taps})
            run.add(recs)
            wake = getattr(window, "_wake_plots", None)  # (the window's record slot does this: news for the pacer)
            if wake is not None:
                wake()

        feeder = QTimer()
        feeder.setInterval(33)
        feeder.timeout.connect(grow)
        before = len(window.frame_times)
        feeder.start()
        delayed = probe.measure(seconds)
        feeder.stop()
        return delayed, window.frame_times[before:]

    small_delay = small_frames = big_delay = big_frames = []
    if not args.no_replay:
        small_delay, small_frames = replay(long_run(2000), 8)
        big_delay, big_frames = replay(long_run(args.points), 8)
    window.close()
    pump(app, 10, until=lambda: not window.isVisible())
    load1 = os.getloadavg()

    print(f"machine: {os.cpu_count()} cores; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end "
          f"(other processes inflate every number below)")
    policy = start_policy(run.run_dir)
    print(f"model: {args.layers} x LSTM {args.hidden}, T={args.seq_len}, batch {args.batch}, torch threads "
          f"{policy.get('threads')}; {steps} steps in {elapsed:.1f} s = {steps / elapsed:.2f} steps/s while measuring; "
          f"window policy {policy.get('window')}; GUI thread CPU {gui_ms_s:.0f} ms per s of training")
    print(row("event-loop delay, idle (baseline)", idle))
    print(row("event-loop delay, training", busy))
    print(row("frame (update + paint), training", frames))
    print(row("frame (update + paint), replay at 2,000 points", small_frames))
    print(row(f"frame (update + paint), replay at {args.points:,} points", big_frames))
    print(row("event-loop delay, replay at 2,000 points", small_delay))
    print(row(f"event-loop delay, replay at {args.points:,} points", big_delay))
    p99, mx = pct(busy, 99) * 1000, max(busy) * 1000 if busy else float("nan")
    print(f"training vs idle: p99 {p99:.1f} ms vs {pct(idle, 99) * 1000:.1f} ms "
          f"({p99 / max(pct(idle, 99) * 1000, 1e-9):.1f}x); target p99 <= 25 ms: {'met' if p99 <= 25 else 'MISSED'}, "
          f"max <= 50 ms: {'met' if mx <= 50 else 'MISSED'}")
    return 0


def start_policy(run_dir) -> dict:
    """The cpu_policy of a run folder's Start record (threads, window, thread_trial)."""
    import json

    try:
        with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as f:
            return json.loads(f.readline()).get("cpu_policy", {})
    except (OSError, ValueError):
        return {}


def configure(p, args) -> None:
    """Set a preset (adding_lstm) to the model every phase trains: args.layers x LSTM
    args.hidden, T=args.seq_len, batch args.batch, on the CPU, for as long as asked."""
    p.model.layers = [type(p.model.layers[0])("lstm", args.hidden) for _ in range(args.layers)]
    p.data.options.update(seq_len=args.seq_len, val_size=256)  # (a short final evaluation when stopped)
    for name, value in (("batch_size", args.batch), ("steps", 10**7), ("num_threads", args.threads),
                        ("checkpoint_every", 0), ("eval_every", 100), ("probe_every", 50), ("device", "cpu")):
        setattr(p.train, name, value)


MIN_STEPS = 5  # steps a --compare phase counts at the least


def compare(args) -> int:
    """--compare: the CLI's speed, then the window's under the old and the new policy."""
    import subprocess
    import threading

    from workbench.gui.app import create_app

    app = create_app()
    from workbench.engine import cpu_policy
    from workbench.engine.records import Step
    from workbench.engine.trainer import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="workbench-bench-"))
    os.environ["WORKBENCH_HOME"] = str(tmp / "home")  # the runs' history rows: not the user's
    window = bench_window(tmp)
    probe = LoopProbe(args.probe_ms)
    measure_loop = probe.measure

    def cli_phase() -> dict:
        """The engine's trainer in a plain thread, the window closed and no event loop
        running; threads as `workbench train` sets them (torch's default: every core)."""
        times: list[float] = []
        policy: dict = {}
        stop = threading.Event()

        def train() -> None:
            import torch

            torch.set_num_threads(cpu_policy.cpu_cores())  # (OMP_NUM_THREADS may be set for this process)
            from workbench import presets

            preset = presets.resolve("adding_lstm")
            configure(preset, args)
            records = Trainer(preset).run()
            for record in records:
                if not policy and hasattr(record, "cpu_policy"):
                    policy.update(record.cpu_policy)
                if isinstance(record, Step):
                    times.append(time.perf_counter())
                if stop.is_set():
                    records.close()
                    return

        t = threading.Thread(target=train)
        t.start()
        while len(times) < 3 and t.is_alive():
            time.sleep(0.05)
        t0, first = time.perf_counter(), len(times)
        # --seconds, and at least MIN_STEPS steps (a loaded machine: up to 4x as long)
        while t.is_alive() and (time.perf_counter() - t0 < args.seconds or len(times) - first < MIN_STEPS) \
                and time.perf_counter() - t0 < 4 * args.seconds:
            time.sleep(0.01)
        t1 = time.perf_counter()
        stop.set()
        t.join()
        steps = sum(1 for x in times if t0 < x <= t1)
        return {"steps_s": steps / (t1 - t0), "threads": policy.get("threads"), "nice": 0,
                "trial": policy.get("thread_trial", {})}

    def window_phase(nice: str) -> dict:
        os.environ[cpu_policy.ENV_TRAINER_NICE] = nice
        window.doc.edit("bench", lambda preset: configure(preset, args))
        assert window.start_training(), window.validation_errors()
        run = window.current_run
        pump(app, 120, until=lambda: run.last_step >= 3 or not window.training_active)
        if run.last_step < 3:
            raise SystemExit(f"training did not start: {run.status}; {window.info.label.text()}")
        first, t0, cpu0, threads0 = run.last_step, time.perf_counter(), time.thread_time(), thread_cpu()
        frames0 = len(window.frame_times)
        delays = measure_loop(args.seconds)
        while run.last_step - first < MIN_STEPS and time.perf_counter() - t0 < 4 * args.seconds:
            delays += measure_loop(1.0)  # at least MIN_STEPS steps (a loaded machine: up to 4x as long)
        elapsed = time.perf_counter() - t0
        steps_s = (run.last_step - first) / elapsed
        # The interface thread's CPU time per second of training (its own clock: meaningful
        # on a loaded machine, where wall-clock ratios are not), frames drawn, and the nice
        # values of the busy threads (the trainer thread and torch's team).
        gui_ms_s = 1000 * (time.thread_time() - cpu0) / elapsed
        frames_s = (len(window.frame_times) - frames0) / elapsed
        team = busy_nices(threads0, thread_cpu(), elapsed, threading.get_native_id())
        window.stop_training()
        pump(app, 120, until=lambda: not window.training_active)
        policy = start_policy(run.run_dir)
        nice = policy.get("window", {}).get("nice", 0) - os.getpriority(os.PRIO_PROCESS, os.getpid()) \
            if policy.get("window", {}).get("nice") else 0  # the increment over the interface's
        return {"steps_s": steps_s, "delays": delays, "threads": policy.get("threads"), "nice": nice,
                "trial": policy.get("thread_trial", {}), "gui_ms_s": gui_ms_s, "frames_s": frames_s,
                "team": team}

    conditions = {"off": [False], "on": [True], "both": [False, True]}[args.busy]
    load0 = os.getloadavg()
    window.show()
    window.welcome.hide()
    pump(app, 20, until=lambda: window.resolver.task_info("adding") is not None)  # task modules (torch) loaded
    window.open_builtin("adding_lstm", quiet=True)
    cpu0 = time.thread_time()
    idle = measure_loop(3.0)
    idle_gui_ms_s = 1000 * (time.thread_time() - cpu0) / 3.0
    results = []
    nice = str(args.nice if args.nice else cpu_policy.TRAINER_NICE)
    for busy in conditions:
        for repeat in range(args.repeats):
            load = os.getloadavg()[0]
            proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) if busy else None
            try:
                # the phases in turn, the order reversed on every other repeat (a drifting load)
                phases = ["cli", "old", "new"][::-1 if repeat % 2 else 1]
                got = {}
                for phase in phases:
                    if phase == "cli":
                        window.hide()
                        pump(app, 0.5)
                        got[phase] = cli_phase()
                        window.show()
                    else:
                        got[phase] = window_phase("0" if phase == "old" else nice)
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
            results.append((f"{'a busy process' if busy else 'nothing started'} (load {load:.1f})",
                            got["cli"], got["old"], got["new"]))
    window.close()
    pump(app, 5, until=lambda: not window.isVisible())
    load1 = os.getloadavg()

    def ms(values, q=None) -> str:
        if not len(values):
            return "—"
        return f"{(pct(values, q) if q is not None else max(values)) * 1000:.1f} ms"

    def threads(r) -> str:
        trial = r["trial"]
        if not trial:
            return str(r["threads"])
        how = trial.get("skipped") and "trial skipped" or " vs ".join(f"{n}: {v:.0f} ms" for n, v in trial["step_ms"].items())
        return f"{r['threads']} ({how})"

    print(f"machine: {cpu_policy.cpu_cores()} cores, this process at nice {os.getpriority(os.PRIO_PROCESS, os.getpid())}, load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; "
          f"kernel autogroup {Path('/proc/sys/kernel/sched_autogroup_enabled').read_text().strip() if Path('/proc/sys/kernel/sched_autogroup_enabled').exists() else 'n/a'}")
    print(f"model: {args.layers} x LSTM {args.hidden}, T={args.seq_len}, batch {args.batch}; {args.seconds:.0f} s a phase; "
          f"event-loop delay idle (window open, not training): p99 {ms(idle, 99)}, max {ms(idle)}, "
          f"GUI thread CPU {idle_gui_ms_s:.0f} ms/s (the probe's {1000 / args.probe_ms:.0f} Hz timer included, as in every row)")
    print()
    print("| beside | path | torch threads | nice | busy threads' nice | steps/s | vs CLI | event-loop p50 | p99 | max "
          "| GUI thread CPU | frames drawn |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    verdicts = []
    for where, cli, old, new in results:
        print(f"| {where} | CLI (no window) | {threads(cli)} | 0 | — | {cli['steps_s']:.2f} | 1.00x | — | — | — | — | — |")
        for name, r in (("window, old policy (cores − 1)", old), ("window, new policy (every core, lower priority)", new)):
            ratio = r["steps_s"] / max(cli["steps_s"], 1e-9)
            print(f"| {where} | {name} | {threads(r)} | +{r['nice']} | {r['team']} | {r['steps_s']:.2f} | {ratio:.2f}x | "
                  f"{ms(r['delays'], 50)} | {ms(r['delays'], 99)} | {ms(r['delays'])} | {r['gui_ms_s']:.0f} ms/s | "
                  f"{r['frames_s']:.1f}/s |")
        ratio = new["steps_s"] / max(cli["steps_s"], 1e-9)
        p99 = pct(new["delays"], 99) * 1000
        verdicts.append(f"{where}: new policy {ratio:.2f}x the CLI's steps/s (old {old['steps_s'] / max(cli['steps_s'], 1e-9):.2f}x), "
                        f"p99 {p99:.1f} ms, GUI thread {new['gui_ms_s']:.0f} ms CPU/s: target (>= 0.9x, p99 <= 25 ms) "
                        f"{'met' if ratio >= 0.9 and p99 <= 25 else 'MISSED'}")
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
