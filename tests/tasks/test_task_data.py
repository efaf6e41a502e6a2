"""The text and symbol tasks' data: deterministic for a seed, sized by their options,
structured as documented (hard negatives, correct dates and numbers, captions that
match their images), padding masked out, and vocabularies that survive task.json."""
from __future__ import annotations

import datetime
import json
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from workbench.io.errors import DataError
from workbench.spec import InputSpec, LayerSpec, ModelSpec, SpecError
from workbench.tasks import task_class
from workbench.tasks.bracket import PAIRS, is_well_nested, make_examples
from workbench.tasks.captioning import COLOURS, SHAPES, _sizes, draw, random_scene
from workbench.tasks.charlm import CharLMTask
from workbench.tasks.tagging import TaggingTask
from workbench.tasks.textclass import TextClassTask
from workbench.tasks.transduction import TransductionTask, number_in_words, write_date


def _make(name: str, options: dict | None = None, path: str = "", seed: int = 0, model: ModelSpec | None = None):
    task = task_class(name)(options or {}, path, seed)
    if model is not None:
        task.check_model(model)
    return task.ensure_prepared()


def _same_batches(a, b) -> bool:
    for x, y in zip(a, b, strict=True):
        for f in ("x", "y", "y_in", "lengths", "mask"):
            u, v = getattr(x, f), getattr(y, f)
            if (u is None) != (v is None) or (u is not None and not torch.equal(u, v)):
                return False
    return True


GENERATED = [("brackets", {"max_len": 12, "val_size": 60}), ("tagging", {"train_size": 50, "val_size": 20}),
             ("transduction", {"kind": "dates", "val_size": 40}), ("transduction", {"kind": "numbers", "val_size": 40}),
             ("captioning", {"val_size": 20, "image_size": 16}), ("textclass", {"train_size": 60, "val_size": 20})]


@pytest.mark.parametrize("name,options", GENERATED)
def test_generated_data_is_deterministic_for_a_seed(name, options):
    a, b, c = _make(name, options, seed=3), _make(name, options, seed=3), _make(name, options, seed=4)
    assert _same_batches(a.val_batches(8, 3), b.val_batches(8, 3))
    assert not _same_batches(a.val_batches(8, 3), c.val_batches(8, 3))
    ta = a.train_batches(8, torch.Generator().manual_seed(9))
    tb = b.train_batches(8, torch.Generator().manual_seed(9))
    assert _same_batches([next(ta) for _ in range(2)], [next(tb) for _ in range(2)])


# ----------------------------------------------------------------------------- brackets


def test_bracket_negatives_are_near_misses_with_the_same_counts():
    rng = random.Random(0)
    pairs = PAIRS[:3]
    examples = make_examples(rng, 400, 16, pairs)
    labels = Counter(label for _, label in examples)
    assert 150 < labels[0] < 250  # balanced classes: the trivial baseline is 50%
    for text, label in examples:
        assert len(text) == 16 and is_well_nested(text, pairs) == bool(label)
    positives = [t for t, label in examples if label]
    negatives = [t for t, label in examples if not label]
    # each negative keeps every character's count of some positive string: only nesting differs
    assert all(Counter(t)[o] == Counter(t)[c] for t in negatives for o, c in pairs)
    assert len(set(negatives)) > 150 and all(len(set(t)) > 1 for t in positives)


def test_bracket_lengths_follow_the_options():
    task = _make("brackets", {"min_len": 6, "max_len": 11, "val_size": 90, "kinds": 2})
    lengths = Counter(b.x.shape[1] for b in task.val_batches(10, 100))
    assert set(lengths) == {6, 8, 10}
    assert sum(b.size for b in task.val_batches(10, 100)) == 90
    batch = next(task.train_batches(5, torch.Generator().manual_seed(0)))
    assert batch.x.shape[1] in (6, 8, 10) and int(batch.x.max()) <= 4  # pad + 4 characters
    with pytest.raises(SpecError) as info:
        task_class("brackets")({"min_len": 5, "max_len": 5}, "", 0)
    assert info.value.field == "data.options.max_len"
    with pytest.raises(SpecError):
        task_class("brackets")({"kinds": 7}, "", 0)


