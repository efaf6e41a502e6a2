"""Start the Qt application (placeholder window until the workbench window lands)."""
from __future__ import annotations

import sys


def run_app(path: str | None = None) -> int:
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    label = QLabel("RNN Workbench")
    label.resize(640, 400)
    label.show()
    return app.exec()
