"""The extrapolating next-frame head (model.head.extrapolate): x_t + alpha * (x_t - x_{t-1})
+ s * head(h_t), alpha learned per colour channel from 0. Untrained it is still copy-last
exactly; a sequence's first frame has no motion; alpha learns the constant velocity of a
sequence where extrapolation is exact; clips fed in pieces carry the previous frame; run
folders and presets from before the option load with it off."""
from __future__ import annotations

import pytest
import torch

from workbench import presets
from workbench.engine.model import EXTRAPOLATE_GAIN, build_model
from workbench.spec import Preset, with_overrides
from workbench.tasks import make_task

SMALL = ["train.device=cpu", "train.probe_every=0", "train.checkpoint_every=0", "train.eval_every=0",
         "data.options.width=8", "data.options.height=6", "data.options.window=5", "data.options.val_clips=4"]


def _setup(name: str, *overrides: str):
    extra = ["model.layers.0.hidden_size=16", "model.input.projection_size=16"] if name.endswith("lstm") \
        and "conv" not in name else ["model.layers.0.hidden_size=96"]
    preset = with_overrides(presets.load_builtin(name), SMALL + extra + list(overrides))
    task = make_task(preset).ensure_prepared()
    torch.manual_seed(0)
    return preset, task, build_model(preset.model, task.model_io()).eval()


@pytest.mark.parametrize("name", ["video_nextframe_lstm", "video_nextframe_convgru", "video_nextframe_convlstm"])
def test_the_presets_extrapolate_and_an_untrained_model_is_copy_last_exactly(name):
    preset, task, model = _setup(name)
    assert preset.model.head.extrapolate and model.extrapolate
    x = next(task.val_batches(4, 1)).x  # [B, W, C, H, W]
    with torch.no_grad():
        assert torch.equal(model(x), x.flatten(2))  # bit for bit


def test_the_linear_part_is_alpha_times_the_last_motion_and_zero_on_the_first_frame():
    _preset, task, model = _setup("video_nextframe_lstm")
    x = next(task.val_batches(4, 1)).x  # [B, W, 1, H, W]
    with torch.no_grad():
        model.extrapolate_raw.fill_(0.6 / EXTRAPOLATE_GAIN)
        out = model(x).reshape(x.shape)
        assert torch.equal(out[:, 0], x[:, 0])  # no x_{-1}: no motion
        assert torch.allclose(out[:, 1:], x[:, 1:] + 0.6 * (x[:, 1:] - x[:, :-1]), atol=1e-6)
        # given the frame before, the first frame extrapolates from it
        before = torch.rand_like(x[:, 0])
        first = model(x, previous_frame=before).reshape(x.shape)[:, 0]
        assert torch.allclose(first, x[:, 0] + 0.6 * (x[:, 0] - before), atol=1e-6)


def test_clips_fed_in_pieces_carry_the_previous_frame():
    _preset, task, model = _setup("video_nextframe_convgru")
    with torch.no_grad():
        model.extrapolate_raw.fill_(0.5 / EXTRAPOLATE_GAIN)
        for p in model.head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    clip = torch.rand(11, 1, 6, 8, generator=torch.Generator().manual_seed(1))
    whole, _ = task.predict_next_frames(model, clip, chunk=100)
    pieces, _ = task.predict_next_frames(model, clip, chunk=3)
    assert torch.allclose(whole, pieces, atol=1e-5)


def test_alpha_learns_a_constant_velocity():
    """x_t = x_0 + t * v: x_t + 1 * (x_t - x_{t-1}) is exact, so alpha heads for 1."""
    _preset, _task, model = _setup("video_nextframe_lstm", "model.head.extrapolate=true")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # the presets' optimiser and rate
    g = torch.Generator().manual_seed(0)
    t = torch.arange(6, dtype=torch.float32)[None, :, None, None, None]  # [1, T, 1, 1, 1]
    for _ in range(40):
        x0 = torch.rand(8, 1, 1, 6, 8, generator=g) * 0.5 + 0.25
        v = (torch.rand(8, 1, 1, 6, 8, generator=g) - 0.5) * 0.04
        seq = x0 + t * v  # [B, 6, 1, H, W]
        loss = (model(seq[:, :-1]) - seq[:, 1:].flatten(2)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    alpha = float(model.extrapolate_raw.detach()) * EXTRAPOLATE_GAIN
    assert 0.6 < alpha < 1.4, alpha


def test_presets_and_runs_from_before_the_option_load_with_it_off():
    raw = presets.load_builtin("video_nextframe_convgru").to_dict()
    del raw["model"]["head"]["extrapolate"]
    old = Preset.from_dict(raw)
    assert old.model.head.residual and not old.model.head.extrapolate
    small = with_overrides(old, SMALL + ["model.layers.0.hidden_size=96"])
    model = build_model(small.model, make_task(small).ensure_prepared().model_io())
    assert not model.extrapolate and not any("extrapolate" in k for k in model.state_dict())


def test_the_flattening_lstm_exports_its_extrapolation_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from workbench.export.onnx import export_model

    preset, task, model = _setup("video_nextframe_lstm")
    with torch.no_grad():
        model.extrapolate_raw.fill_(0.7 / EXTRAPOLATE_GAIN)
        for p in model.head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    export_model(model, tmp_path / "m.onnx", preset=preset)
    x = torch.rand(2, 5, 1, 6, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).numpy()
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    assert abs(got - want).max() <= 1e-5
