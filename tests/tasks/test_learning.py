"""Each built-in text/symbol task trains from its preset through `workbench train` and
clearly beats its trivial baseline on a small budget; `workbench eval` prints the
metrics as JSON, also for a user's file. Sizes are cut down with --set so that each
run takes seconds on one CPU thread."""
from __future__ import annotations

import json

import pytest

from workbench import cli

FAST = ["train.probe_every=0", "train.eval_every=0", "train.log_every=50", "train.checkpoint_every=0",
        "train.num_threads=1", "train.schedule=constant", "train.warmup_steps=0"]


def _train(tmp_path, preset: str, steps: int, *overrides: str, name: str = "run") -> str:
    run_dir = tmp_path / name
    args = ["train", preset, "--steps", str(steps), "--run-dir", str(run_dir), "--quiet"]
    for item in FAST + list(overrides):
        args += ["--set", item]
    assert cli.main(args) == 0
    return str(run_dir)


def _eval(capsys, run_dir: str, *extra: str) -> dict:
    capsys.readouterr()
    assert cli.main(["eval", run_dir, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_brackets_gru_learns_nesting(tmp_path, capsys):
    run = _train(tmp_path, "brackets_gru", 300, "data.options.max_len=10", "data.options.val_size=300",
                 "model.layers.0.hidden_size=32", "train.lr=0.01")
    result = _eval(capsys, run)
    assert result["task"] == "brackets" and result["examples"] == 300
    assert result["baseline"]["accuracy"] == 0.5
    assert result["metrics"]["accuracy"] > 0.85


def test_textclass_rnn_learns_negation_and_contrast(tmp_path, capsys):
    run = _train(tmp_path, "textclass_rnn", 300, "data.options.train_size=1500", "data.options.val_size=300",
                 "model.layers.0.hidden_size=32", "train.lr=0.005")
    result = _eval(capsys, run)
    assert result["baseline"]["accuracy"] < 0.6
    assert result["metrics"]["accuracy"] > 0.85


def test_tagger_bilstm_beats_most_frequent_tag(tmp_path, capsys):
    run = _train(tmp_path, "tagger_bilstm", 150, "data.options.train_size=800", "data.options.val_size=200",
                 'model.layers=[{"cell": "lstm", "hidden_size": 32, "bidirectional": true}]',
                 "model.input.embedding_dim=16", "model.input.projection_size=8", "model.input.char_embedding_dim=8",
                 "data.options.word_dropout=0.0", "train.lr=0.01", "train.epochs=0")
    result = _eval(capsys, run)
    base, acc = result["baseline"]["accuracy"], result["metrics"]["accuracy"]
    assert 0.8 < base < 0.95  # ambiguous words: the most frequent tag is often wrong
    assert acc > 0.95 and (1 - acc) < (1 - base) / 2  # at least halves the baseline's errors


def test_charlm_lstm_beats_unigram_on_the_default_corpus(tmp_path, capsys):
    run = _train(tmp_path, "charlm_lstm", 150, "data.options.seq_len=32", "model.layers.0.hidden_size=64",
                 "model.layers.1.hidden_size=64", "train.batch_size=32", "train.lr=0.01")
    result = _eval(capsys, run, "--max-batches", "4")
    m, base = result["metrics"], result["baseline"]
    assert base["nats_per_char"] > 4.0 and base["unigram_nats_per_char"] < 3.5
    assert m["nats_per_char"] < base["unigram_nats_per_char"] - 0.3
    assert m["perplexity"] == pytest.approx(2.718281828 ** m["nats_per_char"], rel=1e-6)
    assert m["bits_per_char"] == pytest.approx(m["nats_per_char"] / 0.6931471805599453, rel=1e-6)


def test_dates_encdec_attention_learns_iso_dates(tmp_path, capsys):
    run = _train(tmp_path, "dates_encdec_attention", 150, "data.options.val_size=200",
                 "model.layers.0.hidden_size=32", "model.decoder_layers.0.hidden_size=64", "train.lr=0.01")
    result = _eval(capsys, run)
    m, base = result["metrics"], result["baseline"]
    assert base["exact_match"] == 0.0 and base["token_accuracy"] < 0.6
    assert m["token_accuracy"] > base["token_accuracy"] + 0.3
    # teacher-forced exact match equals real greedy decoding's (see textutil)
    assert m["greedy_exact_match"] == pytest.approx(m["exact_match"], abs=0.02)
    assert m["greedy_exact_match"] > 0.2


def test_numbers_encdec_lstm_learns_digits(tmp_path, capsys):
    run = _train(tmp_path, "numbers_encdec_lstm", 300, "data.options.val_size=200",
                 "model.layers.0.hidden_size=64", "model.decoder_layers.0.hidden_size=64", "train.lr=0.01")
    result = _eval(capsys, run)
    m, base = result["metrics"], result["baseline"]
    assert m["token_accuracy"] > base["token_accuracy"] + 0.3 and m["greedy_exact_match"] > 0.3


def test_captions_one_to_many_learns_to_describe_images(tmp_path, capsys):
    run = _train(tmp_path, "captions_one_to_many", 250, "data.options.image_size=16", "data.options.val_size=200",
                 "model.input.kind=frames_linear", "model.input.projection_size=64", "model.layers.0.hidden_size=64",
                 "train.lr=0.003")
    result = _eval(capsys, run)
    m, base = result["metrics"], result["baseline"]
    assert base["token_accuracy"] < 0.45
    assert m["token_accuracy"] > base["token_accuracy"] + 0.2
    assert m["greedy_exact_match"] == pytest.approx(m["exact_match"], abs=0.02)


# ----------------------------------------------------------------------------- users' files


def test_charlm_on_a_text_file_and_eval_on_another(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 60, encoding="utf-8")
    run = _train(tmp_path, "charlm_gru", 60, f"data.path={corpus}", "data.options.seq_len=24",
                 "model.layers.0.hidden_size=32", "model.layers.1.hidden_size=32", "train.lr=0.01")
    other = tmp_path / "other.txt"
    other.write_text("the cat sat on the log.\n", encoding="utf-8")
    result = _eval(capsys, run, "--data", str(other))
    assert result["data"] == str(other) and result["examples"] == 1  # 23 targets fit one window
    assert result["metrics"]["nats_per_char"] < result["baseline"]["unigram_nats_per_char"]
    assert cli.main(["eval", run, "--data", str(tmp_path / "missing.txt")]) == 2


def test_tagger_on_a_conllu_file_and_eval_on_its_dev_file(tmp_path, capsys):
    lines = []
    for det, noun, verb in [("the", "dog", "runs"), ("a", "cat", "sleeps"), ("the", "bird", "sings")] * 10:
        lines += [f"1\t{det}\t_\tDET\t_\t_\t_\t_\t_\t_", f"2\t{noun}\t_\tNOUN\t_\t_\t_\t_\t_\t_",
                  f"3\t{verb}\t_\tVERB\t_\t_\t_\t_\t_\t_", ""]
    train = tmp_path / "train.conllu"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dev = tmp_path / "dev.conllu"
    dev.write_text("1\ta\t_\tDET\t_\t_\t_\t_\t_\t_\n2\tdogs\t_\tNOUN\t_\t_\t_\t_\t_\t_\n"
                   "3\truns\t_\tVERB\t_\t_\t_\t_\t_\t_\n\n", encoding="utf-8")
    run = _train(tmp_path, "tagger_bilstm", 60, f"data.path={train}", f"data.options.val_path={dev}",
                 'model.layers=[{"cell": "gru", "hidden_size": 16, "bidirectional": true}]',
                 "model.input.embedding_dim=8", "model.input.projection_size=8", "train.lr=0.02", "train.epochs=0",
                 "train.batch_size=8")
    result = _eval(capsys, run, "--data", str(dev))
    assert result["examples"] == 1 and 0.0 <= result["metrics"]["accuracy"] <= 1.0
    assert result["metrics"]["oov_accuracy"] in (0.0, 1.0)  # "dogs" is the one unknown word


def test_transduction_and_textclass_on_users_files(tmp_path, capsys):
    pairs = tmp_path / "fra.txt"
    pairs.write_text("".join(f"I see {w}.\tJe vois {w}.\n" for w in ("Tom", "Mary", "it", "them") * 5),
                     encoding="utf-8")
    run = _train(tmp_path, "dates_encdec_attention", 20, f"data.path={pairs}", "model.layers.0.hidden_size=16",
                 "model.decoder_layers.0.hidden_size=16", "train.batch_size=8", name="pairs")
    result = _eval(capsys, run)
    assert result["examples"] == 2 and {"token_accuracy", "exact_match", "greedy_exact_match"} <= set(result["metrics"])
    table = tmp_path / "spam.tsv"
    table.write_text("label\tmessage\n" + "".join(f"{l}\t{t}\n" for l, t in [("spam", "win money now"),
                     ("ham", "see you at lunch")] * 10), encoding="utf-8")
    run = _train(tmp_path, "textclass_rnn", 30, f"data.path={table}", "data.options.text_column=message",
                 "train.lr=0.01", name="table")
    result = _eval(capsys, run)
    assert result["examples"] == 2 and result["metrics"]["accuracy"] == 1.0


def test_bad_files_stop_training_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.conllu"
    bad.write_bytes(b"1\tthe\t_\tDET\n")
    args = ["train", "tagger_bilstm", "--steps", "1", "--run-dir", str(tmp_path / "r"), "--quiet",
            "--set", f"data.path={bad}"]
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
