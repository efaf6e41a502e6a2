"""Start-up time: from launching the process to an interactive workbench window.

"Interactive" = the window is shown and the event loop has processed its first events
(a zero-delay timer fired after show()). Measured as whole-process wall time, each run in
a fresh interpreter, against the baseline `python -c "import PySide6.QtWidgets"` timed
the same way and interleaved with it, so the ratio says what the workbench adds on top
of merely loading Qt. Heavy imports (torch, the tasks) are deferred out of start-up:
the window must open without importing torch.

    .venv/bin/python bench/startup.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASELINE = """
import sys, time
t0 = float(sys.argv[1])
import PySide6.QtWidgets
print(f"ready {time.time() - t0:.4f}")
"""
WINDOW = r"""
import os, sys, time
t0 = float(sys.argv[1])
from workbench.gui.app import create_app
app = create_app()
from PySide6.QtCore import QTimer
from workbench.gui.main_window import MainWindow
window = MainWindow()
window.show()
def ready():
    print(f"ready {time.time() - t0:.4f} torch_loaded={'torch' in sys.modules}")
    app.quit()
QTimer.singleShot(0, ready)
app.exec()
"""


def timed(code: str) -> tuple[float, str]:
    """Seconds from just before the process starts to the moment the code says ready
    (not to its exit: the window's background thread may still be importing torch for
    the task sizes, which does not block the user)."""
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code, repr(start)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"start-up run failed: {proc.stderr[-2000:]}")
    out = proc.stdout.strip().splitlines()[-1]
    return float(out.split()[1]), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    timed(BASELINE)  # warm the file cache for both
    timed(WINDOW)
    base, window, notes = [], [], set()
    for _ in range(args.repeats):
        base.append(timed(BASELINE)[0])
        t, out = timed(WINDOW)
        window.append(t)
        notes.add(out.split()[-1].split("=")[1])
    b, w = statistics.median(base), statistics.median(window)
    print(f"{'what':<44}{'median s':>10}{'min s':>8}{'max s':>8}")
    for label, values, median in (('python -c "import PySide6.QtWidgets"', base, b),
                                  ("workbench window interactive", window, w)):
        print(f"{label:<44}{median:>10.3f}{min(values):>8.3f}{max(values):>8.3f}")
    print(f"ratio window / bare Qt import: {w / b:.2f}  ({args.repeats} interleaved runs; torch imported by then, in the background: {', '.join(sorted(notes))})")


if __name__ == "__main__":
    main()
