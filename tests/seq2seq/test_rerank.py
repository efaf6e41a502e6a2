"""Retrieve-then-rerank (workbench.tasks.rerank): the top-k nearest questions, the
teacher-forced reply score, the choice between the model's own and retrieved replies,
only training exchanges in the pool, and the mode in eval, try and a restored run."""
from __future__ import annotations

import json

import pytest
import torch

from workbench import cli, inference, presets
from workbench.engine.model import build_model
from workbench.spec import with_overrides
from workbench.tasks import make_task
from workbench.tasks.dialogue import NearestQuestion
from workbench.tasks.rerank import Candidate, RerankWeights, candidate_pools, choose, score_replies

TALK = ("hello\thi there\nhello there\thow do you do\nwhat is your name\tmy name is bot\nhow are you\ti am fine\n"
        "bye\tsee you\nwhat is your favourite colour\tblue\ngood night\tsleep well\nwhat is the time\tnoon\n")
TINY = ["data.options.min_freq=1", "model.input.embedding_dim=8", "model.layers.0.hidden_size=8",
        "model.decoder_layers.0.hidden_size=8"]


def _tiny(tmp_path, *sets: str):
    path = tmp_path / "talk.tsv"
    path.write_text(TALK, encoding="utf-8")
    preset = with_overrides(presets.load_builtin("chatbot_encdec"),
                            [f"data.path={path}", "data.options.val_fraction=0.25", *TINY, *sets])
    task = make_task(preset)
    task.ensure_prepared()
    torch.manual_seed(0)
    return preset, task, build_model(preset.model, task.model_io()).eval()


def test_top_k_nearest_questions_in_order_of_cosine_with_distinct_replies():
    pairs = [("what is your name", "bot"), ("what is the time", "noon"), ("your name please", "bot"),
             ("hello", "hi"), ("what is your favourite name", "ann")]
    index = NearestQuestion(pairs)
    top = index.top("what is your name", 4)
    assert top[0] == (0, pytest.approx(1.0)) and top[0][0] == index.index_of("what is your name")
    assert [i for i, _ in top] == [0, 4, 1]  # "bot" again (2) is kept once; "hello" shares no word
    assert all(a[1] >= b[1] for a, b in zip(top, top[1:]))
    assert [i for i, _ in index.top("what is your name", 2)] == [0, 4]
    assert index.top("zebra", 3) == [(0, 0.0)]  # no shared word: index_of's answer


def test_the_score_is_the_models_teacher_forced_log_probability(tmp_path):
    _, task, model = _tiny(tmp_path)
    message, reply = "hello zebra", "hi zebra there qwerty"  # zebra: copied (extended id); qwerty: <unk>
    (score, tokens, unknown), = score_replies(task, model, [(message, reply)])
    (x, y), = task._encode_pairs([(message, reply)])
    Vt = len(task.target_vocab)
    assert tokens == 5 and unknown == 1 and y[1] >= Vt  # the copied word's extended id
    # step by step through decode_step, the decoding path, not the training forward
    with torch.no_grad():
        _, state, enc = model.decoding_start(torch.tensor([x]), torch.tensor([len(x)]))
        token, total = torch.tensor([model.io.bos_id]), 0.0
        for target in y + [model.io.eos_id]:
            logits, state, _ = model.decode_step(token, state, enc, torch.tensor([len(x)]))
            total += float(torch.log_softmax(logits.float(), -1)[0, target])
            token = torch.tensor([target])
    assert score == pytest.approx(total, abs=1e-4)
    # the prior: the same reply given a message of one <unk> (nothing to copy: "zebra" is <unk> too)
    (prior, n, unknown_then), = score_replies(task, model, [(message, reply)], no_message=True)
    assert n == tokens and unknown_then == 2 and prior != score
    weights = RerankWeights(generic=0.5)
    c = Candidate(reply, "beam", logp=score, tokens=tokens, prior=prior)
    assert weights.score(c) == pytest.approx((score - 0.5 * prior) / tokens)
    # batched with other pairs (padding) it is the same
    batched = score_replies(task, model, [("what is your name", "my name is bot"), (message, reply)])
    assert batched[1][0] == pytest.approx(score, abs=1e-4)


def test_the_choice_goes_to_the_candidate_the_model_prefers():
    own = Candidate("i am a bot", "beam", logp=-6.0, tokens=6)
    human = Candidate("my name is ann", "retrieved #2", similarity=0.5, logp=-3.0, tokens=6)
    weak = Candidate("noon", "retrieved #1", similarity=0.9, logp=-20.0, tokens=2)
    assert choose([own, weak, human], RerankWeights()) == 2  # the model rates the human reply best
    human.logp = -12.0
    assert choose([own, weak, human], RerankWeights()) == 0  # now its own
    assert choose([own, weak, human], RerankWeights(retrieved=1.5)) == 2  # a bonus for human replies tips it
    assert choose([own, weak, human], RerankWeights(similarity=20.0)) == 1  # the nearest question wins
    assert choose([own, weak, human], RerankWeights(own=False)) == 2  # only the retrieved compete
    assert choose([own], RerankWeights(own=False)) == 0


