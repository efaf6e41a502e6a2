"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A failed write (disk full, read-only folder, killed process) leaves the previous file
exactly as it was. No torch, no Qt: every room uses these."""
from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from workbench.errors import UserError


class SaveError(UserError, OSError):
    """A file could not be written; the message names the file and the reason."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(folder, path)
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


def _create_temp(folder: Path, path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``, open for writing. tempfile.mkstemp would make it
    0600, and os.replace keeps that mode: run folders, exported presets, ONNX files and
    scripts would be unreadable to anyone else. So it is created with 0666 and the kernel
    applies the umask (and a folder's default ACL), as for any program's new file; a file
    being replaced keeps its own permissions."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # a name another writer holds: draw again, as mkstemp does
            continue
        if os.chmod in os.supports_fd:  # (not on Windows, where there is no umask either)
            try:
                os.chmod(fd, stat.S_IMODE(os.stat(path).st_mode))
            except OSError:  # no file yet, or a mode we may not set: the umask's stands
                pass
        return fd, str(tmp)
    raise FileExistsError(f"no free temporary name beside {path}")


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
