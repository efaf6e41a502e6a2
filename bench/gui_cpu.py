"""Where the interface thread's CPU goes while the window trains a built-in preset (issue 22).

Opens the window offscreen (1280x800), trains PRESET on the CPU (charlm_lstm on Tiny
Shakespeare from ../shared/data) and, for --seconds of a real event loop, counts the GUI
thread's CPU time (time.thread_time: meaningful on a loaded machine, where wall-clock
ratios are not) in total and per part: each panel's refresh (drew / nothing to draw),
the plots' paint, the records' handling, the status line, the Runs panel's row; frame
ticks per second and the share with no new data; and every busy thread's CPU and nice
(the trainer thread and torch's team below the interface?).

    PYTHONPATH=$PWD .venv/bin/python bench/gui_cpu.py adding_lstm [--seconds 20]

Run it with PYTHONPATH at another checkout to measure that code (the figures in
BENCHMARKS.md compare main before the frame pacer with the pacer).
"""
from __future__ import annotations

import argparse
import collections
import importlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(1, str(Path(__file__).resolve().parent))  # gui_latency's helpers (after PYTHONPATH's workbench)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preset", nargs="?", default="adding_lstm")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args(argv)

    from PySide6.QtCore import QEventLoop, QTimer

    from workbench.gui import plots  # (from PYTHONPATH's checkout: before gui_latency puts this one first)
    from workbench.gui.app import create_app

    gl = importlib.import_module("gui_latency")  # its window set-up, pump and thread_cpu

    app = create_app()
    tmp = Path(tempfile.mkdtemp(prefix="workbench-gui-cpu-"))
    os.environ["WORKBENCH_HOME"] = str(tmp / "home")  # the run's history row: not the user's
    window = gl.bench_window(tmp)
    window.show()
    window.welcome.hide()
    gl.pump(app, 30, until=lambda: window.resolver.task_info("adding") is not None)
    window.open_builtin(args.preset, quiet=True)

    def edit(p) -> None:
        p.train.steps, p.train.checkpoint_every, p.train.device = 10**6, 0, "cpu"
        if p.data.task == "charlm":
            p.data.path = str(DATA.resolve())

    window.doc.edit("bench", edit)

    cpu: dict[str, float] = collections.defaultdict(float)  # part -> GUI thread CPU seconds
    calls: collections.Counter = collections.Counter()
    clock = time.thread_time

    def timed(label, fn):
        def run(*a, **k):
            t = clock()
            out = fn(*a, **k)
            part = label(out) if callable(label) else label
            cpu[part] += clock() - t
            calls[part] += 1
            return out
        return run

    for panel in window.plot_panels:
        name = type(panel).__name__
        panel.refresh = timed(lambda drew, name=name: f"{name}.refresh, {'drew' if drew else 'nothing to draw'}",
                              panel.refresh)
    window.status_line.update = timed("status line", window.status_line.update)
    window._run_changed = timed("Runs panel row", window._run_changed)
    take = plots.PaintClock.take.__func__

    def take_counted(cls):
        got = take(cls)  # (wall, cpu) with the pacer; wall alone before it
        part, seconds = ("plots' paint (CPU)", got[1]) if isinstance(got, tuple) else ("plots' paint (wall)", got)
        cpu[part] += seconds
        calls[part] += 1
        return got

    plots.PaintClock.take = classmethod(take_counted)
    window.trainer.records.disconnect(window._on_records)
    window.trainer.records.connect(timed("records (_on_records)", window._on_records))
    window.frame_timer.timeout.disconnect(window._on_frame)
    last = {"version": None}

    def tick() -> None:
        run = window.current_run
        version = run.version if run is not None else None
        calls["ticks"] += 1
        calls["ticks with no new data"] += version == last["version"]
        last["version"] = version
        window._on_frame()

    window.frame_timer.timeout.connect(tick)
    assert window.start_training(), window.validation_errors()
    run = window.current_run
    gl.pump(app, 300, until=lambda: run.last_step >= 3 or not window.training_active)
    if run.last_step < 3:
        print(f"training did not start: {run.status}", file=sys.stderr)
        return 1
    cpu.clear()
    calls.clear()
    first, threads0, load0 = run.last_step, gl.thread_cpu(), os.getloadavg()[0]
    t0, c0 = time.perf_counter(), clock()
    loop = QEventLoop()
    QTimer.singleShot(int(args.seconds * 1000), loop.quit)
    loop.exec()
    wall, gui = time.perf_counter() - t0, clock() - c0
    steps, threads1 = run.last_step - first, gl.thread_cpu()
    spent, counted = dict(cpu), collections.Counter(calls)  # (the stop's own frames are not the training's)
    window.stop_training()
    gl.pump(app, 120, until=lambda: not window.training_active)
    window.close()

    gui_tid = threading.get_native_id()
    print(f"{args.preset}: {steps} steps in {wall:.1f} s ({steps / wall:.2f} steps/s); load average "
          f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end (other processes: wall-clock figures are noise)")
    print(f"GUI thread CPU {1000 * gui / wall:.1f} ms per s of training; frame ticks {counted['ticks'] / wall:.1f}/s, "
          f"{counted['ticks with no new data'] / max(counted['ticks'], 1):.0%} with no new data")
    print("busy threads (CPU ms per s, nice):")
    for tid, (seconds, nice) in sorted(threads1.items()):
        used = seconds - threads0.get(tid, (0.0, 0))[0]
        if used > 0.01 * wall:
            print(f"  {tid}{' (GUI)' if tid == gui_tid else ''}: {1000 * used / wall:.0f} ms/s, nice {nice}")
    print(f"{'GUI thread part':<48} {'ms/s':>7} {'share':>6} {'calls':>6} {'ms each':>8}")
    for part in sorted(spent, key=lambda p: -spent[p]):
        print(f"{part:<48} {1000 * spent[part] / wall:7.2f} {spent[part] / max(gui, 1e-9):6.0%} {counted[part]:6d} "
              f"{1000 * spent[part] / max(counted[part], 1):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
