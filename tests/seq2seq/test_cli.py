"""The translation and chatbot presets through the CLI: each trains one step on the
real data, `workbench eval` reports BLEU/chrF (greedy and beam) beside its baselines,
also on a file of the same kind (--data), and `workbench try` answers in JSON."""
from __future__ import annotations

import json

import pytest
import sacrebleu

from workbench import cli
from workbench.export.runfolder import load_run
from workbench.io.vocab import detokenize_words
from workbench.tasks.transduction import text_scores

ONE_STEP = ["--steps", "1", "--quiet", "--set", "train.probe_every=0", "--set", "train.eval_every=0",
            "--set", "train.num_threads=1", "--set", "train.device=cpu", "--set", "train.eval_batches=1"]


def _train(run_dir, preset: str, data_path, *sets: str) -> str:
    args = ["train", preset, "--run-dir", str(run_dir), *ONE_STEP, "--set", f"data.path={data_path}"]
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 0
    return str(run_dir)


def _json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert cli.main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_text_scores_are_sacrebleus():
    hyps = ["the cat sat on the mat", "a dog barks loudly"]
    refs = ["the cat sat on a mat", "the dog barks"]
    got = text_scores(hyps, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0 < got["bleu"] < 100 and 0 < got["chrf"] < 100
    assert text_scores(refs, refs) == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0), "length_ratio": 1.0}
    assert got["length_ratio"] == pytest.approx(10 / 9)  # 6 + 4 words against 6 + 3


def test_translation_preset_trains_and_eval_reports_bleu_and_chrf(tmp_path, capsys, shared_data):
    run = _train(tmp_path / "t", "translate_en_fr_attention", shared_data / "translation" / "eng-fra.tsv")
    result = _json(capsys, "eval", run, "--max-batches", "2", "--batch-size", "16", "--beam", "3", "--device", "cpu")
    m, base = result["metrics"], result["baseline"]
    assert result["examples"] == 32
    for key in ("bleu", "chrf", "bleu_beam", "chrf_beam"):
        assert 0 <= m[key] <= 100
    assert m["beam_width"] == 3
    # The copy-the-source baseline is sacrebleu on the sources against the references, both
    # as read and lowercased like the model's text (sacrebleu tokenises them itself).
    task = load_run(run).task
    task.prepare()
    pairs = task.val_texts[:32]
    want = sacrebleu.corpus_bleu([s.lower() for s, _ in pairs], [[t.lower() for _, t in pairs]], force=True).score
    assert base["bleu"] == pytest.approx(want) and 0 < base["chrf"] < 100

    # a pairs file of the same kind, never seen: extra column, one pair filtered by nothing
    other = tmp_path / "more.tsv"
    other.write_text("I am cold.\tJ'ai froid.\tattribution\nHe runs.\tIl court.\tattribution\n", encoding="utf-8")
    on_file = _json(capsys, "eval", run, "--data", str(other), "--device", "cpu", "--beam", "1")
    assert on_file["examples"] == 2 and "bleu" in on_file["metrics"] and "bleu_beam" not in on_file["metrics"]

    out = _json(capsys, "try", run, "--text", "I am cold.", "--beam", "3", "--seed", "1")
    assert out["mode"] == "transduce" and out["beam"]["width"] == 3 and isinstance(out["beam"]["text"], str)
    assert len(out["attention"]) == len(out["greedy"]["ids"])


@pytest.mark.parametrize("preset", ["translate_en_fr_attention", "chatbot_encdec"])
def test_the_presets_train_a_step_without_any_file(tmp_path, capsys, monkeypatch, preset):
    monkeypatch.chdir(tmp_path)  # no ../shared beside the working folder
    assert cli.main(["train", preset, "--run-dir", str(tmp_path / "r"), *ONE_STEP]) == 0
    result = _json(capsys, "eval", str(tmp_path / "r"), "--max-batches", "1", "--batch-size", "8", "--device", "cpu")
    assert result["data"] == "built-in (validation part)" and {"bleu", "chrf", "bleu_beam"} <= set(result["metrics"])


