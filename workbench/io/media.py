"""Opening an audio or video file with PyAV (FFmpeg): one place for the checks and the
one-line messages that name the file and the problem, shared by io/audio.py and
io/video.py."""
from __future__ import annotations

from pathlib import Path

from workbench.io.errors import DataError


def load_av():
    import av  # deferred: importing FFmpeg's libraries costs start-up time

    return av


def reason(exc: BaseException) -> str:
    """FFmpeg's or the OS's words for a failure, on one line."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def open_media(path: Path, stream: str, noun: str, article: str):
    """An open PyAV container of ``path`` that holds at least one ``stream`` ("audio" or
    "video") stream, or a DataError: a folder, a missing or empty file, one FFmpeg cannot
    open (not media, corrupt, truncated), one without such a stream. ``noun`` and
    ``article`` word the messages: ("audio", "an") -> "not an audio file"."""
    av = load_av()
    a_noun = f"{article} {noun}" if article else noun
    if path.is_dir():
        raise DataError(path, f"is a folder, not {'an' if noun[0] in 'aeiou' else 'a'} {noun} file")
    if not path.exists():
        raise DataError(path, "no such file")
    try:
        if path.stat().st_size == 0:
            raise DataError(path, f"is empty (0 bytes), not {a_noun}")
        container = av.open(str(path))
    except DataError:
        raise
    except av.error.FFmpegError as exc:
        raise DataError(path, f"cannot be opened as {a_noun} ({reason(exc)}): the file is not {a_noun}, "
                              f"or it is corrupt or truncated") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None
    if not getattr(container.streams, stream):
        kinds = ", ".join(s.type for s in container.streams) or "none"
        container.close()
        raise DataError(path, f"holds no {stream} stream (streams: {kinds})")
    return container