# ----------------------------------------------------------------------------- transduction


def test_numbers_and_dates_are_written_correctly():
    assert number_in_words(0) == "zero"
    assert number_in_words(342105) == "three hundred forty-two thousand one hundred five"
    assert number_in_words(342105, use_and=True) == "three hundred and forty-two thousand one hundred and five"
    assert number_in_words(1_000_019) == "one million nineteen"
    date = datetime.date(2024, 3, 5)  # a Tuesday
    forms = {write_date(date, f) for f in range(24)}
    assert {"tuesday, march 5, 2024", "5th of march 2024", "05.03.2024", "03/05/2024", "Tuesday 5 March 2024"} <= forms


def test_transduction_batches_are_shifted_and_masked():
    task = _make("transduction", {"kind": "numbers", "val_size": 50})
    batch = next(task.val_batches(16, 1))
    for row in range(batch.size):
        n = int(batch.mask[row].sum())
        assert batch.y_in[row, 0] == 1 and batch.y[row, n - 1] == 2  # <bos> first, <eos> last
        assert torch.equal(batch.y_in[row, 1:n], batch.y[row, :n - 1])  # teacher forcing: shifted by one
        assert not batch.mask[row, n:].any() and (batch.y[row, n:] == 0).all()
        source = "".join(task.source_vocab.decode(batch.x[row, :batch.lengths[row]].tolist()))
        assert task.decode_target(batch.y[row].tolist()) == str(_words_to_int(source))


def _words_to_int(text: str) -> int:
    small = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                          "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
    tens = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
    total = part = 0
    for word in text.replace("-", " ").split():
        if word in small:
            part += small[word]
        elif word in tens:
            part += tens[word]
        elif word == "hundred":
            part *= 100
        elif word in ("thousand", "million"):
            total += part * (1000 if word == "thousand" else 10**6)
            part = 0
    return total + part


def test_validation_items_are_held_out_from_training():
    task = _make("transduction", {"kind": "dates", "val_size": 300})
    val_targets = {task.decode_target(t) for _, t in task.val_pairs}
    seen = set()
    batches = task.train_batches(64, torch.Generator().manual_seed(0))
    for _ in range(20):
        b = next(batches)
        seen |= {task.decode_target(row.tolist()) for row in b.y}
    assert len(seen) > 1000 and not (seen & val_targets)


def test_transduction_reads_tab_separated_pairs(tmp_path):
    path = tmp_path / "pairs.txt"
    lines = [f"I see {w} .\tJe vois {w} .\tCC-BY" for w in ("cats", "dogs", "birds", "fish", "Paris")] * 4
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = _make("transduction", {"val_fraction": 0.25}, path=str(path))
    assert task.level == "word" and len(task.train_pairs) == 15 and len(task.val_pairs) == 5
    assert "paris" in task.source_vocab and "vois" in task.target_vocab
    batch = task.encode_source("I see Paris .")
    assert task.source_vocab.decode(batch.x[0].tolist()) == ["i", "see", "paris", "."]
    assert task.decode_target([task.target_vocab.id("je"), task.target_vocab.id("vois"), 2, 5]) == "je vois"


# ----------------------------------------------------------------------------- captioning


def test_captions_describe_their_images():
    size = 24
    rng = random.Random(1)
    rb, rs = _sizes(size)
    for relation in ("above", "below", "left of", "right of"):
        for _ in range(5):
            image = draw(("red", "circle"), ("blue", "square"), relation, rng, size, noise=0.0)
            big = np.argwhere(image[0] > 0.5)  # red pixels (row, col)
            small = np.argwhere(image[2] > 0.5)  # blue pixels
            (yb, xb), (ys, xs) = big.mean(axis=0), small.mean(axis=0)
            assert len(big) > len(small) > 0
            expected = {"above": yb < ys, "below": yb > ys, "left of": xb < xs, "right of": xb > xs}[relation]
            assert expected, relation
    image, caption = random_scene(random.Random(5), size)
    words = caption.split()
    assert image.shape == (3, size, size) and 0 <= image.min() and image.max() <= 1
    assert words[0] in COLOURS and words[1] in SHAPES and words[-1] in SHAPES and len(words) in (5, 6)


