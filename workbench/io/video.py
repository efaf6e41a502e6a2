"""Decode video files and folders of numbered frame images into frames [T, C, H, W].

PyAV (the FFmpeg bindings) reads MP4/H.264, AVI, MKV, WebM, MOV, animated GIF and
single images (PNG, JPEG, ... through FFmpeg's image demuxers), so a folder of frame
images goes through the same decoder as a video file. No binary is shelled out to.

- Frames are decoded one at a time (``iter_frames``), resized and converted by FFmpeg's
  swscale (``VideoFrame.reformat``) in C, so a long video never has to fit in memory;
  ``read_clip`` collects them into a uint8 array [T, C, H, W] (C = 1 grey, 3 RGB) and
  refuses clips over ``MAX_CLIP_BYTES`` instead of filling memory.
- Decoded clips are kept in a small in-memory LRU cache keyed by the file's path,
  modification time and size and by the decode settings, so re-opening the same clip
  (epochs over a labelled-clips folder, the try-out panel) does not decode it again.
- Every problem with a user's file is a ``DataError`` naming the file and, where there
  is one, the frame index: unreadable or corrupt files, truncated files (decoding ends
  well before the frame count the container announces), empty folders, folders whose
  frames differ in size.

Frame counts are those PyAV reports: ``stream.frames`` where the container stores it
(MP4, AVI, GIF); where it does not (WebM, MKV report 0) the frames are counted by
decoding them.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.io.errors import DataError
from workbench.io.media import load_av, open_media, reason

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg",
                              ".ogv", ".wmv", ".flv", ".ts", ".3gp"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# A decoded clip larger than this (uint8 bytes) is refused: pick a smaller frame size,
# a stride or a maximum length rather than filling the machine's memory.
MAX_CLIP_BYTES = 2 * 1024**3
# What the in-memory cache of decoded clips may hold in total.
CACHE_BYTES = 256 * 1024**2
# Frame sizes beyond this are typos, not videos.
MAX_SIDE = 8192


@dataclass(frozen=True)
class FrameSettings:
    """How frames are decoded. 0 for width/height keeps the file's own size."""

    width: int = 0
    height: int = 0
    grey: bool = False
    stride: int = 1  # keep every stride-th frame of the source
    max_frames: int = 0  # stop after this many kept frames (0: all)
    start: int = 0  # first source frame to keep

    def check(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_SIDE:
                raise ValueError(f"frame {name} must be between 0 and {MAX_SIDE}, got {value}")
        if self.stride < 1:
            raise ValueError(f"frame stride must be at least 1, got {self.stride}")
        if self.max_frames < 0 or self.start < 0:
            raise ValueError("max_frames and start must not be negative")

    @property
    def channels(self) -> int:
        return 1 if self.grey else 3


@dataclass
class VideoInfo:
    """What a file or frames folder holds, as PyAV reports it."""

    path: str
    frames: int  # the container's frame count; 0 where it stores none (WebM, MKV)
    width: int
    height: int
    fps: float | None
    codec: str
    container: str  # FFmpeg's demuxer name; "frames folder" for a folder of images
    duration_s: float | None


# ----------------------------------------------------------------------------- paths


def _natural_key(path: Path) -> tuple:
    """frame_2.png before frame_10.png: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple(int(p) if p.isdigit() else p for p in parts)


def is_video_file(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS


def list_frame_files(folder: str | Path) -> list[Path]:
    """The image files of a frames folder, in frame order (numbers compared as numbers)."""
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        raise DataError(folder, "no such folder") from None
    except NotADirectoryError:
        raise DataError(folder, "is a file, not a frames folder") from None
    except OSError as exc:
        raise DataError(folder, f"cannot list the folder: {exc.strerror or exc}") from None
    files = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=_natural_key)


def is_frames_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and bool(list_frame_files(p))


# ----------------------------------------------------------------------------- opening


def _open(path: Path):
    return open_media(path, "video", "video", "a")


def _check_gif_trailer(path: Path, container) -> None:
    """A GIF ends with the trailer byte 0x3B; FFmpeg quietly decodes a cut-off GIF's
    first frames, so a missing trailer is the sign that the file is truncated."""
    if container.format.name != "gif":
        return
    try:
        with open(path, "rb") as fh:
            fh.seek(-1, 2)
            last = fh.read(1)
    except OSError:
        return
    if last != b"\x3b":
        raise DataError(path, "the GIF has no end marker: the file is truncated")


def probe(path: str | Path) -> VideoInfo:
    """Frame count, size, rate and codec of a video file or a frames folder."""
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise DataError(path, "holds no frame images (" + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")")
        first = _decode_image(files[0], 0)
        return VideoInfo(str(path), len(files), first.width, first.height, None, "images", "frames folder", None)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(str(path), int(stream.frames or 0), int(stream.codec_context.width),
                         int(stream.codec_context.height), float(rate) if rate else None,
                         stream.codec_context.name, container.format.name, duration)
    finally:
        container.close()


def count_frames(path: str | Path) -> int:
    """Frames in the file as PyAV reports them; counted by decoding where the container
    does not store the number (stream.frames == 0)."""
    info = probe(path)
    if info.frames:
        return info.frames
    return sum(1 for _ in iter_frames(path, FrameSettings(width=16, height=16, grey=True)))


# ----------------------------------------------------------------------------- decoding


def _to_array(frame, settings: FrameSettings, path: Path, index: int) -> np.ndarray:
    """A decoded av.VideoFrame -> uint8 [C, H, W], resized and converted by swscale."""
    w = settings.width or frame.width
    h = settings.height or frame.height
    # AREA averages all source pixels when shrinking (bilinear would alias a 1280->32 resize).
    interpolation = "AREA" if (w < frame.width or h < frame.height) else "BILINEAR"
    fmt = "gray" if settings.grey else "rgb24"
    try:
        arr = frame.reformat(width=w, height=h, format=fmt, interpolation=interpolation).to_ndarray()
    except (load_av().error.FFmpegError, ValueError) as exc:
        raise DataError(path, f"frame {index}: cannot convert its pixels ({frame.format.name}, "
                              f"{frame.width}x{frame.height}): {reason(exc)}") from None
    arr = arr[None] if settings.grey else arr.transpose(2, 0, 1)  # [H, W] -> [1, H, W]; [H, W, 3] -> [3, H, W]
    return np.ascontiguousarray(arr)


def _decode_image(file: Path, index: int):
    """The one frame of an image file (frame ``index`` of its folder)."""
    av = load_av()
    try:
        if file.stat().st_size == 0:
            raise DataError(file, f"frame {index}: the image file is empty")
        container = av.open(str(file))
    except DataError:
        raise
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(file, f"frame {index}: not a readable image ({reason(exc)})") from None
    try:
        for frame in container.decode(video=0):
            return frame
    except av.error.FFmpegError as exc:
        raise DataError(file, f"frame {index}: the image is corrupt or truncated ({reason(exc)})") from None
    finally:
        container.close()
    raise DataError(file, f"frame {index}: the image holds no picture")


def _iter_folder(folder: Path, settings: FrameSettings) -> Iterator[np.ndarray]:
    files = list_frame_files(folder)
    if not files:
        raise DataError(folder, "holds no frame images (" + ", ".join(sorted(IMAGE_EXTENSIONS)) + "): "
                                "a frames folder holds numbered images such as frame_0001.png")
    first_size: tuple[int, int] | None = None
    first_name = ""
    kept = 0
    for index, file in enumerate(files):
        if index < settings.start or (index - settings.start) % settings.stride:
            continue  # skipped frames are never read
        frame = _decode_image(file, index)
        size = (frame.width, frame.height)
        if first_size is None:
            first_size, first_name = size, file.name
        elif size != first_size:
            raise DataError(file, f"frame {index} is {size[0]}x{size[1]} but the folder's first frame "
                                  f"({first_name}) is {first_size[0]}x{first_size[1]}: all frames of a "
                                  f"folder must have one size")
        yield _to_array(frame, settings, file, index)
        kept += 1
        if settings.max_frames and kept >= settings.max_frames:
            return


def _iter_file(path: Path, settings: FrameSettings) -> Iterator[np.ndarray]:
    av = load_av()
    container = _open(path)
    try:
        _check_gif_trailer(path, container)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame/slice threads inside FFmpeg's decoder
        announced = int(stream.frames or 0)
        decoded = container.decode(stream)
        index = -1  # source index of the last decoded frame
        kept = 0
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                raise DataError(path, f"frame {index + 1}: cannot be decoded ({reason(exc)}): "
                                      f"the file is corrupt or truncated") from None
            index += 1
            if index < settings.start or (index - settings.start) % settings.stride:
                continue
            yield _to_array(frame, settings, path, index)
            kept += 1
            if settings.max_frames and kept >= settings.max_frames:
                return
        total = index + 1
        if total == 0:
            raise DataError(path, "holds no decodable video frames: the file is empty, corrupt or truncated")
        # Some containers' counts are off by a frame or two (edit lists, B-frames); a
        # larger shortfall means the data ends early.
        if announced and total < announced - max(2, announced // 50):
            raise DataError(path, f"frame {total}: the file announces {announced} frames but decoding ended "
                                  f"after {total}: it is truncated or corrupt")
    finally:
        container.close()


def iter_frames(path: str | Path, settings: FrameSettings | None = None) -> Iterator[np.ndarray]:
    """Decode frames one at a time: each a uint8 array [C, H, W] (C = 1 grey, 3 RGB).

    ``path`` is a video file or a folder of numbered frame images. Nothing beyond the
    current frame is held, so this is the way to walk a long video."""
    settings = settings or FrameSettings()
    settings.check()
    path = Path(path)
    if path.is_dir():
        return _iter_folder(path, settings)
    return _iter_file(path, settings)


# ----------------------------------------------------------------------------- clips + cache

_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def _signature(path: Path) -> tuple:
    """What changes when the clip's data changes: mtime and size of the file, or of every
    frame file of a folder."""
    try:
        if path.is_dir():
            return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in list_frame_files(path))
        st = path.stat()
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return ()


def clear_cache() -> None:
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


def _cache_get(key: tuple) -> np.ndarray | None:
    with _cache_lock:
        arr = _cache.get(key)
        if arr is not None:
            _cache.move_to_end(key)
        return arr


def _cache_put(key: tuple, arr: np.ndarray) -> None:
    global _cache_bytes
    if arr.nbytes > CACHE_BYTES // 4:
        return  # one big clip must not evict everything else
    with _cache_lock:
        if key in _cache:
            return
        _cache[key] = arr
        _cache_bytes += arr.nbytes
        while _cache_bytes > CACHE_BYTES and _cache:
            _, old = _cache.popitem(last=False)
            _cache_bytes -= old.nbytes


def read_clip(path: str | Path, settings: FrameSettings | None = None,
              max_bytes: int = MAX_CLIP_BYTES) -> np.ndarray:
    """A whole clip as a read-only uint8 array [T, C, H, W], from the cache when the file
    and settings are unchanged. Refuses (DataError) clips over ``max_bytes``."""
    settings = settings or FrameSettings()
    settings.check()
    path = Path(path)
    key = (str(path.resolve()), _signature(path), settings)
    cached = _cache_get(key)
    if cached is not None:
        return cached
    frames: list[np.ndarray] = []
    total = 0
    for i, frame in enumerate(iter_frames(path, settings)):
        if frames and frame.shape != frames[0].shape:
            raise DataError(path, f"frame {settings.start + i * settings.stride} is {frame.shape[2]}x{frame.shape[1]} "
                                  f"but the first is {frames[0].shape[2]}x{frames[0].shape[1]}: "
                                  f"set a frame width and height to resize all frames to one size")
        total += frame.nbytes
        if total > max_bytes:
            raise DataError(path, f"frame {settings.start + i * settings.stride}: the decoded clip would take more "
                                  f"than {max_bytes / 2**20:.0f} MiB: set a smaller frame size, a frame stride "
                                  f"or a maximum number of frames")
        frames.append(frame)
    if not frames:
        raise DataError(path, f"no frames left to read (start {settings.start}, stride {settings.stride})")
    clip = np.stack(frames)  # [T, C, H, W]
    clip.flags.writeable = False
    _cache_put(key, clip)
    return clip


def load_clip(path: str | Path, settings: FrameSettings | None = None) -> np.ndarray:
    """``read_clip`` as float32 in [0, 1]: [T, C, H, W]."""
    return read_clip(path, settings).astype(np.float32) / 255.0
