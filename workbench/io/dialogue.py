"""Dialogue for chatbots: conversations as lists of turns, each turn the reply to the one before.

Two formats:
- chatterbot-corpus YAML (``.yml`` / ``.yaml``): a mapping with ``conversations:``, a list
  of conversations, each a list of turns (strings; numbers are taken as their text):

      categories:
      - greetings
      conversations:
      - - Hello
        - Hi
      - - How are you doing?
        - Very well, thanks.

  A conversation that is not a list of turns (the English corpus's trivia file holds one
  bare string) is left out and counted in ``Dialogue.skipped``; a document that is not a
  mapping with a ``conversations`` list is refused naming the file. Read with
  ``yaml.safe_load`` only (no object construction from the file).
- TSV of (message, reply) pairs, one exchange a line (workbench.io.tsv; extra columns
  ignored): each line a conversation of two turns.

A folder reads every ``.yml``/``.yaml`` file in it (sorted by name). ``exchanges()`` turns
conversations into (message, reply) pairs, optionally with the turn before the message
as context. No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from workbench.io.errors import DataError
from workbench.io.paths import resolve_data_path
from workbench.io.text import read_text_file
from workbench.io.tsv import read_pairs

YAML_SUFFIXES = (".yml", ".yaml")
# Between the previous turn and the message when the context is read with it.
CONTEXT_SEPARATOR = " | "
# Between the message and the reply retrieved for it (the dialogue task's ``retrieve``
# option): one token of its own (a character the English corpus never writes).
RETRIEVED_SEPARATOR = " » "


@dataclass
class Dialogue:
    conversations: list[list[str]] = field(default_factory=list)  # each: turns in order
    sources: list[str] = field(default_factory=list)  # per conversation: the file it came from
    skipped: int = 0  # conversations left out (not a list of at least two turns)


def _turn(value) -> str | None:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def parse_yaml_dialogue(text: str, path: str | Path = "<text>") -> Dialogue:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(path, f"is not valid YAML: {problem}", line) from None
    if not isinstance(doc, dict) or "conversations" not in doc:
        raise DataError(path, "is not a conversation list: expected a YAML mapping with 'conversations:' "
                              "(a list of conversations, each a list of turns)")
    conversations = doc["conversations"]
    if not isinstance(conversations, list):
        raise DataError(path, "'conversations' must be a list of conversations, each a list of turns")
    out = Dialogue()
    for conv in conversations:
        turns = [_turn(t) for t in conv] if isinstance(conv, list) else []
        if len(turns) < 2 or any(t is None or not t for t in turns):
            out.skipped += 1
            continue
        out.conversations.append(turns)
        out.sources.append(str(path))
    return out


def read_dialogue(path: str | Path) -> Dialogue:
    """A YAML file, a folder of YAML files, or a TSV of (message, reply) lines. Refused
    (DataError naming the file) when it holds no conversation of two turns or more."""
    resolved = resolve_data_path(path)
    if not resolved.exists():
        raise DataError(path, "the conversations file or folder does not exist")
    if resolved.is_dir():
        files = sorted(p for p in resolved.iterdir() if p.suffix.lower() in YAML_SUFFIXES and p.is_file())
        if not files:
            raise DataError(path, "is a folder without .yml/.yaml conversation files")
        out = Dialogue()
        for f in files:
            part = parse_yaml_dialogue(read_text_file(f, "conversation file"), f)
            out.conversations += part.conversations
            out.sources += part.sources
            out.skipped += part.skipped
    elif resolved.suffix.lower() in YAML_SUFFIXES:
        out = parse_yaml_dialogue(read_text_file(path, "conversation file"), path)
    else:
        pairs = read_pairs(path)
        out = Dialogue([[p.source, p.target] for p in pairs], [str(path)] * len(pairs))
    if not out.conversations:
        raise DataError(path, "holds no conversation of two turns or more")
    return out


def exchanges(conversations: list[list[str]], context: bool = False) -> list[tuple[str, str]]:
    """(message, reply) for every turn after the first: the reply answers the turn before
    it. With ``context`` the turn before the message (when there is one) is read first,
    joined by CONTEXT_SEPARATOR."""
    out = []
    for turns in conversations:
        for i in range(1, len(turns)):
            message = turns[i - 1]
            if context and i >= 2:
                message = turns[i - 2] + CONTEXT_SEPARATOR + message
            out.append((message, turns[i]))
    return out
