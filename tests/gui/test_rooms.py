"""The GUI's room rules: no torch import in workbench/gui, and the window's modules load
without torch (the engine loads in the worker and resolver threads, when needed)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GUI = Path(__file__).resolve().parents[2] / "workbench" / "gui"


def test_no_gui_module_imports_torch():
    pattern = re.compile(r"^\s*(import torch|from torch)", re.MULTILINE)
    offenders = [p.name for p in GUI.glob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_window_modules_load_without_torch():
    code = ("import sys, workbench.gui.main_window, workbench.gui.app, workbench.gui.worker; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
