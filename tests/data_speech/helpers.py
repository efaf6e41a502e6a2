"""Write small audio files for the speech tests: WAV with the wave module, other formats
with PyAV (no binaries, no downloads)."""
from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

# suffix -> (PyAV codec, sample format it takes)
CODECS = {".flac": ("flac", "s16"), ".mp3": ("libmp3lame", "fltp"), ".ogg": ("libopus", "flt"),
}


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """float32 [N] sine."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """samples float [N] (mono) or [N, C] in [-1, 1] -> 16-bit PCM WAV."""
    data = samples if samples.ndim == 2 else samples[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(data, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """samples float [N] or [N, C] -> FLAC / MP3 / OGG (Opus; this FFmpeg has no Vorbis encoder), through PyAV."""
    data = samples if samples.ndim == 2 else samples[:, None]
    codec, fmt = CODECS[path.suffix]
    layout = "mono" if data.shape[1] == 1 else "stereo"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        planar = fmt.endswith("p")
        chunk = 1152
        for start in range(0, len(data), chunk):
            block = data[start:start + chunk]
            if fmt.startswith("s16"):
                arr = (np.clip(block, -1, 1) * 32767).astype(np.int16).reshape(1, -1)  # packed [1, n*C]
            else:
                arr = np.ascontiguousarray(block.T if planar else block.reshape(1, -1), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
