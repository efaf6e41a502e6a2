"""Beam search: on a hand-set model it finds the likelier output that greedy decoding
misses; width 1 is greedy decoding, on the hand-set model and on a real encoder-decoder."""
from __future__ import annotations

import math

import torch

from workbench import presets
from workbench.engine.model import beam_search, build_model, decoding_rules
from workbench.tasks import make_task

PAD, BOS, EOS, A, B, C = range(6)
# A hand-set "model": the next token's probabilities depend only on the previous token.
# Greedy takes A (0.5) and then B (0.36): A B <eos>, probability 0.18. The likeliest
# output is B <eos> (0.45), which a beam of 2 keeps and finds.
TABLE = {BOS: {A: 0.5, B: 0.45, EOS: 0.05}, A: {B: 0.36, C: 0.34, EOS: 0.30},
         B: {EOS: 1.0}, C: {EOS: 1.0}, PAD: {PAD: 1.0}, EOS: {EOS: 1.0}}


def _markov_step(tokens: torch.Tensor, state):
    logp = torch.full((tokens.shape[0], 6), -1e9)
    for row, t in enumerate(tokens.tolist()):
        for nxt, p in TABLE[t].items():
            logp[row, nxt] = math.log(p)
    return logp, state, None


def _search(width: int, rows: int = 1) -> list[list[int]]:
    state = [torch.zeros(1, rows * width, 1)]  # [D, N, H]: only its batch rows are reordered
    tokens, attention = beam_search(_markov_step, state, rows, width, max_len=10, bos=BOS, eos=EOS, pad=PAD)
    assert attention is None
    return tokens.tolist()


def test_beam_finds_the_likelier_output_that_greedy_misses():
    assert _search(1) == [[A, B, EOS]]  # greedy
    assert _search(2) == [[B, EOS]]  # cut after the longest chosen output
    assert _search(4, rows=3) == [[B, EOS]] * 3


def _dates_task_model(rows: int, seed: int):
    """The dates_encdec_attention task, an untrained model of it (weights from ``seed``) in
    eval mode and one validation batch of ``rows`` padded sources."""
    preset = presets.load_builtin("dates_encdec_attention")
    preset.data.options["val_size"] = rows
    task = make_task(preset)
    torch.manual_seed(seed)
    model = build_model(preset.model, task.model_io()).eval()
    return task, model, next(task.val_batches(rows, 1))


def _dates_model(rows: int, seed: int):
    """_dates_task_model without the task: (model, batch)."""
    return _dates_task_model(rows, seed)[1:]


def test_width_one_is_greedy_decoding_on_a_real_encoder_decoder():
    model, batch = _dates_model(rows=40, seed=3)
    greedy, greedy_attn = model.generate(batch.x, 16, batch.lengths)
    beam1, beam1_attn = model.beam_search(batch.x, 1, 16, batch.lengths)
    assert torch.equal(greedy, beam1)
    assert torch.allclose(greedy_attn, beam1_attn)
    wide, attn = model.beam_search(batch.x, 5, 16, batch.lengths)
    assert wide.shape[0] == 40 and attn.shape[:2] == wide.shape and attn.shape[2] == batch.x.shape[1]
    # the rows sum to 1 over the real source positions only
    real = torch.arange(batch.x.shape[1])[None, :] < batch.lengths[:, None]  # [B, S]
    assert torch.allclose(attn.sum(-1)[wide != 0], torch.ones(int((wide != 0).sum())), atol=1e-5)
    assert float(attn.masked_select(~real[:, None, :].expand_as(attn)).abs().sum()) == 0.0


def test_beam_output_is_at_least_as_likely_as_greedy_on_the_hand_set_model():
    def logprob(seq):
        prev, total = BOS, 0.0
        for t in seq:
            if t == PAD:
                break
            total += math.log(TABLE[prev][t])
            prev = t
        return total
    assert logprob(_search(2)[0]) > logprob(_search(1)[0])


def test_decode_step_is_the_step_generate_and_beam_search_take():
    """Stepping the public decode_step by hand gives generate()'s tokens and attention."""
    model, batch = _dates_model(rows=8, seed=5)
    want, want_attn = model.generate(batch.x, 12, batch.lengths)
    with torch.no_grad():
        _, state, enc = model.decoding_start(batch.x, batch.lengths)
        token = torch.full((8,), model.io.bos_id)
        tokens, attn = [], []
        for _ in range(want.shape[1]):
            logits, state, weights = model.decode_step(token, state, enc, batch.lengths)  # [B, V], [B, S]
            assert logits.shape == (8, model.io.output_size) and weights.shape == batch.x.shape
            token = logits.argmax(-1)
            tokens.append(token)
            attn.append(weights)
    got = torch.stack(tokens, 1)
    ended = torch.cumsum((got == model.io.eos_id).long(), 1) - (got == model.io.eos_id).long() > 0  # after <eos>
    assert torch.equal(got.masked_fill(ended, model.io.pad_id), want)
    assert torch.allclose(torch.stack(attn, 1), want_attn)
    # attend() is public too: weights [B, T, S] summing to 1 over the source
    out, weights = model.attend(torch.randn(8, 3, model.spec.decoder_layers[-1].hidden_size), enc, batch.lengths)
    assert out.shape[:2] == (8, 3) and torch.allclose(weights.sum(-1), torch.ones(8, 3))


