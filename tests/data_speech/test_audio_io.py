"""The audio reader: formats, mono mix, resampling, bad files refused naming the file;
the log-mel spectrogram against an independent numpy computation; clip folders labelled
by subfolder or by a file-name pattern, and the pattern split."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.data_speech.helpers import tone, write_audio, write_wav
from workbench.io import audio
from workbench.io.audio import MelSettings, log_mel, read_audio, scan_clips
from workbench.io.errors import DataError
from workbench.spec import SpecError


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.argmax(spectrum) * rate / len(wave))


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg"])
def test_every_format_reads_as_mono_at_the_asked_rate(tmp_path, suffix):
    rate = 16000
    x = tone(440.0, 1.0, rate)
    writer = write_wav if suffix == ".wav" else write_audio
    same = writer(tmp_path / f"same{suffix}", np.stack([x, x], 1), rate)  # stereo, both channels alike
    wave = read_audio(same, 8000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 8000) <= 200  # 1 s at 8 kHz (lossy codecs pad a little)
    assert abs(_peak_hz(wave, 8000) - 440.0) < 3.0
    assert 0.3 < np.abs(wave).max() <= 1.0
    # opposite channels cancel: the channels are mixed, not one of them taken
    opposite = writer(tmp_path / f"opposite{suffix}", np.stack([x, -x], 1), rate)
    assert np.abs(read_audio(opposite, 8000)).max() < 0.05


def test_resampling_keeps_the_pitch_and_the_duration(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(1000.0, 0.5, 22050), 22050)
    for rate in (8000, 16000, 44100):
        wave = read_audio(path, rate)
        assert abs(len(wave) - rate // 2) <= 2
        assert abs(_peak_hz(wave, rate) - 1000.0) < 4.0


def test_a_real_fsdd_clip(shared_data):
    path = shared_data / "speech" / "fsdd" / "recordings" / "7_jackson_0.wav"
    info = audio.probe(path)
    assert info.sample_rate == 8000 and info.channels == 1 and info.codec == "pcm_s16le"
    wave = read_audio(path, 8000)
    assert abs(len(wave) / 8000 - info.duration_s) < 1e-3
    feats = log_mel(wave, MelSettings())
    assert feats.shape == (MelSettings().frames_for(len(wave)), 40)


def _bad_files(tmp_path):
    x = np.stack([tone(440.0, 1.0, 16000)] * 2, 1)
    mp3 = write_audio(tmp_path / "whole.mp3", x, 16000).read_bytes()
    wav = write_wav(tmp_path / "whole.wav", x, 16000).read_bytes()
    cases = {
        "empty.wav": (b"", "empty"),
        "truncated.mp3": (mp3[: len(mp3) // 2], "truncated"),
        "truncated.wav": (wav[: len(wav) // 2], "truncated"),
        "text.wav": (b"this is not audio at all\n" * 10, "not audio"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    write_wav(tmp_path / "silent.wav", np.zeros(0, np.float32), 8000)
    cases["silent.wav"] = (None, "no audio samples")
    return cases


def test_bad_files_are_refused_in_one_line_naming_the_file(tmp_path):
    for name, (_, words) in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as info:
            read_audio(tmp_path / name, 8000)
        message = str(info.value)
        assert message.startswith(str(tmp_path / name)) and words in message and "\n" not in message, message
    with pytest.raises(DataError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(DataError, match="is a folder"):
        read_audio(tmp_path)


def test_a_video_without_sound_holds_no_audio_stream(tmp_path):
    from tests.data_video.helpers import write_video

    video = write_video(tmp_path / "silent.avi", np.zeros((3, 1, 16, 16), np.uint8))
    with pytest.raises(DataError, match=r"silent.avi: holds no audio stream \(streams: video\)"):
        read_audio(video)


# ----------------------------------------------------------------------------- spectrogram


def _numpy_log_mel(wave: np.ndarray, rate: int, win: int, hop: int, n_mels: int) -> np.ndarray:
    """Written from the definitions, sharing nothing with workbench.io.audio."""
    n = 1 + (len(wave) - win) // hop
    frames = np.stack([wave[i * hop: i * hop + win] for i in range(n)]).astype(np.float64)  # [T, win]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [T, win//2+1]
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    inv = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    points = inv(np.linspace(mel(0.0), mel(rate / 2), n_mels + 2))
    freqs = np.arange(win // 2 + 1) * rate / win
    bank = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = points[m], points[m + 1], points[m + 2]
        for k, f in enumerate(freqs):
            if lo < f <= mid:
                bank[m, k] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                bank[m, k] = (hi - f) / (hi - mid)
    logmel = np.log(power @ bank.T + 1e-6)  # [T, M]
    return (logmel - logmel.mean(0)) / logmel.std(0)


def test_log_mel_matches_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    rate = 8000
    wave = (tone(300.0, 0.7, rate) + tone(1700.0, 0.7, rate, 0.2) + rng.normal(0, 0.05, int(0.7 * rate))).astype(np.float32)
    settings = MelSettings(sample_rate=rate, window_ms=32.0, hop_ms=8.0, n_mels=24)  # win 256, hop 64
    ours = log_mel(wave, settings)
    assert ours.shape == (1 + (len(wave) - 256) // 64, 24) == (settings.frames_for(len(wave)), 24)
    ref = _numpy_log_mel(wave, rate, 256, 64, 24)
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-3)
    # normalised per utterance: every bin has mean 0 and standard deviation 1
    np.testing.assert_allclose(ours.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(ours.std(0, unbiased=False).numpy(), 1.0, atol=1e-3)
    # loudness does not matter after the normalisation (nothing clips at this level)
    np.testing.assert_allclose(log_mel(wave * 0.1, settings).numpy(), ours.numpy(), atol=2e-2)


def test_log_mel_batches_and_short_clips():
    settings = MelSettings()
    waves = torch.randn(3, 4000) * 0.1
    batch = log_mel(waves, settings)
    assert batch.shape == (3, settings.frames_for(4000), 40)
    torch.testing.assert_close(batch[1], log_mel(waves[1], settings), atol=1e-4, rtol=1e-4)
    assert log_mel(np.zeros(10, np.float32), settings).shape == (1, 40)  # shorter than a window: one frame
    assert torch.isfinite(log_mel(np.zeros(800, np.float32), settings)).all()  # silence stays finite


def test_mel_settings_are_checked():
    with pytest.raises(SpecError, match="hop_ms"):
        MelSettings(hop_ms=50.0).check()
    with pytest.raises(SpecError, match="n_mels"):
        MelSettings(n_mels=200, window_ms=10.0).check()
    with pytest.raises(SpecError, match="sample_rate"):
        MelSettings(sample_rate=10).check()


# ----------------------------------------------------------------------------- labelled folders


def _fsdd_like(folder, names):
    for name in names:
        write_wav(folder / f"{name}.wav", tone(300.0 + 50 * len(name), 0.2, 8000), 8000)
    return folder


def test_labels_and_split_by_file_name_pattern(tmp_path):
    names = [f"{d}_{s}_{i}" for d in (0, 1, 2) for s in ("ann", "bob") for i in range(8)]
    root = _fsdd_like(tmp_path / "clips", names)
    clips = scan_clips(root, "{label}_{speaker}_{index}", "index", "0-4")
    assert clips.classes == ["0", "1", "2"] and len(clips.paths) == 48
    for path, label, held in zip(clips.paths, clips.labels, clips.held_out):
        digit, _, index = path.stem.split("_")
        assert clips.classes[label] == digit
        assert held == (int(index) <= 4)
    # the same with a regular expression, and a literal list of held-out values
    again = scan_clips(root, r"(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)", "speaker", "bob")
    assert again.labels == clips.labels
    assert again.held_out == ["_bob_" in p.name for p in again.paths]


def test_labels_by_subfolder_and_the_refusals(tmp_path):
    for cls in ("yes", "no"):
        _fsdd_like(tmp_path / "words" / cls, [f"{cls}{i}" for i in range(3)])
    clips = scan_clips(tmp_path / "words")
    assert clips.classes == ["no", "yes"] and clips.held_out is None
    assert [clips.classes[y] for y in clips.labels] == [p.parent.name for p in clips.paths]
    # one class only
    _fsdd_like(tmp_path / "one" / "yes", ["a", "b"])
    with pytest.raises(DataError, match="one class only"):
        scan_clips(tmp_path / "one")
    _fsdd_like(tmp_path / "flat", ["3_ann_0", "3_ann_1"])
    with pytest.raises(DataError, match=r"flat: holds clips of one class only \('3'\)"):
        scan_clips(tmp_path / "flat", "{label}_{speaker}_{index}")
    with pytest.raises(DataError, match="does not match the label pattern"):
        scan_clips(tmp_path / "flat", "{label}-{take}")
    with pytest.raises(DataError, match="no such folder"):
        scan_clips(tmp_path / "nowhere")
    with pytest.raises(DataError, match="single file"):
        scan_clips(tmp_path / "flat" / "3_ann_0.wav")
    with pytest.raises(SpecError, match="label"):
        scan_clips(tmp_path / "flat", "{digit}_{speaker}")
    with pytest.raises(SpecError, match="split_field"):
        scan_clips(tmp_path / "flat", "{label}_{speaker}_{index}", "take", "0-4")
    # a trained model's classes: a clip of another class is named
    with pytest.raises(DataError, match="3_ann_0.wav: class '3' is not one the model knows"):
        scan_clips(tmp_path / "flat", "{label}_{speaker}_{index}", classes=["0", "1"])


def test_fsdd_pattern_split_is_the_customary_one(shared_data, tmp_path):
    src = shared_data / "speech" / "fsdd" / "recordings"
    root = tmp_path / "fsdd"
    root.mkdir()
    for d in range(10):
        for i in (0, 4, 5, 49):
            shutil.copy(src / f"{d}_theo_{i}.wav", root)
    clips = scan_clips(root, "{label}_{speaker}_{index}", "index", "0-4")
    assert clips.classes == [str(d) for d in range(10)]
    assert sum(clips.held_out) == 20 and len(clips.paths) == 40
