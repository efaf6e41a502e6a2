"""Decode audio files (WAV, FLAC, MP3, OGG, ...) and turn them into log-mel spectrogram frames.

PyAV (the FFmpeg bindings) decodes every format FFmpeg knows; nothing is shelled out to
and torchaudio is not needed.

- ``read_audio``: one file -> float32 samples [N] in [-1, 1], the channels mixed down to
  mono and resampled to the asked rate by FFmpeg's resampler (``av.AudioResampler``).
  Decoded waves are kept in a small LRU cache keyed by the file's path, modification
  time, size and the rate, so epochs and the try-out panel do not decode a clip twice.
- ``log_mel``: samples -> log-mel frames [T, n_mels], computed in torch (``torch.stft``
  and a triangular mel filter bank built here) on whatever device the samples are on,
  then normalised per utterance (each mel bin to mean 0, standard deviation 1 over the
  utterance's frames), so loudness and microphone gain do not matter.
- Every problem with a user's file is a ``DataError`` naming the file: missing, empty,
  not audio, no audio stream, zero samples, corrupt, or truncated (decoding ends well
  before the duration the file announces, e.g. a cut-off MP3 or WAV).

Frames: a window of ``window_ms`` (Hann) every ``hop_ms``, no centring, so a clip of N
samples gives 1 + (N - n_fft) // hop frames (clips shorter than one window are padded
with silence to one frame). n_fft = the window length in samples.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.io.errors import DataError
from workbench.io.media import load_av, open_media, reason

AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac",
                              ".aif", ".aiff", ".au"})
# Longer recordings are refused rather than filling memory (float32 samples).
MAX_SECONDS = 3600.0
CACHE_BYTES = 128 * 1024**2
# Decoding may end this much short of the announced duration (encoder delay, padding)
# before the file counts as truncated.
TRUNCATION_SLACK_S = 0.05
TRUNCATION_SLACK_FRACTION = 0.02
LOG_FLOOR = 1e-6  # added to mel power before the log: silence is finite


@dataclass(frozen=True)
class MelSettings:
    """How samples become spectrogram frames."""

    sample_rate: int = 8000  # Hz: every file is resampled to this
    window_ms: float = 25.0  # analysis window (Hann); n_fft = its length in samples
    hop_ms: float = 10.0  # one frame every hop_ms
    n_mels: int = 40  # mel bins per frame (the features the model reads)
    fmin: float = 0.0  # Hz, lowest mel filter edge
    fmax: float = 0.0  # Hz, highest edge; 0: half the sample rate

    def check(self, prefix: str = "data.options") -> None:
        from workbench.spec import SpecError

        if not 1000 <= self.sample_rate <= 192_000:
            raise SpecError(f"{prefix}.sample_rate", f"must be between 1000 and 192000 Hz, got {self.sample_rate}")
        if not 1.0 <= self.window_ms <= 500.0:
            raise SpecError(f"{prefix}.window_ms", f"must be between 1 and 500 ms, got {self.window_ms}")
        if not 0.5 <= self.hop_ms <= self.window_ms:
            raise SpecError(f"{prefix}.hop_ms", f"must be between 0.5 ms and the window ({self.window_ms} ms), "
                                                f"got {self.hop_ms}")
        if not 1 <= self.n_mels <= 512:
            raise SpecError(f"{prefix}.n_mels", f"must be between 1 and 512, got {self.n_mels}")
        top = self.top_hz
        if not 0.0 <= self.fmin < top or top > self.sample_rate / 2 + 1e-9:
            raise SpecError(f"{prefix}.fmin", f"the mel range {self.fmin}..{top} Hz must lie within 0..half the "
                                              f"sample rate ({self.sample_rate / 2:g} Hz)")
        if self.n_fft // 2 + 1 < self.n_mels:
            raise SpecError(f"{prefix}.n_mels", f"{self.n_mels} mel bins need a longer window than {self.window_ms} ms "
                                                f"({self.n_fft // 2 + 1} frequency bins)")

    @property
    def n_fft(self) -> int:
        return max(2, int(round(self.sample_rate * self.window_ms / 1000.0)))

    @property
    def hop(self) -> int:
        return max(1, int(round(self.sample_rate * self.hop_ms / 1000.0)))

    @property
    def top_hz(self) -> float:
        return self.fmax or self.sample_rate / 2

    def centres_hz(self) -> list[float]:
        """Each mel filter's centre frequency (Hz), lowest first."""
        mels = np.linspace(hz_to_mel(self.fmin), hz_to_mel(self.top_hz), self.n_mels + 2)[1:-1]
        return [float(f) for f in mel_to_hz(mels)]

    def frames_for(self, samples: int) -> int:
        """Spectrogram frames of a clip of ``samples`` samples."""
        return 1 + max(0, samples - self.n_fft) // self.hop


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    codec: str
    container: str
    duration_s: float | None


