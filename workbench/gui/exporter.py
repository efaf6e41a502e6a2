"""Export a run from the window: weights (safetensors), ONNX or the standalone script,
written by the same functions as `workbench export` (workbench/export/), in a one-thread
pool, since they import torch and rebuild the model; the result comes back through a
queued signal, as the resolver's do. This module imports Qt only.
"""
from __future__ import annotations

import os
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot

from workbench.errors import describe

KINDS = {  # kind -> (what the user picks, file dialog filter; "" picks a folder)
    "weights": ("Weights (safetensors)", "safetensors (*.safetensors)"),
    "onnx": ("ONNX model", "ONNX (*.onnx)"),
    "script": ("Standalone training script", ""),
}


def export(kind: str, run_dir: str | Path, target: str | Path) -> list[Path]:
    """Write the run as ``kind`` to ``target`` (a file; the script: a folder). Imports torch."""
    if kind == "weights":
        from workbench.export.runfolder import export_weights

        return export_weights(run_dir, target)
    if kind == "onnx":
        from workbench.export.onnx import export_run

        return export_run(run_dir, target)
    if kind == "script":
        from workbench.export.script import export_run

        return export_run(run_dir, target)
    raise ValueError(f"unknown export kind {kind!r} (known: {', '.join(KINDS)})")


def ask_export_target(parent, run_dir: str | Path, kind: str, start: str) -> str:
    """The file (the script: the folder) to export ``run_dir`` as ``kind`` to; "" when cancelled."""
    from PySide6.QtWidgets import QFileDialog

    label, filt = KINDS[kind]
    name = Path(run_dir).name
    if kind == "script":
        return QFileDialog.getExistingDirectory(parent, f"Export {name}: {label} into", start)
    suffix = ".safetensors" if kind == "weights" else ".onnx"
    target, _ = QFileDialog.getSaveFileName(parent, f"Export {name}: {label}", str(Path(start) / f"{name}{suffix}"),
                                            filt)
    return target


def done_message(kind: str, paths: list) -> str:
    where = paths[0] if len(paths) == 1 else (f"{len(paths)} files in {Path(paths[0]).parent}" if paths else "?")
    return f"Exported {KINDS[kind][0].lower()}: {where}"


class RunExporter(QObject):
    done = Signal(str, list)  # kind, [written paths]
    failed = Signal(str, str)  # kind, one-line reason
    _result = Signal(str, object, str)  # from the pool: kind, paths or None, message

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-export")
        self._result.connect(self._on_result, Qt.ConnectionType.QueuedConnection)
        self.pending = 0

    def submit(self, kind: str, run_dir: str | Path, target: str | Path) -> None:
        self.pending += 1
        self._pool.submit(self._run, kind, str(run_dir), str(target))

    def _run(self, kind: str, run_dir: str, target: str) -> None:
        try:
            paths = export(kind, run_dir, target)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the window as a message
            if os.environ.get("WORKBENCH_DEBUG"):
                traceback.print_exc()
            self._result.emit(kind, None, describe(exc))
            return
        self._result.emit(kind, [str(p) for p in paths], "")

    @Slot(str, object, str)
    def _on_result(self, kind: str, paths, message: str) -> None:
        self.pending -= 1
        if paths is None:
            self.failed.emit(kind, message)
        else:
            self.done.emit(kind, list(paths))

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
