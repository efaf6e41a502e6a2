"""Next-frame prediction that starts from "copy the last frame": the residual head
(exactly copy-last when untrained), the frame scores (PSNR and SSIM against an
independent numpy computation), free-running rollouts, and a folder of clips held out
by whole clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data_video.helpers import write_frames_folder, write_video
from workbench import presets
from workbench.engine.model import build_model
from workbench.io.errors import DataError
from workbench.spec import SpecError, validate, with_overrides
from workbench.tasks import make_task
from workbench.tasks.video import SSIM_C1, SSIM_C2, SSIM_SIGMA, SSIM_WINDOW, bouncing_clips, frame_scores


def _preset(*overrides: str):
    base = ["train.device=cpu", "train.probe_every=0", "train.checkpoint_every=0", "train.eval_every=0",
            "data.options.width=12", "data.options.height=10", "data.options.window=6",
            "model.layers.0.hidden_size=24", "model.input.projection_size=16"]
    return with_overrides(presets.load_builtin("video_nextframe_lstm"), base + list(overrides))


def _model(preset, task):
    torch.manual_seed(0)
    return build_model(preset.model, task.model_io()).eval()


# ----------------------------------------------------------------------------- residual head


def test_the_next_frame_preset_predicts_the_change_by_default():
    assert presets.load_builtin("video_nextframe_lstm").model.head.residual


@pytest.mark.parametrize("grey", [True, False])
def test_an_untrained_residual_model_is_copy_last_frame_exactly(shared_data, grey):
    preset = _preset(f"data.path={shared_data / 'video' / 'realshort.mp4'}", f"data.options.grey={str(grey).lower()}")
    task = make_task(preset).ensure_prepared()
    model = _model(preset, task)
    batch = next(task.val_batches(64, 1))
    with torch.no_grad():
        out = model(batch.x)  # [B, W, C*H*W]
    assert torch.equal(out, batch.x.flatten(2))  # bit for bit: the input frame t as the guess for t+1
    sums = task.metric_sums(out, batch)
    assert sums["mse"][0] / sums["mse"][1] == pytest.approx(task.baseline()["copy_last_mse"], rel=1e-6)
    # and without the residual path the same untrained model is far from it
    plain = _model(with_overrides(preset, ["model.head.residual=false"]), task)
    with torch.no_grad():
        assert not torch.allclose(plain(batch.x), batch.x.flatten(2), atol=1e-2)


def test_the_residual_head_learns_the_change():
    preset = _preset("train.steps=3", "train.lr=0.01")
    task = make_task(preset).ensure_prepared()
    model = _model(preset, task)
    batch = next(task.val_batches(8, 1))
    loss = task.loss(model(batch.x), batch)
    loss.backward()
    assert model.head.out.weight.grad.abs().sum() > 0  # zero-initialised, not frozen


def test_the_delta_head_starts_at_zero_and_speaks_in_the_footages_units(shared_data):
    preset = _preset(f"data.path={shared_data / 'video' / 'realshort.mp4'}")
    task = make_task(preset).ensure_prepared()
    # the scale is the RMS of the training part's frame-to-frame changes, by hand
    frames = task.frames[:task.n_train].astype(np.float64) / 255.0  # [n, C, H, W]
    rms = float(np.sqrt(np.mean(np.diff(frames, axis=0) ** 2)))
    assert task.delta_scale == pytest.approx(rms, rel=1e-6)
    assert 1 / 255 < task.delta_scale < 0.1  # a camera clip moves by a few percent a frame
    model = _model(preset, task)
    assert torch.count_nonzero(model.head.out.weight) == 0 and torch.count_nonzero(model.head.out.bias) == 0
    assert float(model.delta_scale) == pytest.approx(task.delta_scale)
    assert "delta_scale" not in model.state_dict()  # the run's task artifacts hold it, not the weights
    # the head's output is a change in those units: output = x_t + scale * head(h_t)
    with torch.no_grad():
        model.head.out.bias.fill_(1.0)
        batch = next(task.val_batches(4, 1))
        out = model(batch.x)
    assert torch.allclose(out - batch.x.flatten(2), torch.full_like(out, task.delta_scale), atol=1e-6)
    # a run saved before the scale existed restores to pixel units, as it was trained
    old = {k: v for k, v in task.artifacts().items() if k != "delta_scale"}
    again = make_task(preset)
    again.restore(old)
    assert again.model_io().delta_scale == 1.0
    again.restore(task.artifacts())
    assert again.model_io().delta_scale == pytest.approx(task.delta_scale)


def test_generated_clips_have_a_delta_scale_of_their_own():
    task = make_task(_preset("data.options.val_clips=4")).ensure_prepared()
    assert 0.02 < task.delta_scale < 0.5  # a shape moving by a tenth of the frame a step


@pytest.mark.parametrize("override", ["model.head.kind=classification", "model.topology=many_to_one",
                                      "model.input.kind=linear"])
def test_a_residual_head_where_frames_do_not_go_in_and_out_names_the_field(override):
    with pytest.raises(SpecError) as info:
        validate(with_overrides(presets.load_builtin("video_nextframe_lstm"), [override]))
    assert info.value.field == "model.head.residual"


# ----------------------------------------------------------------------------- frame scores


def _ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two frames [C, H, W] written out from the paper's formula, loop by loop."""
    C, H, W = a.shape
    k = min(SSIM_WINDOW, H, W)
    r = np.arange(k) - (k - 1) / 2
    g = np.exp(-r ** 2 / (2 * SSIM_SIGMA ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for c in range(C):
        for i in range(H - k + 1):
            for j in range(W - k + 1):
                x, y = a[c, i:i + k, j:j + k], b[c, i:i + k, j:j + k]
                mx, my = (w * x).sum(), (w * y).sum()
                vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
                cxy = (w * (x - mx) * (y - my)).sum()
                values.append((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2) /
                              ((mx ** 2 + my ** 2 + SSIM_C1) * (vx + vy + SSIM_C2)))
    return float(np.mean(values))


@pytest.mark.parametrize("shape", [(1, 9, 11), (3, 8, 8), (1, 5, 6)])
def test_psnr_and_ssim_match_an_independent_computation(shape):
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (2, *shape))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    scores = frame_scores(torch.from_numpy(a), torch.from_numpy(b))
    for i in range(2):
        mse = ((a[i] - b[i]) ** 2).mean()
        assert float(scores["mse"][i]) == pytest.approx(mse, rel=1e-5)
        assert float(scores["psnr"][i]) == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
        assert float(scores["ssim"][i]) == pytest.approx(_ssim_numpy(a[i], b[i]), abs=1e-6)
    same = frame_scores(torch.from_numpy(a), torch.from_numpy(a))
    assert torch.allclose(same["ssim"], torch.ones(2, dtype=same["ssim"].dtype))


def test_baselines_report_mse_psnr_ssim_per_horizon(shared_data):
    task = make_task(_preset(f"data.path={shared_data / 'video' / 'cockatoo.mp4'}")).ensure_prepared()
    base = task.baseline()
    assert task.horizons == (1, 5, 10)
    for who in ("copy_last", "mean_frame"):
        for metric in ("mse", "psnr", "ssim"):
            assert f"{who}_{metric}" in base
            for h in task.horizons:
                assert f"{who}_{metric}_h{h}" in base
    # copying gets worse the further ahead it guesses; one step ahead is the ordinary baseline
    assert base["copy_last_mse_h1"] < base["copy_last_mse_h5"] < base["copy_last_mse_h10"]
    assert base["copy_last_ssim_h1"] > base["copy_last_ssim_h10"]


# ----------------------------------------------------------------------------- rollout


def test_rollout_of_one_step_is_the_one_step_prediction_and_shapes_hold():
    preset = _preset("model.head.residual=false")  # a model that does not just copy
    task = make_task(preset).ensure_prepared()
    model = _model(preset, task)
    clips = torch.from_numpy(bouncing_clips(3, 9, 10, 12, 1, np.random.default_rng(2))).float() / 255
    context = clips[:, :6]
    one = task.rollout_batch(model, context, 1)
    predicted, _ = task.predict_next_frames(model, clips[0, :7])
    torch.testing.assert_close(one[0, 0], predicted[-1])
    many = task.rollout_batch(model, context, 3)
    assert many.shape == (3, 3, 1, 10, 12)
    torch.testing.assert_close(many[:, 0], one[:, 0])
    # step 2 is the model fed its own step-1 frame: the same as a context one frame longer
    longer = torch.cat([context, many[:, :1]], dim=1)
    torch.testing.assert_close(many[:, 1], task.rollout_batch(model, longer, 1)[:, 0], atol=1e-5, rtol=1e-5)
    curve = task.rollout_curve(model, clips[0], context=6, steps=10)
    assert curve["predicted"].shape == curve["real"].shape == (3, 1, 10, 12)  # the clip has 3 frames left
    assert curve["mse"].shape == curve["copy_last_mse"].shape == curve["ssim"].shape == (3,)


def test_eval_scores_rollouts_at_each_horizon(shared_data):
    preset = _preset(f"data.path={shared_data / 'video' / 'cockatoo.mp4'}")
    task = make_task(preset).ensure_prepared()
    model = _model(preset, task)  # untrained residual: its rollout copies the last frame forever
    found = task.free_running_metrics(model)
    base = task.baseline()
    for h in (1, 5, 10):
        assert found[f"rollout_mse_h{h}"] == pytest.approx(base[f"copy_last_mse_h{h}"], rel=1e-5)
        assert found[f"rollout_ssim_h{h}"] == pytest.approx(base[f"copy_last_ssim_h{h}"], rel=1e-5)


def test_a_short_held_out_part_scores_only_the_horizons_it_has_room_for(shared_data):
    task = make_task(_preset(f"data.path={shared_data / 'video' / 'realshort.mp4'}")).ensure_prepared()
    assert task.horizons == (1, 5)  # 7 held-out frames
    assert "copy_last_mse_h5" in task.baseline() and "copy_last_mse_h10" not in task.baseline()


# ----------------------------------------------------------------------------- folder of clips


def _clip(rng, n):
    return bouncing_clips(1, n, 10, 12, 3, rng)[0]  # [n, 3, 10, 12]


def test_a_folder_of_clips_holds_out_whole_clips(tmp_path):
    rng = np.random.default_rng(0)
    lengths = {"a.avi": 14, "b.avi": 11, "c.avi": 16, "d.avi": 12}
    for name, n in lengths.items():
        write_video(tmp_path / name, _clip(rng, n))
    write_frames_folder(tmp_path / "e", _clip(rng, 9))
    task = make_task(_preset(f"data.path={tmp_path}", "data.options.val_fraction=0.4")).ensure_prepared()
    names = [p.split("/")[-1] for p in task.clip_names]
    assert names == ["a.avi", "b.avi", "c.avi", "d.avi", "e"]
    assert len(task.val_clip_names) == 2  # 40% of 5 clips
    counts = [14, 11, 16, 12, 9]
    starts = np.cumsum([0] + counts)
    clip_of = np.repeat(np.arange(5), counts)
    held = {names.index(p.split("/")[-1]) for p in task.val_clip_names}
    W = task.window
    for origins, inside in ((task.train_origins, False), (task.val_origins, True)):
        for o in origins.tolist():
            c = clip_of[o]
            assert (c in held) == inside
            assert o - W >= starts[c]  # a window never reaches back into the clip before
    # every frame of a held-out clip after its first window is predicted; none of a training clip is
    assert len(task.val_origins) == sum(counts[c] - W for c in held)
    assert len(task.train_origins) == sum(counts[c] - W for c in range(5) if c not in held)
    batch = next(task.val_batches(4, 1))
    assert batch.x.shape == (4, W, 1, 10, 12)


def test_a_folder_with_one_clip_or_a_too_short_clip_is_a_data_error(tmp_path):
    rng = np.random.default_rng(0)
    write_video(tmp_path / "one" / "a.avi", _clip(rng, 12))
    with pytest.raises(DataError) as info:
        make_task(_preset(f"data.path={tmp_path / 'one'}")).ensure_prepared()
    assert "1 clip" in str(info.value)
    write_video(tmp_path / "one" / "b.avi", _clip(rng, 4))
    with pytest.raises(DataError) as info:
        make_task(_preset(f"data.path={tmp_path / 'one'}")).ensure_prepared()
    assert "b.avi" in str(info.value) and "4 frames" in str(info.value)


def test_flip_and_reverse_augment_training_windows_only(shared_data):
    path = shared_data / "video" / "realshort.mp4"
    plain = make_task(_preset(f"data.path={path}")).ensure_prepared()
    task = make_task(_preset(f"data.path={path}", "data.options.flip=true",
                             "data.options.reverse=true")).ensure_prepared()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    batch = next(task.train_batches(32, g1))
    order = plain.train_origins[torch.randperm(len(plain.train_origins), generator=g2)][:32]
    base = plain._window_batch(order, held_out=False)  # the same windows as filmed
    seen = set()
    for b in range(len(order)):
        clip, ref = torch.cat([batch.x[b], batch.y[b, -1:].reshape(1, 1, 10, 12)]), \
            torch.cat([base.x[b], base.y[b, -1:].reshape(1, 1, 10, 12)])  # [W+1, C, H, W]
        for flip in (False, True):
            for rev in (False, True):
                want = ref.flip(-1) if flip else ref
                want = want.flip(0) if rev else want
                if torch.equal(clip, want):
                    seen.add((flip, rev))
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"row {b} is none of the window's four versions")
    assert len(seen) >= 3  # 23 windows: each version drawn (all four but for bad luck)
    val = next(task.val_batches(64, 1))
    ref = next(plain.val_batches(64, 1))
    assert torch.equal(val.x, ref.x)  # held-out frames as filmed
