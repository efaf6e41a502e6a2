"""Try a trained model: the engine side of the try-out panel and of `workbench try`.

Qt-free; every function returns plain data (str, numbers, lists, small numpy arrays), so
the GUI's worker thread can hand results to widgets and the CLI can print them as JSON.

- ``open_run(run_dir)``: a run folder (preset.json + task.json + model.safetensors) ->
  a ``Session``: the restored task and the model with its weights, never unpickling
  anything (workbench.export.runfolder.load_run). ``session_from_model`` wraps a model
  still in memory (a run that just finished).
- One function per mode (``Session.mode``, chosen from the task):
    generate         language models: ``generate()`` yields tokens one at a time
    tag              taggers: ``tag()`` -> words, tags, confidences
    classify         sequence classifiers: ``classify()`` -> class probabilities
    transduce        encoder-decoders: ``transduce()`` -> greedy + sampled (+ beam) + attention
    chat             chatbots: ``chat()`` -> the reply to a message and its attention;
                     ``chat_stream()`` yields it token by token
    caption          one-to-many: ``caption()`` -> a generated or given image, its caption
    video_classify   ``video_outputs()`` -> a probability vector per frame (clip by clip)
    next_frame       ``video_outputs()`` -> predicted next frames beside the real ones;
                     ``video_rollout()`` -> the model rolled forward on its own frames
                     from a chosen frame, beside the real clip, error against horizon
    forecast, adding ``numbers()`` -> the forecast / the predicted sum
    speech           ``audio_outputs()`` -> waveform, spectrogram, per-frame probabilities,
                     the word (many-to-one) or the CTC decodings and path, saliency
  Video is decoded on demand (``VideoFrames`` for display, io.video's iterator and cache
  for the model's own small frames).
- Inside the network: ``inside()`` -> per recurrent layer the hidden state [units, T] and
  the cell's other states and gate activations (workbench.cells: Cell.series), recomputed
  with the cell's step from the layer's own weights (workbench.engine.model.unrolled_layer); and saliency through time
  ||dy/dx_t|| over t: the gradient of the chosen output with respect to the input side's
  output vectors.

A session is used by one thread at a time (the GUI's inference worker or the CLI).
"""
from __future__ import annotations

import math
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench import cells, tryout_modes
from workbench.engine.model import decoding_rules, sample_logits, unrolled_layer
from workbench.io.vocab import EOS
from workbench.spec import Preset

# Generation / decoding lengths beyond these are typos.
MAX_GENERATE = 100_000
MAX_DECODE = 1000
# The look inside the network covers at most this many steps (the last ones of a text).
MAX_INSIDE_STEPS = 2000
# Video: model frames analysed per request at most (after the task's stride), and the
# most their float copies may take (large frame settings get fewer frames).
MAX_VIDEO_FRAMES = 5000
MAX_VIDEO_BYTES = 128 * 2**20
# Next-frame rollouts in Try it: frames rolled forward from the chosen frame.
ROLLOUT_STEPS = 10
# Hutchinson probes for the saliency of a vector (regression) output.
SALIENCY_PROBES = 16

# The modes are described in workbench.tryout_modes (one Mode each); these are read off it.
TEXT_MODES = tryout_modes.of_input("text")
VIDEO_MODES = tryout_modes.of_input("video")
AUDIO_MODES = tryout_modes.of_input("audio")
MODE_OF_TASK = {task: m.name for m in tryout_modes.MODES for task in m.tasks}
MODE_TITLES = {m.name: m.title for m in tryout_modes.MODES}


class InputError(ValueError):
    """The user's input does not fit the model (empty text, wrong mode, bad numbers)."""


# ----------------------------------------------------------------------------- sessions


@dataclass
class Session:
    """A trained model ready to try: the preset, the restored task, the model (eval, CPU)."""

    preset: Preset
    task: object  # workbench.tasks.base.Task
    model: torch.nn.Module  # workbench.engine.model.RecurrentModel
    run_dir: Path | None = None
    mode: str = ""
    name: str = ""

    def __post_init__(self):
        if not self.mode:
            self.mode = mode_for(self.preset.data.task)
        if not self.name:
            self.name = self.run_dir.name if self.run_dir is not None else self.preset.name
        self.model.eval()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        """What the panel needs to lay itself out: plain data."""
        spec = self.preset.model
        layers = []
        for name, layer, _rnn in self.model.recurrent_layers():
            layers.append({"name": name, "cell": layer.cell, "hidden_size": layer.hidden_size,
                           "bidirectional": layer.bidirectional,
                           "series": cells.get(layer.cell).series})
        mode = tryout_modes.get(self.mode)
        out = {"name": self.name, "run_dir": str(self.run_dir) if self.run_dir else "",
               "task": self.preset.data.task, "task_title": getattr(self.task, "title", ""),
               "mode": self.mode, "mode_title": mode.title, "input": mode.input,
               "topology": spec.topology, "attention": bool(spec.attention and spec.topology == "encoder_decoder"),
               "layers": layers, "classes": classes_of(self.task), "hint": mode.hint(self.task),
               "regression": spec.head.kind == "regression"}
        out.update(mode.extras(self.task))
        return out


def mode_for(task_name: str) -> str:
    mode = tryout_modes.for_task(task_name)
    if mode is None:
        raise InputError(f"the task {task_name!r} has no try-out mode")
    return mode.name


def classes_of(task) -> list[str]:
    for attr in ("class_names", "classes", "tag_names"):
        value = getattr(task, attr, None)
        if isinstance(value, (list, tuple)) and value:
            return [str(v) for v in value]
    return []


def open_run(run_dir: str | Path) -> Session:
    """A run folder -> Session (preset.json, task.json, the weights; nothing unpickled)."""
    from workbench.export.runfolder import load_run

    run = load_run(run_dir)
    return Session(preset=run.preset, task=run.task, model=run.model, run_dir=Path(run.run_dir))


def session_from_model(preset: Preset, task, model: torch.nn.Module, run_dir: str | Path | None = None) -> Session:
    """A model still in memory (a run that just finished) -> Session."""
    return Session(preset=preset, task=task, model=model, run_dir=Path(run_dir) if run_dir else None)


def _require(session: Session, *modes: str) -> None:
    if session.mode not in modes:
        raise InputError(f"this run ({session.preset.data.task}, mode {session.mode!r}) does not do that; "
                         f"it needs one of: {', '.join(modes)}")


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1)


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) if seed is not None else random.randrange(2**31))
    return g


def _check_sampling(temperature: float, top_k: int) -> None:
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise InputError(f"temperature must be 0 (greedy) or more, got {temperature}")
    if top_k < 0:
        raise InputError(f"top-k must be 0 (all tokens) or more, got {top_k}")


# ----------------------------------------------------------------------------- language models


