"""Word-level output shown as text: detokenize_words puts tokenize_words' pieces back
together ("hello , how are you ?" -> "hello, how are you?"), and a prefix of the tokens
gives a prefix of the text (a streamed reply grows by whole pieces)."""
from __future__ import annotations

import pytest

from workbench.io.vocab import detokenize_words, tokenize_words

ROUND_TRIPS = [
    "hello, how are you?",
    "i don't know. it's 3.14 or 1,000 (maybe).",
    'he said "hi there" to me.',
    "puis-je y aller ?".replace(" ?", "?"),
    "l'homme n'est pas là...",
    "it costs $5, 50% off!",
    "what do you get when you cross a rabbit and a lawn sprinkler? hare spray.",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_detokenizing_undoes_word_tokenizing(text):
    tokens = tokenize_words(text)
    assert detokenize_words(tokens) == text
    for n in range(len(tokens)):  # prefixes of the tokens are prefixes of the text
        assert text.startswith(detokenize_words(tokens[:n]))


def test_the_translation_task_shows_words_as_text():
    from workbench.tasks.transduction import TransductionTask

    task = TransductionTask({"kind": "phrases"})
    assert task.detokenize(["hello", ",", "how", "are", "you", "?"]) == "hello, how are you?"
    assert task.detokenize(["elle", "n", "'", "est", "pas", "là", "."]) == "elle n'est pas là."
    assert detokenize_words([]) == ""
