"""Video tasks: clips of frames [T, C, H, W] read by the frame encoder (``frames_linear``:
flatten + linear, or ``frames_conv``: a small conv stack) into the recurrent stack.

- ``video_classify`` (many-to-one): what kind of motion a clip shows.
  Path empty: generated clips of a moving shape (disc, square or triangle) labelled by
  ``labels``: "direction" (right / left / down / up; the shape bounces off the frame's
  edges, the label is the direction it starts in) or "motion" (still / straight /
  circle / shake). Deterministic for the seed; endless training clips.
  Path set: a labelled-clips folder, one subfolder per class with clips inside (video
  files, or subfolders of numbered frame images): the layout of UCF101, HMDB51 and
  most action-recognition sets. ``val_fraction`` of each class is held out.
- ``video_next_frame`` (many-to-many, self-supervised): predict frame t+1 from frames
  up to t; the regression head outputs C*H*W values per step.
  Path empty: generated clips of a shape bouncing around the frame.
  Path set: any single video file or frames folder; training windows of ``window``
  frames come from its first part, the last ``val_fraction`` of its frames are held out
  and each is predicted from the ``window`` frames before it.

Frames are kept as uint8 and turned into floats in [0, 1] per batch: x [B, T, C, H, W].
Decoding, resizing, caching and the error messages for bad files are in
workbench.io.video.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench.io.errors import DataError
from workbench.io.paths import resolve_data_path
from workbench.io.video import VIDEO_EXTENSIONS, FrameSettings, is_frames_folder, read_clip
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch, Task

MOTION_LABELS: dict[str, tuple[str, ...]] = {
    "direction": ("right", "left", "down", "up"),
    "motion": ("still", "straight", "circle", "shake"),
}
SHAPES = ("disc", "square", "triangle")
# Frames of all clips of a labelled folder, held as uint8; more is refused.
MAX_DATASET_BYTES = 4 * 1024**3


# ----------------------------------------------------------------------------- generated clips


def _bounce(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fold free motion p [n, T] back into [lo, hi] [n, 1] as a ball bouncing off walls."""
    span = np.maximum(hi - lo, 1e-6)
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def _trajectories(kinds: np.ndarray, n: int, T: int, H: int, W: int, radius: np.ndarray,
                  rng: np.random.Generator, label_set: str) -> tuple[np.ndarray, np.ndarray]:
    """Centres (cy, cx), each [n, T], for each clip's class index ``kinds`` [n]."""
    t = np.arange(T, dtype=np.float64)[None, :]  # [1, T]
    lo_y, hi_y = radius[:, None], H - 1 - radius[:, None]  # [n, 1]
    lo_x, hi_x = radius[:, None], W - 1 - radius[:, None]
    speed = rng.uniform(0.07, 0.13, n)[:, None] * min(H, W)  # pixels per frame
    angle = rng.uniform(0, 2 * np.pi, n)
    if label_set == "direction":
        # right, left, down, up (+y is down in an image), each within +-25 degrees
        base = np.array([0.0, np.pi, np.pi / 2, -np.pi / 2])[kinds]
        angle = base + rng.uniform(-0.44, 0.44, n)
    vy, vx = np.sin(angle)[:, None] * speed, np.cos(angle)[:, None] * speed
    # Start far enough from the wall ahead for two free steps: a clip shows the direction
    # it is labelled with before any bounce.
    y0 = rng.uniform(lo_y[:, 0] + np.maximum(-2 * vy[:, 0], 0), hi_y[:, 0] - np.maximum(2 * vy[:, 0], 0))[:, None]
    x0 = rng.uniform(lo_x[:, 0] + np.maximum(-2 * vx[:, 0], 0), hi_x[:, 0] - np.maximum(2 * vx[:, 0], 0))[:, None]
    cy = _bounce(y0 + vy * t, lo_y, hi_y)
    cx = _bounce(x0 + vx * t, lo_x, hi_x)
    if label_set == "motion":
        still, circle, shake = kinds == 0, kinds == 2, kinds == 3
        cy[still], cx[still] = np.broadcast_to(y0, (n, T))[still], np.broadcast_to(x0, (n, T))[still]
        if circle.any():
            m = int(circle.sum())
            orbit = rng.uniform(0.15, 0.25, m)[:, None] * min(H, W)
            omega = rng.choice([-1.0, 1.0], m)[:, None] * rng.uniform(0.45, 0.8, m)[:, None]
            phase = rng.uniform(0, 2 * np.pi, m)[:, None]
            my = np.clip(y0[circle], lo_y[circle] + orbit, hi_y[circle] - orbit)
            mx = np.clip(x0[circle], lo_x[circle] + orbit, hi_x[circle] - orbit)
            cy[circle] = my + orbit * np.sin(omega * t + phase)
            cx[circle] = mx + orbit * np.cos(omega * t + phase)
        if shake.any():
            m = int(shake.sum())
            jitter = 0.08 * min(H, W)
            cy[shake] = np.clip(y0[shake] + rng.normal(0, jitter, (m, T)), lo_y[shake], hi_y[shake])
            cx[shake] = np.clip(x0[shake] + rng.normal(0, jitter, (m, T)), lo_x[shake], hi_x[shake])
    return cy, cx