def generate(session: Session, prompt: str, length: int = 200, temperature: float = 1.0, top_k: int = 0,
             seed: int | None = None, stop: Callable[[], bool] | None = None) -> Iterator[dict]:
    """Continue ``prompt`` token by token: yields {"index", "id", "token", "text", "p"}
    (``text``: what to append to the shown text; ``p``: the model's probability of that
    token at temperature 1). Exactly ``length`` tokens unless stopped: close the
    generator, or pass ``stop`` (checked before each token)."""
    _require(session, "generate")
    _check_sampling(temperature, top_k)
    if not 1 <= length <= MAX_GENERATE:
        raise InputError(f"length must be between 1 and {MAX_GENERATE}, got {length}")
    task, model = session.task, session.model
    vocab = task.vocab
    ids = task.encode_text(prompt)[0].tolist() if prompt else []
    if not ids:  # nothing to read: start after a line break (or the first real token)
        ids = [vocab.index["\n"]] if "\n" in vocab else [min(2, len(vocab) - 1)]
    gen = _generator(seed)
    prev = vocab.tokens[ids[-1]]
    state = None
    x = torch.tensor([ids], dtype=torch.long, device=session.device)
    for i in range(length):
        if stop is not None and stop():
            return
        with torch.no_grad():
            out, state = model(x, initial_states=state, return_states=True)  # [1, T, V]
            logits = out[:, -1]  # [1, V]
            token = int(sample_logits(logits, temperature, top_k, gen)[0])
            p = float(_softmax(logits)[0, token])
        tok = vocab.tokens[token]
        # What detokenizing adds after the previous token (a space between words, say).
        before = task.detokenize([prev])
        text = task.detokenize([prev, tok])[len(before):]
        prev = tok
        yield {"index": i, "id": token, "token": tok, "text": text, "p": p}
        x = torch.tensor([[token]], dtype=torch.long, device=session.device)


def generate_text(session: Session, prompt: str, **kwargs) -> dict:
    """``generate`` run to the end: {"prompt", "generated", "tokens", "probabilities"}."""
    steps = list(generate(session, prompt, **kwargs))
    return {"prompt": prompt, "generated": "".join(s["text"] for s in steps),
            "tokens": [s["token"] for s in steps], "probabilities": [round(s["p"], 6) for s in steps]}


# ----------------------------------------------------------------------------- taggers, classifiers


def tag(session: Session, sentence: str) -> dict:
    """{"words", "tags", "confidences", "tag_names", "probabilities" [T, K]}: one tag per word."""
    _require(session, "tag")
    task = session.task
    try:
        batch = task.encode_sentence(sentence)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with torch.no_grad():
        probs = _softmax(session.model(batch.x.to(session.device), lengths=batch.lengths))[0].cpu()  # [T, K]
    conf, idx = probs.max(dim=-1)
    names = task.tag_names
    return {"words": sentence.split(), "tags": [names[i] for i in idx.tolist()],
            "confidences": [float(c) for c in conf], "tag_names": names, "probabilities": probs.numpy()}


