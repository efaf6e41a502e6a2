"""The look inside a convolutional cell: its state is feature maps, handed over with their
shape and shown as maps at the hovered step."""
from __future__ import annotations

import numpy as np
import torch

from workbench import inference, presets
from workbench.engine.model import build_model
from workbench.gui.tryout.inside import InsideView, tile_maps
from workbench.spec import with_overrides
from workbench.tasks import make_task


def _session(cell: str):
    preset = with_overrides(presets.load_builtin("video_nextframe_lstm"), [
        "data.options.width=6", "data.options.height=5", "data.options.window=4", "data.options.val_clips=2",
        "model.input.kind=frames_grid", f"model.layers.0.cell={cell}", "model.layers.0.hidden_size=90"])
    task = make_task(preset).ensure_prepared()
    torch.manual_seed(0)
    s = inference.session_from_model(preset, task, build_model(preset.model, task.model_io()).eval())
    s.mode = "next_frame"
    return s


def test_tile_maps_lays_the_channels_side_by_side():
    v = np.arange(2 * 3 * 4, dtype=np.float64)  # 2 maps of 3x4, channel-major
    img = tile_maps(v, [2, 3, 4])
    assert img.shape == (3, 9) and np.isnan(img[:, 4]).all()
    assert np.array_equal(img[:, :4], v[:12].reshape(3, 4)) and np.array_equal(img[:, 5:], v[12:].reshape(3, 4))


def test_the_look_inside_shows_a_conv_layer_as_feature_maps(qtbot, shared_data):
    s = _session("conv_gru")
    found = inference.inside(s, {"video": str(shared_data / "video" / "realshort.mp4"), "start": 0, "count": 4})
    layer = found["layers"][0]
    assert layer["maps"] == [3, 5, 6] and layer["series"]["hidden"].shape == (90, 4)
    assert set(layer["series"]) == {"hidden", "reset", "update", "candidate"}
    view = InsideView()
    qtbot.addWidget(view)
    view.set_data(found)
    assert view.maps.isVisible() or not view.isVisible()  # shown with the widget
    assert view.maps.data.shape == (5, 3 * 7 - 1)
    np.testing.assert_allclose(view.maps.data[:, :6], layer["series"]["hidden"][:30, 3].reshape(5, 6), rtol=1e-6)
    view._hover("in", 1)  # hovering step 1 shows the maps at that step
    np.testing.assert_allclose(view.maps.data[:, :6], layer["series"]["hidden"][:30, 1].reshape(5, 6), rtol=1e-6)
    assert "3 feature maps of 6x5" in view.maps_label.text()