def test_the_pool_holds_the_models_replies_and_training_replies_only(tmp_path):
    _, task, model = _tiny(tmp_path)
    held_out = {r for _, r in task.val_texts}
    assert held_out and not held_out & {r for _, r in task.train_texts}
    index = task.retrieval_index()
    assert set(index.replies) == {r for _, r in task.train_texts}  # the real exchanges, not the copy pairs
    pools = candidate_pools(task, model, [m for m, _ in task.val_texts], index, 50, 2)
    for pool in pools:
        assert pool[0].origin == "beam" and all(c.retrieved for c in pool[1:])
        retrieved = [c.text for c in pool if c.retrieved]
        assert retrieved and set(retrieved) <= {task._as_compared(r) for _, r in task.train_texts}
        assert all(c.tokens >= 1 and c.logp < 0 for c in pool)
    # the bonus decides between a retrieved reply and the model's own, end to end
    session = inference.session_from_model(*_tiny(tmp_path, "data.options.rerank=3",
                                                  "data.options.rerank_retrieved=100"))
    out = inference.chat(session, "hello there")
    nearest = session.task.retrieval_index().reply("hello there")
    assert out["decoding"] == "reranked: retrieved #1" and out["reply"] == nearest
    assert len(out["candidates"]) >= 2 and out["attention"].shape[0] == len(out["ids"])
    session.task.options.rerank_retrieved = -100.0
    own = inference.chat(session, "hello there", beam=3)
    assert own["decoding"] == "reranked: beam 3"
    assert inference.chat(session, "hello there", rerank=0)["decoding"] == "greedy"  # off
    assert inference.chat(session, "hello there", rerank=0, beam=2)["decoding"] == "beam 2"
    scores = session.task.corpus_metrics(session.model, "cpu", 4, 10, beam=2)["metrics"]
    assert {"bleu_rerank", "chrf_rerank"} <= set(scores) and scores["rerank_retrieved_share"] == 0.0


ONE_STEP = ["--steps", "1", "--quiet", "--set", "train.probe_every=0", "--set", "train.eval_every=0",
            "--set", "train.num_threads=1", "--set", "train.device=cpu", "--set", "train.eval_batches=1"]


def test_a_restored_run_without_its_data_file_reranks_and_try_says_which(tmp_path, capsys):
    path = tmp_path / "talk.tsv"
    path.write_text(TALK, encoding="utf-8")
    run = str(tmp_path / "run")
    sets = [f"data.path={path}", "data.options.val_fraction=0.25", "data.options.rerank_retrieved=100", *TINY]
    assert cli.main(["train", "chatbot_encdec", "--run-dir", run, *ONE_STEP]
                    + [a for s in sets for a in ("--set", s)]) == 0
    from workbench.export.runfolder import load_run

    held_out = {r for _, r in make_task(load_run(run).preset).ensure_prepared().val_texts}
    path.unlink()  # the index ships with the run
    kept = load_run(run).task.train_texts  # restored from task.json, no file read
    assert kept and held_out and not held_out & {r for _, r in kept}
    capsys.readouterr()
    assert cli.main(["try", run, "--text", "what is your name", "--rerank", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decoding"] == "reranked: retrieved #1" and out["reply"] in ("my name is bot", "noon", "blue")
    assert [c["origin"] for c in out["candidates"]] == ["beam", "retrieved #1", "retrieved #2"]
    assert cli.main(["try", run, "--text", "what is your name", "--rerank", "0"]) == 0  # off
    assert json.loads(capsys.readouterr().out)["decoding"] == "greedy"
    assert cli.main(["try", run, "--text", "what is your name"]) == 0  # the preset's default: rerank 1
    assert json.loads(capsys.readouterr().out)["decoding"] == "reranked: retrieved #1"


def test_no_repeat_word_bans_a_word_in_a_row_but_lets_punctuation_repeat(tmp_path):
    _, task, model = _tiny(tmp_path, "data.options.no_repeat_word=true")
    rules = task.decode_rules()
    vocab = task.target_vocab
    assert rules["no_repeat_token"] and rules["repeatable"]  # punctuation and the specials may repeat
    assert all(not vocab.tokens[i][0].isalnum() for i in rules["repeatable"])
    assert vocab.index["hello"] not in rules["repeatable"]
    batch = task._batch(task.val_pairs)
    for tokens in (model.generate(batch.x, 12, batch.lengths, **rules)[0],
                   model.beam_search(batch.x, 3, 12, batch.lengths, **task.beam_options())[0]):
        for row in tokens.tolist():
            words = [t for t in row if t not in (vocab.index["<pad>"], vocab.index["<eos>"])]
            assert all(a != b or a in rules["repeatable"] for a, b in zip(words, words[1:]))
