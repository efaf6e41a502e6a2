"""Parroting: how much of a reply only repeats the message, and replies that stutter.

BLEU and chrF against a reference reward words the reply shares with the reference, and a
turn often repeats words of the turn before it, so a reply that copies the message gains
on them without saying anything ("what is your favorite color?" -> "what is your favorite
color color ..."). These measures see it, beside BLEU/chrF wherever a chatbot is scored,
computed for the human references too: people repeat the message sometimes, so the
references' share is the yardstick, not zero.

Words are word tokens (tokenize_words' runs of letters and digits, lowercased);
punctuation is no word.

- overlap(reply, message): the share of the reply's words that are words of the message
  (0 for a reply without words).
- a reply *parrots* when its overlap is at least PARROT_OVERLAP (0.75): three of every four
  words taken from the message. "do you like blue?" -> "yes, i like blue" (overlap 0.5)
  answers by repeating a topic word, as people do; "i do like blue" (0.75) and the echo
  (1.0) hardly say anything the message did not.
- a reply *repeats a word* when some word is immediately followed by itself ("color
  color"); punctuation repeated ("...", "!!") is no repeat.
"""
from __future__ import annotations

from collections.abc import Sequence

from workbench.io.vocab import tokenize_words

PARROT_OVERLAP = 0.75


def words(text: str) -> list[str]:
    """The word tokens of ``text``, lowercased (punctuation left out)."""
    return [t for t in tokenize_words(text, lowercase=True) if t[0].isalnum() or t[0] == "_"]


def overlap(reply: str, message: str) -> float:
    """The share of ``reply``'s words that are words of ``message`` (0 when it has none)."""
    said = words(reply)
    if not said:
        return 0.0
    heard = set(words(message))
    return sum(w in heard for w in said) / len(said)


def repeats_word(reply: str) -> bool:
    """Whether some word of ``reply`` is immediately followed by the same word."""
    said = [t for t in tokenize_words(reply, lowercase=True)]
    return any(a == b and (a[0].isalnum() or a[0] == "_") for a, b in zip(said, said[1:]))


def parroting_scores(replies: Sequence[str], messages: Sequence[str]) -> dict[str, float]:
    """Per corpus of (reply, message): ``parrot_share`` (replies whose overlap is at least
    PARROT_OVERLAP), ``overlap`` (the mean overlap) and ``repeat_share`` (replies that
    repeat a word), each a share 0-1."""
    n = max(len(replies), 1)
    shares = [overlap(r, m) for r, m in zip(replies, messages)]
    return {"parrot_share": sum(s >= PARROT_OVERLAP for s in shares) / n, "overlap": sum(shares) / n,
            "repeat_share": sum(repeats_word(r) for r in replies) / n}
