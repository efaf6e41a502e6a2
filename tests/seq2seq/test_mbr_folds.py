"""Cross-validation folds over conversations, the paired bootstrap, and minimum Bayes risk
decoding (Eikema & Aziz 2020) on the one decoding path: chosen sample, eval, try and chat."""
from __future__ import annotations

import pytest
import torch

from workbench import inference, presets
from workbench.engine.model import build_model
from workbench.spec import with_overrides
from workbench.tasks import make_task
from workbench.tasks.dialogue import fold_conversations
from workbench.tasks.transduction import mbr_choice, paired_bootstrap


def _same(text: str) -> str:
    return " ".join(text.lower().split())


def test_folds_partition_the_conversations_with_no_shared_turn_across_folds():
    conversations = [["Tell me a joke", f"joke {i}"] for i in range(4)] + [[f"q{i}", f"a{i}", f"b{i}"] for i in range(16)]
    conversations += [["Hello", "Hi"], ["hello ", "Hi"], ["Hello", "Hi"]]  # a repeat is kept once
    folds = fold_conversations(conversations, 5)
    assert len(folds) == 5 and all(folds)
    every = [tuple(c) for f in folds for c in f]
    assert sorted(every) == sorted(dict.fromkeys(map(tuple, conversations)))  # each distinct one exactly once
    turns = [{_same(t) for c in f for t in c} for f in folds]
    assert all(not (turns[i] & turns[j]) for i in range(5) for j in range(i + 1, 5))
    exchanges = [sum(len(c) - 1 for c in f) for f in folds]
    assert max(exchanges) - min(exchanges) <= 4  # dealt to the emptiest fold: near equal (the joke group: 4)
    assert fold_conversations(conversations, 5) == folds  # fixed
    with pytest.raises(ValueError):
        fold_conversations([["a", "b"], ["a", "c"]], 2)  # one group cannot make two folds


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    refs = [f"the cat number {i} sat on the mat" for i in range(60)]
    good = [f"the cat number {i} sat on a mat" for i in range(60)]
    bad = [f"a dog {i}" for i in range(60)]
    d = paired_bootstrap(good, bad, refs, resamples=200)
    for name in ("bleu", "chrf"):
        diff, low, high = d[name]
        assert 0 < low <= diff <= high
    same = paired_bootstrap(good, good, refs, resamples=200)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())
    with pytest.raises(ValueError):
        paired_bootstrap(good, bad[:5], refs)
    # one output per group: the cluster bootstrap draws the same resamples as the plain one
    assert paired_bootstrap(good, bad, refs, resamples=200, groups=list(range(60))) == d
    # a system that is better on a few conversations only: resampling whole conversations widens the interval
    mixed = [good[i] if i < 12 else bad[i] for i in range(60)]
    plain = paired_bootstrap(mixed, bad, refs, resamples=200)["chrf"]
    clustered = paired_bootstrap(mixed, bad, refs, resamples=200, groups=[i // 6 for i in range(60)])["chrf"]
    assert clustered[0] == plain[0] and clustered[2] - clustered[1] > plain[2] - plain[1]


def test_mbr_picks_the_consensus_candidate():
    candidates = ["banana bread recipe", "i am fine thank you", "i am fine , thank you", "i am fine thanks you",
                  "zzz qqq"]
    assert mbr_choice(candidates) in (1, 2, 3)
    assert mbr_choice(["zzz qqq", "i am fine", "i am fine", "i am good"]) == 1  # the tie: the first
    assert mbr_choice(["only"]) == 0
    # chrF beta 2 weighs recall: the candidate holding every other's words wins by its length; beta 1 does not
    padded = ["i am fine", "i am fine", "i am well", "i am fine and well"]
    assert mbr_choice(padded, beta=2.0) == 3 and mbr_choice(padded) == 0


def test_mbr_decoding_in_eval_try_and_chat(tmp_path):
    path = tmp_path / "talk.tsv"
    path.write_text("hello\thi there\nwhat is your name\tmy name is bot\nhow are you\ti am fine\nbye\tsee you\n",
                    encoding="utf-8")
    preset = with_overrides(presets.load_builtin("chatbot_encdec"), [
        f"data.path={path}", "data.options.val_fraction=0.25", "data.options.min_freq=1",
        "model.input.embedding_dim=8", "model.layers.0.hidden_size=8", "model.decoder_layers.0.hidden_size=8"])
    task = make_task(preset)
    task.ensure_prepared()
    torch.manual_seed(0)
    model = build_model(preset.model, task.model_io()).eval()
    batch = task.encode_source("hello zebra")
    calls = []
    generate = model.generate

    def spy(*args, **kwargs):  # the samples come from the one decoding path, under the task's rules
        calls.append(kwargs)
        return generate(*args, **kwargs)
    model.generate = spy
    tokens, attention = task.mbr_decode(model, batch.x, batch.lengths, ["hello zebra"], 6, 12, seed=3)
    assert calls and calls[0]["min_length"] == task.decode_rules()["min_length"] and calls[0]["temperature"] == 1.0
    assert tokens.shape[0] == 1 and attention.shape[:2] == tokens.shape
    again, _ = task.mbr_decode(model, batch.x, batch.lengths, ["hello zebra"], 6, 12, seed=3)
    assert torch.equal(tokens, again)  # seeded: the same samples, the same choice
    model.generate = generate
    session = inference.session_from_model(preset, task, model)
    out = inference.chat(session, "hello zebra", mbr=6, seed=3, max_len=12)
    assert out["decoding"] == "MBR over 6 samples" and out["attention"].shape[0] == len(out["ids"])
    assert out["ids"] == tokens[0].tolist()[: len(out["ids"])]
    answered, _ = inference.answer(session, {"text": "hello", "mbr": 4, "seed": 0})
    assert answered["decoding"] == "MBR over 4 samples"
    scores = task.corpus_metrics(model, "cpu", 4, 10, beam=2, mbr=4)["metrics"]
    assert {"bleu_mbr", "chrf_mbr", "bleu_beam"} <= set(scores) and scores["mbr_samples"] == 4
