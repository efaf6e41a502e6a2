"""The "Try it" panel on speech runs trained for a few steps: an opened (or dropped)
audio file shows its waveform, spectrogram, per-frame probabilities, saliency and, for
the CTC model, the decodings and the greedy path; hovering a frame of the look inside
marks it in every plot."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF  # noqa: E402

from tests.tryout.conftest import COMMON  # noqa: E402
from tests.tryout.test_panel import TIMEOUT, hover, open_run, panel, wait_for  # noqa: E402,F401

SMALL = ["model.layers=[{\"cell\": \"gru\", \"hidden_size\": 8}]", "model.input.projection_size=8",
         "data.options.n_mels=16"]


@pytest.fixture(scope="module")
def speech_runs(tmp_path_factory):
    """A few FSDD clips and a speech run of each kind trained for two steps."""
    from tests.conftest import SHARED_DATA
    from workbench.cli import main

    src = SHARED_DATA / "speech" / "fsdd" / "recordings"
    if not src.is_dir():
        pytest.skip(f"shared data folder {src} is not present")
    root = tmp_path_factory.mktemp("speech_runs")
    clips = root / "clips"
    clips.mkdir()
    for d in range(10):
        for i in (0, 5):
            shutil.copy(src / f"{d}_george_{i}.wav", clips)
    runs = {}
    for name, extra in (("speech_digits_gru", []), ("speech_connected_ctc", ["data.options.val_utterances=4"])):
        args = ["train", name, "--steps", "2", "--run-dir", str(root / name), *COMMON]
        for item in SMALL + extra + [f"data.path={clips}"]:
            args += ["--set", item]
        assert main(args) == 0, name
        runs[name] = root / name
    runs["clip"] = clips / "3_george_0.wav"
    return runs


@pytest.mark.parametrize("name", ["speech_digits_gru", "speech_connected_ctc"])
def test_audio_view_shows_every_frame(qtbot, panel, speech_runs, name):  # noqa: F811
    view = open_run(qtbot, panel, speech_runs[name])
    assert panel.mode == "speech" and type(view).__name__ == "AudioView"
    wait_for(qtbot, panel, lambda: view.open_audio(str(speech_runs["clip"])), "audio_outputs", "inside")
    out = view.outputs
    T = len(out["spectrogram"])
    K = 11 if name == "speech_connected_ctc" else 10
    assert view.spectrogram.data.shape == (16, T)
    assert np.allclose(view.spectrogram.data[::-1].T, out["spectrogram"])  # the lowest bin at the bottom
    assert view.probabilities.data.shape == (K, T) and view.saliency.values.shape == (T,)
    assert len(panel.inside_data["in_steps"]) == T
    assert "3_george_0.wav" in view.path_label.text() and "frames" in view.path_label.text()
    if name == "speech_connected_ctc":
        assert "Greedy" in view.answer.text() and view.path_text.text().startswith("Greedy path: ")
        first = out["labels"][out["ctc_path"][0]]
        assert view.path_text.text().startswith(f"Greedy path: {first} 0.00–")
    else:
        assert f"<b>{out['predicted']}</b>" in view.answer.text()
    # hovering step 5 of the look inside marks frame 5 everywhere
    hover(panel.inside.heatmap, 5)
    qtbot.waitUntil(lambda: view.saliency.cursor.isVisible(), timeout=TIMEOUT)
    assert view.spectrogram.cursor.pos().x() == pytest.approx(5.5)
    assert view.wave_cursor.isVisible()
    assert view.wave_cursor.pos().x() == pytest.approx(5 * out["hop_s"] + out["window_s"] / 2)
    panel.inside.heatmap.scene().sigMouseMoved.emit(QPointF(-1000, -1000))
    qtbot.waitUntil(lambda: not view.saliency.cursor.isVisible(), timeout=TIMEOUT)


def test_a_bad_audio_file_is_named(qtbot, panel, speech_runs, tmp_path):  # noqa: F811
    view = open_run(qtbot, panel, speech_runs["speech_digits_gru"])
    bad = tmp_path / "noise.wav"
    bad.write_text("not audio")
    view.open_audio(str(bad))
    qtbot.waitUntil(lambda: bool(panel.error), timeout=TIMEOUT)
    assert "noise.wav" in panel.error and "not audio" in panel.error
    assert "noise.wav" in view.path_label.text()