# ----------------------------------------------------------------------------- files


def is_audio_file(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS


def _open(path: Path):
    return open_media(path, "audio", "audio", "")


def _announced_seconds(container, stream) -> float | None:
    """The duration the file's header announces, where it has one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def probe(path: str | Path) -> AudioInfo:
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.audio[0]
        return AudioInfo(str(path), int(stream.rate or 0), int(stream.channels or 0), stream.codec_context.name,
                         container.format.name, _announced_seconds(container, stream))
    finally:
        container.close()


def _check_wav_size(path: Path, container) -> None:
    """A WAV's header gives the byte size of its sample data; FFmpeg quietly decodes a
    cut-off WAV (and estimates its duration from the bytes there are), so a data chunk
    shorter than its header says is the sign of a truncated file."""
    if container.format.name != "wav":
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return
                size = int.from_bytes(chunk[4:8], "little")
                if chunk[:4] == b"data":
                    if size in (0, 0xFFFFFFFF):  # written by a stream that did not know the size
                        return
                    have = path.stat().st_size - fh.tell()
                    if have < size:
                        raise DataError(path, f"the WAV header announces {size} bytes of samples but the file holds "
                                              f"{have}: it is truncated")
                    return
                fh.seek(size + (size & 1), 1)  # chunks are padded to an even size
    except OSError:
        return


def _decode(path: Path, sample_rate: int) -> np.ndarray:
    av = load_av()
    container = _open(path)
    try:
        _check_wav_size(path, container)
        stream = container.streams.audio[0]
        announced = _announced_seconds(container, stream)
        # FFmpeg's resampler mixes every channel layout down to mono and converts the rate
        # and sample format in C; "flt" is packed float32, so each frame is [1, n].
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total = 0
        limit = int(MAX_SECONDS * sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > limit:
                    raise DataError(path, f"is longer than {MAX_SECONDS / 60:.0f} minutes: cut it into clips")
            for out in resampler.resample(None):  # what the resampler still holds
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise DataError(path, f"cannot be decoded after {total / sample_rate:.2f} s ({reason(exc)}): the file "
                                  f"is corrupt or truncated") from None
    finally:
        container.close()
    wave = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if len(wave) == 0:
        raise DataError(path, "holds no audio samples (zero length): the file is empty, corrupt or truncated")
    decoded = len(wave) / sample_rate
    if announced and decoded < announced - max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * announced):
        raise DataError(path, f"announces {announced:.2f} s of audio but decoding ended after {decoded:.2f} s: "
                              f"the file is truncated or corrupt")
    return np.clip(wave, -1.0, 1.0)


_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def clear_cache() -> None:
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


def read_audio(path: str | Path, sample_rate: int = 8000) -> np.ndarray:
    """A file's samples as read-only float32 [N] in [-1, 1]: mono, at ``sample_rate`` Hz."""
    global _cache_bytes
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, int(sample_rate))
    except OSError:
        key = None
    if key is not None:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
    wave = _decode(path, int(sample_rate))
    wave.flags.writeable = False
    if key is not None and wave.nbytes <= CACHE_BYTES // 8:
        with _cache_lock:
            if key not in _cache:
                _cache[key] = wave
                _cache_bytes += wave.nbytes
                while _cache_bytes > CACHE_BYTES and _cache:
                    _, old = _cache.popitem(last=False)
                    _cache_bytes -= old.nbytes
    return wave