def test_caption_inference_helpers():
    task = _make("captioning", {"val_size": 4, "image_size": 16})
    image, caption = task.random_image(7)
    batch = task.encode_image(image.permute(1, 2, 0).numpy())  # [H, W, 3] works too
    assert batch.x.shape == (1, 3, 16, 16)
    ids = [task.vocab.id(w) for w in caption.split()] + [2, 7]
    assert task.decode_caption(ids) == caption
    with pytest.raises(ValueError):
        task.encode_image(np.zeros((3, 8, 8), dtype=np.float32))


# ----------------------------------------------------------------------------- language model


def test_charlm_windows_and_validation_coverage(tmp_path):
    rng = random.Random(0)
    text = "".join(rng.choice("abcdefgh \n") for _ in range(3000))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    task = _make("charlm", {"seq_len": 50, "eval_context": 20}, path=str(path))
    assert len(task.train_ids) == 2700 and len(task.val_ids) == 300
    batch = next(task.train_batches(4, torch.Generator().manual_seed(0)))
    assert batch.x.shape == batch.y.shape == (4, 50) and torch.equal(batch.x[:, 1:], batch.y[:, :-1])
    # every validation target counts exactly once, and (but for the first window) after
    # at least eval_context tokens of context
    positions = Counter()
    for start, counted_from in task._val_windows():
        assert counted_from == 0 and start == 0 or counted_from >= 20
        positions.update(range(start + counted_from, min(start + 50, len(task.val_ids) - 1)))
    assert sorted(positions) == list(range(len(task.val_ids) - 1)) and set(positions.values()) == {1}
    total = sum(int(b.mask.sum()) for b in task.val_batches(3, 1000))
    assert total == len(task.val_ids) - 1
    b = next(task.val_batches(100, 1))
    got = {tuple(b.y[r, b.mask[r]].tolist()) for r in range(b.size)}
    assert tuple(task.val_ids[1:51].tolist()) in got  # the first window's targets are the text's next tokens
    # epochs are passes over the text: every window once
    assert sum(1 for _ in task.train_batches(4, torch.Generator().manual_seed(1))) == task.epoch_size(4)
    assert task.decode_ids(task.encode_text("bad?")[0].tolist()) == "bad<unk>"


def test_charlm_streamed_evaluation_is_one_pass_over_the_text(tmp_path):
    """Streamed evaluation: every validation target scored exactly once, with the state
    carried between pieces, so it equals the whole held-out text read in one pass (and
    differs from the windowed figure, whose windows start from a zero state)."""
    from workbench.engine.model import build_model

    rng = random.Random(1)
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice("abcdefgh \n") for _ in range(3000)), encoding="utf-8")
    task = _make("charlm", {"seq_len": 50}, path=str(path))
    for cell in ("lstm", "gru"):
        spec = ModelSpec(topology="many_to_many", input=InputSpec(kind="embedding", embedding_dim=8),
                         layers=[LayerSpec(cell=cell, hidden_size=16), LayerSpec(cell=cell, hidden_size=16)])
        torch.manual_seed(0)
        model = build_model(spec, task.model_io())
        n = len(task.val_ids) - 1
        with torch.no_grad():
            whole = model(task.val_ids[None, :-1])[0]  # [n, V]: the text in one pass
        one_pass = torch.nn.functional.cross_entropy(whole, task.val_ids[1:], reduction="none")
        for piece in (7, 50, 4096):  # pieces of any length: the same losses, each target once
            losses, correct = task.stream_losses(model, piece=piece)
            assert losses.shape == correct.shape == (n,)
            torch.testing.assert_close(losses, one_pass, rtol=1e-4, atol=1e-5)
        metrics = task.stream_metrics(model)
        assert metrics["nats_per_char_streamed"] == pytest.approx(float(one_pass.double().mean()), rel=1e-5)
        assert metrics["accuracy_streamed"] == pytest.approx(float((whole.argmax(-1) == task.val_ids[1:]).double().mean()))
        assert metrics["perplexity_streamed"] == pytest.approx(math.exp(metrics["nats_per_char_streamed"]))
        assert model.training  # left as it was found


