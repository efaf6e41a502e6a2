"""The GUI's room rule at run time: the window's modules load without torch (the engine
loads in the worker and resolver threads, when needed). That no GUI module imports torch
itself is an import-linter contract (pyproject.toml, tests/foundation/test_rules.py)."""
from __future__ import annotations

import subprocess
import sys


def test_window_modules_load_without_torch():
    code = ("import sys, workbench.gui.main_window, workbench.gui.app, workbench.gui.worker, "
            "workbench.gui.tryout.panel, workbench.gui.tryout.views, workbench.gui.tryout.worker; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