# ----------------------------------------------------------------------------- spectrogram


def hz_to_mel(hz):
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(settings: MelSettings) -> np.ndarray:
    """Triangular filters [n_mels, n_fft // 2 + 1], centres evenly spaced on the mel scale
    between fmin and fmax; each filter peaks at 1 on its centre."""
    n_freqs = settings.n_fft // 2 + 1
    freqs = np.linspace(0.0, settings.sample_rate / 2, n_freqs)  # [F] Hz of each STFT bin
    edges = mel_to_hz(np.linspace(hz_to_mel(settings.fmin), hz_to_mel(settings.top_hz), settings.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [M, 1] each
    rising = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


_bank_cache: dict = {}


def _bank(settings: MelSettings, device, dtype):
    import torch

    key = (settings, str(device), dtype)
    bank = _bank_cache.get(key)
    if bank is None:
        bank = torch.as_tensor(mel_filterbank(settings), device=device, dtype=dtype)
        _bank_cache[key] = bank
    return bank


def log_mel(wave, settings: MelSettings, normalise: bool = True):
    """Samples -> log-mel frames, in torch on the samples' device.

    wave: [N] (numpy or torch) or a torch batch [B, N] of equal-length waves.
    Returns float32 [T, n_mels] (or [B, T, n_mels]), T = settings.frames_for(N); with
    ``normalise`` each bin has mean 0 and standard deviation 1 over the utterance."""
    import torch

    x = torch.from_numpy(np.array(wave, dtype=np.float32)) if isinstance(wave, np.ndarray) else wave.float()  # a copy: cached waves are read-only
    single = x.dim() == 1
    if single:
        x = x[None]  # [1, N]
    n_fft, hop = settings.n_fft, settings.hop
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))  # one frame of silence-padded audio
    window = torch.hann_window(n_fft, periodic=True, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=window, center=False,
                      return_complex=True)  # [B, F, T]
    power = spec.real.square() + spec.imag.square()  # [B, F, T]
    mel = torch.matmul(_bank(settings, x.device, x.dtype), power)  # [M, F] @ [B, F, T] -> [B, M, T]
    feats = torch.log(mel + LOG_FLOOR).transpose(1, 2)  # [B, T, M]
    if normalise:
        feats = normalise_frames(feats)
    return feats[0] if single else feats


def normalise_frames(feats):
    """Per utterance and bin: mean 0, standard deviation 1 over the time axis. [.., T, M]."""
    mean = feats.mean(dim=-2, keepdim=True)
    std = feats.std(dim=-2, keepdim=True, unbiased=False)
    return (feats - mean) / std.clamp_min(1e-5)


def file_features(path: str | Path, settings: MelSettings):
    """A file's normalised log-mel frames, float32 [T, n_mels] (torch, on the CPU)."""
    return log_mel(read_audio(path, settings.sample_rate), settings)


# ----------------------------------------------------------------------------- labelled folders


def _pattern_regex(pattern: str, where: str) -> re.Pattern:
    """``{label}_{speaker}_{index}`` (fields in braces, the rest literal) or a regular
    expression with named groups ``(?P<label>...)``; matched against the whole file name
    without its extension."""
    from workbench.spec import SpecError

    if "(?P<" in pattern:
        source = pattern
    else:
        parts = re.split(r"\{(\w+)\}", pattern)
        source = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    try:
        regex = re.compile(source)
    except re.error as exc:
        raise SpecError(where, f"is not a valid pattern ({exc})") from None
    if "label" not in regex.groupindex:
        raise SpecError(where, "needs a field named label, e.g. {label}_{speaker}_{index} or (?P<label>\\d)_.*")
    return regex


