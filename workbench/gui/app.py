"""Start the Qt application and the workbench window (``workbench`` / ``workbench gui``)."""
from __future__ import annotations

import sys
from pathlib import Path

ORGANISATION = "rnn-workbench"
APPLICATION = "workbench"


def create_app(argv: list[str] | None = None):
    """The QApplication with the workbench's names (they place QSettings and the data
    folder), style and icon; reuses a running one (tests)."""
    from workbench.engine import cpu_policy

    cpu_policy.apply("gui")  # the allocator policy, before the first model's memory (no torch import)
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    # The trainer's Python loop runs in a thread of this process. PySide releases the GIL
    # around every Qt call, and getting it back waits up to the interpreter's switch
    # interval (5 ms by default) each time: a paint makes hundreds of such calls. A
    # 1 ms interval cut the worst event-loop delays while training by about half
    # (bench/gui_latency.py), at no measurable cost to training speed.
    sys.setswitchinterval(0.001)
    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationDisplayName("RNN Workbench")
    # The menu entry `workbench install-desktop` writes is rnn-workbench.desktop: naming it
    # lets Wayland compositors and task bars match the window to its entry and icon.
    app.setDesktopFileName("rnn-workbench")
    if not getattr(app, "_workbench_styled", False):
        app.setStyle("Fusion")
        from workbench import builtin

        app.setStyleSheet(builtin.style_sheet())
        app._workbench_styled = True
    return app


def run_app(path: str | None = None) -> int:
    """Open the window (on ``path`` when given: a preset, a run folder or a data file)."""
    app = create_app()
    from pyqtgraph.util.garbage_collector import GarbageCollector

    from workbench.gui.main_window import MainWindow, icon

    # Python's cycle collector runs in whichever thread happens to allocate; in a worker it
    # can destroy a closed widget's Qt objects there, and a worker destroying a QObject
    # (holding Qt's lock, wanting the GIL) while the GUI thread deletes another (holding the
    # GIL, wanting that lock) deadlocks both: seen in tests/gui as a stall (py-spy native
    # stacks). So automatic collection is off and this timer collects on the GUI thread.
    collector = GarbageCollector(interval=1.0)  # noqa: F841 - lives as long as the app runs
    app.setWindowIcon(icon("app"))
    window = MainWindow()
    if path:
        from workbench import presets

        if not Path(path).exists() and path in presets.builtin_names():
            window.open_builtin(path, quiet=True)
        else:
            window.open_dropped(path)
    window.show()
    return app.exec()