def moving_shapes(kinds: np.ndarray, T: int, H: int, W: int, channels: int, rng: np.random.Generator,
                  label_set: str = "direction", noise: float = 0.0) -> np.ndarray:
    """Clips of one moving shape each: uint8 [n, T, C, H, W].

    ``kinds`` [n] are class indices into MOTION_LABELS[label_set] ("bounce" for the
    next-frame task's free bouncing, any angle). Edges are anti-aliased, so sub-pixel
    motion shows in the pixels."""
    n = len(kinds)
    radius = rng.uniform(0.12, 0.2, n) * min(H, W)
    radius = np.maximum(radius, 1.0)
    cy, cx = _trajectories(kinds, n, T, H, W, radius, rng, label_set)
    shape = rng.integers(0, len(SHAPES), n)
    yy = np.arange(H, dtype=np.float64)[None, None, :, None]  # [1, 1, H, 1]
    xx = np.arange(W, dtype=np.float64)[None, None, None, :]  # [1, 1, 1, W]
    dy = yy - cy[:, :, None, None]  # [n, T, H, 1]
    dx = xx - cx[:, :, None, None]  # [n, T, 1, W]
    r = radius[:, None, None, None]
    # Signed distance to the shape's edge, positive inside: [n, T, H, W]
    disc = r - np.sqrt(dy ** 2 + dx ** 2)
    square = 0.85 * r - np.maximum(np.abs(dy), np.abs(dx))
    triangle = np.minimum(0.8 * r - dy, ((dy + r) * 0.6 - np.abs(dx)) / np.sqrt(1.36))
    sel = shape[:, None, None, None]
    inside = np.where(sel == 0, disc, np.where(sel == 1, square, triangle))
    alpha = np.clip(inside + 0.5, 0.0, 1.0)[:, :, None]  # [n, T, 1, H, W]
    colour = rng.uniform(0.55, 1.0, (n, channels))[:, None, :, None, None]  # [n, 1, C, 1, 1]
    background = rng.uniform(0.0, 0.2, n)[:, None, None, None, None]
    frames = background * (1 - alpha) + colour * alpha
    if noise > 0:
        frames = frames + rng.normal(0.0, noise, frames.shape)
    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def bouncing_clips(n: int, T: int, H: int, W: int, channels: int, rng: np.random.Generator,
                   noise: float = 0.0) -> np.ndarray:
    """uint8 [n, T, C, H, W]: a shape moving in any direction, bouncing off the edges."""
    return moving_shapes(np.zeros(n, dtype=np.int64), T, H, W, channels, rng, "bounce", noise)