def test_no_repeated_ngrams_in_greedy_or_beam_output():
    model, batch = _dates_model(rows=8, seed=1)

    def bigrams(row):
        row = [t for t in row if t not in (PAD, EOS)]
        return list(zip(row, row[1:]))
    loops = model.generate(batch.x, 30, batch.lengths)[0].tolist()  # an untrained model repeats itself
    assert any(len(set(bigrams(r))) < len(bigrams(r)) for r in loops)
    for tokens in (model.generate(batch.x, 30, batch.lengths, no_repeat_ngram=2)[0],
                   model.beam_search(batch.x, 3, 30, batch.lengths, no_repeat_ngram=2)[0]):
        assert all(len(set(bigrams(r))) == len(bigrams(r)) for r in tokens.tolist())


def test_a_minimum_length_and_banned_tokens_in_every_decoding():
    """decoding_rules: greedy and beam search write no <eos> before min_length tokens and
    never a banned id; on the hand-set model too (greedy would stop after two tokens)."""
    state = [torch.zeros(1, 2, 1)]
    tokens, _ = beam_search(_markov_step, state, 1, 2, max_len=10, bos=BOS, eos=EOS, pad=PAD, min_length=3)
    assert len(tokens[0]) >= 4 and EOS not in tokens[0, :3].tolist()
    tokens, _ = beam_search(_markov_step, [torch.zeros(1, 1, 1)], 1, 1, max_len=10, bos=BOS, eos=EOS, pad=PAD,
                            banned=(A,))
    assert tokens.tolist() == [[B, EOS]]  # greedy without A
    model, batch = _dates_model(rows=4, seed=1)
    for tokens in (model.generate(batch.x, 12, batch.lengths, min_length=6, banned=(5, 6))[0],
                   model.beam_search(batch.x, 3, 12, batch.lengths, min_length=6, banned=(5, 6))[0]):
        for row in tokens.tolist():
            assert EOS not in row[:6] and 5 not in row and 6 not in row


def test_sampled_decoding_never_writes_pad_or_bos():
    """An untrained model sampled hot puts mass on every id; the task's rules keep <pad>
    and <bos> (never a next token) out of every row, before <eos> and after it alike."""
    task, model, batch = _dates_task_model(rows=64, seed=0)
    rules = task.decode_rules()
    io = task.model_io()
    assert {io.pad_id, io.bos_id} <= set(rules["banned"])
    tokens, _ = model.generate(batch.x, 16, batch.lengths, temperature=5.0,
                               generator=torch.Generator().manual_seed(0), **rules)
    for row in tokens.tolist():
        written = row[:row.index(io.eos_id)] if io.eos_id in row else row
        assert io.pad_id not in written and io.bos_id not in written
    # without the rules the same sampling does write them: the test can fail
    free, _ = model.generate(batch.x, 16, batch.lengths, temperature=5.0, generator=torch.Generator().manual_seed(0))
    assert any(t in (io.pad_id, io.bos_id) for row in free.tolist()
               for t in (row[:row.index(io.eos_id)] if io.eos_id in row else row))


def test_no_token_twice_in_a_row_unless_repeatable():
    """decoding_rules' no_repeat_token: a hand-set model that would write "C C C" (a 3-gram
    rule lets "C C" through) writes C once, greedy and beam alike; a repeatable id (punctuation)
    may still repeat."""
    table = {BOS: {C: 0.9, EOS: 0.1}, C: {C: 0.8, A: 0.1, EOS: 0.1}, A: {EOS: 1.0}, B: {EOS: 1.0},
             PAD: {PAD: 1.0}, EOS: {EOS: 1.0}}

    def step(tokens, state):
        logp = torch.full((tokens.shape[0], 6), -1e9)
        for row, t in enumerate(tokens.tolist()):
            for nxt, p in table[t].items():
                logp[row, nxt] = math.log(p)
        return logp, state, None

    for width in (1, 3):
        run = dict(max_len=6, bos=BOS, eos=EOS, pad=PAD, no_repeat_ngram=3)
        loose, _ = beam_search(step, [torch.zeros(1, width, 1)], 1, width, **run)
        assert loose[0, :2].tolist() == [C, C]  # without the rule
        tokens, _ = beam_search(step, [torch.zeros(1, width, 1)], 1, width, no_repeat_token=True, **run)
        row = [t for t in tokens[0].tolist() if t not in (PAD, EOS)]
        assert row and all(a != b for a, b in zip(row, row[1:]))
        same, _ = beam_search(step, [torch.zeros(1, width, 1)], 1, width, no_repeat_token=True, repeatable=(C,), **run)
        assert same.tolist() == loose.tolist()
    # the rule yields where it would leave a row nothing to write (a tiny vocabulary under the others)
    only_c = torch.full((1, 6), float("-inf"))
    only_c[0, C] = 0.0
    kept = decoding_rules(only_c, torch.tensor([[A, C]]), torch.tensor([False]), EOS, no_repeat_token=True)
    assert kept[0, C] == 0.0
    model, batch = _dates_model(rows=8, seed=1)  # an untrained model repeats itself
    for tokens in (model.generate(batch.x, 20, batch.lengths, no_repeat_token=True)[0],
                   model.beam_search(batch.x, 3, 20, batch.lengths, no_repeat_token=True)[0]):
        for row in tokens.tolist():
            row = [t for t in row if t not in (PAD, EOS)]
            assert all(a != b for a, b in zip(row, row[1:]))
