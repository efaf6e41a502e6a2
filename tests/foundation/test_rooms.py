"""The engine never needs Qt; the Qt binding in use does not leak references."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_ROOT

BLOCK_QT = textwrap.dedent("""
    import importlib.abc, sys
    class BlockQt(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph"):
                raise ImportError(f"{name} is blocked: the engine must not import Qt")
            return None
    sys.meta_path.insert(0, BlockQt())
""")


def test_engine_imports_and_trains_without_qt(tmp_path):
    code = BLOCK_QT + textwrap.dedent(f"""
        import pkgutil, importlib, workbench
        for room in ("workbench.engine", "workbench.tasks", "workbench.io", "workbench.export", "workbench.commands"):
            try:
                pkg = importlib.import_module(room)
            except ModuleNotFoundError as exc:
                if exc.name == room:
                    continue
                raise
            for info in pkgutil.walk_packages(pkg.__path__, room + "."):
                importlib.import_module(info.name)
        import workbench.cli, workbench.spec, workbench.presets
        from workbench.cli import main
        rc = main(["train", "adding_lstm", "--steps", "3", "--quiet", "--run-dir", r"{tmp_path / 'run'}",
                   "--set", "model.layers.0.hidden_size=8", "--set", "data.options.seq_len=10"])
        assert rc == 0, rc
        assert not any(m.split(".")[0] in ("PySide6", "pyqtgraph") for m in sys.modules)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_pyside_does_not_leak_none_or_true_references():
    """PySide6 6.12.0 on CPython 3.11 dropped a reference to None on every C++ call that
    returns nothing and to True on every signal emit; a live-plotting app died after ~30 s
    with 'Fatal Python error: none_dealloc'. Fail if a binding with that bug comes back."""
    code = textwrap.dedent("""
        import sys
        from PySide6.QtCore import QCoreApplication, QObject, Signal
        app = QCoreApplication.instance() or QCoreApplication([])
        class Emitter(QObject):
            fired = Signal(bool)
        obj = Emitter()
        seen = [0]
        def count(value):
            seen[0] += 1
        obj.fired.connect(count)
        for _ in range(50):  # warm caches first
            obj.setObjectName("x"); obj.fired.emit(True)
        none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
        n = 500
        for _ in range(n):
            obj.setObjectName("x")      # a C++ call returning nothing
            obj.blockSignals(False)
            obj.fired.emit(True)        # a signal emit carrying True
        none1, true1 = sys.getrefcount(None), sys.getrefcount(True)
        assert seen[0] == n + 50, seen
        print(none1 - none0, true1 - true0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    d_none, d_true = (int(v) for v in proc.stdout.split())
    # A leak loses one reference per call (-500 or worse); allow small noise either way.
    assert abs(d_none) < 50, f"None's refcount moved by {d_none} over 500 calls: PySide6 refcount bug"
    assert abs(d_true) < 50, f"True's refcount moved by {d_true} over 500 emits: PySide6 refcount bug"