def _to_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float32 in [0, 1], same shape."""
    if isinstance(frames, np.ndarray):
        scaled = frames.astype(np.float32)  # a fresh, writable copy (cached clips are read-only)
        return torch.from_numpy(scaled).div_(255.0) if frames.dtype == np.uint8 else torch.from_numpy(scaled)
    return frames.float().div(255.0) if frames.dtype == torch.uint8 else frames.float()


# ----------------------------------------------------------------------------- common part


@dataclass
class FrameOptions:
    width: int = 16  # frames are resized to width x height
    height: int = 16
    grey: bool = True  # 1 channel; false: RGB, 3 channels
    stride: int = 1  # keep every stride-th frame of a file
    noise: float = 0.05  # generated clips: pixel noise (standard deviation, 0..1 scale)


class FrameTask(Task):
    """What both video tasks share: decode settings, the frame encoder, video loading."""

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        for name in ("width", "height"):
            if not 4 <= getattr(o, name) <= 1024:
                raise SpecError(f"data.options.{name}", f"must be between 4 and 1024 pixels, got {getattr(o, name)}")
        if not 1 <= o.stride <= 1000:
            raise SpecError("data.options.stride", f"must be between 1 and 1000, got {o.stride}")
        if not 0.0 <= o.noise <= 1.0:
            raise SpecError("data.options.noise", f"must be between 0 and 1, got {o.noise}")
        self.width, self.height, self.grey, self.stride = o.width, o.height, o.grey, o.stride

    @property
    def channels(self) -> int:
        return 1 if self.grey else 3

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def frame_settings(self, max_frames: int = 0, start: int = 0) -> FrameSettings:
        return FrameSettings(width=self.width, height=self.height, grey=self.grey, stride=self.stride,
                             max_frames=max_frames, start=start)

    def _frame_artifacts(self) -> dict:
        return {"task": self.name, "width": self.width, "height": self.height, "grey": self.grey,
                "stride": self.stride}

    def _restore_frames(self, artifacts: dict) -> None:
        try:
            self.width, self.height = int(artifacts["width"]), int(artifacts["height"])
            self.grey, self.stride = bool(artifacts["grey"]), int(artifacts["stride"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError("task.json", f"the video task's saved state is incomplete ({exc})") from None

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if model.input.kind not in ("frames_linear", "frames_conv", "frames_grid"):
            raise SpecError("model.input.kind", "video is read by a frame encoder: use 'frames_linear' "
                                                "(flatten + linear), 'frames_conv' (small conv stack) or "
                                                "'frames_grid' (the frames as they are, for conv_lstm/conv_gru)")

    def encode_video(self, path: str | Path, max_frames: int = 0, start: int = 0) -> torch.Tensor:
        """A video file or frames folder as the model reads it: float [1, T, C, H, W] in
        [0, 1], decoded with this task's size, colour and stride (from the run's
        artifacts), at most ``max_frames`` frames (0: all) from source frame ``start``."""
        clip = read_clip(resolve_data_path(path), self.frame_settings(max_frames, start))  # [T, C, H, W] uint8
        return _to_float(clip)[None]

    @staticmethod
    def _device(model: torch.nn.Module) -> torch.device:
        return next(model.parameters()).device


# ----------------------------------------------------------------------------- classification


@dataclass
class VideoClassifyOptions(FrameOptions):
    clip_len: int = 12  # frames per clip: longer clips are cut, shorter ones padded
    labels: str = "direction"  # generated clips: "direction" or "motion"
    val_clips: int = 512  # generated clips held out
    val_fraction: float = 0.2  # labelled-clips folder: share of each class held out


class VideoClassifyTask(FrameTask):
    name = "video_classify"
    title = "Video classification (moving shapes or a labelled-clips folder)"
    topologies = ("many_to_one",)
    Options = VideoClassifyOptions
    option_choices = {"labels": tuple(MOTION_LABELS)}
    main_metric = "accuracy"
    lower_is_better = False

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        if not 1 <= o.clip_len <= 100_000:
            raise SpecError("data.options.clip_len", f"must be between 1 and 100000, got {o.clip_len}")
        if o.labels not in MOTION_LABELS:
            raise SpecError("data.options.labels", f"{o.labels!r} is not one of: {', '.join(MOTION_LABELS)}")
        if not 1 <= o.val_clips <= 1_000_000:
            raise SpecError("data.options.val_clips", f"must be between 1 and 1000000, got {o.val_clips}")
        if not 0.0 < o.val_fraction <= 0.9:
            raise SpecError("data.options.val_fraction", f"must be in (0, 0.9], got {o.val_fraction}")
        self.clip_len = o.clip_len
        self.classes: list[str] = list(MOTION_LABELS[o.labels])

    # -- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        o = self.options
        if not self.path:
            self.generated = True
            rng = np.random.default_rng([self.seed, 1_000_003])
            labels = rng.integers(0, len(self.classes), o.val_clips)
            self.val_frames = moving_shapes(labels, self.clip_len, self.height, self.width, self.channels,
                                            rng, o.labels, o.noise)  # [N, T, C, H, W] uint8
            self.val_labels = torch.as_tensor(labels, dtype=torch.long)
            self.val_lengths = None
            self.clip_names = []
            return
        self.generated = False
        root = resolve_data_path(self.path)
        clips, labels, self.classes = self._scan_folder(root)
        C, H, W = self.frame_shape
        total = len(clips) * self.clip_len * C * H * W
        if total > MAX_DATASET_BYTES:
            raise DataError(root, f"{len(clips)} clips of {self.clip_len} frames at {W}x{H} would take "
                                  f"{total / 2**30:.1f} GiB: lower data.options.clip_len, width or height")
        frames = np.zeros((len(clips), self.clip_len, C, H, W), dtype=np.uint8)  # padded with black
        lengths = np.zeros(len(clips), dtype=np.int64)
        for i, clip in enumerate(clips):
            data = read_clip(clip, self.frame_settings(self.clip_len))  # [t, C, H, W]
            frames[i, : len(data)] = data
            lengths[i] = len(data)
        # Hold out val_fraction of every class (at least one clip of a class with two or more).
        rng = np.random.default_rng(self.seed)
        labels_np = np.asarray(labels)
        val_idx: list[int] = []
        for c in range(len(self.classes)):
            members = np.nonzero(labels_np == c)[0]
            rng.shuffle(members)
            n_val = int(round(len(members) * o.val_fraction))
            if len(members) >= 2:
                n_val = min(max(n_val, 1), len(members) - 1)
            else:
                n_val = 0
            val_idx += members[:n_val].tolist()
        if not val_idx:
            raise DataError(root, "every class holds a single clip: at least two clips per class are needed "
                                  "to hold one out for validation")
        val_mask = np.zeros(len(clips), dtype=bool)
        val_mask[val_idx] = True
        self.clip_names = [str(c) for c in clips]
        self.train_frames, self.val_frames = frames[~val_mask], frames[val_mask]
        self.train_labels = torch.as_tensor(labels_np[~val_mask], dtype=torch.long)
        self.val_labels = torch.as_tensor(labels_np[val_mask], dtype=torch.long)
        self.train_lengths = torch.as_tensor(lengths[~val_mask])
        self.val_lengths = torch.as_tensor(lengths[val_mask])

    @staticmethod
    def _scan_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
        """(clip paths, class index per clip, class names) of a labelled-clips folder."""
        if not root.exists():
            raise DataError(root, "no such folder")
        if root.is_file():
            raise DataError(root, "is a single video: classification needs a labelled-clips folder, one "
                                  "subfolder per class with the clips inside")
        if is_frames_folder(root):
            raise DataError(root, "is a frames folder (one clip): classification needs a labelled-clips "
                                  "folder, one subfolder per class with the clips inside")
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(class_dirs) < 2:
            raise DataError(root, f"holds {len(class_dirs)} class subfolder{'s' if len(class_dirs) != 1 else ''}: "
                                  f"a labelled-clips folder needs one subfolder per class, at least two")
        clips: list[Path] = []
        labels: list[int] = []
        for c, folder in enumerate(class_dirs):
            found = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (
                (p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS) or (p.is_dir() and is_frames_folder(p))))
            if not found:
                raise DataError(folder, "holds no clips: put video files (" +
                                ", ".join(sorted(VIDEO_EXTENSIONS)) + ") or folders of frame images in each "
                                "class folder")
            clips += found
            labels += [c] * len(found)
        return clips, labels, [d.name for d in class_dirs]

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        if self.generated:
            # Endless fresh clips; numpy draws from a seed taken from the trainer's generator.
            while True:
                seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                rng = np.random.default_rng(seed)
                labels = rng.integers(0, len(self.classes), batch_size)
                frames = moving_shapes(labels, self.clip_len, self.height, self.width, self.channels,
                                       rng, self.options.labels, self.options.noise)
                yield Batch(x=_to_float(frames), y=torch.as_tensor(labels, dtype=torch.long))
        order = torch.randperm(len(self.train_labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield self._folder_batch(self.train_frames, self.train_labels, self.train_lengths, idx)

    def _folder_batch(self, frames: np.ndarray, labels: torch.Tensor, lengths: torch.Tensor,
                      idx: torch.Tensor) -> Batch:
        lens = lengths[idx]
        T = int(lens.max())  # trim padding no clip of this batch needs
        x = _to_float(frames[idx.numpy(), :T])  # [B, T, C, H, W]
        return Batch(x=x, y=labels[idx], lengths=lens)

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        n = len(self.val_labels)
        for b, start in enumerate(range(0, n, batch_size)):
            if b >= max_batches:
                break
            idx = torch.arange(start, min(start + batch_size, n))
            if self.val_lengths is None:
                yield Batch(x=_to_float(self.val_frames[start:start + batch_size]), y=self.val_labels[idx])
            else:
                yield self._folder_batch(self.val_frames, self.val_labels, self.val_lengths, idx)

    def epoch_size(self, batch_size: int) -> int | None:
        if self.generated:
            return None
        return math.ceil(len(self.train_labels) / batch_size)

    # -- life cycle ------------------------------------------------------------------------
    def artifacts(self) -> dict:
        return {**self._frame_artifacts(), "classes": list(self.classes), "clip_len": self.clip_len,
                "labels": self.options.labels, "baseline": self.baseline()}

    def restore(self, artifacts: dict) -> None:
        self._restore_frames(artifacts)
        try:
            self.classes = [str(c) for c in artifacts["classes"]]
            self.clip_len = int(artifacts["clip_len"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError("task.json", f"the video task's saved state is incomplete ({exc})") from None
        self._saved_baseline = dict(artifacts.get("baseline", {}))
        self.prepared = True

    # -- shapes, loss, metrics -----------------------------------------------------------
    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="frames", frame_shape=self.frame_shape, output_size=len(self.classes))

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if model.head.kind != "classification":
            raise SpecError("model.head.kind", "video classification needs the 'classification' head")

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(output.float(), batch.y)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        return {"accuracy": self.accuracy_sums(output, batch.y, None)}

    def baseline(self) -> dict[str, float]:
        """Accuracy of always answering the most common class of the held-out clips."""
        if not self.prepared or not hasattr(self, "val_labels"):
            return dict(getattr(self, "_saved_baseline", {}))
        counts = torch.bincount(self.val_labels, minlength=len(self.classes))
        return {"accuracy": float(counts.max()) / max(int(counts.sum()), 1)}

    # -- inference (try-out) -------------------------------------------------------------
    @torch.no_grad()
    def frame_probabilities(self, model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
        """Class probabilities after each frame: frames [B, T, C, H, W] (or [T, C, H, W])
        -> [B, T, K] (or [T, K]); row t is what the model answers for the clip cut after
        frame t. One pass for forward layers; a bidirectional model reads each prefix
        separately (T passes), since its backward direction would otherwise see later frames."""
        single = frames.dim() == 4
        x = (frames[None] if single else frames).to(self._device(model)).float()
        was_training = model.training
        model.eval()
        if any(layer.bidirectional for layer in model.spec.layers):
            logits = torch.stack([model(x[:, : t + 1]) for t in range(x.shape[1])], dim=1)  # [B, T, K]
        else:
            out, _ = model.encoder(model.encode_input(x))  # [B, T, H]
            logits = model.head(out)  # [B, T, K]: the many-to-one head at every step
        model.train(was_training)
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        return probs[0] if single else probs

    def classify(self, model: torch.nn.Module, path: str | Path) -> list[tuple[str, float]]:
        """(class, probability) for a video file or frames folder, most likely first; the
        clip is read as in training (its first ``clip_len`` frames)."""
        probs = self.frame_probabilities(model, self.encode_video(path, self.clip_len)[0])[-1]  # [K]
        ranked = sorted(zip(self.classes, probs.tolist()), key=lambda item: -item[1])
        return [(name, float(p)) for name, p in ranked]


# ----------------------------------------------------------------------------- next frame


@dataclass
class NextFrameOptions(FrameOptions):
    window: int = 12  # frames per training window (the model predicts each next frame)
    max_frames: int = 3000  # frames read from each video file (after the stride)
    # one video: its last frames held out; a folder of clips: that share of whole clips
    val_fraction: float = 0.2
    val_clips: int = 256  # generated clips held out
    # footage: each training window mirrored left-right (flip) and/or played backwards
    # (reverse) with probability 1/2, so few frames teach motion both ways; off: as filmed
    flip: bool = False
    reverse: bool = False


# Free-running evaluation: the model rolls forward on its own predictions and is scored
# this many frames ahead (those the held-out part has room for).
ROLLOUT_HORIZONS = (1, 5, 10)
# Held-out windows rolled forward at most (evenly spread over the held-out part).
MAX_ROLLOUT_WINDOWS = 64


class NextFrameTask(FrameTask):
    name = "video_next_frame"
    title = "Next-frame prediction (bouncing shapes, a video, or a folder of clips)"
    topologies = ("many_to_many",)
    Options = NextFrameOptions
    main_metric = "mse"
    lower_is_better = True

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        if not 1 <= o.window <= 10_000:
            raise SpecError("data.options.window", f"must be between 1 and 10000, got {o.window}")
        if not 2 <= o.max_frames <= 1_000_000:
            raise SpecError("data.options.max_frames", f"must be between 2 and 1000000, got {o.max_frames}")
        if not 0.0 < o.val_fraction <= 0.9:
            raise SpecError("data.options.val_fraction", f"must be in (0, 0.9], got {o.val_fraction}")
        if not 1 <= o.val_clips <= 1_000_000:
            raise SpecError("data.options.val_clips", f"must be between 1 and 1000000, got {o.val_clips}")
        self.window = o.window
        self.horizons: tuple[int, ...] = ()
        self.clip_names: list[str] = []
        self.val_clip_names: list[str] = []
        self.delta_scale = 1.0  # set by prepare() (_delta_scale) or restore()

    @property
    def frame_size(self) -> int:
        C, H, W = self.frame_shape
        return C * H * W

    # -- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        o, W = self.options, self.window
        if not self.path:
            self.generated = True
            rng = np.random.default_rng([self.seed, 1_000_003])
            self.val_clips = bouncing_clips(o.val_clips, W + 1, self.height, self.width, self.channels,
                                            rng, o.noise)  # [N, W+1, C, H, W] uint8
            self.horizons = ROLLOUT_HORIZONS
            rng = np.random.default_rng([self.seed, 1_000_033])
            self.rollout_clips = bouncing_clips(min(o.val_clips, MAX_ROLLOUT_WINDOWS), W + self.horizons[-1],
                                                self.height, self.width, self.channels, rng, o.noise)
        else:
            self.generated = False
            path = resolve_data_path(self.path)
            if path.is_dir() and not is_frames_folder(path):
                self._prepare_folder(path)
            else:
                self._prepare_video(path)
        self._baseline = self._baseline_scores()
        self.delta_scale = self._delta_scale()

    def _prepare_video(self, path: Path) -> None:
        """One video: training windows from its first part, its last ``val_fraction``
        frames held out, each predicted from the ``window`` frames before it."""
        o, W = self.options, self.window
        self.frames = read_clip(path, self.frame_settings(o.max_frames))  # [N, C, H, W] uint8
        N = len(self.frames)
        n_train = int(round(N * (1.0 - o.val_fraction)))
        if n_train < W + 1 or N - n_train < 1:
            raise DataError(path, f"has {N} frames (stride {self.stride}): too few for training windows of "
                                  f"{W} frames plus a held-out part of {o.val_fraction:.0%}: lower "
                                  f"data.options.window or the stride")
        self.n_train = n_train
        # Origins o: the window is frames [o - W, o), the targets frames [o - W + 1, o].
        self.train_origins = torch.arange(W, n_train)
        self.val_origins = torch.arange(max(n_train, W), N)
        self.mean_frame = _to_float(self.frames[:n_train]).mean(dim=0)  # [C, H, W], training part only
        self._rollout_setup([(n_train, N)])

    def _prepare_folder(self, root: Path) -> None:
        """A folder of clips (video files and/or frames folders) as one data set: the
        clips are joined end to end, windows never cross from one clip into the next, and
        ``val_fraction`` of the clips (at least one, chosen by the seed) are held out whole."""
        o, W = self.options, self.window
        found = sorted(p for p in root.iterdir() if not p.name.startswith(".") and (
            (p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS) or (p.is_dir() and is_frames_folder(p))))
        if len(found) < 2:
            raise DataError(root, f"holds {len(found)} clip{'s' if len(found) != 1 else ''}: a folder of clips "
                                  f"needs at least two (video files or folders of frame images), one to hold "
                                  f"out; for a single video set data.path to the file itself")
        clips, total = [], 0
        for p in found:
            clip = read_clip(p, self.frame_settings(o.max_frames))  # [n, C, H, W] uint8
            total += clip.nbytes
            if total > MAX_DATASET_BYTES:
                raise DataError(p, f"the clips up to this one take {total / 2**30:.1f} GiB at "
                                   f"{self.width}x{self.height}: lower data.options.max_frames, width or height")
            if len(clip) < W + 1:
                raise DataError(p, f"has {len(clip)} frames (stride {self.stride}): a clip needs at least "
                                   f"{W + 1} for one window of data.options.window={W} frames and its next frame")
            clips.append(clip)
        n_val = min(max(int(round(len(clips) * o.val_fraction)), 1), len(clips) - 1)
        held = set(np.random.default_rng(self.seed).permutation(len(clips))[:n_val].tolist())
        starts = np.cumsum([0] + [len(c) for c in clips])
        self.frames = np.concatenate(clips)  # [N, C, H, W] uint8, clip after clip
        train_o, val_o, val_spans = [], [], []
        for i in range(len(clips)):
            s, e = int(starts[i]), int(starts[i + 1])
            (val_o if i in held else train_o).append(torch.arange(s + W, e))
            if i in held:
                val_spans.append((s + W, e))
        self.train_origins, self.val_origins = torch.cat(train_o), torch.cat(val_o)
        self.clip_names = [str(p) for p in found]
        self.val_clip_names = [str(found[i]) for i in sorted(held)]
        self.n_train = int(sum(len(c) for i, c in enumerate(clips) if i not in held))
        train_frames = np.concatenate([c for i, c in enumerate(clips) if i not in held])
        self.mean_frame = _to_float(train_frames).mean(dim=0)  # [C, H, W]
        self._rollout_setup(val_spans)

    def _delta_scale(self) -> float:
        """The typical size of a frame-to-frame change the model is trained on: the RMS
        over pixels of x_{t+1} - x_t for every (frame, next frame) pair of the training
        windows (generated clips: a fixed sample of them). The residual head predicts
        changes in these units (engine/model.py), so the optimiser's step moves the
        prediction by a fraction of the footage's own motion, whether it changes by 0.8%
        a frame (Newton's cradle) or 10% (a bouncing shape)."""
        if self.generated:
            rng = np.random.default_rng([self.seed, 1_000_037])
            clips = bouncing_clips(64, self.window + 1, self.height, self.width, self.channels, rng, self.options.noise)
            change = np.diff(clips.astype(np.float32) / 255.0, axis=1)  # [64, W, C, H, W]
            rms = float(np.sqrt(np.mean(change ** 2)))
        else:
            # targets t of the training windows (frames [o - W + 1, o]); t - 1 is in the same window
            targets = torch.unique((self.train_origins[:, None] - torch.arange(self.window)[None, :]).flatten())
            total, count = 0.0, 0
            for chunk in targets.split(1024):  # bounded memory on long footage
                t = chunk.numpy()
                change = _to_float(self.frames[t]) - _to_float(self.frames[t - 1])  # [n, C, H, W]
                total += float(change.double().pow(2).sum())
                count += change.numel()
            rms = math.sqrt(total / max(count, 1))
        return max(rms, 1.0 / 255.0)  # still footage: one grey level, never zero

    def _rollout_setup(self, spans: list[tuple[int, int]]) -> None:
        """Origins of the held-out windows rolled forward: the context is frames [o - W, o),
        the future frames o, o+1, ... inside the span [first origin, end) of held-out frames."""
        room = max(e - s for s, e in spans)  # the most frames a rollout can be scored on
        self.horizons = tuple(h for h in ROLLOUT_HORIZONS if h <= room)
        if not self.horizons:
            self.rollout_origins = torch.zeros(0, dtype=torch.long)
            return
        longest = self.horizons[-1]
        origins = torch.cat([torch.arange(s, e - longest + 1) for s, e in spans if e - s >= longest])
        if len(origins) > MAX_ROLLOUT_WINDOWS:
            origins = origins[torch.linspace(0, len(origins) - 1, MAX_ROLLOUT_WINDOWS).round().long()]
        self.rollout_origins = origins

    def _window_batch(self, origins: torch.Tensor, held_out: bool, flip: torch.Tensor | None = None,
                      reverse: torch.Tensor | None = None) -> Batch:
        """Windows ending at ``origins`` [B]; ``flip``/``reverse`` [B] bool (training
        augmentation): mirror those rows left-right / play them backwards."""
        W = self.window
        idx = origins[:, None] - W + torch.arange(W + 1)[None, :]  # [B, W+1]
        if reverse is not None and reverse.any():
            idx = torch.where(reverse[:, None], idx.flip(1), idx)  # the same frames, last first
        clip = _to_float(self.frames[idx.numpy()])  # [B, W+1, C, H, W]
        if flip is not None and flip.any():
            clip[flip] = clip[flip].flip(-1)
        x = clip[:, :-1]
        y = clip[:, 1:].flatten(2)  # [B, W, C*H*W]
        mask = None
        if held_out:
            # Score only the held-out frame each window ends on, predicted from the W before it.
            mask = torch.zeros(len(origins), W, dtype=torch.bool)
            mask[:, -1] = True
        return Batch(x=x, y=y, mask=mask)

    def _clip_batch(self, clips: np.ndarray) -> Batch:
        clip = _to_float(clips)  # [B, W+1, C, H, W]
        return Batch(x=clip[:, :-1], y=clip[:, 1:].flatten(2))

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        if self.generated:
            while True:
                rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
                yield self._clip_batch(bouncing_clips(batch_size, self.window + 1, self.height, self.width,
                                                      self.channels, rng, self.options.noise))
        order = self.train_origins[torch.randperm(len(self.train_origins), generator=generator)]
        o = self.options
        for start in range(0, len(order), batch_size):
            origins = order[start:start + batch_size]
            if not (o.flip or o.reverse):
                yield self._window_batch(origins, held_out=False)
                continue
            draws = torch.rand(2, len(origins), generator=generator) < 0.5  # [2, B]: flip, reverse
            yield self._window_batch(origins, held_out=False, flip=draws[0] & o.flip, reverse=draws[1] & o.reverse)

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        if self.generated:
            for b, start in enumerate(range(0, len(self.val_clips), batch_size)):
                if b >= max_batches:
                    break
                yield self._clip_batch(self.val_clips[start:start + batch_size])
            return
        for b, start in enumerate(range(0, len(self.val_origins), batch_size)):
            if b >= max_batches:
                break
            yield self._window_batch(self.val_origins[start:start + batch_size], held_out=True)

    def rollout_batches(self, batch_size: int = 32) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out (context [B, W, C, H, W], future [B, horizons[-1], C, H, W]) pairs for
        free-running evaluation, the same every call."""
        if not self.horizons:
            return
        W, longest = self.window, self.horizons[-1]
        if self.generated:
            for start in range(0, len(self.rollout_clips), batch_size):
                clip = _to_float(self.rollout_clips[start:start + batch_size])
                yield clip[:, :W], clip[:, W:W + longest]
            return
        for start in range(0, len(self.rollout_origins), batch_size):
            origins = self.rollout_origins[start:start + batch_size]
            idx = origins[:, None] - W + torch.arange(W + longest)[None, :]  # [B, W+longest]
            clip = _to_float(self.frames[idx.numpy()])
            yield clip[:, :W], clip[:, W:]

    def epoch_size(self, batch_size: int) -> int | None:
        if self.generated:
            return None
        return math.ceil(len(self.train_origins) / batch_size)

    # -- baselines -----------------------------------------------------------------------
    def _baseline_scores(self) -> dict[str, float]:
        """What copying the last frame and (for footage) the mean training frame score:
        MSE, PSNR and SSIM per frame, one step ahead and at each rollout horizon."""
        shape = self.frame_shape
        sums: dict[str, list[float]] = {}
        guesses = {"copy_last": None}
        if not self.generated:
            guesses["mean_frame"] = self.mean_frame
        for batch in self.val_batches(256, 10**9):
            target = batch.y.reshape(*batch.y.shape[:2], *shape)  # [B, W, C, H, W]
            for name, frame in guesses.items():
                guess = batch.x if frame is None else frame.expand_as(target)  # frame t guesses t+1
                for metric, values in frame_scores(guess, target).items():  # each [B, W]
                    _add(sums.setdefault(f"{name}_{metric}", [0.0, 0.0]), values, batch.mask)
        for context, future in self.rollout_batches():
            for name, frame in guesses.items():
                for h in self.horizons:
                    target = future[:, h - 1]  # [B, C, H, W]
                    guess = context[:, -1] if frame is None else frame.expand_as(target)
                    for metric, values in frame_scores(guess, target).items():
                        _add(sums.setdefault(f"{name}_{metric}_h{h}", [0.0, 0.0]), values, None)
        out = {k: s / c for k, (s, c) in sums.items() if c}
        out["mse"] = min(v for k, v in out.items() if k.endswith("_mse"))
        return out

    def baseline(self) -> dict[str, float]:
        """Copying the last frame ("copy_last_*") and a video's mean training frame
        ("mean_frame_*"): MSE per pixel, PSNR in dB and SSIM per frame, one step ahead
        and ``*_hK`` K frames ahead (the rollout horizons); "mse" is the better MSE."""
        return dict(getattr(self, "_baseline", {}))

    # -- free-running evaluation (`workbench eval`) ---------------------------------------
    @torch.no_grad()
    def free_running_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        """The model rolled forward on its own predictions from each held-out context:
        "rollout_{mse,psnr,ssim}_hK" K frames ahead (beside the baseline's copy_last_*_hK)."""
        sums: dict[str, list[float]] = {}
        for context, future in self.rollout_batches():
            predicted = self.rollout_batch(model, context, self.horizons[-1])  # [B, K, C, H, W]
            for h in self.horizons:
                for metric, values in frame_scores(predicted[:, h - 1], future[:, h - 1]).items():
                    _add(sums.setdefault(f"rollout_{metric}_h{h}", [0.0, 0.0]), values, None)
        return {k: s / c for k, (s, c) in sums.items() if c}

    # -- life cycle ------------------------------------------------------------------------
    def artifacts(self) -> dict:
        return {**self._frame_artifacts(), "window": self.window, "baseline": self.baseline(),
                "horizons": list(self.horizons), "delta_scale": self.delta_scale}

    def restore(self, artifacts: dict) -> None:
        self._restore_frames(artifacts)
        self.window = int(artifacts.get("window", self.window))
        self._baseline = dict(artifacts.get("baseline", {}))
        self.horizons = tuple(int(h) for h in artifacts.get("horizons", ()))
        # runs saved before the residual head had a scale predicted changes in pixel units (1.0)
        self.delta_scale = float(artifacts.get("delta_scale", 1.0))
        self.prepared = True

    # -- shapes, loss, metrics -----------------------------------------------------------
    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="frames", frame_shape=self.frame_shape, output_size=self.frame_size,
                       delta_scale=self.delta_scale)

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if model.head.kind != "regression":
            raise SpecError("model.head.kind", "next-frame prediction outputs pixels: use the 'regression' head")
        for i, layer in enumerate(model.layers):
            if layer.bidirectional:
                raise SpecError(f"model.layers.{i}.bidirectional", "next-frame prediction must not read later "
                                "frames: a bidirectional layer would see the frame it is asked to predict")

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        per_frame = (output.float() - batch.y).pow(2).mean(-1)  # [B, W]
        if batch.mask is None:
            return per_frame.mean()
        m = batch.mask.to(per_frame.dtype)
        return (per_frame * m).sum() / m.sum().clamp_min(1.0)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        shape = (*batch.y.shape[:2], *self.frame_shape)
        scores = frame_scores(output.detach().float().reshape(shape), batch.y.reshape(shape))
        out = {}
        for name, values in scores.items():
            acc = [0.0, 0.0]
            _add(acc, values, batch.mask)
            out[name] = (acc[0], acc[1])
        return out

    # -- inference (try-out) -------------------------------------------------------------
    def _step(self, model, frames: torch.Tensor, carried):
        """frames [B, T, C, H, W] -> (predicted next frames [B, T, C, H, W], carried): carried
        is (the layers' states, the last frame read [B, C, H, W], which the extrapolating
        head needs as the next piece's x_{t-1}); None to start."""
        state, previous = carried if carried is not None else (None, None)
        out, state = model(frames, initial_states=state, return_states=True,
                           previous_frame=previous)  # [B, T, C*H*W]
        pred = out.reshape(*frames.shape)
        return pred.clamp(0.0, 1.0), (state, frames[:, -1])

    @torch.no_grad()
    def predict_next_frames(self, model: torch.nn.Module, frames: torch.Tensor,
                            chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step-ahead predictions over a clip: frames [T, C, H, W] (or [1, T, C, H, W])
        -> (predicted [T-1, C, H, W], real [T-1, C, H, W]); predicted[t] is the model's
        guess for frame t+1 from frames 0..t. Long clips run in chunks with the recurrent
        state carried over, so memory does not grow with T."""
        if frames.dim() == 5:
            frames = frames[0]
        if frames.shape[1:] != torch.Size(self.frame_shape):
            raise ValueError(f"frames must be [T, {', '.join(map(str, self.frame_shape))}], got {tuple(frames.shape)}")
        device = self._device(model)
        was_training = model.training
        model.eval()
        state, preds = None, []
        inputs = frames[:-1]
        for start in range(0, len(inputs), chunk):
            pred, state = self._step(model, inputs[start:start + chunk][None].to(device).float(), state)
            preds.append(pred[0].cpu())
        model.train(was_training)
        predicted = torch.cat(preds) if preds else frames[:0].float()
        return predicted, frames[1:].float()

    @torch.no_grad()
    def rollout_batch(self, model: torch.nn.Module, context: torch.Tensor, steps: int) -> torch.Tensor:
        """Free-running prediction for a batch: read ``context`` [B, T, C, H, W], then feed
        each predicted frame back in; returns the ``steps`` frames after the context,
        [B, steps, C, H, W]. Step 1 is the one-step prediction from the context."""
        device = self._device(model)
        was_training = model.training
        model.eval()
        pred, state = self._step(model, context.to(device).float(), None)
        frame = pred[:, -1:]  # [B, 1, C, H, W]: the guess for the frame after the context
        out = [frame]
        for _ in range(steps - 1):
            frame, state = self._step(model, frame, state)
            out.append(frame)
        model.train(was_training)
        return torch.cat(out, dim=1).cpu() if steps > 0 else context[:, :0].float()

    def rollout(self, model: torch.nn.Module, context: torch.Tensor, steps: int) -> torch.Tensor:
        """``rollout_batch`` for one clip: context [T, C, H, W] -> [steps, C, H, W]."""
        if context.dim() == 5:
            context = context[0]
        return self.rollout_batch(model, context[None], steps)[0]

    @torch.no_grad()
    def rollout_curve(self, model: torch.nn.Module, frames: torch.Tensor, context: int,
                      steps: int) -> dict[str, torch.Tensor]:
        """Try it's rollout view: read frames [:context] of a clip [T, C, H, W], roll
        ``steps`` frames (at most what the clip has after the context) and score them.
        Returns "predicted" and "real" [K, C, H, W], and per horizon 1..K [K] the MSE of
        the model ("mse"), of copying the last context frame ("copy_last_mse"), and the
        model's "psnr" and "ssim"."""
        if frames.dim() == 5:
            frames = frames[0]
        context = max(1, min(context, len(frames) - 1))
        steps = max(0, min(steps, len(frames) - context))
        real = frames[context:context + steps].float()  # [K, C, H, W]
        predicted = self.rollout(model, frames[:context], steps)
        copy = frames[context - 1].float().expand_as(real)
        scores = frame_scores(predicted, real)
        return {"predicted": predicted, "real": real, "mse": scores["mse"], "psnr": scores["psnr"],
                "ssim": scores["ssim"], "copy_last_mse": frame_scores(copy, real)["mse"]}


def _add(acc: list[float], per_frame: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Add a per-frame score [B, ...] (only where ``mask`` is set) to a running (sum, count)."""
    if mask is not None:
        per_frame = per_frame[mask]
    acc[0] += float(per_frame.sum())
    acc[1] += float(per_frame.numel())


# ----------------------------------------------------------------------------- frame scores

# SSIM (Wang, Bovik, Sheikh & Simoncelli 2004): a Gaussian window of this size and
# standard deviation (smaller than the paper's 11 so that 16x16 frames keep room for it;
# frames smaller than the window use their shorter side), the paper's constants for
# pixels in [0, 1], and population (1/N) variances within the window.
SSIM_WINDOW = 7
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype)  # [k, k], sums to 1


def frame_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity per frame: [..., C, H, W] (pixels in [0, 1]) -> [...], the
    mean over channels and window positions ('valid': the window inside the frame)."""
    lead, (C, H, W) = pred.shape[:-3], pred.shape[-3:]
    k = min(SSIM_WINDOW, H, W)
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    win = _gaussian_window(k, SSIM_SIGMA, dtype).to(pred.device)[None, None]  # [1, 1, k, k]
    x = pred.clamp(0, 1).to(dtype).reshape(-1, 1, H, W)  # [N*C, 1, H, W]
    y = target.to(dtype).reshape(-1, 1, H, W)

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, win)  # [N*C, 1, H-k+1, W-k+1]

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    return ssim.reshape(*lead, C, -1).mean(dim=(-2, -1))


def frame_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per frame in dB (pixels in [0, 1], the prediction clamped
    to that range): [..., C, H, W] -> [...]."""
    mse = (pred.float().clamp(0, 1) - target.float()).pow(2).flatten(-3).mean(-1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


def frame_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """MSE per pixel (of the prediction as it is), PSNR and SSIM, per frame: [..., C, H, W] -> [...] each."""
    return {"mse": (pred.float() - target.float()).pow(2).flatten(-3).mean(-1),
            "psnr": frame_psnr(pred, target), "ssim": frame_ssim(pred, target)}
