"""CTC decoding and scoring on hand-made probability matrices, checked against brute
force over every path."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from workbench.tasks import ctc
from workbench.tasks.base import Batch
from workbench.tasks.speech import ConnectedSpeechTask


def _log(rows) -> np.ndarray:
    return np.log(np.asarray(rows, dtype=np.float64))


def _labelling_probs(log_probs: np.ndarray) -> dict[tuple, float]:
    """Every labelling's probability, summed over all T^C paths (brute force)."""
    T, C = log_probs.shape
    probs: dict[tuple, float] = {}
    for path in itertools.product(range(C), repeat=T):
        p = math.exp(sum(log_probs[t, s] for t, s in enumerate(path)))
        key = tuple(ctc.collapse(path))
        probs[key] = probs.get(key, 0.0) + p
    return probs


def test_collapse_merges_repeats_then_drops_blanks():
    assert ctc.collapse([1, 1, 0, 1, 2, 2, 0, 0, 3]) == [1, 1, 2, 3]
    assert ctc.collapse([0, 0, 0]) == []
    assert ctc.collapse([]) == []


def test_greedy_takes_the_best_path_and_beam_the_best_labelling():
    # blank 0.6 / "a" 0.4 at both steps: the best path is blank-blank ("" with 0.36), but
    # "a" has a-blank, blank-a and a-a: 0.24 + 0.24 + 0.16 = 0.64.
    lp = _log([[0.6, 0.4], [0.6, 0.4]])
    assert ctc.greedy_decode(lp) == []
    beams = ctc.prefix_beam_search(lp, width=4)
    assert beams[0][0] == [1] and math.isclose(math.exp(beams[0][1]), 0.64, rel_tol=1e-9)
    assert beams[1][0] == [] and math.isclose(math.exp(beams[1][1]), 0.36, rel_tol=1e-9)
    # a repeated label needs a blank between: "a a" from a-blank-a, not from a-a-a
    lp = _log([[0.05, 0.9, 0.05], [0.8, 0.1, 0.1], [0.05, 0.9, 0.05]])
    assert ctc.greedy_decode(lp) == [1, 1] == ctc.beam_decode(lp, 8)


def test_beam_search_scores_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        logits = rng.normal(0, 1.5, (5, 3))
        lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        exact = _labelling_probs(lp)
        # a beam wide enough to keep every prefix is exact
        beams = ctc.prefix_beam_search(lp, width=10_000, prune=-math.inf)
        assert len(beams) == len(exact)
        for labels, score in beams:
            assert math.isclose(math.exp(score), exact[tuple(labels)], rel_tol=1e-9)
        best = max(exact, key=exact.get)
        assert ctc.beam_decode(lp, 16) == list(best)
        assert math.isclose(sum(exact.values()), 1.0, rel_tol=1e-9)


def test_edit_distance():
    assert ctc.edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert ctc.edit_distance([1, 3], [1, 2, 3]) == 1  # a deletion
    assert ctc.edit_distance([1, 2, 2, 3], [1, 2, 3]) == 1  # an insertion
    assert ctc.edit_distance([3, 2, 1], [1, 2, 3]) == 2  # two substitutions
    assert ctc.edit_distance([], [1, 2]) == 2 and ctc.edit_distance([4, 4], []) == 2


def test_the_task_loss_is_ctc_over_every_path_and_ignores_padding():
    """The connected-words task's loss: -log P(labels) / len(labels) per row, averaged;
    rows shorter than the batch (lengths) and label padding (0) do not count."""
    task = ConnectedSpeechTask({"min_words": 1, "max_words": 2})
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 3)  # [B, T, blank + 2 classes]
    y = torch.tensor([[1, 2], [2, 0]])  # row 1 has one label
    lengths = torch.tensor([5, 4])  # row 1 has four frames
    loss = task.loss(logits, Batch(x=torch.zeros(2, 5, 4), y=y, lengths=lengths))
    lp = torch.log_softmax(logits.double(), -1).numpy()
    p0 = _labelling_probs(lp[0])[(1, 2)]
    p1 = _labelling_probs(lp[1, :4])[(2,)]
    expected = (-math.log(p0) / 2 + -math.log(p1) / 1) / 2
    assert math.isclose(float(loss), expected, rel_tol=1e-4)


def test_the_task_metrics_decode_each_row_to_its_length():
    task = ConnectedSpeechTask({"min_words": 1, "max_words": 3})
    big = 10.0
    out = torch.zeros(2, 6, 4)  # [B, T, 4]: blank + classes 1..3
    for t, s in enumerate([1, 1, 0, 2, 0, 3]):
        out[0, t, s] = big  # row 0 says 1 2 3
    for t, s in enumerate([3, 0, 3, 2, 2, 2]):
        out[1, t, s] = big  # row 1 says 3 3 in its 3 real frames; the padded ones would add a 2
    batch = Batch(x=torch.zeros(2, 6, 4), y=torch.tensor([[1, 2, 3], [3, 0, 0]]), lengths=torch.tensor([6, 3]))
    sums = task.metric_sums(out, batch)
    assert sums["word_error_rate"] == (1.0, 4.0)  # row 1: one insertion
    assert sums["utterance_accuracy"] == (1.0, 2.0)


@pytest.mark.parametrize("width", [0, -1])
def test_a_beam_needs_a_width(width):
    with pytest.raises(ValueError, match="beam width"):
        ctc.prefix_beam_search(_log([[0.5, 0.5]]), width=width)
