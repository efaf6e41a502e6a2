"""Write small clips with PyAV for the video tests (no binaries, no downloads)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

# container suffix -> (codec, pixel format)
CODECS = {
    ".avi": ("mpeg4", "yuv420p"),
    ".mkv": ("ffv1", "yuv420p"),
    ".gif": ("gif", "rgb8"),
    ".mp4": ("libx264", "yuv420p"),
    ".webm": ("libvpx", "yuv420p"),
}


def write_video(path: Path, frames: np.ndarray, rate: int = 10, options: dict | None = None) -> Path:
    """frames: uint8 [T, C, H, W] (C 1 or 3) -> a video file."""
    frames = _hwc(frames)
    codec, pix_fmt = CODECS[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    T, H, W, _ = frames.shape
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_image(path: Path, frame: np.ndarray) -> Path:
    """uint8 [C, H, W] (C 1 or 3) -> a PNG file, through FFmpeg's png encoder."""
    frame = _hwc(frame[None])[0]
    H, W, _ = frame.shape
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_frames_folder(folder: Path, frames: np.ndarray, pattern: str = "frame_{}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        write_image(folder / pattern.format(i + 1), frame)
    return folder


def _hwc(frames: np.ndarray) -> np.ndarray:
    arr = frames.transpose(0, 2, 3, 1)  # [T, C, H, W] -> [T, H, W, C]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr.astype(np.uint8)
