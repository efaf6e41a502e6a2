"""The video tasks: generated moving shapes mean what their labels say, a labelled-clips
folder written with PyAV trains a classifier well above chance, next-frame prediction on
a real video, the try-out helpers, artifacts, and the frame term of the memory estimate."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.data_video.helpers import write_frames_folder, write_video
from workbench import presets
from workbench.engine.model import build_model
from workbench.engine.trainer import Trainer
from workbench.io.errors import DataError
from workbench.spec import ModelIO, SpecError, memory_estimate, parameter_report, with_overrides
from workbench.tasks import make_task
from workbench.tasks.video import MOTION_LABELS, moving_shapes


def _preset(name: str, *overrides: str):
    base = ["train.device=cpu", "train.probe_every=0", "train.checkpoint_every=0", "train.eval_every=0"]
    return with_overrides(presets.load_builtin(name), base + list(overrides))


def _train(preset):
    task = make_task(preset)
    trainer = Trainer(preset, task=task)
    records = list(trainer.run())
    end = records[-1]
    assert end["kind"] == "end" and end["status"] == "finished", end
    return task, trainer.model, end["metrics"]


def _centroids(clips: np.ndarray) -> np.ndarray:
    """[n, T, 2] (y, x) brightness-weighted centre of each frame (background removed)."""
    f = clips[:, :, 0].astype(np.float64)  # [n, T, H, W]
    f = np.clip(f - np.median(f, axis=(2, 3), keepdims=True), 0, None)
    ys, xs = np.arange(f.shape[2]), np.arange(f.shape[3])
    total = f.sum(axis=(2, 3)) + 1e-9
    return np.stack([(f.sum(3) * ys).sum(2) / total, (f.sum(2) * xs).sum(2) / total], axis=-1)


def test_generated_clips_move_the_way_their_label_says():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 25)
    clips = moving_shapes(labels, 3, 32, 32, 1, rng, "direction", noise=0.0)  # [100, 3, 1, 32, 32]
    step = _centroids(clips)[:, 1] - _centroids(clips)[:, 0]  # first move (before any bounce)
    dy, dx = step[:, 0], step[:, 1]
    names = MOTION_LABELS["direction"]
    assert names == ("right", "left", "down", "up")
    assert (dx[labels == 0] > np.abs(dy[labels == 0])).mean() > 0.9
    assert (-dx[labels == 1] > np.abs(dy[labels == 1])).mean() > 0.9
    assert (dy[labels == 2] > np.abs(dx[labels == 2])).mean() > 0.9
    assert (-dy[labels == 3] > np.abs(dx[labels == 3])).mean() > 0.9
    again = moving_shapes(labels, 3, 32, 32, 1, np.random.default_rng(3), "direction", noise=0.0)
    np.testing.assert_array_equal(clips, again)  # deterministic for a seed


def test_still_clips_do_not_move_and_shaking_ones_do():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    clips = moving_shapes(labels, 6, 24, 24, 3, rng, "motion", noise=0.0)
    assert clips.shape == (40, 6, 3, 24, 24)
    change = np.abs(np.diff(clips.astype(np.int16), axis=1)).mean(axis=(1, 2, 3, 4))
    assert change[labels == 0].max() == 0  # still
    assert change[labels != 0].min() > 0


def _labelled_folder(root, per_class: int = 40, T: int = 8, size: int = 12):
    """right / left / down clips as AVI, GIF, MKV and PNG-frame folders."""
    rng = np.random.default_rng(7)
    classes = ["right", "left", "down"]
    kinds = [".avi", ".gif", ".mkv", "frames"]
    for c, name in enumerate(classes):
        clips = moving_shapes(np.full(per_class, c), T, size, size, 3, rng, "direction", noise=0.02)
        for i, clip in enumerate(clips):
            kind = kinds[i % len(kinds)]
            if kind == "frames":
                write_frames_folder(root / name / f"clip{i:02d}", clip)
            else:
                write_video(root / name / f"clip{i:02d}{kind}", clip)
    return classes


def test_labelled_clips_folder_trains_a_classifier_above_chance(tmp_path):
    classes = _labelled_folder(tmp_path / "clips")
    (tmp_path / "clips" / "left" / "README.txt").write_text("not a clip")
    preset = _preset("video_motion_gru", f"data.path={tmp_path / 'clips'}", "data.options.clip_len=8",
                     "data.options.width=12", "data.options.height=12",
                     "train.steps=200", "train.batch_size=16", "train.lr=0.005", "train.eval_batches=100",
                     "model.layers.0.hidden_size=32", "model.input.projection_size=16")
    task, model, metrics = _train(preset)
    assert task.classes == sorted(classes)  # class = subfolder name, in sorted order
    assert len(task.val_labels) == 24 and len(task.train_labels) == 96  # 8 of each class held out
    assert task.baseline()["accuracy"] == pytest.approx(1 / 3)
    assert metrics["accuracy"] >= 0.75, metrics  # chance is 1/3; 0.92-1.0 over seeds 0-2
    # the try-out helpers on one held-out clip, restored from the run's artifacts alone
    restored = make_task(preset, artifacts=json.loads(json.dumps(task.artifacts())))
    clip_path = tmp_path / "clips" / "down" / "clip00.avi"
    frames = restored.encode_video(clip_path)
    assert frames.shape == (1, 8, 1, 12, 12) and frames.dtype == torch.float32
    probs = restored.frame_probabilities(model, frames[0])
    assert probs.shape == (8, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(8))
    model.eval()
    torch.testing.assert_close(probs[-1], torch.softmax(model(frames), -1)[0])  # last row = the clip's answer
    ranked = restored.classify(model, clip_path)
    assert [name for name, _ in ranked][0] in classes and len(ranked) == 3


def test_frame_probabilities_of_a_bidirectional_model_read_only_the_prefix():
    preset = _preset("video_motion_gru", "model.layers.0.bidirectional=true", "model.layers.0.hidden_size=8",
                     "data.options.val_clips=4", "data.options.clip_len=5")
    task = make_task(preset)
    model = build_model(preset.model, task.model_io()).eval()
    frames = torch.rand(5, 1, 16, 16)
    probs = task.frame_probabilities(model, frames)
    torch.testing.assert_close(probs[2], torch.softmax(model(frames[None, :3]), -1)[0])


def test_labelled_folder_errors_name_the_place(tmp_path, shared_data):
    one = tmp_path / "one"
    write_video(one / "only" / "a.avi", np.zeros((3, 3, 8, 8), np.uint8))
    with pytest.raises(DataError, match="at least two"):
        make_task(_preset("video_motion_gru", f"data.path={one}"))
    (tmp_path / "one" / "empty_class").mkdir()
    with pytest.raises(DataError) as info:
        make_task(_preset("video_motion_gru", f"data.path={one}"))
    assert str(one / "empty_class") in str(info.value) and "no clips" in str(info.value)
    with pytest.raises(DataError, match="single video"):
        make_task(_preset("video_motion_gru", f"data.path={shared_data / 'video' / 'realshort.mp4'}"))
    broken = tmp_path / "broken"
    write_video(broken / "a" / "x.avi", np.zeros((3, 3, 8, 8), np.uint8))
    write_video(broken / "b" / "y.avi", np.zeros((3, 3, 8, 8), np.uint8))
    (broken / "b" / "z.mp4").write_bytes(b"garbage" * 100)
    with pytest.raises(DataError) as info:
        make_task(_preset("video_motion_gru", f"data.path={broken}"))
    assert str(broken / "b" / "z.mp4") in str(info.value)


def test_model_and_options_mismatches_name_the_field():
    with pytest.raises(SpecError) as info:
        make_task(_preset("video_motion_gru", "model.input.kind=linear"))
    assert info.value.field == "model.input.kind"
    with pytest.raises(SpecError) as info:
        make_task(_preset("video_nextframe_lstm", "model.layers.0.bidirectional=true"))
    assert info.value.field == "model.layers.0.bidirectional"
    with pytest.raises(SpecError) as info:
        make_task(_preset("video_motion_gru", "data.options.labels=colour"))
    assert info.value.field == "data.options.labels"
    with pytest.raises(SpecError) as info:
        make_task(_preset("video_motion_gru", "data.options.width=2"))
    assert info.value.field == "data.options.width"


def test_next_frame_on_a_real_video(shared_data):
    path = shared_data / "video" / "realshort.mp4"
    preset = _preset("video_nextframe_lstm", f"data.path={path}", "data.options.window=6",
                     "data.options.width=12", "data.options.height=8", "train.steps=20",
                     "model.layers.0.hidden_size=32", "model.input.projection_size=32")
    task, model, metrics = _train(preset)
    # 36 frames: 29 train the model (windows end at frames 6..28), 7 are held out
    assert task.n_train == 29 and task.train_origins.tolist() == list(range(6, 29))
    assert task.val_origins.tolist() == list(range(29, 36))
    batch = next(task.val_batches(64, 1))
    assert batch.x.shape == (7, 6, 1, 8, 12) and batch.y.shape == (7, 6, 96)
    assert batch.mask[:, -1].all() and not batch.mask[:, :-1].any()  # only held-out frames count
    base = task.baseline()
    assert {"copy_last_mse", "mean_frame_mse", "copy_last_psnr", "mse"} <= set(base)
    assert metrics["mse"] > 0 and np.isfinite(metrics["psnr"])
    frames = task.encode_video(path, max_frames=10)[0]
    predicted, real = task.predict_next_frames(model, frames, chunk=4)  # chunks carry the state
    assert predicted.shape == real.shape == (9, 1, 8, 12)
    torch.testing.assert_close(real, frames[1:])
    whole, _ = task.predict_next_frames(model, frames)
    torch.testing.assert_close(predicted, whole)
    future = task.rollout(model, frames[:5], steps=4)
    assert future.shape == (4, 1, 8, 12) and 0 <= float(future.min()) and float(future.max()) <= 1


def test_next_frame_generated_learns_beyond_copying_the_last_frame():
    preset = _preset("video_nextframe_lstm", "data.options.width=12", "data.options.height=12",
                     "data.options.window=6", "data.options.val_clips=64", "train.steps=250",
                     "train.lr=0.003", "model.layers.0.hidden_size=96", "model.input.projection_size=64")
    task, model, metrics = _train(preset)
    base = task.baseline()
    assert metrics["mse"] < base["copy_last_mse"], (metrics, base)


def test_next_frame_too_short_video_is_a_data_error(tmp_path):
    path = write_video(tmp_path / "short.avi", np.zeros((5, 3, 8, 8), np.uint8))
    with pytest.raises(DataError) as info:
        make_task(_preset("video_nextframe_lstm", f"data.path={path}"))
    assert str(path) in str(info.value) and "5 frames" in str(info.value)


def test_memory_estimate_counts_the_frames():
    preset = presets.load_builtin("video_nextframe_lstm")
    task = make_task(preset)
    io = task.model_io()
    assert io.input_kind == "frames" and io.frame_shape == (1, 16, 16) and io.output_size == 256
    model = build_model(preset.model, io)
    assert parameter_report(preset.model, io).total == sum(p.numel() for p in model.parameters())
    B, T = 32, 12
    small = memory_estimate(preset.model, io, B, T)
    big_io = ModelIO(input_kind="frames", frame_shape=(3, 64, 64), output_size=io.output_size)
    big = memory_estimate(preset.model, big_io, B, T)
    # the raw frames the linear encoder keeps for backward: B*T*C*H*W floats
    assert big["activations"] - small["activations"] >= B * T * (3 * 64 * 64 - 256) * 4
