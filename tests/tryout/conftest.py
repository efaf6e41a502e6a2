"""Runs trained for a few steps on built-in tasks (tiny sizes), once per test session,
for the try-out tests: every mode of the panel and of `workbench try` drives one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

COMMON = ["--quiet", "--set", "train.eval_every=1000", "--set", "train.eval_batches=1", "--set", "train.probe_every=0",
          "--set", "train.batch_size=8", "--set", "train.checkpoint_every=0"]

# name -> (built-in preset, overrides): small enough that each trains in well under a second.
RUNS = {
    "charlm": ("charlm_gru", ["model.layers=[{\"cell\": \"gru\", \"hidden_size\": 16}]", "model.input.embedding_dim=8",
                              "data.options.seq_len=16"]),
    "tagger": ("tagger_bilstm", ["data.options.train_size=60", "data.options.val_size=10",
                                 "model.layers.0.hidden_size=8", "model.input.embedding_dim=8",
                                 "model.input.projection_size=8", "model.input.char_embedding_dim=4"]),
    "textclass": ("textclass_rnn", ["data.options.train_size=60", "data.options.val_size=10",
                                    "model.layers.0.hidden_size=8", "model.input.embedding_dim=8"]),
    "brackets": ("brackets_gru", ["data.options.val_size=10", "model.layers.0.hidden_size=8",
                                  "model.input.embedding_dim=8", "data.options.max_len=10"]),
    "dates": ("dates_encdec_attention", ["data.options.val_size=10", "model.layers.0.hidden_size=8",
                                         "model.decoder_layers.0.hidden_size=8", "model.input.embedding_dim=8"]),
    "captions": ("captions_one_to_many", ["data.options.val_size=10", "data.options.image_size=12",
                                          "model.layers.0.hidden_size=8", "model.input.embedding_dim=8",
                                          "model.input.projection_size=8", "model.input.conv_channels=[4]"]),
    "vclass": ("video_motion_gru", ["data.options.val_clips=8", "data.options.width=8", "data.options.height=8",
                                    "data.options.clip_len=6", "model.layers.0.hidden_size=8",
                                    "model.input.projection_size=8"]),
    "vnext": ("video_nextframe_lstm", ["data.options.val_clips=8", "data.options.width=8", "data.options.height=8",
                                       "data.options.window=6", "model.layers.0.hidden_size=8",
                                       "model.input.projection_size=8"]),
    "adding": ("adding_lstm", ["data.options.seq_len=10", "data.options.val_size=16", "model.layers.0.hidden_size=8"]),
    "forecast": ("forecast_sine_gru", ["data.options.length=300", "data.options.window=12", "data.options.season=1",
                                       "model.layers.0.hidden_size=8"]),
}

TEXT = "the quick brown fox jumps over the lazy dog.\nA stitch in time saves nine!\n" * 30


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """name -> run folder, each trained for 3 steps with `workbench train`."""
    from workbench.cli import main

    root = tmp_path_factory.mktemp("tryout_runs")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    runs = {}
    for name, (preset, overrides) in RUNS.items():
        sets = list(overrides) + ([f"data.path={json.dumps(str(corpus))}"] if name == "charlm" else [])
        args = ["train", preset, "--steps", "3", "--run-dir", str(root / name)] + COMMON
        for item in sets:
            args += ["--set", item]
        assert main(args) == 0, name
        assert (root / name / "model.safetensors").is_file(), name
        runs[name] = root / name
    return runs


@pytest.fixture(scope="session")
def sessions(trained_runs):
    """name -> workbench.inference.Session, opened once."""
    from workbench import inference

    return {name: inference.open_run(path) for name, path in trained_runs.items()}
