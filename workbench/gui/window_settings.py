"""What the window keeps between sessions (QSettings): geometry and dock layout, plot
settings, the last preset and the recent files, and what opens at start."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray

MAX_RECENT = 8
STATE_VERSION = 4  # bump when the dock layout changes, so an old saved layout is not restored
FIRST_PRESET = "adding_rnn_tanh"  # the newcomer trains this, then adding_lstm, and compares


class WindowSettings:
    def __init__(self, window, settings):
        self.window = window
        self.settings = settings

    def restore(self) -> None:
        w, s = self.window, self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, (QByteArray, bytes)) and geometry:
            w.restoreGeometry(geometry)
        else:
            w.resize(1280, 800)
        state = s.value("window/state")
        if isinstance(state, (QByteArray, bytes)) and state:
            w.restoreState(state, STATE_VERSION)
        smooth = s.value("plots/smoothing")
        if smooth is not None:
            try:
                w.loss_panel.smooth.setValue(int(smooth))
            except (TypeError, ValueError):
                pass
        w.loss_panel.log_box.setChecked(str(s.value("plots/logLoss", "false")).lower() == "true")
        self.rebuild_recent_menu()

    def save(self) -> None:
        w, s = self.window, self.settings
        s.setValue("window/geometry", w.saveGeometry())
        s.setValue("window/state", w.saveState(STATE_VERSION))
        s.setValue("plots/smoothing", w.loss_panel.smooth.value())
        s.setValue("plots/logLoss", w.loss_panel.log_box.isChecked())
        if w.doc.path is not None:
            s.setValue("session/lastPreset", str(w.doc.path))
        elif w.doc.builtin:
            s.setValue("session/lastPreset", f"builtin:{w.doc.builtin}")
        s.sync()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recentFiles", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: Path) -> None:
        files = [str(path)] + [f for f in self.recent_files() if f != str(path)]
        self.settings.setValue("recentFiles", files[:MAX_RECENT])
        self.rebuild_recent_menu()

    def rebuild_recent_menu(self) -> None:
        menu = self.window.recent_menu
        menu.clear()
        files = self.recent_files()
        for i, f in enumerate(files, start=1):
            menu.addAction(f"&{i} {Path(f).name}", lambda p=f: self.window.open_preset(p)).setToolTip(f)
        if not files:
            menu.addAction("(none yet)").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear list", self.clear_recent)

    def clear_recent(self) -> None:
        self.settings.setValue("recentFiles", [])
        self.rebuild_recent_menu()

    def last_dir(self) -> str:
        return str(self.settings.value("session/lastDir", str(Path.home())))

    def open_start_preset(self) -> None:
        """The last session's preset; on the first start the newcomer's one, with the welcome."""
        w, s = self.window, self.settings
        first = not bool(s.value("session/started", False))
        last = str(s.value("session/lastPreset", "") or "")
        opened = False
        if not first and last:
            if last.startswith("builtin:"):
                opened = w.open_builtin(last.removeprefix("builtin:"), quiet=True)
            elif Path(last).is_file():
                opened = w.open_preset(last, quiet=True)
        if not opened:
            w.open_builtin(FIRST_PRESET, quiet=True)
        if first:
            w.welcome.show()
            s.setValue("session/started", True)
