"""`workbench try RUN_DIR --text/--video/--image`: JSON on stdout, exit 2 for bad input."""
from __future__ import annotations

import json

import numpy as np

from workbench.cli import main


def _try(capsys, *args) -> tuple[int, dict | None, str]:
    rc = main(["try", *map(str, args)])
    captured = capsys.readouterr()
    data = json.loads(captured.out) if rc == 0 else None
    return rc, data, captured.err


def test_try_language_model_honours_length_and_seed(trained_runs, capsys):
    rc, out, _ = _try(capsys, trained_runs["charlm"], "--text", "the quick", "--length", "25", "--temperature",
                      "0.7", "--top-k", "4", "--seed", "9")
    assert rc == 0
    assert out["mode"] == "generate" and len(out["tokens"]) == 25
    assert out["generated"] == "".join(out["tokens"])
    rc, again, _ = _try(capsys, trained_runs["charlm"], "--text", "the quick", "--length", "25", "--temperature",
                        "0.7", "--top-k", "4", "--seed", "9")
    assert again["generated"] == out["generated"]


def test_try_tagger_and_classifier(trained_runs, capsys):
    rc, out, _ = _try(capsys, trained_runs["tagger"], "--text", "The dog saw the saw .", "--saliency")
    assert rc == 0 and out["mode"] == "tag"
    assert len(out["tags"]) == len(out["words"]) == len(out["confidences"]) == 6
    assert len(out["saliency"]["values"]) == 6
    rc, out, _ = _try(capsys, trained_runs["textclass"], "--text", "the plot was not good")
    assert rc == 0
    assert set(out["probabilities"]) == {"negative", "positive"}
    assert abs(sum(out["probabilities"].values()) - 1) < 1e-4


def test_try_encoder_decoder_with_attention(trained_runs, capsys):
    rc, out, _ = _try(capsys, trained_runs["dates"], "--text", "march 5, 2024", "--seed", "1")
    assert rc == 0 and out["mode"] == "transduce"
    assert len(out["attention"]) == len(out["greedy"]["ids"])
    assert all(len(row) == len("march 5, 2024") for row in out["attention"])


def test_try_captioner_on_a_new_image(trained_runs, capsys):
    rc, out, _ = _try(capsys, trained_runs["captions"], "--seed", "4")
    assert rc == 0 and out["image_shape"] == [12, 12, 3]
    assert out["truth"] and isinstance(out["greedy"]["text"], str)


def test_try_video_gives_a_probability_vector_per_frame(trained_runs, capsys, shared_data, tmp_path):
    video = shared_data / "video" / "realshort.mp4"
    states = tmp_path / "states.npz"
    rc, out, _ = _try(capsys, trained_runs["vclass"], "--video", video, "--states", states)
    assert rc == 0 and out["frames"] == 36
    assert np.asarray(out["probabilities"]).shape == (36, 4)
    saved = np.load(states)
    assert saved["layers.0/hidden"].shape == (8, 6) and "layers.0/update" in saved
    rc, out, _ = _try(capsys, trained_runs["vnext"], "--video", shared_data / "video" / "cockatoo.mp4",
                      "--max-frames", "30")
    assert rc == 0 and out["frames"] == 30 and len(out["mse"]) == 29
    assert "predicted" not in out


def test_try_bad_input_exits_2_with_one_line(trained_runs, capsys, tmp_path):
    cases = [
        (trained_runs["tagger"], "--video", "x.mp4"),  # a text model asked for video
        (trained_runs["vclass"], "--text", "hello"),  # a video model asked for text
        (trained_runs["brackets"], "--text", "(a)"),  # not a bracket
        (trained_runs["vclass"], "--video", tmp_path / "missing.mp4"),
        (tmp_path / "no-run", "--text", "x"),
        (trained_runs["adding"], "--text", "0.1 0.2"),  # no marked numbers
    ]
    for args in cases:
        rc, _, err = _try(capsys, *args)
        assert rc == 2, args
        assert err.count("\n") == 1 and err.startswith("workbench: error:"), err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    rc, _, err = _try(capsys, trained_runs["vnext"], "--video", bad)
    assert rc == 2 and "bad.mp4" in err
