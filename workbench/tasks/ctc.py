"""Connectionist temporal classification (CTC): decoding and scoring, torch-free.

A CTC model emits, at every input step, a distribution over the labels plus a "blank"
(index ``blank``, 0 here). A labelling is read off a path of per-step symbols by merging
repeats and then dropping blanks ("aa-ab" -> "aab"), so the model needs no alignment
between input steps and labels; the loss (torch.nn.CTCLoss) sums over all paths.

- ``greedy_decode``: the most likely symbol at each step, merged: the best path.
- ``prefix_beam_search``: the labellings with the highest total probability (summed
  over their paths), kept ``width`` at a time; beats greedy when probability mass is
  spread over several paths of one labelling.
- ``edit_distance``: Levenshtein distance between two label sequences; the error rate
  is its sum over the references' total length.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

NEG_INF = -math.inf


def collapse(path: Sequence[int], blank: int = 0) -> list[int]:
    """A per-step path -> its labelling: merge runs of one symbol, then drop blanks."""
    out: list[int] = []
    prev = None
    for s in path:
        s = int(s)
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def greedy_decode(log_probs: np.ndarray, blank: int = 0) -> list[int]:
    """log_probs [T, C] (log-softmax of one utterance, padding cut off) -> labels."""
    if len(log_probs) == 0:
        return []
    return collapse(np.asarray(log_probs).argmax(axis=-1).tolist(), blank)


def _logsumexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _add(beams: dict, prefix: tuple[int, ...], pb: float, pnb: float) -> None:
    """Add path probability (log) ending in a blank / in a label to a prefix's scores."""
    if pb == NEG_INF and pnb == NEG_INF:
        return  # a path of probability 0 makes no prefix
    cur = beams.setdefault(prefix, [NEG_INF, NEG_INF])
    cur[0] = _logsumexp(cur[0], pb)
    cur[1] = _logsumexp(cur[1], pnb)


def prefix_beam_search(log_probs: np.ndarray, width: int = 8, blank: int = 0,
                       prune: float = -12.0) -> list[tuple[list[int], float]]:
    """log_probs [T, C] -> up to ``width`` (labels, log probability) pairs, best first.

    Each prefix keeps two scores: the log probability of all paths so far that yield it
    and end in a blank (p_b), and of those that end in its last label (p_nb). A label
    equal to the prefix's last one extends it only after a blank ("a-a" -> "aa"); without
    the blank it merges ("aa" -> "a"). Symbols below ``prune`` (log prob) at a step are
    skipped: they cannot lift a prefix into the beam."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if width < 1:
        raise ValueError(f"beam width must be at least 1, got {width}")
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for t in range(len(lp)):
        row = lp[t]
        symbols = [int(c) for c in np.nonzero(row >= prune)[0]] or [int(row.argmax())]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _logsumexp(pb, pnb)
            for c in symbols:
                p = float(row[c])
                if c == blank:
                    _add(nxt, prefix, total + p, NEG_INF)
                    continue
                last = prefix[-1] if prefix else None
                extended = prefix + (c,)
                if c == last:
                    _add(nxt, extended, NEG_INF, pb + p)  # a repeat needs a blank between
                    _add(nxt, prefix, NEG_INF, pnb + p)  # otherwise it merges into the last label
                else:
                    _add(nxt, extended, NEG_INF, total + p)
        ranked = sorted(nxt.items(), key=lambda item: -_logsumexp(*item[1]))[:width]
        beams = {prefix: (pb, pnb) for prefix, (pb, pnb) in ranked}
    result = [(list(prefix), _logsumexp(pb, pnb)) for prefix, (pb, pnb) in beams.items()]
    return sorted(result, key=lambda item: -item[1])


def beam_decode(log_probs: np.ndarray, width: int = 8, blank: int = 0) -> list[int]:
    """The best labelling of ``prefix_beam_search``."""
    return prefix_beam_search(log_probs, width, blank)[0][0]


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance: substitutions, insertions and deletions, each costing 1."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i] + [0] * len(ref)
        for j, r in enumerate(ref, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]
