"""Chatbot: an encoder-decoder that writes the reply to a message (and optionally the turn before).

Data (``data.path``): chatterbot-corpus YAML conversations, a folder of them, or a TSV of
message<TAB>reply lines (workbench.io.dialogue). Without a file: generated conversations
(greetings, small talk, colours, likes, additions; workbench.tasks.phrases). Every turn after a
conversation's first is a reply to the turn before it; with ``context`` the turn before
that is read too ("previous | message"). Whole conversations are held out
(``val_fraction`` of the distinct ones, shuffled with a fixed seed), conversations that
share a turn together (split_conversations), or ``val_path`` names a validation file. Word level by default, lowercased; batches and shapes as the
transduction task (x [B, S] message ids, y_in/y [B, T] reply ids, mask [B, T]).

Metrics: teacher-forced token accuracy, and the reply perplexity exp(nats per reply
token, <eos> included) on held-out conversations. ``workbench eval`` adds BLEU and chrF
(sacrebleu) of the greedy and beam-search replies, and how much they parrot the message
(workbench.tasks.parroting: replies taking most of their words from the message, replies
repeating a word; the references' shares beside them). Baselines: the perplexity of a
unigram model of the training replies (add-one smoothed over the reply vocabulary), and
nearest-question retrieval: the reply of the training message closest to the held-out
message by TF-IDF cosine over words, and the echo (the held-out message itself as the
reply), scored with the same BLEU and chrF. ``copy_pairs`` adds (reply, reply) pairs to
the training data (see _copy_pairs); ``shared_vocab`` builds one vocabulary of both sides'
words (for model.copy, which copies message words into the reply).

``retrieve`` (retrieve and refine, Weston et al. 2018): the model reads the message and,
after RETRIEVED_SEPARATOR, the reply nearest-question retrieval finds for it ("message »
retrieved reply"), so its attention and copy can take the retrieved reply's words when
they fit. Held-out, evaluated and chatted messages retrieve from every training
exchange; a training exchange retrieves from the training exchanges outside its own
group of conversations sharing a turn (conversation_groups), as a held-out message does
(held-out groups are never in training): retrieving its own reply would teach the model
to copy blindly. The training exchanges (the index) are saved with the run's artifacts.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.io.dialogue import RETRIEVED_SEPARATOR, exchanges, read_dialogue
from workbench.io.errors import DataError
from workbench.io.vocab import ALL_SPECIALS, PAD, UNK, Vocab, tokenize_words
from workbench.spec import SpecError
from workbench.tasks.base import Batch
from workbench.tasks.parroting import parroting_scores
from workbench.tasks.phrases import generated_conversations
from workbench.tasks.textutil import check_choice, check_float, check_int, position_mode_baseline
from workbench.tasks.transduction import TransductionTask, check_beam_options, text_scores


@dataclass
class DialogueOptions:
    level: str = "word"  # "word" or "char"
    lowercase: bool = True
    context: bool = False  # read the turn before the message too
    val_path: str = ""  # a validation conversations file
    val_fraction: float = 0.1  # of the conversations
    min_freq: int = 1  # rarer words become <unk>
    max_len: int = 40  # exchanges with a longer message or reply (in tokens) are left out
    length_penalty: float = 1.0  # beam search ranks by log-probability / length**length_penalty
    no_repeat_ngram: int = 0  # greedy and beam search: n > 0 writes no n-gram twice in one reply
    min_length: int = 0  # decoding writes at least this many tokens before <eos>
    no_unk: bool = False  # decoding never writes <unk> (a copy model still copies unknown words)
    no_repeat_word: bool = False  # decoding never writes a word twice in a row ("color color"; punctuation may)
    copy_pairs: float = 0.0  # this fraction of the training replies is also trained as reply -> itself
    # one vocabulary for messages and replies (word level: the same language), so a copy model
    # (model.copy) can write any message word it copies rather than the reply side's <unk>
    shared_vocab: bool = False
    # Retrieve-then-rerank (workbench.tasks.rerank): `workbench eval`, `workbench try` and the chat
    # choose the reply by the model's score between its own (beam search) and the replies of the
    # `rerank` nearest training questions; 0: off. The weights of the choice (chosen on dev splits
    # of the chatterbot corpus's training conversations, bench/chatbot_dev.py --rerank):
    rerank: int = 0
    rerank_length_norm: float = 1.0  # the model's log-probability / reply tokens**this
    rerank_similarity: float = 4.0  # plus this times a retrieved reply's question's TF-IDF cosine
    rerank_retrieved: float = 0.0  # plus this for a retrieved (human) reply
    rerank_generic: float = 0.5  # minus this times the reply's log-probability given no message (MMI)
    # minus this times the share of a candidate's words that are the message's (parroting.overlap)
    rerank_overlap: float = 0.0
    # the model also reads the reply retrieved for the message (nearest question; see the docstring)
    retrieve: bool = False


class DialogueTask(TransductionTask):
    name = "dialogue"
    title = "Chatbot (the reply to a message, from conversations)"
    Options = DialogueOptions
    main_metric = "perplexity"
    lower_is_better = True

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        # The transduction task's option checks are for its own options: skip to the base's.
        super(TransductionTask, self).__init__(options, path, seed)
        o = self.options
        check_choice(o, "level", ("word", "char"))
        check_float(o, "val_fraction", 0.0, 0.9)
        check_int(o, "min_freq", 1, 1_000_000)
        check_int(o, "max_len", 1, 100_000)
        check_beam_options(o)
        check_float(o, "copy_pairs", 0.0, 1.0)
        check_int(o, "rerank", 0, 1000)
        check_float(o, "rerank_length_norm", 0.0, 10.0)
        check_float(o, "rerank_similarity", -100.0, 100.0)
        check_float(o, "rerank_retrieved", -100.0, 100.0)
        check_float(o, "rerank_generic", 0.0, 1.0)
        check_float(o, "rerank_overlap", 0.0, 100.0)
        if o.val_path and not path:
            raise SpecError("data.options.val_path", "a validation file needs a training file in data.path")
        if not o.val_path and o.val_fraction <= 0:
            raise SpecError("data.options.val_fraction", "must be above 0 unless val_path names a validation file")
        self.level = o.level
        self.source_vocab = self.target_vocab = None
        self.train_pairs, self.val_pairs = [], []
        self.train_texts: list[tuple[str, str]] = []
        self.val_texts: list[tuple[str, str]] = []
        # the held-out messages as read, without the retrieved reply (val_texts' sources are what the model reads)
        self.val_messages: list[str] = []
        self._message_of: dict[str, str] = {}  # model_source's sources -> their messages (retrieval_query)
        self._index: tuple[list, NearestQuestion] | None = None  # (the training exchanges, their index)
        self._baseline = {}

    # -- data -------------------------------------------------------------------------------
    def reads_pairs(self) -> bool:
        return True  # a file's conversations, or a fixed generated set of them
    def _read_file_pairs(self, path: str) -> list[tuple[str, str]]:
        return self._within_max_len(path, exchanges(read_dialogue(path).conversations, self.options.context))

    def _split_file(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(training pairs with the copy pairs, validation pairs) as the model reads them;
        sets train_texts (the training exchanges as read) and val_messages."""
        o = self.options
        if o.val_path:
            train_convs = read_dialogue(self.path).conversations
            val = self._read_file_pairs(o.val_path)
        else:
            read = read_dialogue(self.path).conversations if self.path else generated_conversations()
            if len(dict.fromkeys(map(tuple, read))) < 2:
                raise DataError(self.path, "holds one conversation; holding some out needs at least 2 "
                                           "(or set data.options.val_path)")
            train_convs, val_convs = split_conversations(read, o.val_fraction)
            val = self._within_max_len(self.path, exchanges(val_convs, o.context))
        train, groups = self._grouped_exchanges(train_convs)
        self.train_texts = list(train)
        self.val_messages = [m for m, _ in val]
        copies = self._copy_pairs(train)
        if not o.retrieve:
            return train + copies, val
        index = self.retrieval_index()
        group_of_reply: dict[str, int] = {}  # a turn is in one group (conversations sharing it are one)
        members: dict[int, set[int]] = {}  # group -> its exchanges' indices in train
        for i, ((_, r), g) in enumerate(zip(train, groups)):
            group_of_reply.setdefault(r, g)
            members.setdefault(g, set()).add(i)

        def outside(message: str, group: int) -> str:  # leave-own-group-out, as a held-out message retrieves
            return self._joined(message, index.reply(message, skip=members[group]))
        train = [(outside(m, g), r) for (m, r), g in zip(train, groups)]
        copies = [(outside(m, group_of_reply[r]), r) for m, r in copies]
        return train + copies, [(self.model_source(m), r) for m, r in val]

    def _grouped_exchanges(self, conversations: list[list[str]]) -> tuple[list[tuple[str, str]], list[int]]:
        """The exchanges within max_len, and per exchange its group of conversations
        sharing a turn (conversation_groups; what leave-own-group-out retrieval leaves out)."""
        distinct, groups = conversation_groups(conversations)
        group_of = {tuple(distinct[i]): g for g, members in enumerate(groups) for i in members}
        tagged = [(pair, group_of[tuple(conv)]) for conv in conversations
                  for pair in exchanges([conv], self.options.context)]
        # refuses a file of only over-long exchanges
        kept = self._within_max_len(self.path, tagged, pair_of=lambda item: item[0])
        return [pair for pair, _ in kept], [g for _, g in kept]

    # -- retrieve and refine (``retrieve``) ------------------------------------------------------
    @staticmethod
    def _joined(message: str, retrieved: str) -> str:
        return message + RETRIEVED_SEPARATOR + retrieved

    def model_source(self, message: str) -> str:
        """What the model reads for a message: with ``retrieve``, the message, the
        separator and the reply retrieved for it from every training exchange."""
        if not self.options.retrieve:
            return message
        index = self.retrieval_index()
        if index is None:
            raise DataError(self.path, "the training exchanges to retrieve replies from are gone "
                                       "(a run trained before they were saved with it)")
        source = self._joined(message, index.reply(message))
        self._message_of[source] = message
        return source

    def retrieval_query(self, source: str) -> str:
        """What retrieval looks a source up by (the reranker's candidates): the message
        itself, not the reply retrieved into a ``retrieve`` model's source."""
        return self._message_of.get(source, source)

    def use_eval_file(self, path: str) -> None:
        pairs = self._read_file_pairs(path)
        self.val_messages = [m for m, _ in pairs]
        self.val_texts = [(self.model_source(m), r) for m, r in pairs]
        self.val_pairs = self._encode_pairs(self.val_texts)

    def _copy_pairs(self, train: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Augmentation from the corpus itself: (reply, reply) for ``copy_pairs`` of the
        training replies (a fixed sample). A turn often repeats words of the turn before
        it (on the English corpus, the held-out message itself as the reply scores BLEU
        3.6, chrF 16.7, above nearest-question retrieval), which a model with separate
        message and reply vocabularies can only do for the words it has seen carried
        over; copying teaches it to carry any word it knows over."""
        fraction = self.options.copy_pairs
        if fraction <= 0:
            return []
        replies = list(dict.fromkeys(r for _, r in train))
        random.Random(1).shuffle(replies)
        return [(r, r) for r in replies[: int(round(len(replies) * fraction))]]

    def prepare(self) -> None:
        o = self.options
        if o.shared_vocab and self.source_vocab is None:
            self._split_file()  # the real exchanges, not the copy pairs (which would count replies thrice)
            counts = Counter(t for pair in self.train_texts for side in pair for t in self.tokenize(side))
            sources = counts.copy()
            if o.retrieve:  # the separator is a source word of its own (never written, never copied as a word)
                sources.update({t: len(self.train_texts) for t in self.tokenize(RETRIEVED_SEPARATOR)})
            self.source_vocab = Vocab.build(sources, specials=(PAD, UNK), min_freq=o.min_freq)
            self.target_vocab = Vocab.build(counts, specials=ALL_SPECIALS, min_freq=o.min_freq)
        super().prepare()
        eos, Vt, unk = self.target_vocab.id("<eos>"), len(self.target_vocab), self.target_vocab.unk_id
        # the baselines read a copy model's extended ids (words copied from the message) as <unk>
        plain = [[i if i < Vt else unk for i in t] + [eos] for _, t in self.val_pairs]
        targets = [[i if i < Vt else unk for i in t] + [eos] for _, t in self._encode_pairs(self.train_texts)]
        self._baseline = position_mode_baseline(targets, plain)  # the real replies only
        self._baseline["perplexity"] = self._unigram_perplexity(targets, plain)

    def _unigram_perplexity(self, train: Sequence[Sequence[int]], val: Sequence[Sequence[int]]) -> float:
        counts = Counter(i for seq in train for i in seq)
        V = len(self.target_vocab) - 2  # <pad> and <bos> are never a reply token
        total = sum(counts.values())
        nats = [-math.log((counts[i] + 1) / (total + V)) for seq in val for i in seq]
        return math.exp(sum(nats) / max(len(nats), 1))

    # -- metrics --------------------------------------------------------------------------------
    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        sums = dict(super().metric_sums(output, batch))
        losses = F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), batch.y.reshape(-1),
                                 reduction="none")  # [B*T]
        mask = batch.mask.reshape(-1)
        sums["nats_per_token"] = (float(losses[mask].sum()), float(mask.sum()))
        sums.pop("exact_match", None)  # a reply is one of many good ones: exact match says little
        return sums

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        value = metrics.get("nats_per_token")
        return {"perplexity": math.exp(min(value, 700.0))} if value is not None else {}

    def decode_metrics(self, model, batch: Batch) -> dict[str, tuple[float, float]]:
        return {}

    def corpus_metrics(self, model, device, batch_size: int, max_items: int, beam: int, mbr: int = 0) -> dict:
        """BLEU/chrF of the model's greedy and beam replies, and of nearest-question retrieval."""
        if not self.val_texts:
            return {}
        texts = self.val_texts[:max_items]
        read = self.val_messages[:max_items] or [m for m, _ in texts]  # as read, without the retrieved reply
        refs = [self._as_compared(t) for _, t in texts]
        messages = [self._as_compared(m) for m in read]

        def scored(outputs: list[str]) -> dict[str, float]:
            # BLEU/chrF against the references, and parroting (workbench.tasks.parroting): the
            # share of replies taking >= 75% of their words from the message, of replies
            # repeating a word, the mean overlap; BLEU/chrF partly reward copying the message
            return {**text_scores(outputs, refs), **parroting_scores(outputs, messages)}

        metrics = self.decoded_scores(model, device, batch_size, max_items, beam, mbr, scored)
        if self.options.rerank > 0:  # retrieve-then-rerank (workbench.tasks.rerank)
            chosen = self.rerank_outputs(model, batch_size, max_items, beam)
            scores = scored([c.text for c in chosen])
            metrics.update({f"{k}_rerank": v for k, v in scores.items()})
            metrics["rerank_retrieved_share"] = sum(c.retrieved for c in chosen) / max(len(chosen), 1)
        baseline = {}
        train = self._training_texts()
        if train:
            retrieval = self.retrieval_index()
            replies = [self._as_compared(retrieval.reply(m)) for m in read]
            baseline = {f"retrieval_{k}": v for k, v in scored(replies).items()}
        # Another trivial answer: the message itself, as the reply.
        baseline.update({f"echo_{k}": v for k, v in scored(messages).items()})
        # the yardstick of parroting: how often people do it (the references' own shares)
        baseline.update({f"references_{k}": v for k, v in parroting_scores(refs, messages).items()})
        return {"metrics": metrics, "baseline": baseline}

    def rerank_weights(self):
        from workbench.tasks.rerank import RerankWeights

        o = self.options
        return RerankWeights(o.rerank_length_norm, o.rerank_similarity, o.rerank_retrieved, generic=o.rerank_generic,
                             overlap=o.rerank_overlap)

    def retrieval_index(self) -> NearestQuestion | None:
        """The nearest-question index over the training exchanges (built once; None when
        there are none: a restored run of an old version without its training file)."""
        train = self._training_texts()
        if not train:
            return None
        if self._index is None or self._index[0] is not train:
            self._index = (train, NearestQuestion(train, self.tokenize))
        return self._index[1]

    def rerank_outputs(self, model, batch_size: int, max_items: int, beam: int, k: int = 0) -> list:
        """The validation messages' replies chosen by retrieve-then-rerank among beam
        search's (width ``beam``) and the ``k`` (default: data.options.rerank)
        nearest training questions' replies: a rerank.Candidate each (text, origin)."""
        from workbench.tasks.rerank import rerank

        index = self.retrieval_index()
        if index is None:
            raise DataError(self.path, "reranking needs the training exchanges: the run keeps none and the file is gone")
        sources = [m for m, _ in self.val_texts[:max_items]]
        return rerank(self, model, sources, index, k or self.options.rerank, beam, self.rerank_weights(), batch_size)

    def artifacts(self) -> dict:
        # the training exchanges: the retrieval baseline's and the reranked chat's index after
        # restore, without the training file (held-out exchanges are never among them)
        return {**super().artifacts(), "retrieval_exchanges": [list(p) for p in self._training_texts()]}

    def restore(self, artifacts: dict) -> None:
        super().restore(artifacts)
        self.train_texts = [(str(m), str(r)) for m, r in artifacts.get("retrieval_exchanges", [])]

    def _training_texts(self) -> list[tuple[str, str]]:
        """The training exchanges (kept in a run's task.json; read again after restore() of
        an older run; none when the file is gone)."""
        if not self.train_texts:
            try:
                self._split_file()
            except DataError:
                return []
        return self.train_texts


def _same_text(turn: str) -> str:
    return " ".join(turn.lower().split())


def conversation_groups(conversations: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[int]]]:
    """(distinct conversations, groups of their indices): repeated conversations are kept
    once, and conversations that share a turn (the same text, case and spacing aside) are
    in one group, so a held-out set made of whole groups shares no turn with training.
    Groups are in file order of their first conversation."""
    distinct = [list(c) for c in dict.fromkeys(map(tuple, conversations))]
    parent = list(range(len(distinct)))  # union-find over conversations

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, turns in enumerate(distinct):
        for turn in turns:
            j = first.setdefault(_same_text(turn), i)
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(distinct)):
        groups.setdefault(root(i), []).append(i)
    return distinct, list(groups.values())


