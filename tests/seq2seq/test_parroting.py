"""The parroting measures (workbench.tasks.parroting) on hand-made replies, and the
overlap penalty of retrieve-then-rerank flipping a choice towards a reply that says
something of its own."""
from __future__ import annotations

import pytest

from workbench.tasks.parroting import overlap, parroting_scores, repeats_word, words
from workbench.tasks.rerank import Candidate, RerankWeights, choose


def test_words_and_overlap_with_the_message():
    assert words("What's your favorite color?!") == ["what", "s", "your", "favorite", "color"]
    message = "What is your favorite color?"
    assert overlap("what is your favorite color color what is a your favorite?", message) == pytest.approx(10 / 11)
    assert overlap("Blue.", message) == 0.0
    assert overlap("my favorite is blue", message) == pytest.approx(0.5)
    assert overlap("...", message) == 0.0  # no words: nothing parroted
    assert overlap("WHAT IS YOUR FAVORITE COLOR", message) == 1.0  # case aside


def test_a_word_repeated_in_a_row_but_not_punctuation():
    assert repeats_word("what is your favorite color color?")
    assert repeats_word("no no")
    assert not repeats_word("well... i don't know!!")
    assert not repeats_word("a b a b")


def test_corpus_shares():
    messages = ["what is your favorite color?", "do you like blue?", "hello", "tell me a joke"]
    replies = ["what is your favorite color color?", "yes, i like blue", "hello", "why did the chicken cross"]
    s = parroting_scores(replies, messages)
    # 1: every word from the message; 2: 2 of 4 (a topic word answered, under 0.75); 3: the echo
    assert s["parrot_share"] == pytest.approx(2 / 4)
    assert s["repeat_share"] == pytest.approx(1 / 4)
    assert s["overlap"] == pytest.approx((1.0 + 0.5 + 1.0 + 0.0) / 4)
    assert parroting_scores([], []) == {"parrot_share": 0.0, "overlap": 0.0, "repeat_share": 0.0}


def test_the_overlap_penalty_flips_the_choice_away_from_a_parrot():
    message = "what is your favorite color?"
    parrot = Candidate("what is your favorite color color what is a your favorite?", "beam", logp=-12.0, tokens=12)
    human = Candidate("blue", "retrieved #1", similarity=0.3, logp=-7.0, tokens=2)
    for c in (parrot, human):
        c.overlap = overlap(c.text, message)
    weights = RerankWeights(similarity=4.0)
    assert choose([parrot, human], weights) == 0  # -1 per token beats -3.5 + 1.2
    assert choose([parrot, human], RerankWeights(similarity=4.0, overlap=2.0)) == 1  # -1 - 1.8 < -2.3