def parse_values(text: str, where: str) -> tuple[set[str], list[tuple[int, int]]]:
    """"0-4" / "0-4,10,x" -> (literal values, integer ranges)."""
    from workbench.spec import SpecError

    literals: set[str] = set()
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise SpecError(where, f"range {part!r} runs backwards")
            ranges.append((lo, hi))
        else:
            literals.add(part)
    if not literals and not ranges:
        raise SpecError(where, "names no values (e.g. 0-4 or a,b,c)")
    return literals, ranges


def _value_in(value: str, values: tuple[set[str], list[tuple[int, int]]]) -> bool:
    literals, ranges = values
    if value in literals:
        return True
    if ranges and re.fullmatch(r"-?\d+", value):
        n = int(value)
        return any(lo <= n <= hi for lo, hi in ranges)
    return False


@dataclass
class ClipSet:
    """The clips of a labelled folder: paths, class index per clip, class names, and
    whether each clip belongs to the held-out split (None: no split pattern given)."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    held_out: list[bool] | None


def scan_clips(root: str | Path, label_pattern: str = "", split_field: str = "", split_values: str = "",
               classes: list[str] | None = None) -> ClipSet:
    """The audio clips under ``root``, labelled by subfolder (``label_pattern`` empty: one
    subfolder per class) or by ``label_pattern`` on the file name (the clips may then lie
    in ``root`` itself or below it). With ``split_field`` the clips whose field value is
    among ``split_values`` (e.g. index 0-4) form the held-out split. With ``classes``
    (a trained model's), a clip of another class is refused; otherwise fewer than two
    classes are."""
    root = Path(root)
    if not root.exists():
        raise DataError(root, "no such folder (a folder of audio clips, labelled by subfolder or by file name)")
    if root.is_file():
        raise DataError(root, "is a single file: a folder of audio clips is needed, labelled by subfolder "
                              "or by a pattern on the file name")
    regex = _pattern_regex(label_pattern, "data.options.label_pattern") if label_pattern else None
    values = parse_values(split_values, "data.options.split_values") if split_field else None
    if regex is not None and split_field and split_field not in regex.groupindex:
        from workbench.spec import SpecError

        raise SpecError("data.options.split_field", f"{split_field!r} is not a field of the label pattern "
                                                    f"({', '.join(regex.groupindex)})")
    found: list[tuple[Path, str, str]] = []  # (path, label, split value)
    if regex is None:
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in class_dirs:
            for p in sorted(folder.rglob("*")):
                if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() and not p.name.startswith("."):
                    found.append((p, folder.name, ""))
        if split_field:
            from workbench.spec import SpecError

            raise SpecError("data.options.split_field", "a split by file-name field needs a label_pattern "
                                                        "that names the field")
    else:
        skipped = []
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() not in AUDIO_EXTENSIONS or not p.is_file() or p.name.startswith("."):
                continue
            m = regex.fullmatch(p.stem)
            if m is None:
                skipped.append(p)
                continue
            found.append((p, m.group("label"), m.group(split_field) if split_field else ""))
        if skipped and not found:
            raise DataError(skipped[0], f"the file name does not match the label pattern {label_pattern!r}")
    if not found:
        raise DataError(root, "holds no audio clips (" + ", ".join(sorted(AUDIO_EXTENSIONS)) + ")" +
                        ("" if regex is not None else " in class subfolders"))
    names = sorted({label for _, label, _ in found}, key=_label_key)
    if classes is None:
        if len(names) < 2:
            raise DataError(root, f"holds clips of one class only ({names[0]!r}): classification needs at least "
                                  f"two classes")
        classes = names
    index = {c: i for i, c in enumerate(classes)}
    for p, label, _ in found:
        if label not in index:
            raise DataError(p, f"class {label!r} is not one the model knows ({', '.join(classes)})")
    found.sort(key=lambda item: (index[item[1]], _label_key(item[0].name)))
    held = [_value_in(v, values) for _, _, v in found] if values is not None else None
    return ClipSet([p for p, _, _ in found], [index[label] for _, label, _ in found], list(classes), held)


def _label_key(text: str) -> tuple:
    """Numbers compare as numbers: 2 before 10."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p)