def _classify_batch(session: Session, text: str):
    try:
        return session.task.encode_text(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _tokens_of(session: Session, text: str) -> list[str]:
    task = session.task
    if session.preset.data.task == "brackets":
        return list("".join(text.split()))
    return list(task.tokenize(text))


def classify(session: Session, text: str) -> dict:
    """{"tokens", "classes", "probabilities" [K], "predicted"}; and, for a model that reads
    left to right, "over_time" [T, K]: what it would answer if the text ended at each step."""
    _require(session, "classify")
    model = session.model
    batch = _classify_batch(session, text)
    x = batch.x.to(session.device)
    with torch.no_grad():
        probs = _softmax(model(x, lengths=batch.lengths))[0].cpu()  # [K]
        over_time = None
        if not any(layer.bidirectional for layer in model.spec.layers):
            out, _ = model.encoder(model.encode_input(x))  # [1, T, H]
            over_time = _softmax(model.head(out))[0].cpu().numpy()  # [T, K]
    classes = classes_of(session.task)
    result = {"tokens": _tokens_of(session, text)[: x.shape[1]], "classes": classes,
              "probabilities": [float(p) for p in probs], "predicted": classes[int(probs.argmax())]}
    if over_time is not None:
        result["over_time"] = over_time
    if session.preset.data.task == "brackets":
        result["truth"] = classes[int(session.task.is_well_nested("".join(text.split())))]
    return result


# ----------------------------------------------------------------------------- encoder-decoder, one-to-many


def _decode_rules(session: Session) -> dict:
    """The task's decoding rules (TransductionTask.decode_rules: no repeated n-gram, a
    minimum length, banned ids); none for tasks without them."""
    rules = getattr(session.task, "decode_rules", None)
    return rules() if rules is not None else {}


def _output_tokens(session: Session, ids: list[int], source: str = "") -> list[str]:
    """Output ids -> tokens; a copy model's extended ids (>= the vocabulary) are words of
    ``source``, the text the model read (TransductionTask.target_tokens)."""
    if hasattr(session.task, "target_tokens"):
        return session.task.target_tokens(ids, source)
    vocab = getattr(session.task, tryout_modes.get(session.mode).outputs)
    return [vocab.tokens[i] for i in ids]


def _decode(session: Session, x, lengths, temperature: float, top_k: int, gen, max_len: int,
            source: str = "") -> dict:
    tokens, attention = session.model.generate(x, max_len=max_len, lengths=lengths, temperature=temperature,
                                               top_k=top_k, generator=gen, **_decode_rules(session))
    ids = tokens[0].tolist()
    eos = session.model.io.eos_id
    if eos in ids:
        ids = ids[: ids.index(eos) + 1]  # keep the <eos>: the model chose to stop there
    out = {"ids": ids, "tokens": _output_tokens(session, ids, source)}
    if attention is not None:
        out["attention"] = attention[0, : len(ids)].cpu().numpy()  # [L, S]
    return out


def _beam_decode(session: Session, x, lengths, width: int, max_len: int, source: str = "") -> dict:
    options = session.task.beam_options() if hasattr(session.task, "beam_options") else {}
    tokens, attention = session.model.beam_search(x, width, max_len, lengths, **options)
    ids = tokens[0].tolist()
    eos = session.model.io.eos_id
    if eos in ids:
        ids = ids[: ids.index(eos) + 1]
    out = {"ids": ids, "tokens": _output_tokens(session, ids, source), "width": width}
    if attention is not None:
        out["attention"] = attention[0, : len(ids)].cpu().numpy()  # [L, S]
    return out


def _check_beam(beam: int) -> None:
    if not 1 <= beam <= 64:
        raise InputError(f"the beam width must be between 1 (greedy) and 64, got {beam}")


def _source_batch(session: Session, text: str, max_len: int):
    try:
        batch = session.task.encode_source(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    max_len = max_len or min(max(2 * int(batch.x.shape[1]) + 10, 40), MAX_DECODE)
    if not 1 <= max_len <= MAX_DECODE:
        raise InputError(f"the output length must be between 1 and {MAX_DECODE}, got {max_len}")
    return batch, max_len


def transduce(session: Session, text: str, temperature: float = 1.0, top_k: int = 0, seed: int | None = None,
              max_len: int = 0, beam: int = 1) -> dict:
    """{"source_tokens", "greedy": {"text", "ids", "tokens"}, "sampled": {...},
    "beam": {..., "width"} (beam > 1 only), "attention" [L, S] of the greedy output (when
    the model has attention, else None)}."""
    _require(session, "transduce")
    _check_sampling(temperature, top_k)
    _check_beam(beam)
    task = session.task
    batch, max_len = _source_batch(session, text, max_len)
    x = batch.x.to(session.device)
    greedy = _decode(session, x, batch.lengths, 0.0, 0, None, max_len, text)
    sampled = _decode(session, x, batch.lengths, temperature, top_k, _generator(seed), max_len, text)
    found = {"greedy": greedy, "sampled": sampled}
    if beam > 1:
        found["beam"] = _beam_decode(session, x, batch.lengths, beam, max_len, text)
    for d in found.values():
        d["text"] = task.decode_target(d["ids"], text)
    out = {"source": text, "source_tokens": task.tokenize(text)[: x.shape[1]]}
    out.update({name: {k: v for k, v in d.items() if k != "attention"} for name, d in found.items()})
    out["attention"] = greedy.get("attention")
    return out


# ----------------------------------------------------------------------------- chatbots


def chat_source(session: Session, message: str, previous: str = "") -> str:
    """What the model reads for a message: with the task's ``context`` option, the turn
    before it (the model's last reply) first; with its ``retrieve`` option, the reply
    retrieved for them after (the task's model_source)."""
    from workbench.io.dialogue import CONTEXT_SEPARATOR

    if getattr(session.task.options, "context", False) and previous.strip():
        message = previous.strip() + CONTEXT_SEPARATOR + message
    model_source = getattr(session.task, "model_source", None)
    return model_source(message) if model_source is not None else message


def chat(session: Session, message: str, previous: str = "", beam: int = 1, temperature: float = 0.0,
         top_k: int = 0, seed: int | None = None, max_len: int = 0, mbr: int = 0, rerank: int | None = None) -> dict:
    """The reply to ``message``: {"message", "source_tokens" (what the model read),
    "reply", "reply_tokens", "ids", "decoding" ("greedy", "beam N", "sampled at T",
    "MBR over N samples" or "reranked: retrieved #r" / "reranked: beam N"), "attention"
    [L, S] over source_tokens per reply token (None without attention)}. Minimum Bayes risk over ``mbr`` > 1 samples (at ``temperature``,
    1 when it is 0; the task's mbr_decode) when asked, else sampling at ``temperature``
    > 0, else retrieve-then-rerank when ``rerank`` K > 0 (None: the task's
    data.options.rerank; workbench.tasks.rerank: the model's beam-search reply (width
    ``beam``, 4 when it is 1) and the K nearest training questions' replies, the
    model's choice; the result adds "candidates" [{"text", "origin", "score"}]), else
    beam search when beam > 1, else greedy."""
    _require(session, "chat")
    _check_sampling(temperature, top_k)
    _check_beam(beam)
    if not 0 <= mbr <= 256:
        raise InputError(f"the MBR sample count must be between 2 and 256 (0: off), got {mbr}")
    if rerank is None:
        rerank = getattr(session.task.options, "rerank", 0)
    if not 0 <= rerank <= 1000:
        raise InputError(f"the count of retrieved replies to rerank must be between 0 (off) and 1000, got {rerank}")
    if not message.strip():
        raise InputError("the message is empty")
    source = chat_source(session, message, previous)
    batch, max_len = _source_batch(session, source, max_len)
    x = batch.x.to(session.device)
    if rerank > 0 and mbr <= 1 and temperature <= 0:
        return _reranked_reply(session, message, source, rerank, beam if beam > 1 else 4, max_len)
    if mbr > 1:
        tokens, attention = session.task.mbr_decode(session.model, x, batch.lengths.to(session.device), [source], mbr,
                                                    max_len, temperature or 1.0, seed or 0)
        ids = tokens[0].tolist()
        eos = session.model.io.eos_id
        ids = ids[: ids.index(eos) + 1] if eos in ids else ids
        out = {"ids": ids}
        if attention is not None:
            out["attention"] = attention[0, : len(ids)].cpu().numpy()  # [L, S]
        decoding = f"MBR over {mbr} samples"
    elif beam > 1:
        out, decoding = _beam_decode(session, x, batch.lengths, beam, max_len, source), f"beam {beam}"
    else:
        gen = _generator(seed) if temperature > 0 else None
        out = _decode(session, x, batch.lengths, temperature, top_k, gen, max_len, source)
        decoding = f"sampled at {temperature:g}" if temperature > 0 else "greedy"
    words = [w for w in _output_tokens(session, out["ids"], source) if w != EOS]
    return {"message": message, "source_tokens": session.task.tokenize(source)[: x.shape[1]],
            "reply": session.task.detokenize(words), "reply_tokens": words, "ids": out["ids"],
            "decoding": decoding, "attention": out.get("attention")}


def _reranked_reply(session: Session, message: str, source: str, k: int, beam: int, max_len: int) -> dict:
    """chat() by retrieve-then-rerank (workbench.tasks.rerank). The chosen reply's ids
    are its training encoding (a copied word's extended id, <unk> for a word the model can
    neither write nor copy) and its attention the teacher-forced one; the reply is its text."""
    from workbench.tasks.rerank import candidate_pools, choose

    task, model = session.task, session.model
    index = task.retrieval_index()
    if index is None:
        raise InputError("reranking needs the training exchanges: this run keeps none and its data file is gone")
    weights = task.rerank_weights()
    pool = candidate_pools(task, model, [source], index, k, beam, max_len=max_len, prior=weights.generic != 0)[0]
    best = pool[choose(pool, weights)]
    (x_ids, y_ids), = task._encode_pairs([(source, best.text)])
    batch = task._batch([(x_ids, y_ids)]).to(session.device)
    with torch.no_grad():
        model(batch.x, batch.y_in, batch.lengths)
    attention = getattr(model, "last_attention", None)
    ids = y_ids + [model.io.eos_id]
    origin = f"beam {beam}" if best.origin == "beam" else best.origin  # "greedy", "retrieved #r"
    return {"message": message, "source_tokens": task.tokenize(source)[: batch.x.shape[1]], "reply": best.text,
            "reply_tokens": task.tokenize(best.text), "ids": ids, "decoding": f"reranked: {origin}",
            "attention": attention[0, : len(ids)].cpu().numpy() if attention is not None else None,
            "candidates": [{"text": c.text, "origin": c.origin, "score": round(weights.score(c), 4),
                            "overlap": round(c.overlap, 3)} for c in pool]}


def chat_stream(session: Session, message: str, previous: str = "", temperature: float = 0.0, top_k: int = 0,
                seed: int | None = None, max_len: int = 0, stop: Callable[[], bool] | None = None
                ) -> Iterator[dict]:
    """The reply decoded token by token (greedy at temperature 0, else sampled): yields
    {"index", "id", "token", "text" (to append to the shown reply), "attention" [S]}.
    Stops at <eos> (not yielded), after max_len tokens, or when ``stop()`` says so."""
    _require(session, "chat")
    _check_sampling(temperature, top_k)
    source = chat_source(session, message, previous)
    batch, max_len = _source_batch(session, source, max_len)
    model, task = session.model, session.task
    x = batch.x.to(session.device)
    gen = _generator(seed) if temperature > 0 else None
    with torch.no_grad():
        _, state, enc = model.decoding_start(x, batch.lengths)
        token = torch.full((1,), model.io.bos_id, dtype=torch.long, device=x.device)
        words: list[str] = []
        ids: list[int] = []
        shown = ""
        rules = _decode_rules(session)
        done = torch.zeros(1, dtype=torch.bool)
        for index in range(max_len):
            if stop is not None and stop():
                return
            logits, state, weights = model.decode_step(token, state, enc, batch.lengths)  # [1, V], [1, S]
            written = torch.tensor([ids], dtype=torch.long, device=x.device).reshape(1, -1)  # [1, t]
            logits = decoding_rules(logits, written, done, model.io.eos_id, **rules)  # as generate() does
            attention = weights[0].cpu().numpy() if weights is not None else None  # [S]
            token = sample_logits(logits, temperature, top_k, gen)  # [1]
            i = int(token)
            if i == model.io.eos_id:
                return
            ids.append(i)
            words.append(_output_tokens(session, [i], source)[0])
            # What this token adds to the reply as shown (detokenised: no space before ",").
            reply = task.detokenize(words)
            text, shown = reply[len(shown):], reply
            yield {"index": index, "id": i, "token": words[-1], "text": text, "attention": attention}


def _image_array(session: Session, image=None, path: str | Path | None = None) -> np.ndarray:
    """An image for the captioner as float32 [3, S, S] in [0, 1]."""
    size = session.task.size
    if path is not None:
        from workbench.io.video import FrameSettings, read_clip

        clip = read_clip(Path(path), FrameSettings(width=size, height=size, grey=False, max_frames=1))
        return clip[0].astype(np.float32) / 255.0
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.shape[0] != 3:
        arr = arr.transpose(2, 0, 1)  # [H, W, 3] -> [3, H, W]
    if arr.shape != (3, size, size):
        raise InputError(f"the image must be 3 x {size} x {size} (got {tuple(arr.shape)})")
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def caption(session: Session, image=None, path: str | Path | None = None, seed: int | None = None,
            temperature: float = 1.0, top_k: int = 0, max_len: int = 30) -> dict:
    """Caption an image: a new generated one (``seed``; default a random one), an array
    ([3, S, S] or [S, S, 3]), or an image file (``path``, resized to S x S).
    {"image": uint8 [S, S, 3], "truth" (generated images only), "greedy", "sampled"}."""
    _require(session, "caption")
    _check_sampling(temperature, top_k)
    task = session.task
    truth = None
    if image is None and path is None:
        seed = random.randrange(2**31) if seed is None else int(seed)
        img, truth = task.random_image(seed)
        arr = np.asarray(img, dtype=np.float32)
    else:
        arr = _image_array(session, image, path)
    x = task.encode_image(arr).x.to(session.device)  # [1, 3, S, S]
    greedy = _decode(session, x, None, 0.0, 0, None, max_len)
    sampled = _decode(session, x, None, temperature, top_k, _generator(seed), max_len)
    for d in (greedy, sampled):
        d["text"] = task.decode_caption(d["ids"])
    shown = (np.clip(arr, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)  # [S, S, 3]
    return {"image": shown, "truth": truth, "seed": seed, "greedy": greedy, "sampled": sampled}


# ----------------------------------------------------------------------------- numbers


def _parse_numbers(text: str) -> list[list[str]]:
    rows = [r for r in re.split(r"[;\n]", text) if r.strip()]
    return [[v for v in re.split(r"[,\s]+", r.strip()) if v] for r in rows]


def _float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"{value!r} is not a finite number")
    return number


def _adding_input(text: str) -> tuple[np.ndarray, float]:
    """'0.2 0.7* 0.1 0.4*' -> (x [T, 2] value and marker, the sum of the marked values)."""
    cells = [v for row in _parse_numbers(text) for v in row]
    if len(cells) < 2:
        raise InputError("type at least two numbers, two of them marked with *")
    values, marks = [], []
    for cell in cells:
        marked = cell.startswith("*") or cell.endswith("*")
        values.append(_float(cell.strip("*")))
        marks.append(1.0 if marked else 0.0)
    if sum(marks) != 2:
        raise InputError(f"mark exactly two numbers with * (found {int(sum(marks))})")
    x = np.stack([np.asarray(values), np.asarray(marks)], axis=-1).astype(np.float32)
    return x, float(sum(v for v, m in zip(values, marks) if m))


def _forecast_history(session: Session, text: str) -> np.ndarray:
    task = session.task
    rows = _parse_numbers(text)
    if not rows:
        history = np.asarray(task.tail_values, dtype=np.float64)
        if history.size == 0:
            raise InputError("type some values: this run keeps no end of its series")
        return history.reshape(len(history), -1)
    F = len(task.columns)
    if F == 1:
        values = [_float(v) for row in rows for v in row]
        return np.asarray(values, dtype=np.float64)[:, None]
    for i, row in enumerate(rows):
        if len(row) != F:
            raise InputError(f"row {i + 1} has {len(row)} values; this series has {F} columns "
                             f"({', '.join(task.columns)})")
    return np.asarray([[_float(v) for v in row] for row in rows], dtype=np.float64)


def numbers(session: Session, text: str) -> dict:
    """forecast: {"history" [T, F], "forecast" [k, F], "columns"}; adding: {"values",
    "marked", "prediction", "target"}."""
    _require(session, "forecast", "adding")
    if session.mode == "forecast":
        history = _forecast_history(session, text)
        try:
            pred = session.task.forecast(session.model, history)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return {"history": history[-session.task.options.window:].tolist(), "forecast": pred.tolist(),
                "columns": list(session.task.columns)}
    x, target = _adding_input(text)
    with torch.no_grad():
        pred = float(session.model(torch.from_numpy(x)[None].to(session.device))[0, 0])
    return {"values": x[:, 0].tolist(), "marked": [bool(m) for m in x[:, 1]], "prediction": pred, "target": target}


# ----------------------------------------------------------------------------- video


class VideoFrames:
    """Display frames of a video file or frames folder, decoded on demand.

    Frame i is the i-th frame the model reads (source frame ``i * stride``), at a size
    fit for the screen (longest side ``max_side``). Decoding walks the file forward with
    io.video's iterator; going back restarts it. Recent frames stay in a small cache,
    so scrubbing near the current position does not decode again."""

    def __init__(self, path: str | Path, stride: int = 1, max_side: int = 360, cache_bytes: int = 96 * 2**20):
        from workbench.io.video import count_frames, probe

        self.path = Path(path)
        self.info = probe(self.path)
        self.stride = max(int(stride), 1)
        source = self.info.frames or count_frames(self.path)
        self.frame_count = max((source + self.stride - 1) // self.stride, 0)
        scale = min(1.0, max_side / max(self.info.width, self.info.height, 1))
        # Even sizes: some pixel formats need them.
        self.width = max(2, int(round(self.info.width * scale / 2)) * 2)
        self.height = max(2, int(round(self.info.height * scale / 2)) * 2)
        self.fps = (self.info.fps / self.stride) if self.info.fps else None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_limit = max(cache_bytes // max(self.width * self.height * 3, 1), 4)
        self._iter = None
        self._next = 0  # index of the frame the live iterator yields next
        self.decoded = 0  # frames decoded so far (for tests: scrubbing back does decode again)

    def __len__(self) -> int:
        return self.frame_count

    def _settings(self, start: int):
        from workbench.io.video import FrameSettings

        return FrameSettings(width=self.width, height=self.height, grey=False, stride=self.stride,
                             start=start * self.stride)

    def frame(self, index: int) -> np.ndarray:
        """uint8 [H, W, 3] of model frame ``index``."""
        from workbench.io.video import iter_frames

        if not 0 <= index < max(self.frame_count, 1):
            raise InputError(f"frame {index} is outside the video's {self.frame_count} frames")
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        if self._iter is None or index < self._next or index - self._next > 64:
            self._iter = iter_frames(self.path, self._settings(index))
            self._next = index
        found = None
        while self._next <= index:
            try:
                arr = next(self._iter)  # [3, H, W]
            except StopIteration:
                self._iter = None
                break
            image = np.ascontiguousarray(arr.transpose(1, 2, 0))
            self.decoded += 1
            self._put(self._next, image)
            if self._next == index:
                found = image
            self._next += 1
        if found is None:
            raise InputError(f"frame {index} could not be decoded from {self.path}")
        return found

    def _put(self, index: int, image: np.ndarray) -> None:
        self._cache[index] = image
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_limit:
            self._cache.popitem(last=False)


def open_video(session: Session, path: str | Path, max_side: int = 360) -> VideoFrames:
    _require(session, *VIDEO_MODES)
    return VideoFrames(path, stride=session.task.stride, max_side=max_side)


def _model_frames(session: Session, path: str | Path, start: int = 0, count: int = 0) -> torch.Tensor:
    """The model's own frames (the task's size, colour and stride): float [T, C, H, W] in
    [0, 1]; at most ``count`` (0: as many as MAX_VIDEO_FRAMES and MAX_VIDEO_BYTES allow)
    from model frame ``start``."""
    from workbench.io.paths import resolve_data_path
    from workbench.io.video import read_clip

    task = session.task
    C, H, W = task.frame_shape
    cap = max(min(MAX_VIDEO_FRAMES, MAX_VIDEO_BYTES // (4 * C * H * W)), 2)
    count = min(count or cap, cap)
    clip = read_clip(resolve_data_path(path), task.frame_settings(count, start * task.stride))  # uint8
    return torch.from_numpy(clip.astype(np.float32) / 255.0)


def video_outputs(session: Session, path: str | Path, max_frames: int = 0) -> dict:
    """The model's outputs over a video: its first ``max_frames`` model frames (0: as
    many as MAX_VIDEO_FRAMES and MAX_VIDEO_BYTES allow).

    video_classify: {"classes", "probabilities" [T, K] (row t: the answer for the clip
      cut after frame t), "clip_len", "clips": [{"start", "end", "probabilities",
      "predicted"}]}; the video is read in consecutive clips of the training clip length,
      each from a fresh state, as the model was trained.
    next_frame: {"predicted" [T-1, C, H, W] (row i: the guess for frame i+1 from frames
      0..i), "real" [T-1, C, H, W], "mse" [T-1], "copy_last_mse" [T-1] (the no-motion
      guess), "mean_mse", "mean_copy_last_mse"}."""
    _require(session, *VIDEO_MODES)
    task, model = session.task, session.model
    frames = _model_frames(session, path, 0, max_frames)  # [T, C, H, W]
    T = int(frames.shape[0])
    out: dict = {"mode": session.mode, "frames": T, "frame_shape": list(task.frame_shape)}
    if session.mode == "video_classify":
        L = int(task.clip_len)
        probs = []
        full = (T // L) * L
        if full:
            clips = frames[:full].reshape(T // L, L, *frames.shape[1:])  # [N, L, C, H, W]
            for b in range(0, len(clips), 64):
                probs.append(task.frame_probabilities(model, clips[b:b + 64]).reshape(-1, len(task.classes)))
        if full < T:
            probs.append(task.frame_probabilities(model, frames[full:]))  # [T - full, K]
        p = torch.cat(probs).numpy()  # [T, K]
        clips_out = []
        for s in range(0, T, L):
            e = min(s + L, T)
            row = p[e - 1]
            clips_out.append({"start": s, "end": e, "probabilities": [float(v) for v in row],
                              "predicted": task.classes[int(row.argmax())]})
        out.update({"classes": list(task.classes), "probabilities": p, "clip_len": L, "clips": clips_out})
        return out
    if T < 2:
        raise InputError(f"{path} has {T} frame(s) after the stride: a next-frame model needs at least 2")
    predicted, real = task.predict_next_frames(model, frames)  # [T-1, C, H, W] each
    mse = (predicted - real).pow(2).flatten(1).mean(-1)  # [T-1]
    copy = (frames[:-1] - real).pow(2).flatten(1).mean(-1)
    out.update({"predicted": predicted.numpy(), "real": real.numpy(), "mse": mse.numpy(),
                "copy_last_mse": copy.numpy(), "mean_mse": float(mse.mean()),
                "mean_copy_last_mse": float(copy.mean())})
    return out


def video_rollout(session: Session, path: str | Path, start: int, steps: int = ROLLOUT_STEPS) -> dict:
    """A next-frame model rolled forward on its own predictions from model frame ``start``:
    it reads the training window's frames up to and including ``start``, then feeds each
    predicted frame back in for ``steps`` frames (fewer where the video ends).

    {"start", "context_start", "predicted" and "real" [K, C, H, W] (row k: frame
    start + 1 + k), per horizon 1..K [K]: "mse" (the model's), "copy_last_mse" (frame
    ``start`` held still), "psnr", "ssim"}."""
    _require(session, "next_frame")
    task = session.task
    if not 1 <= steps <= MAX_DECODE:
        raise InputError(f"a rollout runs 1 to {MAX_DECODE} frames, not {steps}")
    start = max(int(start), 0)
    first = max(0, start - int(task.window) + 1)
    frames = _model_frames(session, path, first, start - first + 1 + steps)  # [context + K, C, H, W]
    context = start - first + 1
    if len(frames) <= context:
        raise InputError(f"{path}: frame {start} is the video's last; nothing after it to roll forward to")
    curve = task.rollout_curve(session.model, frames, context, steps)
    out = {k: v.numpy() for k, v in curve.items()}
    out.update({"start": start, "context_start": first})
    return out


# ----------------------------------------------------------------------------- one-shot answers
# Each mode's ``answer`` (workbench.tryout_modes): (session, request) -> (result as plain
# data, the request that looks inside the network for the same input). ``request``: "text"
# | "image" (a path) | "video" (a path) | "audio" (a path), and "temperature", "top_k", "length", "seed",
# "max_frames", "beam", "sample", "previous", "mbr", "rerank" where the mode uses them (`workbench try`
# passes its options).


def answer_generate(session: Session, request: dict) -> tuple[dict, dict]:
    out = generate_text(session, request["text"], length=request.get("length", 200),
                        temperature=request.get("temperature", 1.0), top_k=request.get("top_k", 0),
                        seed=request.get("seed"))
    return out, {"text": request["text"] + out["generated"]}


def answer_tag(session: Session, request: dict) -> tuple[dict, dict]:
    out = tag(session, request["text"])
    out.pop("probabilities")
    return out, {"text": request["text"]}


def answer_classify(session: Session, request: dict) -> tuple[dict, dict]:
    out = classify(session, request["text"])
    out["probabilities"] = dict(zip(out["classes"], out["probabilities"]))
    return out, {"text": request["text"]}


def answer_transduce(session: Session, request: dict) -> tuple[dict, dict]:
    out = transduce(session, request["text"], temperature=request.get("temperature", 1.0),
                    top_k=request.get("top_k", 0), seed=request.get("seed"), beam=request.get("beam") or 1)
    return out, {"text": request["text"], "output_ids": out["greedy"]["ids"]}


def answer_chat(session: Session, request: dict) -> tuple[dict, dict]:
    """The reply: greedy, beam search ("beam" > 1), sampled at "temperature" when
    "sample" is set (the CLI's --sample), or minimum Bayes risk over "mbr" samples (at
    "temperature" when "sample" is set, else 1); "previous" is the turn before the message."""
    previous = request.get("previous") or ""
    temperature = request.get("temperature", 1.0) if request.get("sample") else 0.0
    out = chat(session, request["text"], previous=previous, beam=request.get("beam") or 1, temperature=temperature,
               top_k=request.get("top_k", 0), seed=request.get("seed"), mbr=request.get("mbr") or 0,
               rerank=request.get("rerank"))
    return out, {"text": chat_source(session, request["text"], previous), "output_ids": out["ids"]}


def answer_caption(session: Session, request: dict) -> tuple[dict, dict]:
    out = caption(session, path=request.get("image"), seed=request.get("seed"),
                  temperature=request.get("temperature", 1.0), top_k=request.get("top_k", 0))
    image = out.pop("image")
    out["image_shape"] = list(image.shape)
    return out, {"image": image, "output_ids": out["greedy"]["ids"]}


def answer_video(session: Session, request: dict) -> tuple[dict, dict]:
    out = video_outputs(session, request["video"], max_frames=request.get("max_frames", 0))
    out.pop("predicted", None)  # the frames themselves are for the window, not for JSON
    out.pop("real", None)
    if session.mode == "next_frame":
        # rolled forward from the first frame with a whole training window before it
        start = min(int(session.task.window) - 1, max(out["frames"] - 2, 0))
        rolled = video_rollout(session, request["video"], start)
        out["rollout"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rolled.items()
                          if k not in ("predicted", "real")}
    return out, {"video": request["video"], "start": 0}


def answer_numbers(session: Session, request: dict) -> tuple[dict, dict]:
    return numbers(session, request["text"]), {"text": request["text"]}


def answer(session: Session, request: dict) -> tuple[dict, dict]:
    """The session's mode's answer (workbench.tryout_modes: Mode.answer)."""
    return globals()[tryout_modes.get(session.mode).answer](session, request)


# ----------------------------------------------------------------------------- audio

# Waveform points handed to the window at most: a min/max envelope beyond this.
MAX_WAVE_POINTS = 4000


def _envelope(wave: np.ndarray, points: int = MAX_WAVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(times [P], min/max envelope [P, 2]) of samples [N]: two values per bucket, so a
    long recording draws as fast as a short one and its peaks still show."""
    n = len(wave)
    buckets = max(1, min(points, n))
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    lo = np.minimum.reduceat(wave, edges[:-1]) if n else np.zeros(0, np.float32)
    hi = np.maximum.reduceat(wave, edges[:-1]) if n else np.zeros(0, np.float32)
    return edges[:-1].astype(np.float64), np.stack([lo, hi], axis=1)


def prepare_audio(session: Session, request: dict) -> _Prepared:
    """The look inside for an audio file: its spectrogram frames, labelled by time."""
    if "audio" not in request:
        raise InputError("this run reads audio: give {'audio': path}")
    try:
        _wave, feats = session.task.audio_features(request["audio"])
    except Exception as exc:  # DataError: a bad file, in one line
        raise InputError(str(exc)) from None
    feats = feats[:MAX_INSIDE_STEPS]  # [T, n_mels]
    hop = session.task.mel.hop / session.task.mel.sample_rate
    return _Prepared(feats[None], None, None, [f"{t * hop:.2f} s" for t in range(len(feats))], [])


def answer_audio(session: Session, request: dict) -> tuple[dict, dict]:
    out = audio_outputs(session, request["audio"], beam_width=request.get("beam") or 8)
    for bulky in ("wave", "wave_times", "spectrogram", "probabilities", "mel_hz"):  # for the window, not JSON
        out.pop(bulky)
    out["frames"] = len(out["saliency"])
    return out, {"audio": request["audio"]}


def audio_outputs(session: Session, path: str | Path, beam_width: int = 8) -> dict:
    """What a speech model hears and answers for an audio file (read as in training:
    mono, resampled, at most the task's max_seconds):

    {"path", "sample_rate", "seconds", "hop_s" (seconds per spectrogram frame),
     "wave_times" [P] (s), "wave" [P, 2] (min/max envelope), "spectrogram" [T, n_mels]
     (the normalised log-mel frames the model reads), "labels" (the output columns:
     the classes; for CTC "blank" first), "probabilities" [T, K] (many-to-one: row t is
     the answer for the clip cut after frame t; CTC: the per-frame distribution),
     "mel_hz" [n_mels] (each mel bin's centre frequency),
     "saliency" [T] (||d answer / d x_t|| as ``inside()`` computes it: the answer is the
     predicted class's log probability, for CTC the best path's), and
     speech_classify: "classes" ranked [(class, p)], "predicted";
     speech_connected: "greedy", "beam", "beams" [(words, log p)], "ctc_path" [T] (the
     greedy path's output ids, 0 = blank)}."""
    _require(session, *AUDIO_MODES)
    task, model = session.task, session.model
    try:
        wave, feats = task.audio_features(path)
    except Exception as exc:  # DataError: a bad file, in one line
        raise InputError(str(exc)) from None
    rate = task.mel.sample_rate
    times, env = _envelope(np.asarray(wave))
    out: dict = {"path": str(path), "sample_rate": rate, "seconds": len(wave) / rate, "hop_s": task.mel.hop / rate,
                 "window_s": task.mel.n_fft / rate, "wave_times": times / rate, "wave": env,
                 "mel_hz": task.mel.centres_hz(),
                 "spectrogram": feats.numpy()}
    ctc = task.name == "speech_connected"
    prepared = prepare_audio(session, {"audio": path})
    out["saliency"] = _saliency(session, prepared, {"step": "all"} if ctc else {})["values"]
    if ctc:
        decoded = task.transcribe(model, feats, beam_width)
        out.update({"labels": task.class_names, "probabilities": decoded["probabilities"].numpy(),
                    "ctc_path": decoded["path"], "greedy": decoded["greedy"], "beam": decoded.get("beam", ""),
                    "beams": decoded.get("beams", [])})
        return out
    logits = task.frame_logits(model, feats)  # [T, K]
    probs = torch.softmax(logits, dim=-1)
    last = probs[-1]
    ranked = sorted(zip(task.classes, last.tolist()), key=lambda item: -item[1])
    out.update({"labels": list(task.classes), "probabilities": probs.numpy(),
                "classes": [(c, float(p)) for c, p in ranked], "predicted": ranked[0][0]})
    return out


# ----------------------------------------------------------------------------- inside the network


@dataclass
class _Prepared:
    """One example as the model reads it, with labels for its time axes."""

    x: torch.Tensor
    lengths: torch.Tensor | None
    y_in: torch.Tensor | None
    in_steps: list[str]  # labels of the input side's steps
    out_steps: list[str]  # labels of the decoder / generator steps (one_to_many, encoder_decoder)
    out_targets: list[int] = field(default_factory=list)  # the token chosen at each output step


def _prepare(session: Session, request: dict) -> _Prepared:
    """One example of the mode's input as the model reads it (Mode.prepare)."""
    return globals()[tryout_modes.get(session.mode).prepare](session, request)


def prepare_video(session: Session, request: dict) -> _Prepared:
    task = session.task
    if "video" not in request:
        raise InputError("this run reads video: give {'video': path}")
    start = max(int(request.get("start", 0)), 0)
    count = int(request.get("count", 0)) or (task.clip_len if session.mode == "video_classify" else task.window)
    count = min(count, MAX_INSIDE_STEPS)
    frames = _model_frames(session, request["video"], start, count)[None]  # [1, T, C, H, W]
    labels = [f"frame {start + i}" for i in range(frames.shape[1])]
    return _Prepared(frames, None, None, labels, [])


def prepare_caption(session: Session, request: dict) -> _Prepared:
    task = session.task
    if request.get("image") is None and request.get("path") is None:
        raise InputError("give an image (or a path) to look inside the captioner")
    arr = _image_array(session, request.get("image"), request.get("path"))
    ids = _output_ids(request, task.vocab, str.split)
    x = task.encode_image(arr).x
    return _prepared_generating(x, None, ids, task.vocab)


def prepare_transduce(session: Session, request: dict) -> _Prepared:
    task, text = session.task, request.get("text", "")
    try:
        batch = task.encode_source(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    ids = _output_ids(request, task.target_vocab, task.tokenize)
    # a copy model's reply may hold extended ids (words of the message): named by the message
    p = _prepared_generating(batch.x, batch.lengths, ids, task.target_vocab, task.target_tokens(ids, text))
    p.in_steps = task.tokenize(text)[: batch.x.shape[1]]
    return p


def prepare_generate(session: Session, request: dict) -> _Prepared:
    task, text = session.task, request.get("text", "")
    x = task.encode_text(text) if text else None
    if x is None or x.shape[1] == 0:
        raise InputError("the text is empty")
    x = x[:, -MAX_INSIDE_STEPS:]
    return _Prepared(x, None, None, [task.vocab.tokens[i] for i in x[0].tolist()], [])


def prepare_tag(session: Session, request: dict) -> _Prepared:
    text = request.get("text", "")
    try:
        batch = session.task.encode_sentence(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return _Prepared(batch.x, batch.lengths, None, text.split(), [])


def prepare_classify(session: Session, request: dict) -> _Prepared:
    text = request.get("text", "")
    batch = _classify_batch(session, text)
    return _Prepared(batch.x, batch.lengths, None, _tokens_of(session, text)[: batch.x.shape[1]], [])


def prepare_adding(session: Session, request: dict) -> _Prepared:
    x, _ = _adding_input(request.get("text", ""))
    return _Prepared(torch.from_numpy(x)[None], None, None, [f"{v:g}{'*' if m else ''}" for v, m in x.tolist()], [])


def prepare_forecast(session: Session, request: dict) -> _Prepared:
    task = session.task
    history = _forecast_history(session, request.get("text", ""))[-task.options.window:]
    z = (history - task.mean) / task.std
    x = torch.as_tensor(z, dtype=torch.float32)[None]
    if task.relative:
        x = x - (x[:, :1] if task.topology == "many_to_many" else x[:, -1:])
    return _Prepared(x, None, None, [", ".join(f"{v:g}" for v in row) for row in history], [])


def _output_ids(request: dict, vocab, tokenize: Callable[[str], list[str]]) -> list[int]:
    ids = request.get("output_ids")
    if ids is None:
        ids = vocab.encode(tokenize(request.get("output", "")))
    ids = [int(i) for i in ids]
    if not ids:
        raise InputError("give the output to look at (the decoded tokens)")
    return ids[:MAX_INSIDE_STEPS]


def _prepared_generating(x, lengths, ids: list[int], vocab, names: list[str] | None = None) -> _Prepared:
    """Teacher-forced decoder inputs for an output: y_in = <bos> + output[:-1], so step t
    reads the token before and produces output[t] (the states match free decoding);
    ``names``: the output's tokens (default: the vocabulary's)."""
    y_in = torch.tensor([[1] + ids[:-1]], dtype=torch.long)
    names = names if names is not None else [vocab.tokens[i] for i in ids]
    labels = ["<bos>"] + names[:-1]
    return _Prepared(x, lengths, y_in, [], labels, out_targets=list(ids))


def _forward(model, p: _Prepared, device, batch: int = 1):
    x = p.x.to(device)
    y_in = p.y_in.to(device) if p.y_in is not None else None
    if batch > 1:
        x = x.expand(batch, *x.shape[1:])
        y_in = y_in.expand(batch, -1) if y_in is not None else None
    return model(x, y_in, p.lengths)


def inside(session: Session, request: dict, target: dict | None = None, saliency: bool = True) -> dict:
    """Hidden states, gates and saliency for one input.

    request: {"text": ...} for text modes (with {"output_ids": [...]} or {"output": text}
      for an encoder-decoder's decoded output); {"image": array | "path": file,
      "output_ids": [...]} for the captioner; {"video": path, "start", "count"} for video.
    target: {"step": t, "class": k} picks the output whose saliency is shown (default:
      the last output step and the class the model predicts there); {"step": "all"}: the
      sum over every output step of the log probability of its predicted class.

    Returns {"in_steps", "out_steps": labels of the time axes ("out_produced": the
    token each output step wrote), "layers": [{"name",
    "cell", "axis": "in" | "out", "directions", "hidden_size", "series": {name: [units,
    T]}}], "saliency": {"values" [T], "axis", "target_step", "target_label", "what"}}.
    Units of a bidirectional layer are the forward direction's, then the backward's."""
    p = _prepare(session, request)
    model, device = session.model, session.device
    # Each layer's real input sequence and initial state, as the model's own forward
    # passes them (bridged initial states included).
    captured: list[tuple[str, torch.Tensor, object]] = []
    hooks = [rnn.register_forward_hook(
        lambda module, args, output, name=name: captured.append((name, args[0], args[1] if len(args) > 1 else None)))
        for name, _layer, rnn in model.recurrent_layers()]
    try:
        with torch.no_grad():
            _forward(model, p, device)
    finally:
        for h in hooks:
            h.remove()
    by_name = {name: (layer, rnn) for name, layer, rnn in model.recurrent_layers()}
    layers = []
    for name, inp, state in captured:
        layer, rnn = by_name[name]
        gates: list[dict] = []  # per direction: name -> [1, T, H]
        with torch.no_grad():
            out, _final, _ = unrolled_layer(rnn, layer.cell, inp, state, gates=gates)  # out [1, T, D*H]
        series = {"hidden": out[0].T.cpu().numpy()}  # [D*H, T]
        for gname in (n for n in cells.get(layer.cell).series[1:] if n in gates[0]):  # the states, then the gates
            series[gname] = torch.cat([g[gname][0] for g in gates], dim=-1).T.cpu().numpy()  # [D*H, T]
        decoding = name.startswith("decoder") or model.topology == "one_to_many"
        layers.append({"name": name, "cell": layer.cell, "axis": "out" if decoding else "in",
                       "directions": len(gates), "hidden_size": layer.hidden_size, "series": series})
        if getattr(rnn, "grid", None) is not None:  # a convolutional cell: its state is feature maps
            layers[-1]["maps"] = list(rnn.grid[1:])  # [C, H, W] per direction
    result = {"in_steps": p.in_steps, "out_steps": p.out_steps,
              "out_produced": [_class_name(session, i) for i in p.out_targets], "layers": layers}
    if saliency:
        result["saliency"] = _saliency(session, p, target or {})
    return result


def _saliency(session: Session, p: _Prepared, target: dict) -> dict:
    """||dy/dx_t|| over the input side's steps t for one chosen output y.

    Classification heads: y = log p(class) at the chosen output step. Regression heads:
    the output vector's Jacobian norm ||dy/dx_t||_F, estimated with SALIENCY_PROBES random
    projections (one batched backward pass). x_t is the vector the first recurrent layer
    reads at step t: the input side's output (the embedding of a token, the encoded
    frame), or for one-to-many the embedding of the previous generated token."""
    model, device = session.model, session.device
    regression = session.preset.model.head.kind == "regression"
    probes = SALIENCY_PROBES if regression else 1
    # one_to_many: the generator's inputs are the previous tokens; otherwise the input side
    source = model.target_embedding if model.topology == "one_to_many" else model.input_side
    seen: list[torch.Tensor] = []
    def record(_module, _args, output):
        if not output.requires_grad:  # frames as they are ('frames_grid'): a leaf that asks for its gradient
            output = output.detach().requires_grad_()
        seen.append(output)
        return output

    hook = source.register_forward_hook(record)
    try:
        with torch.enable_grad():
            out = _forward(model, p, device, batch=probes)  # [P, O] | [P, T, O]
            if out.dim() == 2:
                out = out[:, None]  # many_to_one: one output step
            steps = out.shape[1]
            if target.get("step") == "all" and not regression:
                # every output step's own answer at once: sum_t log p(predicted class at t),
                # e.g. a CTC model's best path (blanks included) or a tagger's whole tagging
                logp = torch.log_softmax(out[0].float(), dim=-1)  # [T, O]
                scalar = logp.max(dim=-1).values.sum()
                (grad,) = torch.autograd.grad(scalar, seen[0])
                norms = grad.float().pow(2).sum(-1).mean(0).sqrt()  # [T]
                return {"values": norms.detach().cpu().numpy(), "axis": "in", "target_step": -1,
                        "target_label": "every output step", "target_class": None,
                        "what": "||d sum_t log p(best at t)/dx_t||", "output_steps": steps}
            t = int(target.get("step", steps - 1))
            if not -steps <= t < steps:
                raise InputError(f"output step {t} is outside 0..{steps - 1}")
            t %= steps
            y = out[:, t]  # [P, O]
            label = _output_label(session, p, t, steps)
            if regression:
                gen = torch.Generator(device="cpu").manual_seed(0)
                v = (torch.randint(0, 2, y.shape, generator=gen) * 2 - 1).to(y)  # Rademacher
                scalar = (y * v).sum()
                what = "||dy/dx_t|| (Jacobian norm of the regression output)"
                cls_name = None
            else:
                logp = torch.log_softmax(y.float(), dim=-1)[0]
                if "class" in target:
                    k = int(target["class"])
                elif p.out_targets and t < len(p.out_targets):
                    k = p.out_targets[t]  # the token the model actually produced there
                else:
                    k = int(logp.argmax())
                scalar = logp[k]
                cls_name = _class_name(session, k)
                what = f"||d log p({cls_name})/dx_t||"
            (grad,) = torch.autograd.grad(scalar, seen[0])  # [P, T, D]
    finally:
        hook.remove()
    norms = grad.float().pow(2).sum(-1).mean(0).sqrt()  # [T] (mean over probes of squared norms)
    axis = "out" if model.topology == "one_to_many" else "in"
    return {"values": norms.detach().cpu().numpy(), "axis": axis, "target_step": t, "target_label": label,
            "target_class": cls_name, "what": what, "output_steps": steps}


def _class_name(session: Session, k: int) -> str:
    outputs = tryout_modes.get(session.mode).outputs
    if outputs != "classes":  # the task's vocabulary of output tokens
        tokens = getattr(session.task, outputs).tokens
        # beyond it: a copy model's extended ids, the message's j-th word its vocabulary lacks
        return tokens[k] if k < len(tokens) else f"<copied word {k - len(tokens) + 1}>"
    names = classes_of(session.task)
    return names[k] if 0 <= k < len(names) else str(k)


def _output_label(session: Session, p: _Prepared, t: int, steps: int) -> str:
    if p.out_steps:
        token = _class_name(session, p.out_targets[t]) if t < len(p.out_targets) else "?"
        return f"output {t} ({token})"
    if steps == 1:
        return "the whole input"
    return p.in_steps[t] if t < len(p.in_steps) else f"step {t}"
