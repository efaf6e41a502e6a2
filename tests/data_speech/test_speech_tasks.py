"""The speech tasks on a small copy of FSDD: batches and the pattern split, connected
utterances joined from held-out clips only, the presets train a step from the CLI and
`workbench eval --data` scores a folder of clips, the try-out helpers, and the refusals."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from workbench import cli, presets
from workbench.engine.trainer import Trainer
from workbench.io.errors import DataError
from workbench.spec import SpecError, with_overrides
from workbench.tasks import make_task

SPEAKERS = ("jackson", "theo")
INDICES = (0, 1, 5, 6, 7)  # 0-4 held out, as in FSDD's customary split


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory):
    """100 FSDD recordings: every digit, two speakers, five takes each."""
    from tests.conftest import SHARED_DATA

    src = SHARED_DATA / "speech" / "fsdd" / "recordings"
    if not src.is_dir():
        pytest.skip(f"shared data folder {src} is not present")
    root = tmp_path_factory.mktemp("fsdd")
    for d in range(10):
        for s in SPEAKERS:
            for i in INDICES:
                shutil.copy(src / f"{d}_{s}_{i}.wav", root)
    return root


def _preset(name: str, path, *overrides: str):
    base = ["train.device=cpu", "train.probe_every=0", "train.checkpoint_every=0", "train.eval_every=0",
            f"data.path={path}"]
    return with_overrides(presets.load_builtin(name), base + list(overrides))


def test_classify_batches_follow_the_pattern_split(fsdd):
    task = make_task(_preset("speech_digits_gru", fsdd))
    assert task.classes == [str(d) for d in range(10)]
    assert len(task.train_set) == 60 and len(task.val_set) == 40  # takes 5-7 train, 0-1 held out
    assert task.baseline() == {"accuracy": pytest.approx(0.1)}
    batches = list(task.train_batches(16, torch.Generator().manual_seed(0)))
    assert sorted(len(b.y) for b in batches) == [12, 16, 16, 16] and task.epoch_size(16) == 4
    batch = max(batches, key=lambda b: len(b.y))
    assert batch.x.shape[2] == 40 and batch.y.shape == (16,)
    assert int(batch.lengths.max()) == batch.x.shape[1]
    for row, n in enumerate(batch.lengths.tolist()):
        assert batch.x[row, n:].abs().sum() == 0  # padding is zeros
        assert torch.allclose(batch.x[row, :n].mean(0), torch.zeros(40), atol=1e-4)  # normalised per clip
    seen = [int(y) for b in task.val_batches(8, 100) for y in b.y]
    assert sorted(seen) == sorted([d for d in range(10) for _ in SPEAKERS for _ in (0, 1)])


def test_connected_utterances_join_clips_and_hold_out_only_held_out_clips(fsdd):
    # hold out every clip of digit 0: then every held-out utterance says only "0"
    task = make_task(_preset("speech_connected_ctc", fsdd, "data.options.split_field=label",
                             "data.options.split_values=\"0\"", "data.options.val_utterances=12"))
    assert len(task.val_set) == 12
    for feats, words in task.val_set:
        assert 2 <= len(words) <= 5 and set(words) == {0}
        assert feats.shape[1] == 40
    assert 0 not in task.train_labels
    batch = next(task.train_batches(8, torch.Generator().manual_seed(1)))
    targets, lengths = batch.y, (batch.y != 0).sum(1)
    assert ((lengths >= 2) & (lengths <= 5)).all()
    assert targets.min() >= 0 and targets.max() <= 10 and not (targets == 1).any()  # no digit 0 in training
    # about half a second per digit and the gaps: frames grow with the words
    seconds_per_word = batch.lengths.float() * task.mel.hop / task.mel.sample_rate / lengths.float()
    assert (seconds_per_word > 0.25).all() and (seconds_per_word < 1.2).all(), seconds_per_word
    base = task.baseline()
    assert base["empty_word_error_rate"] == 1.0 and 0.5 < base["word_error_rate"] < 2.0


@pytest.mark.parametrize("name", ["speech_digits_gru", "speech_connected_ctc"])
def test_preset_trains_a_step_and_evaluates_on_a_folder(fsdd, tmp_path, capsys, name):
    run = tmp_path / "run"
    extra = ["--set", "data.options.val_utterances=8"] if name == "speech_connected_ctc" else []
    assert cli.main(["train", name, "--steps", "1", "--quiet", "--device", "cpu", "--run-dir", str(run),
                     "--set", f"data.path={fsdd}", "--set", "train.probe_every=0", *extra]) == 0
    capsys.readouterr()
    # a folder of clips it never saw: one speaker's takes, labelled by the same pattern
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    for path in sorted(fsdd.glob("*_theo_5.wav")):
        shutil.copy(path, unseen)
    assert cli.main(["eval", str(run), "--data", str(unseen), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    main = result["main_metric"]
    assert main in result["metrics"] and main in result["baseline"]
    if name == "speech_digits_gru":
        assert result["examples"] == 10
    else:
        assert result["examples"] == 8 and "beam_word_error_rate" in result["metrics"]


def test_built_in_presets_train_on_synthetic_digits_that_a_simple_rule_tells_apart():
    """No recordings ship with the package: with data.path empty the presets hear
    synthetic spoken digits. Each word has its own spectral shape: the nearest class mean
    of the time-averaged spectrogram names most held-out clips (chance: 10%)."""
    preset = _preset("speech_digits_gru", "", "data.options.synthetic_clips=300")
    task = make_task(preset)
    assert task.classes == [str(d) for d in range(10)]
    assert len(task.train_set) == 270 and len(task.val_set) == 30
    again = make_task(preset)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(task.train_set, again.train_set))  # seeded
    # normalised per clip, so compare shapes over time: the first, middle and last thirds
    def summary(f):
        return torch.cat([part.mean(0) for part in torch.tensor_split(f, 3)])

    means = torch.stack([torch.stack([summary(f) for f, y in task.train_set if y == c]).mean(0) for c in range(10)])
    hits = sum(int(torch.cdist(summary(f)[None], means).argmin()) == y for f, y in task.val_set)
    assert hits >= 20, hits
    trainer = Trainer(with_overrides(preset, ["train.steps=1"]), task=task)
    end = list(trainer.run())[-1]
    assert end["status"] == "finished" and "accuracy" in end["metrics"]
    ctc = make_task(_preset("speech_connected_ctc", "", "data.options.synthetic_clips=100",
                            "data.options.val_utterances=6"))
    assert len(ctc.val_set) == 6 and ctc.model_io().output_size == 11


def test_a_missing_folder_says_what_the_preset_needs(tmp_path):
    preset = _preset("speech_digits_gru", tmp_path / "nowhere")
    with pytest.raises(DataError, match="nowhere: no such folder.*Free Spoken Digit Dataset"):
        make_task(preset)


def test_mismatches_name_the_field(fsdd):
    with pytest.raises(SpecError, match="model.input.kind"):
        make_task(_preset("speech_digits_gru", fsdd, "model.input.kind=embedding"))
    with pytest.raises(SpecError, match="model.head.kind"):
        make_task(_preset("speech_connected_ctc", fsdd, "model.head.kind=regression"))
    with pytest.raises(SpecError, match="model.topology"):
        make_task(_preset("speech_connected_ctc", fsdd, "model.topology=many_to_one"))
    with pytest.raises(SpecError, match="data.options.split_values"):
        make_task(_preset("speech_digits_gru", fsdd, "data.options.split_values="))
    with pytest.raises(SpecError, match="data.options.max_words"):
        make_task(_preset("speech_connected_ctc", fsdd, "data.options.max_words=1"))
    with pytest.raises(DataError, match="holds every clip"):
        make_task(_preset("speech_digits_gru", fsdd, "data.options.split_values=0-100"))
    # CTC's targets are one string per utterance: truncated BPTT has nothing to cut them by
    preset = _preset("speech_connected_ctc", fsdd, "train.tbptt=20", "data.options.val_utterances=4")
    with pytest.raises(SpecError, match="train.tbptt"):
        Trainer(preset, task=make_task(preset))


def test_try_it_after_restoring_a_run(fsdd, tmp_path, capsys):
    """`workbench try RUN --audio FILE` prints the answer as JSON; the window's data
    (waveform, spectrogram, per-frame probabilities, saliency) has one row per frame."""
    from workbench import inference
    from workbench.tasks.ctc import collapse

    clip = fsdd / "4_theo_0.wav"
    for name in ("speech_digits_gru", "speech_connected_ctc"):
        run_dir = tmp_path / name
        extra = ["--set", "data.options.val_utterances=4"] if name == "speech_connected_ctc" else []
        assert cli.main(["train", name, "--steps", "1", "--quiet", "--device", "cpu", "--run-dir", str(run_dir),
                         "--set", f"data.path={fsdd}", "--set", "train.probe_every=0", *extra]) == 0
        capsys.readouterr()
        assert cli.main(["try", str(run_dir), "--audio", str(clip), "--beam", "4"]) == 0
        printed = json.loads(capsys.readouterr().out)
        session = inference.open_run(run_dir)
        assert session.mode == "speech" and session.describe()["input"] == "audio"
        out = inference.audio_outputs(session, clip, beam_width=4)
        task = session.task
        T = task.mel.frames_for(int(round(out["seconds"] * task.mel.sample_rate)))
        assert out["spectrogram"].shape == (T, 40) and out["saliency"].shape == (T,) == (printed["frames"],)
        assert (out["saliency"] >= 0).all() and out["saliency"].max() > 0
        assert np.allclose(out["probabilities"].sum(1), 1.0, atol=1e-5)
        assert out["wave"].shape[1] == 2 and (out["wave"][:, 0] <= out["wave"][:, 1]).all()
        if name == "speech_digits_gru":
            assert out["probabilities"].shape == (T, 10) and out["labels"] == task.classes
            assert printed["predicted"] == out["predicted"] == out["classes"][0][0]
            assert sum(p for _, p in printed["classes"]) == pytest.approx(1.0, abs=1e-4)
        else:
            assert out["probabilities"].shape == (T, 11) and out["labels"][0] == "blank"
            assert out["ctc_path"] == out["probabilities"].argmax(1).tolist()
            assert out["greedy"] == task.label_string(collapse(out["ctc_path"])) == printed["greedy"]
            assert printed["beam"] == printed["beams"][0][0]
        inside = inference.inside(session, {"audio": str(clip)})
        assert len(inside["in_steps"]) == T and inside["layers"][0]["series"]["hidden"].shape[1] == T
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    assert cli.main(["try", str(tmp_path / "speech_digits_gru"), "--audio", str(bad)]) == 2
    assert "bad.wav: is empty" in capsys.readouterr().err
    assert cli.main(["try", str(tmp_path / "speech_digits_gru"), "--text", "hello"]) == 2
    assert "--audio" in capsys.readouterr().err