def split_conversations(conversations: Sequence[Sequence[str]], val_fraction: float, seed: int = 0
                        ) -> tuple[list[list[str]], list[list[str]]]:
    """(training, held-out) conversations, no turn on both sides.

    Repeated conversations are kept once, and conversations that share a turn are held
    out or kept together, as one group (conversation_groups): the English corpus asks
    "Tell me a joke" in 30 conversations and answers "What kind of hardware" with a reply
    that another file gives to another question, so a split by conversation alone would
    leave held-out replies in the training data (8 of 112 held-out exchanges), which a
    model or a retrieval baseline could repeat rather than write. Groups are shuffled
    with a fixed seed; whole groups are held out until ``val_fraction`` of the
    conversations are, passing over any group that would hold out more than 1.2 times
    that. At least one group lands on each side (when every conversation shares a turn
    with another, they are split one by one)."""
    distinct, order = conversation_groups(conversations)
    if len(order) < 2:  # every conversation shares turns with the others: split them one by one
        order = [[i] for i in range(len(distinct))]
    random.Random(seed).shuffle(order)
    wanted = len(distinct) * val_fraction
    held: list[int] = []
    for group in order:
        if len(held) >= wanted:
            break
        if len(held) + len(group) <= max(wanted * 1.2, 1):  # a group far larger than wanted trains
            held += group
    if not held or len(held) == len(distinct):
        held = min(order, key=len)
    held_set = set(held)
    train = [c for i, c in enumerate(distinct) if i not in held_set]
    return train, [distinct[i] for i in sorted(held_set)]


