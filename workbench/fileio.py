"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A failed write (disk full, read-only folder, killed process) leaves the previous file
exactly as it was. No torch, no Qt: every room uses these."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


class SaveError(OSError):
    """A file could not be written; the message names the file and the reason."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SaveError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # the temp file goes whatever stopped the write (Ctrl-C too)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise SaveError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# A run folder's checkpoints: checkpoints/step-NNNNNNNN.{safetensors,optim.pt,json}, the
# .json marker written last (workbench/engine/checkpoint.py writes them; here, without
# torch, so the window can tell whether a run can be continued).
CHECKPOINT_MARKER = re.compile(r"step-(\d{8})\.json$")


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """[(step, stem)] of the run folder's complete checkpoints, oldest first; a checkpoint
    whose marker or either file is missing does not count."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for marker in folder.iterdir():
        m = CHECKPOINT_MARKER.search(marker.name)
        if m and marker.with_suffix(".safetensors").exists() and marker.with_suffix(".optim.pt").exists():
            found.append((int(m.group(1)), marker.with_suffix("")))
    return sorted(found)
