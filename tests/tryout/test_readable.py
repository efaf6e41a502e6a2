"""Try it's plots a user can read (issue 15): colour scales with units on every heatmap,
tick labels that never overlap, no SI-prefix factors, no axes before there is data, and
a saliency caption that names the input and the predicted symbol."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.tryout.test_panel import open_run, wait_for  # noqa: E402

TIMEOUT = 60_000


@pytest.fixture
def panel(qtbot):
    from workbench.gui.tryout import TryoutPanel

    p = TryoutPanel()
    qtbot.addWidget(p)
    p.resize(420, 900)  # a narrow dock: labels must thin out, not overlap
    p.show()
    yield p
    p.shutdown()


def assert_ticks_apart(axis, what: str) -> None:
    """The labelled ticks that the axis draws at its current length do not overlap."""
    from PySide6.QtGui import QFontMetrics

    assert axis.labels, what
    lo, hi = axis.range
    size = axis.geometry().width() if axis.orientation in ("bottom", "top") else axis.geometry().height()
    assert size > 50, what
    (_spacing, values), = axis.tickValues(lo, hi, size)
    strings = axis.tickStrings(values, 1.0, 1.0)
    fm = QFontMetrics(axis.style.get("tickFont") or axis.font())
    px = [(v - lo) / (hi - lo) * size for v in values]
    for (a, sa), (b, sb) in zip(zip(px, strings), zip(px[1:], strings[1:])):
        if axis.orientation in ("bottom", "top"):
            room = (fm.horizontalAdvance(sa) + fm.horizontalAdvance(sb)) / 2
        else:
            room = fm.height()
        assert b - a >= room, f"{what}: {sa!r} at {a:.0f}px and {sb!r} at {b:.0f}px overlap"


def test_heatmaps_have_colour_scales_and_labels_that_fit(qtbot, panel, trained_runs):
    view = open_run(qtbot, panel, trained_runs["tagger"])
    words = ("the dog saw the cat and the cat saw a bird near the old house by the long river while "
             "the man ate bread .")
    view.input.setText(words)
    wait_for(qtbot, panel, view.run, "tag", "inside")
    inside = panel.inside
    qtbot.waitUntil(lambda: inside.heatmap.getAxis("bottom").geometry().width() > 50, timeout=TIMEOUT)
    bar = inside.heatmap.colour_bar
    assert bar.isVisible() and "h_t" in bar.getAxis("left").labelText
    assert bar.levels() == pytest.approx((-1.0, 1.0))
    inside.select(series="forget")
    assert "gate" in bar.getAxis("left").labelText and bar.levels() == pytest.approx((0.0, 1.0))
    assert inside.saliency.getAxis("left").labelText  # the bars' height has a name
    qtbot.wait(50)
    assert_ticks_apart(inside.heatmap.getAxis("bottom"), "25 words under a narrow heatmap")
    # the caption names the predicted tag, the output step and its word
    sal = panel.inside_data["saliency"]
    caption = inside.saliency_label.text()
    t = sal["target_step"]
    assert f"“{sal['target_class']}”" in caption and f"step {t}" in caption
    assert f"“{words.split()[t]}”" in caption and "input step" in caption


def test_attention_has_a_colour_scale(qtbot, panel, trained_runs):
    view = open_run(qtbot, panel, trained_runs["dates"])
    view.input.setText("march 5, 2024")
    wait_for(qtbot, panel, view.run, "transduce")
    assert view.attention.colour_bar.getAxis("left").labelText == "attention weight"


def test_video_plots_have_plain_axes_and_none_before_a_video(qtbot, panel, trained_runs, shared_data):
    view = open_run(qtbot, panel, trained_runs["vnext"])
    item = view.timeline.getPlotItem()
    assert not item.getAxis("left").isVisible() and not item.getAxis("bottom").isVisible()
    wait_for(qtbot, panel, lambda: view.open_video(str(shared_data / "video" / "cockatoo.mp4")),
             "video_open", "video_outputs", "frame")
    left = item.getAxis("left")
    assert left.isVisible() and item.getAxis("bottom").isVisible()
    assert left.autoSIPrefixScale == 1.0 and "x0.001" not in left.labelString()
    mse = float(np.nanmax(view.outputs["mse"]))
    lo, hi = view.timeline.getViewBox().viewRange()[1]
    assert hi < 10 * mse + 1e-3  # the axis reads the MSE itself, not a scaled-up number


def test_frame_labels_do_not_overlap(qtbot, panel, trained_runs, shared_data):
    view = open_run(qtbot, panel, trained_runs["vclass"])
    wait_for(qtbot, panel, lambda: view.open_video(str(shared_data / "video" / "realshort.mp4")),
             "video_open", "video_outputs", "frame", "inside")
    heat = panel.inside.heatmap
    qtbot.waitUntil(lambda: heat.getAxis("bottom").geometry().width() > 50, timeout=TIMEOUT)
    assert heat.getAxis("bottom").labels[0].startswith("frame")
    assert_ticks_apart(heat.getAxis("bottom"), "frame labels")
