"""Helpers the text and symbol tasks share: option checks, model checks, sequence
metrics, and the vocabulary round trip through a run's task.json."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from workbench.io.vocab import Vocab
from workbench.spec import ModelSpec, SpecError
from workbench.tasks.base import Batch, Task


def check_int(options, name: str, lo: int, hi: int) -> None:
    value = getattr(options, name)
    if not lo <= value <= hi:
        raise SpecError(f"data.options.{name}", f"must be between {lo} and {hi}, got {value}")


def check_float(options, name: str, lo: float, hi: float) -> None:
    value = getattr(options, name)
    if not lo <= value <= hi:
        raise SpecError(f"data.options.{name}", f"must be between {lo} and {hi}, got {value}")


def check_choice(options, name: str, choices: Sequence[str]) -> None:
    value = getattr(options, name)
    if value not in choices:
        raise SpecError(f"data.options.{name}", f"{value!r} is not one of: {', '.join(choices)}")


def check_token_input(model: ModelSpec, task: str, allow_chars: bool = False) -> None:
    kinds = ("embedding", "embedding_chars") if allow_chars else ("embedding",)
    if model.input.kind not in kinds:
        which = " or ".join(repr(k) for k in kinds)
        raise SpecError("model.input.kind", f"task {task!r} feeds token ids: use the {which} input")


def check_classification_head(model: ModelSpec, task: str) -> None:
    if model.head.kind != "classification":
        raise SpecError("model.head.kind", f"task {task!r} predicts classes or tokens: use the 'classification' head")


def restore_vocab(artifacts: dict, key: str) -> Vocab:
    """A vocabulary from task.json, or SpecError naming what is missing."""
    try:
        return Vocab.from_json(artifacts[key], key)
    except KeyError:
        raise SpecError("", f"the run's task.json has no {key!r}: was it written by another task?") from None
    except ValueError as exc:
        raise SpecError("", str(exc)) from None


def sequence_metric_sums(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Token accuracy over counted positions, and exact match per row.

    Exact match here is teacher-forced: every target token (EOS included) is the argmax
    given the true prefix. When that holds, greedy decoding feeds itself exactly the
    true prefix at every step and so produces exactly the target: this exact match
    equals greedy decoding's (up to ties between equal logits)."""
    correct = logits.argmax(dim=-1) == y  # [B, T]
    counted = float(mask.sum())
    token_ok = float((correct & mask).sum())
    rows_ok = (correct | ~mask).all(dim=1)  # [B]
    return {"token_accuracy": (token_ok, counted),
            "exact_match": (float(rows_ok.sum()), float(rows_ok.numel()))}


def greedy_exact_match(model, batch, eos_id: int, pad_id: int) -> dict[str, tuple[float, float]]:
    """Free-running greedy decoding (model.generate) against the targets batch.y [B, T]."""
    y, mask = batch.y, batch.mask
    tokens, _ = model.generate(batch.x, max_len=int(y.shape[1]) + 5, lengths=batch.lengths)
    B, T = y.shape
    L = tokens.shape[1]
    width = max(T, L)
    got = torch.full((B, width), pad_id, dtype=torch.long, device=y.device)
    got[:, :L] = tokens
    want = torch.full((B, width), pad_id, dtype=torch.long, device=y.device)
    want[:, :T] = y.masked_fill(~mask, pad_id)
    # Compare up to and including the first EOS of the target; anything generated after
    # the target's EOS was already cut by generate (rows stop at EOS).
    rows_ok = (got == want).all(dim=1)
    return {"greedy_exact_match": (float(rows_ok.sum()), float(B))}


class GeneratedTokensTask(Task):
    """Loss and metrics shared by the tasks whose model generates a token sequence
    (encoder-decoder transduction, one-to-many captioning): masked cross-entropy,
    token accuracy and exact match, greedy exact match in ``workbench eval``, and the
    baseline the subclass computed into ``self._baseline``."""

    _baseline: dict

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.masked_cross_entropy(output, batch.y, batch.mask)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        return sequence_metric_sums(output, batch.y, batch.mask)

    def decode_metrics(self, model, batch: Batch) -> dict[str, tuple[float, float]]:
        return greedy_exact_match(model, batch, eos_id=2, pad_id=0)

    def baseline(self) -> dict[str, float]:
        return dict(self._baseline)


def position_mode_baseline(targets: Sequence[Sequence[int]], eval_targets: Sequence[Sequence[int]]) -> dict[str, float]:
    """A trivial generator: at each output position, the token most often there in
    ``targets``. Its token accuracy and exact match on ``eval_targets``."""
    by_pos: list[Counter] = []
    for seq in targets:
        for i, tok in enumerate(seq):
            if i == len(by_pos):
                by_pos.append(Counter())
            by_pos[i][tok] += 1
    guess = [c.most_common(1)[0][0] for c in by_pos]
    ok = total = exact = 0
    for seq in eval_targets:
        row = True
        for i, tok in enumerate(seq):
            hit = i < len(guess) and guess[i] == tok
            ok += hit
            row &= hit
        total += len(seq)
        exact += row and len(seq) <= len(guess)
    n = max(len(eval_targets), 1)
    return {"token_accuracy": ok / max(total, 1), "exact_match": exact / n}

