"""Retrieve and refine (the dialogue task's ``retrieve`` option): the model reads the message
and the reply retrieved for it. Training exchanges retrieve outside their own group of
conversations sharing a turn, held-out ones from every training exchange; the index ships
with the run, so a restored run answers without the data file."""
from __future__ import annotations

import json

from workbench import cli, inference
from workbench.io.dialogue import RETRIEVED_SEPARATOR
from workbench.tasks.dialogue import DialogueTask, NearestQuestion, conversation_groups

# "Hello" opens two conversations (one group); "Hello friend" is another group, so leaving
# its own group out, "Hello" retrieves "Greetings, zyzzyva." rather than its own reply.
TRAIN = """conversations:
- - Hello
  - Hi there
- - Hello
  - Hi there
  - How are you?
  - Fine, thanks.
- - Hello friend
  - Greetings, zyzzyva.
- - What is your name?
  - I am a bot called zyzzyva.
- - What is your name again?
  - Still a bot.
"""
VAL = """conversations:
- - Hello
  - Hello to you
- - What is your name?
  - My name is zyzzyva.
"""


def _files(tmp_path):
    train, val = tmp_path / "train.yml", tmp_path / "val.yml"
    train.write_text(TRAIN, encoding="utf-8")
    val.write_text(VAL, encoding="utf-8")
    return train, val


def _task(tmp_path, **options) -> DialogueTask:
    train, val = _files(tmp_path)
    task = DialogueTask({"val_path": str(val), **options}, str(train))
    task.ensure_prepared()
    return task


def test_training_exchanges_never_retrieve_from_their_own_group(tmp_path):
    import yaml

    task = _task(tmp_path, retrieve=True)
    sources, _ = task._split_file()
    convs = yaml.safe_load(TRAIN)["conversations"]
    distinct, groups = conversation_groups(convs)
    group_replies = [{t for i in g for t in distinct[i][1:]} for g in groups]
    n = len(task.train_texts)
    assert n == 7 and len(sources) == n  # no copy pairs here
    for (message, reply), (source, target) in zip(task.train_texts, sources[:n]):
        assert target == reply and source.startswith(message + RETRIEVED_SEPARATOR)
        retrieved = source[len(message + RETRIEVED_SEPARATOR):]
        own = next(r for r in group_replies if reply in r)
        assert retrieved not in own
    assert sources[0] == ("Hello" + RETRIEVED_SEPARATOR + "Greetings, zyzzyva.", "Hi there")
    # held-out messages retrieve from every training exchange (their own group is not in training)
    assert task.val_messages == ["Hello", "What is your name?"]
    assert task.val_texts[0] == ("Hello" + RETRIEVED_SEPARATOR + "Hi there", "Hello to you")
    assert task.val_texts[1][0] == "What is your name?" + RETRIEVED_SEPARATOR + "I am a bot called zyzzyva."
    # NearestQuestion leaves out what it is told to, and answers even when everything shares nothing
    index = NearestQuestion([("a b", "1"), ("a", "2"), ("c", "3")])
    assert index.reply("a b") == "1" and index.reply("a b", skip={0}) == "2"
    assert index.reply("zzz", skip={0}) == "2"


def test_without_the_option_sources_are_the_messages(tmp_path):
    reranking = _task(tmp_path, retrieve=True, rerank=1)  # the reranker retrieves by the message alone
    assert [reranking.retrieval_query(s) for s, _ in reranking.val_texts] == reranking.val_messages
    assert reranking.retrieval_query("Anything else") == "Anything else"
    plain = _task(tmp_path)
    assert [m for m, _ in plain.val_texts] == plain.val_messages == ["Hello", "What is your name?"]
    assert plain.model_source("Hello") == "Hello"
    retrieving = _task(tmp_path, retrieve=True)
    assert retrieving.train_texts == plain.train_texts  # the exchanges as read: the index, the baselines
    sep = retrieving.tokenize(RETRIEVED_SEPARATOR)
    assert sep == ["»"] and all(sep[0] in retrieving.source_vocab.decode(s) for s, _ in retrieving.train_pairs)
    assert plain.baseline() == retrieving.baseline()


