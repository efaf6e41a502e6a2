"""Sentence-pair and dialogue readers: extra columns, column choice, tokenisation
levels, and bad files refused in one line naming the file (and line)."""
from __future__ import annotations

import pytest

from workbench.io.dialogue import CONTEXT_SEPARATOR, exchanges, read_dialogue
from workbench.io.errors import DataError
from workbench.io.tsv import read_pairs
from workbench.spec import SpecError
from workbench.tasks.dialogue import DialogueTask
from workbench.tasks.transduction import TransductionTask


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_extra_columns_are_ignored_and_columns_can_be_chosen(tmp_path):
    path = _write(tmp_path, "p.tsv", "Go.\tVa !\tCC-BY attribution #1\n# a comment\n\nHi.\tSalut !\tCC-BY #2\n")
    pairs = read_pairs(path)
    assert [(p.source, p.target, p.line) for p in pairs] == [("Go.", "Va !", 1), ("Hi.", "Salut !", 4)]
    back = read_pairs(path, source_column=2, target_column=1)
    assert [(p.source, p.target) for p in back] == [("Va !", "Go."), ("Salut !", "Hi.")]
    third = read_pairs(path, source_column=1, target_column=3)
    assert third[1].target == "CC-BY #2"


def test_a_one_column_row_is_refused_naming_file_and_line(tmp_path):
    path = _write(tmp_path, "p.tsv", "Go.\tVa !\nHi. Salut !\n")
    with pytest.raises(DataError) as info:
        read_pairs(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 2:") and "found one" in message and "\n" not in message


def test_a_row_without_the_chosen_column_is_refused(tmp_path):
    path = _write(tmp_path, "p.tsv", "Go.\tVa !\tattr\nHi.\tSalut !\n")
    with pytest.raises(DataError, match=r"line 2: has 2 columns; the pairs are read from columns 1 and 3"):
        read_pairs(path, 1, 3)


def test_the_task_reads_chosen_columns_at_word_or_character_level(tmp_path):
    lines = [f"I see {n} cats.\tJe vois {n} chats.\tattribution {n}" for n in range(20)]
    path = _write(tmp_path, "p.tsv", "\n".join(lines) + "\n")
    words = TransductionTask({"level": "word", "source_column": 2, "target_column": 1}, str(path))
    words.ensure_prepared()
    assert words.tokenize("Je vois 3 chats.") == ["je", "vois", "3", "chats", "."]
    assert "vois" in words.source_vocab and "see" in words.target_vocab and "vois" not in words.target_vocab
    chars = TransductionTask({"level": "char"}, str(path))
    chars.ensure_prepared()
    assert chars.tokenize("I see") == list("i see")
    assert set(chars.source_vocab.tokens) >= set("i see cats.") and "see" not in chars.source_vocab
    assert len(chars.train_pairs) + len(chars.val_pairs) == 20 and chars.val_texts
    with pytest.raises(SpecError, match="data.options.target_column"):
        TransductionTask({"source_column": 2, "target_column": 2}, str(path))


# ----------------------------------------------------------------------------- dialogue

CONVERSATIONS = """categories:
- greetings
conversations:
- - Hello
  - Hi there
  - How are you?
- - What is two plus two?
  - 4
- just a stray string, not a conversation
- - Goodbye
  - See you
"""


def test_yaml_conversations_become_exchanges_with_optional_context(tmp_path):
    path = _write(tmp_path, "talk.yml", CONVERSATIONS)
    d = read_dialogue(path)
    assert d.conversations == [["Hello", "Hi there", "How are you?"], ["What is two plus two?", "4"],
                               ["Goodbye", "See you"]]
    assert d.skipped == 1  # the bare string
    assert exchanges(d.conversations) == [("Hello", "Hi there"), ("Hi there", "How are you?"),
                                          ("What is two plus two?", "4"), ("Goodbye", "See you")]
    with_context = exchanges(d.conversations, context=True)
    assert with_context[1] == ("Hello" + CONTEXT_SEPARATOR + "Hi there", "How are you?")
    assert with_context[0] == ("Hello", "Hi there")  # no turn before the first message


def test_tsv_dialogue_and_a_folder_of_yaml(tmp_path):
    tsv = _write(tmp_path, "chat.tsv", "hello\thi\textra column\nbye\tsee you\n")
    assert read_dialogue(tsv).conversations == [["hello", "hi"], ["bye", "see you"]]
    folder = tmp_path / "corpus"
    folder.mkdir()
    _write(folder, "a.yml", "conversations:\n- - a\n  - b\n")
    _write(folder, "b.yaml", "conversations:\n- - c\n  - d\n")
    _write(folder, "notes.txt", "not read")
    assert read_dialogue(folder).conversations == [["a", "b"], ["c", "d"]]


@pytest.mark.parametrize("text,words", [
    ("- - hello\n  - hi\n", "not a conversation list"),  # a list at the top, no 'conversations:'
    ("categories: [x]\n", "not a conversation list"),
    ("conversations: hello\n", "must be a list"),
    ("conversations:\n- - hello\n  - [unclosed\n", "not valid YAML"),
    ("conversations:\n- just a string\n", "no conversation of two turns"),
    ("conversations: !!python/object/apply:os.system ['true']\n", "not valid YAML"),  # safe_load only
])
def test_yaml_that_is_not_a_conversation_list_is_refused_naming_the_file(tmp_path, text, words):
    path = _write(tmp_path, "bad.yml", text)
    with pytest.raises(DataError) as info:
        read_dialogue(path)
    assert str(info.value).startswith(str(path)) and words in str(info.value) and "\n" not in str(info.value)


def test_a_folder_without_yaml_and_a_missing_path_are_refused(tmp_path):
    with pytest.raises(DataError, match="without .yml/.yaml"):
        read_dialogue(tmp_path)
    with pytest.raises(DataError, match="conversations file or folder does not exist"):
        read_dialogue(tmp_path / "gone")
    with pytest.raises(SpecError) as info:
        DialogueTask({"val_path": str(tmp_path / "v.yml")}, "")
    assert info.value.field == "data.options.val_path"


def test_without_a_file_the_tasks_generate_sentences_and_conversations():
    from workbench.tasks.phrases import all_phrases, generated_conversations, held_out, make_phrase

    assert make_phrase(3, "be", "tired", True) == ("she is not tired .", "elle n ' est pas fatiguée .")
    assert make_phrase(0, "have", "apple", False, "a") == ("i have an apple .", "j ' ai une pomme .")
    assert make_phrase(4, "like", "tree", True) == ("we do not like the tree .", "nous n ' aimons pas l ' arbre .")
    assert make_phrase(2, "have", "key", True, "a") == ("he does not have a key .", "il n ' a pas de clé .")
    phrases = all_phrases()
    assert len(set(phrases)) == len(phrases) and 0.05 < sum(held_out(e) for e, _ in phrases) / len(phrases) < 0.15
    task = TransductionTask({"kind": "phrases", "val_size": 50}, "")
    task.ensure_prepared()
    assert task.level == "word" and "fatiguée" in task.target_vocab and task.target_vocab.unk_id is not None
    held = {e for e, _ in phrases if held_out(e)}
    assert task.val_texts and all(e in held for e, _ in task.val_texts)
    conversations = generated_conversations()
    assert ["what colour is the snow ?", "the snow is white ."] in conversations
    chat = DialogueTask({}, "")
    chat.ensure_prepared()
    assert chat.val_texts and not set(chat.val_texts) & set(chat.train_texts)


def test_the_real_corpus_holds_out_whole_conversations(shared_data):
    folder = shared_data / "dialogue" / "chatterbot-english"
    d = read_dialogue(folder)
    assert len(d.conversations) > 1900 and d.skipped == 1  # trivia.yml holds one bare string
    task = DialogueTask({}, str(folder))
    task.ensure_prepared()
    # Repeated conversations (2,025 in all, 898 distinct) are kept once before the split,
    # and those that share a turn are held out together: no held-out turn is a training one.
    def same(text):
        return " ".join(text.lower().split())
    training = {same(t) for pair in task.train_texts for t in pair}
    assert task.val_texts and not any(same(t) in training for pair in task.val_texts for t in pair)
    assert 0.08 < len(task.val_texts) / (len(task.val_texts) + len(task.train_texts)) < 0.2
    assert task.baseline()["perplexity"] > 10


def test_conversations_sharing_a_turn_are_held_out_together():
    from workbench.tasks.dialogue import split_conversations

    conversations = [["Tell me a joke", f"joke {i}"] for i in range(4)] + [[f"q{i}", f"a{i}"] for i in range(16)]
    conversations += [["Hello", "Hi"], ["hello ", "Hi"]]  # the same, case and spacing aside: one group
    train, val = split_conversations(conversations, 0.25)
    assert len(train) + len(val) == len(conversations)
    turns = {" ".join(t.lower().split()) for c in train for t in c}
    assert val and not any(" ".join(t.lower().split()) in turns for c in val for t in c)
    assert split_conversations(conversations, 0.25) == (train, val)  # fixed
    # all conversations share one turn: split one by one rather than not at all
    train, val = split_conversations([["Hi", f"a{i}"] for i in range(10)], 0.2)
    assert len(val) == 2 and len(train) == 8


def test_the_previous_turn_as_context(tmp_path):
    from types import SimpleNamespace

    from workbench import inference

    path = _write(tmp_path, "talk.yml", CONVERSATIONS)
    task = DialogueTask({"context": True, "val_fraction": 0.3}, str(path))
    task.ensure_prepared()
    messages = [m for m, _ in task.train_texts + task.val_texts]
    assert "Hello" + CONTEXT_SEPARATOR + "Hi there" in messages
    assert task.tokenize("Hello | Hi there") == ["hello", "|", "hi", "there"]
    session = SimpleNamespace(task=task)
    assert inference.chat_source(session, "And you?", "Fine.") == "Fine." + CONTEXT_SEPARATOR + "And you?"
    assert inference.chat_source(session, "And you?", "") == "And you?"
    session.task = DialogueTask({"context": False}, str(path))
    assert inference.chat_source(session, "And you?", "Fine.") == "And you?"


def test_copy_pairs_add_replies_as_their_own_messages_for_training_only(tmp_path):
    path = _write(tmp_path, "talk.yml", CONVERSATIONS)
    plain = DialogueTask({"val_fraction": 0.3}, str(path))
    plain.ensure_prepared()
    task = DialogueTask({"val_fraction": 0.3, "copy_pairs": 1.0}, str(path))
    task.ensure_prepared()
    assert task.train_texts == plain.train_texts and task.val_pairs == plain.val_pairs  # the real exchanges
    replies = list(dict.fromkeys(r for _, r in task.train_texts))
    copies = task.train_pairs[len(task.train_texts):]
    assert len(copies) == len(replies) and all(s == t for s, t in
                                               [(task.source_vocab.decode(s), task.target_vocab.decode(t))
                                                for s, t in copies])
    assert task.baseline()["perplexity"] == pytest.approx(plain.baseline()["perplexity"])  # real replies only


def test_the_source_to_target_map_and_a_shared_vocabulary(tmp_path):
    """ModelIO.source_to_target (what model.copy copies) maps each message word to the same
    reply word, <unk> where the replies lack it; with shared_vocab every message word has one."""
    path = _write(tmp_path, "talk.yml", CONVERSATIONS)
    for shared in (False, True):
        task = DialogueTask({"val_fraction": 0.3, "shared_vocab": shared}, str(path))
        task.ensure_prepared()
        mapping = task.model_io().source_to_target
        assert len(mapping) == len(task.source_vocab)
        unk = task.target_vocab.id("<unk>")
        for i, token in enumerate(task.source_vocab.tokens):
            assert mapping[i] == task.target_vocab.index.get(token, unk)
        unmapped = {t for i, t in enumerate(task.source_vocab.tokens) if mapping[i] == unk} - {"<unk>"}
        assert (not unmapped) if shared else bool(unmapped)