def test_a_preset_without_its_data_file_fails_in_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "eng-fra.tsv"
    assert cli.main(["train", "translate_en_fr_attention", "--run-dir", str(tmp_path / "r"), *ONE_STEP,
                     "--set", f"data.path={missing}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "does not exist" in err


CHAT = """conversations:
- - Hello
  - Hi, how are you?
  - Fine, thanks.
- - What is your name?
  - I am a chatbot.
"""


def test_chatbot_preset_trains_evaluates_and_replies_in_json(tmp_path, capsys, shared_data):
    run = _train(tmp_path / "c", "chatbot_encdec", shared_data / "dialogue" / "chatterbot-english")
    result = _json(capsys, "eval", run, "--max-batches", "1", "--batch-size", "16", "--beam", "2", "--device", "cpu")
    m, base = result["metrics"], result["baseline"]
    assert result["main_metric"] == "perplexity"
    assert m["perplexity"] == pytest.approx(2.718281828459045 ** m["nats_per_token"], rel=1e-6)
    assert base["perplexity"] > 1 and 0 <= base["retrieval_bleu"] <= 100 and 0 <= base["retrieval_chrf"] <= 100
    assert 0 <= base["echo_bleu"] <= 100 and 0 <= base["echo_chrf"] <= 100
    assert {"bleu", "chrf", "bleu_beam", "chrf_beam"} <= set(m)
    # parroting beside BLEU/chrF: the model's, the baselines' and the references' (the yardstick)
    assert {"parrot_share", "repeat_share", "parrot_share_beam", "repeat_share_beam", "parrot_share_rerank"} <= set(m)
    assert base["echo_parrot_share"] == 1.0 and 0 <= base["references_parrot_share"] <= 1
    assert 0 <= base["retrieval_repeat_share"] <= 1

    talk = tmp_path / "talk.yml"
    talk.write_text(CHAT, encoding="utf-8")
    on_file = _json(capsys, "eval", run, "--data", str(talk), "--device", "cpu")
    assert on_file["examples"] == 3  # Hello->Hi, Hi->Fine, name->chatbot

    reranked = _json(capsys, "try", run, "--text", "Hello")  # the preset's decoding: retrieve-then-rerank
    assert reranked["decoding"] in ("reranked: beam 4", "reranked: retrieved #1")
    assert len(reranked["attention"]) == len(reranked["ids"]) and len(reranked["candidates"]) == 2
    out = _json(capsys, "try", run, "--text", "Hello", "--rerank", "0")
    assert out["mode"] == "chat" and out["message"] == "Hello" and out["decoding"] == "greedy"
    assert isinstance(out["reply"], str) and out["source_tokens"] == ["hello"]
    assert out["reply"] == detokenize_words(out["reply_tokens"])  # shown as text, not as tokens
    assert len(out["attention"]) == len(out["ids"]) and all(len(row) == 1 for row in out["attention"])
    beam = _json(capsys, "try", run, "--text", "Hello", "--beam", "3", "--rerank", "0")
    assert beam["decoding"] == "beam 3"
    bad = tmp_path / "bad.yml"
    bad.write_text("- - just a list\n  - of lists\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["eval", run, "--data", str(bad), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "not a conversation list" in err


def test_the_streamed_reply_is_the_greedy_reply(tmp_path, shared_data):
    from workbench import inference

    run = _train(tmp_path / "c", "chatbot_encdec", shared_data / "dialogue" / "chatterbot-english",
                 "model.layers.0.hidden_size=16", "model.decoder_layers.0.hidden_size=16")
    session = inference.open_run(run)
    reply = inference.chat(session, "How are you?", max_len=12, rerank=0)
    streamed = list(inference.chat_stream(session, "How are you?", max_len=12))
    assert [s["token"] for s in streamed] == reply["reply_tokens"]
    assert "".join(s["text"] for s in streamed) == reply["reply"]
    assert all(abs(float(s["attention"].sum()) - 1.0) < 1e-5 for s in streamed)
    with pytest.raises(inference.InputError):
        inference.chat(session, "   ")