def test_the_copy_reaches_rare_words_of_the_retrieved_reply(tmp_path):
    """A copy model's extended vocabulary covers the whole source: a word only the retrieved
    reply holds ("zyzzyva", rarer than min_freq) is copied into the reply as Vt + j."""
    train, val = _files(tmp_path)
    task = DialogueTask({"val_path": str(val), "retrieve": True, "shared_vocab": True, "min_freq": 3}, str(train))
    task.extended_vocab = True  # what check_model sets for model.copy
    task.ensure_prepared()
    assert "zyzzyva" not in task.target_vocab.index and "»" in task.source_vocab.index
    source, reply = task.val_texts[1]
    ids, target = task.val_pairs[1]
    Vs, Vt = len(task.source_vocab), len(task.target_vocab)
    words = task.tokenize(source)
    j = task.source_oovs(words).index("zyzzyva")
    assert ids[words.index("zyzzyva")] == Vs + j and Vt + j in target
    assert "zyzzyva" in task.decode_target([Vt + j], source)


def test_a_restored_run_retrieves_without_the_data_file(tmp_path, capsys):
    train, val = _files(tmp_path)
    run = tmp_path / "run"
    assert cli.main(["train", "chatbot_encdec", "--run-dir", str(run), "--steps", "1", "--quiet",
                     "--set", f"data.path={train}", "--set", f"data.options.val_path={val}",
                     "--set", "data.options.retrieve=true", "--set", "data.options.rerank=0",
                     "--set", "data.options.min_freq=1",
                     "--set", "model.layers.0.hidden_size=8", "--set", "model.decoder_layers.0.hidden_size=8",
                     "--set", "train.probe_every=0", "--set", "train.eval_every=0",
                     "--set", "train.num_threads=1", "--set", "train.device=cpu"]) == 0
    saved = json.loads((run / "task.json").read_text())["retrieval_exchanges"]
    assert len(saved) == 7 and saved[0] == ["Hello", "Hi there"]
    train.unlink()
    val.unlink()
    capsys.readouterr()
    assert cli.main(["try", str(run), "--text", "Hello friend", "--beam", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["message"] == "Hello friend" and isinstance(out["reply"], str)
    assert out["source_tokens"] == ["hello", "friend", "»", "greetings", ",", "zyzzyva", "."]
    assert len(out["attention"][0]) == len(out["source_tokens"])
    session = inference.open_run(run)
    assert inference.chat_source(session, "What is your name?") == ("What is your name?" + RETRIEVED_SEPARATOR +
                                                                    "I am a bot called zyzzyva.")
    other = tmp_path / "other.yml"
    other.write_text(VAL, encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--data", str(other), "--device", "cpu", "--beam", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 2 and "retrieval_bleu" in result["baseline"] and "echo_bleu" in result["baseline"]


def test_runs_without_the_option_restore_unchanged_and_a_retrieving_run_needs_its_index(tmp_path):
    import pytest

    from workbench.io.errors import DataError

    plain = _task(tmp_path)
    old = plain.artifacts()
    old.pop("retrieval_exchanges")  # what a run trained before the index was saved wrote
    restored = DialogueTask({}, "")
    restored.restore(old)
    assert restored.model_source("Hello") == "Hello" and restored.encode_source("Hello").x.shape == (1, 1)
    retrieving = DialogueTask({"retrieve": True}, str(tmp_path / "gone.yml"))
    retrieving.restore(old)
    with pytest.raises(DataError, match="training exchanges to retrieve replies from are gone"):
        retrieving.model_source("Hello")
    saved = _task(tmp_path, retrieve=True).artifacts()
    retrieving.restore(saved)
    assert retrieving.model_source("Hello friend") == "Hello friend" + RETRIEVED_SEPARATOR + "Greetings, zyzzyva."
