"""Retrieve-then-rerank replies for a chatbot: the model chooses among its own replies and
the human replies to the training messages nearest the new one.

The pool for a message: the model's own reply (beam search under the task's decoding
rules; greedy at width 1) and the replies of the ``k`` nearest training messages
(NearestQuestion.top, TF-IDF cosine). The trained model scores every candidate by its
teacher-forced log-probability of the reply given the message (score_replies: the
training forward, so a copy model scores a retrieved reply's rare message words through
the copy, on the message's extended vocabulary; a word it can neither write nor copy is
read as <unk>, the class every such word was trained as), and the candidate with the
best

    (log p(reply | message) - generic * log p(reply | no message)) / tokens**length_norm
        + similarity * cosine + retrieved - overlap * parroting

is the reply (cosine: the retrieved reply's question's TF-IDF cosine to the message, 0
for the model's own; ``retrieved``: a constant for a human reply; ``generic``: Li et al.
2016's maximum mutual information, which marks down a reply the model finds likely
whatever was said, the message read as one <unk>; ``parroting``: the share of the
candidate's words that are the message's, workbench.tasks.parroting.overlap, which marks
down a reply that only repeats the message: MMI rewards such a copy, its words likely
given the message and unlikely given none). The weights are the
task's options (DialogueOptions.rerank_*), chosen on a dev split of the training
conversations (bench/chatbot_dev.py --rerank). Only training exchanges are ever in the
pool: the index is the task's training exchanges, which a run keeps in its task.json.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workbench.tasks.parroting import overlap

OWN_BEAM, OWN_GREEDY = "beam", "greedy"


@dataclass
class Candidate:
    text: str  # the reply as shown and scored
    origin: str  # OWN_BEAM, OWN_GREEDY, or "retrieved #r" (r: 1 = the nearest question's reply)
    similarity: float = 0.0  # its question's TF-IDF cosine to the message; 0 for the model's own
    logp: float = 0.0  # teacher-forced log p(reply | message), nats, <eos> included
    tokens: int = 1  # the reply's tokens, <eos> included
    unknown: int = 0  # of them read as <unk> (neither in the vocabulary nor copyable from the message)
    prior: float = 0.0  # log p(reply | a message of one <unk>): how likely the reply is whatever was said
    overlap: float = 0.0  # the share of its words that are words of the message (parroting.overlap)

    @property
    def retrieved(self) -> bool:
        return self.origin.startswith("retrieved")


@dataclass
class RerankWeights:
    length_norm: float = 1.0  # log p / tokens**length_norm (0: the sum, favours short replies)
    similarity: float = 0.0  # times the retrieved question's cosine to the message
    retrieved: float = 0.0  # added to a retrieved (human) reply's score
    own: bool = True  # the model's own replies are in the pool (False: it only reranks the retrieved)
    # minus this times the reply's log-probability given no message (Li et al. 2016's MMI: a reply
    # likely whatever was said, "i don't know", gains less)
    generic: float = 0.0
    overlap: float = 0.0  # minus this times the candidate's overlap with the message (parroting)

    def score(self, c: Candidate) -> float:
        value = (c.logp - self.generic * c.prior) / max(c.tokens, 1) ** self.length_norm - self.overlap * c.overlap
        return value + (self.similarity * c.similarity + self.retrieved if c.retrieved else 0.0)


def choose(candidates: Sequence[Candidate], weights: RerankWeights) -> int:
    """The index of the best candidate (ties: the first); the model's own are skipped
    when weights.own is off, unless the pool holds nothing else."""
    allowed = [i for i, c in enumerate(candidates) if weights.own or c.retrieved] or list(range(len(candidates)))
    return max(allowed, key=lambda i: (weights.score(candidates[i]), -i))


@torch.no_grad()
def score_replies(task, model, pairs: Sequence[tuple[str, str]], batch_size: int = 64, no_message: bool = False
                  ) -> list[tuple[float, int, int]]:
    """Per (message, reply) text pair: (log p(reply | message) in nats, summed over the
    reply's tokens and <eos>; that count; how many of them are <unk>), teacher-forced by
    the model's training forward (model in eval mode: no dropout). The pair is encoded as
    training encodes it (task._encode_pairs: a copy model's reply words copied from the
    message get the extended ids Vt + j). ``no_message``: the message read as one <unk>
    instead (the reply's prior; nothing to copy)."""
    device = next(model.parameters()).device
    unk = task.target_vocab.unk_id
    out: list[tuple[float, int, int]] = []
    for b in range(0, len(pairs), batch_size):
        if no_message:
            encoded = [([task.source_vocab.unk_id], task._encode_pairs([("", r)])[0][1]) for _, r in pairs[b:b + batch_size]]
        else:
            encoded = task._encode_pairs(pairs[b:b + batch_size])
        batch = task._batch(encoded).to(device)
        output = model(batch.x, batch.y_in, batch.lengths).float()  # [B, T, V (+ S)]
        # a copy model's output is already log-probabilities (log_softmax leaves it as it
        # is); another model's are logits
        logp = torch.log_softmax(output, dim=-1).gather(-1, batch.y[..., None])[..., 0]  # [B, T]
        logp = logp.masked_fill(~batch.mask, 0.0).sum(1)  # [B]
        counts = batch.mask.sum(1)  # [B]
        unknown = ((batch.y == unk) & batch.mask).sum(1) if unk is not None else torch.zeros_like(counts)
        out += [(float(p), int(n), int(u)) for p, n, u in zip(logp.tolist(), counts.tolist(), unknown.tolist())]
    return out


def candidate_pools(task, model, sources: Sequence[str], index, k: int, beam: int, batch_size: int = 64,
                    max_len: int = 0, prior: bool = False) -> list[list[Candidate]]:
    """Per source text: the model's own reply (beam search of width ``beam``, greedy at 1,
    under the task's decoding rules) and the replies of the ``k`` training messages
    nearest it (``index``: a NearestQuestion), each scored by score_replies (and with
    ``prior`` also given no message, Candidate.prior) and its overlap with the message."""
    device = next(model.parameters()).device
    pools: list[list[Candidate]] = []
    for b in range(0, len(sources), batch_size):
        chunk = list(sources[b:b + batch_size])
        batch = task._batch([(task._source_ids(task.tokenize(s))[0] or [task.source_vocab.unk_id], [])
                             for s in chunk]).to(device)
        length = max_len or int(batch.x.shape[1]) * 2 + 10
        if beam > 1:
            tokens, _ = model.beam_search(batch.x, beam, length, batch.lengths, **task.beam_options())
        else:
            tokens, _ = model.generate(batch.x, length, batch.lengths, **task.decode_rules())
        origin = OWN_BEAM if beam > 1 else OWN_GREEDY
        own = [[Candidate(task._as_compared(task.decode_target(row, chunk[i])), origin)]
               for i, row in enumerate(tokens.tolist())]
        for i, source in enumerate(chunk):
            message = task.retrieval_query(source)  # the message (not a retrieved reply the model also reads)
            found = [Candidate(task._as_compared(index.replies[j]), f"retrieved #{r + 1}", similarity=s)
                     for r, (j, s) in enumerate(index.top(message, k))]
            pools.append(own[i] + found)
            for c in pools[-1]:
                c.overlap = overlap(c.text, message)
    flat = [(sources[i], c.text) for i, pool in enumerate(pools) for c in pool]
    scores = iter(score_replies(task, model, flat, batch_size))
    for pool in pools:
        for c in pool:
            c.logp, c.tokens, c.unknown = next(scores)
    if prior:
        priors = iter(score_replies(task, model, flat, batch_size, no_message=True))
        for pool in pools:
            for c in pool:
                c.prior = next(priors)[0]
    return pools


def rerank(task, model, sources: Sequence[str], index, k: int, beam: int, weights: RerankWeights,
           batch_size: int = 64, max_len: int = 0) -> list[Candidate]:
    """Per source text, the chosen candidate (see the module's docstring)."""
    pools = candidate_pools(task, model, sources, index, k, beam, batch_size, max_len, prior=weights.generic != 0)
    return [pool[choose(pool, weights)] for pool in pools]