def test_charlm_default_corpus_and_word_level():
    task = _make("charlm", {"seq_len": 64})
    assert len(task.train_ids) + len(task.val_ids) > 400_000  # pydoc_data.topics
    base = task.baseline()
    assert base["unigram_nats_per_char"] < base["nats_per_char"]
    words = _make("charlm", {"level": "word", "seq_len": 20})
    assert words.main_metric == "nats_per_word"
    assert words.decode_ids(words.encode_text("The assert statement")[0].tolist()) == "The assert statement"


def test_charlm_refuses_bidirectional_models():
    task = CharLMTask({}, "", 0)
    model = ModelSpec(topology="many_to_many", layers=[LayerSpec(bidirectional=True)])
    with pytest.raises(SpecError) as info:
        task.check_model(model)
    assert info.value.field == "model.layers"


def test_charlm_too_short_file_names_it(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("tiny", encoding="utf-8")
    with pytest.raises(DataError) as info:
        _make("charlm", {"seq_len": 64}, path=str(path))
    assert str(path) in str(info.value) and "seq_len" in str(info.value)


# ----------------------------------------------------------------------------- tagging

CHARS_MODEL = ModelSpec(topology="many_to_many", input=InputSpec(kind="embedding_chars", embedding_dim=4,
                                                                 projection_size=3, char_embedding_dim=2))

CONLLU_TRAIN = "".join(
    f"1\t{a}\t_\tDET\t_\t_\t_\t_\t_\t_\n2\t{b}\t_\tNOUN\t_\t_\t_\t_\t_\t_\n3\t{c}\t_\tVERB\t_\t_\t_\t_\t_\t_\n\n"
    for a, b, c in [("The", "dog", "runs"), ("A", "cat", "sleeps"), ("The", "cat", "runs"), ("A", "bird", "sings")] * 3
) + "1\tdogs\t_\tNOUN\t_\t_\t_\t_\t_\t_\n\n" * 3  # NOUN: the most frequent tag


def test_tagging_reads_conllu_with_a_separate_dev_file(tmp_path):
    train, dev = tmp_path / "train.conllu", tmp_path / "dev.conllu"
    train.write_text(CONLLU_TRAIN, encoding="utf-8")
    dev.write_text("1-2\tThe dog's\t_\t_\t_\t_\t_\t_\t_\t_\n1\tThe\t_\tDET\t_\t_\t_\t_\t_\t_\n"
                   "2\tcog\t_\tNOUN\t_\t_\t_\t_\t_\t_\n3\tbarks\t_\tVERB\t_\t_\t_\t_\t_\t_\n\n", encoding="utf-8")
    task = _make("tagging", {"val_path": str(dev)}, path=str(train), model=CHARS_MODEL)
    assert len(task.train_set) == 15 and len(task.val_set) == 1
    batch = next(task.val_batches(4, 1))
    assert batch.x.shape[:2] == (1, 3) and batch.x.shape[2] >= 1 + 7  # word id + <bow> "barks" <eow>
    word_ids = batch.x[0, :, 0].tolist()
    assert word_ids[0] == task.words.id("the") and word_ids[1] == task.words.unk_id  # unknown word
    spelled = task.chars.decode(batch.x[0, 1, 1:].tolist())
    assert spelled == ["<bow>", "c", "o", "g", "<eow>"]  # its spelling still shows, between word boundaries
    assert task.chars.decode(batch.x[0, 2, 1:].tolist())[1:6] == ["b", "a", "r", "<unk>", "s"]  # no "k" in training
    assert task.baseline()["accuracy"] == pytest.approx(2 / 3)  # "cog", "barks" unknown -> NOUN
    # restore from task.json alone: encode a new sentence, decode tags
    again = task_class("tagging")({"val_path": str(dev)}, str(train), 0)
    again.check_model(CHARS_MODEL)
    again.restore(json.loads(json.dumps(task.artifacts())))
    one = again.encode_sentence("The cat sings")
    assert one.x.shape[:2] == (1, 3) and one.mask.all()
    logits = torch.zeros(1, 3, len(again.tags))
    logits[0, :, again.tags.id("VERB")] = 1.0
    assert again.decode_tags(logits) == ["VERB"] * 3


def test_tagging_masks_padding_in_loss_and_metrics():
    task = _make("tagging", {"train_size": 40, "val_size": 30})
    batch = next(task.val_batches(30, 1))
    assert (batch.lengths.min() < batch.lengths.max()) and not batch.mask.all()
    logits = torch.zeros(*batch.y.shape, len(task.tags))
    logits.scatter_(2, batch.y.unsqueeze(-1), 5.0)  # right on every real word
    logits[~batch.mask] = 0.0
    logits[~batch.mask, 0] = -9.0  # and wrong (and costly) on every padded position
    sums = task.metric_sums(logits, batch)
    assert sums["accuracy"] == (float(batch.mask.sum()), float(batch.mask.sum()))
    masked = task.loss(logits, batch)
    assert float(masked) < 0.1
    assert float(task.masked_cross_entropy(logits, batch.y, None)) > float(masked) * 5


def test_tagging_word_dropout_only_touches_training_singletons(tmp_path):
    path = tmp_path / "train.conllu"
    once = "1\tzebra\t_\tNOUN\t_\t_\t_\t_\t_\t_\n2\tsings\t_\tVERB\t_\t_\t_\t_\t_\t_\n\n"
    path.write_text(CONLLU_TRAIN + once, encoding="utf-8")
    task = _make("tagging", {"word_dropout": 1.0, "val_path": str(path)}, path=str(path))
    unk, zebra = task.words.unk_id, task.words.id("zebra")
    assert zebra != unk and task._singleton[zebra] and not task._singleton[task.words.id("dog")]
    val = next(task.val_batches(100, 1))
    assert not (val.x == unk).any()  # validation is never dropped
    train = next(task.train_batches(100, torch.Generator().manual_seed(0)))
    words = train.x[train.mask]
    assert not (words == zebra).any() and int((words == unk).sum()) == 1  # the one singleton, always
    assert (words == task.words.id("dog")).any()


# ----------------------------------------------------------------------------- text classification


def test_textclass_reads_csv_and_refuses_unknown_columns(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = [("great fun", "pos"), ("dull and long", "neg"), ("loved it", "pos"), ("awful", "neg")] * 5
    path.write_text("review,stars\n" + "".join(f'"{t}",{l}\n' for t, l in rows), encoding="utf-8")
    task = _make("textclass", {"text_column": "review", "label_column": "stars"}, path=str(path))
    assert task.class_names == ["neg", "pos"] and len(task.train_set) == 18 and len(task.val_set) == 2
    batch = task.encode_text("Great fun, loved it")
    assert task.vocab.decode(batch.x[0].tolist()) == ["great", "fun", "<unk>", "loved", "it"]
    with pytest.raises(DataError) as info:
        _make("textclass", {}, path=str(path))
    assert "no column 'text'" in str(info.value) and info.value.line == 1


def test_textclass_generated_reviews_need_word_order():
    task = TextClassTask({"train_size": 50, "val_size": 10}, "", 0).ensure_prepared()
    assert task.class_names == ["negative", "positive"]
    # the same words in another order can flip the label: negation and "but" matter
    from workbench.tasks.textclass import review
    rng = random.Random(0)
    texts = [review(rng) for _ in range(2000)]
    assert any(" not " in t and label == "positive" for t, label in texts)
    assert any(" but " in t for t, _ in texts)


def test_options_are_checked_by_name():
    with pytest.raises(SpecError) as info:
        TransductionTask({"kind": "poems"}, "", 0)
    assert info.value.field == "data.options.kind"
    with pytest.raises(SpecError) as info:
        TaggingTask({"word_dropout": 2.0}, "", 0)
    assert info.value.field == "data.options.word_dropout"
    with pytest.raises(SpecError) as info:
        TaggingTask({"colour": 1}, "", 0)
    assert info.value.field == "data.options.colour"