def fold_conversations(conversations: Sequence[Sequence[str]], folds: int, seed: int = 0) -> list[list[list[str]]]:
    """The distinct conversations dealt into ``folds`` held-out sets for cross-validation,
    each conversation in exactly one, whole groups (conversation_groups) together so no
    turn is in two folds: a fold's model trains on the other folds and is scored on its
    own. Groups are shuffled with a fixed seed and dealt largest first, each to the fold
    with the fewest exchanges so far (the folds come out near equal in exchanges)."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    distinct, groups = conversation_groups(conversations)
    if len(groups) < folds:
        raise ValueError(f"{len(groups)} groups of conversations sharing no turn cannot make {folds} folds")
    random.Random(seed).shuffle(groups)
    size = [sum(max(len(distinct[i]) - 1, 0) for i in g) for g in groups]  # exchanges per group
    order = sorted(range(len(groups)), key=lambda g: -size[g])  # stable: ties keep the shuffled order
    held: list[list[int]] = [[] for _ in range(folds)]
    load = [0] * folds
    for g in order:
        f = min(range(folds), key=lambda k: (load[k], k))
        held[f] += groups[g]
        load[f] += size[g]
    return [[distinct[i] for i in sorted(f)] for f in held]


class NearestQuestion:
    """The retrieval baseline: the reply to the training message most similar to a new
    one, by TF-IDF cosine over word tokens (ties: the first in the file)."""

    def __init__(self, pairs: Sequence[tuple[str, str]], tokenize=None):
        self.tokenize = tokenize or (lambda s: tokenize_words(s, lowercase=True))
        self.replies = [r for _, r in pairs]
        docs = [Counter(self.tokenize(m)) for m, _ in pairs]
        df = Counter(t for d in docs for t in d)
        n = len(docs)
        self.idf = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for i, d in enumerate(docs):
            weights = {t: c * self.idf[t] for t, c in d.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for t, w in weights.items():
                self.postings.setdefault(t, []).append((i, w / norm))

    def _scores(self, message: str) -> dict[int, float]:
        """Training message index -> its cosine to ``message`` (those sharing a word with it)."""
        query = {t: c * self.idf[t] for t, c in Counter(self.tokenize(message)).items() if t in self.idf}
        norm = math.sqrt(sum(w * w for w in query.values())) or 1.0
        scores: dict[int, float] = {}
        for t, w in query.items():
            for i, v in self.postings[t]:
                scores[i] = scores.get(i, 0.0) + w / norm * v
        return scores

    def index_of(self, message: str, skip: Collection[int] = ()) -> int:
        """The nearest pair's index, the pairs in ``skip`` left out (when no word is
        shared: the first pair not left out; 0 when every pair is)."""
        scores = self._scores(message)
        for i in skip:
            scores.pop(i, None)
        if not scores:
            return next((i for i in range(len(self.replies)) if i not in skip), 0)
        return max(scores, key=lambda i: (scores[i], -i))

    def top(self, message: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` training exchanges whose messages are nearest ``message``: [(index,
        cosine)], nearest first (ties: the first in the file), distinct replies only (a
        reply given to several near messages is kept once, at its best). The first is
        index_of's; with no shared word, the first exchange (cosine 0) as index_of."""
        scores = self._scores(message)
        if not scores:
            return [(0, 0.0)][:k]
        out, seen = [], set()
        for i in sorted(scores, key=lambda i: (-scores[i], i)):
            if self.replies[i] not in seen:
                seen.add(self.replies[i])
                out.append((i, scores[i]))
                if len(out) == k:
                    break
        return out

    def reply(self, message: str, skip: Collection[int] = ()) -> str:
        return self.replies[self.index_of(message, skip)]
