"""Speech tasks: audio clips read as log-mel spectrogram frames x [B, T, n_mels] by the
'linear' input (a projection of each frame) into the recurrent stack.

- ``speech_classify`` (many-to-one): which word a clip says (e.g. the spoken digits of
  the Free Spoken Digit Dataset). Metric: accuracy; baseline: always the training
  set's most frequent class.
- ``speech_connected`` (many-to-many, CTC): the word string of an utterance made by
  joining 2-5 clips with short silent gaps ("3 1 4"), trained with CTC
  (torch.nn.CTCLoss): the model emits a distribution over the classes plus a blank at
  every frame, and the loss sums over every alignment of the label string to the
  frames, so no clip boundaries are needed. Greedy decoding during training; greedy and
  prefix beam search (``beam_width``) in `workbench eval`. Metric: the word (digit)
  error rate, edit distance over reference length; baseline: the training set's most
  frequent word repeated the mean number of times, and the empty answer (1.0).
  Training utterances are joined afresh for every batch from the training clips
  (endless); held-out utterances are joined once (seeded) from held-out clips only.

Data (``data.path``): a folder of clips (WAV, FLAC, MP3, OGG, ...), labelled by
subfolder (one per class) or by ``label_pattern`` on the file name: FSDD's
``{label}_{speaker}_{index}``. The held-out split follows ``split_field`` /
``split_values`` (FSDD's customary test split: index 0-4), or else ``val_fraction`` of
every class, seeded. Reading, resampling and the spectrogram are in workbench.io.audio.
Path empty (the built-in presets): ``synthetic_clips`` synthetic spoken digits, "0" to
"9" said by random voices (``synthetic_word``), since no recordings ship with the
package; the last ``val_fraction`` of them are held out.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench.io.audio import MelSettings, log_mel, read_audio, scan_clips
from workbench.io.errors import DataError
from workbench.io.paths import resolve_data_path
from workbench.io.vocab import bucketed_batches
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks import ctc
from workbench.tasks.base import Batch, Task
from workbench.tasks.textutil import check_classification_head, check_float, check_int

BLANK = 0  # CTC: output 0 is the blank, class k is output k + 1


@dataclass
class SpeechOptions:
    sample_rate: int = 8000  # Hz: every clip is resampled to this
    window_ms: float = 25.0  # spectrogram window
    hop_ms: float = 10.0  # one frame every hop_ms
    n_mels: int = 40  # mel bins: the features per frame
    label_pattern: str = ""  # e.g. "{label}_{speaker}_{index}"; empty: one subfolder per class
    split_field: str = ""  # a field of label_pattern choosing the held-out clips, e.g. "index"
    split_values: str = ""  # its held-out values, e.g. "0-4"
    val_fraction: float = 0.1  # without split_field: share of each class held out (seeded)
    max_seconds: float = 10.0  # longer clips are cut
    synthetic_clips: int = 1000  # path empty: synthetic spoken digits generated (val_fraction held out)


# ----------------------------------------------------------------------------- built-in words

# Synthetic "spoken digits" for the built-in presets (no recordings ship with the
# package): each word is a fixed sequence of phones, a vowel (two formants, Hz) or a
# fricative (a noise band, Hz), loosely after the English word, said by a random voice.
_VOWELS = {"a": (750, 1250), "e": (500, 1850), "i": (300, 2300), "o": (500, 900), "u": (330, 800),
           "n": (260, 1500)}
_NOISES = {"s": (3000, 3900), "f": (1200, 3900), "h": (600, 2500)}
SYNTHETIC_WORDS: dict[str, tuple[str, ...]] = {
    "0": ("s", "i", "o"), "1": ("u", "a", "n"), "2": ("h", "u"), "3": ("f", "i"), "4": ("f", "o"),
    "5": ("f", "a", "i"), "6": ("s", "i", "s"), "7": ("s", "e", "n"), "8": ("e", "i", "h"), "9": ("n", "a", "i", "n"),
}


def synthetic_word(word: str, rng: np.random.Generator, rate: int = 8000) -> np.ndarray:
    """One utterance of a SYNTHETIC_WORDS word, float32 [N] in [-1, 1]: voiced phones are
    harmonics of a random pitch weighted by two formant peaks, fricatives band-limited
    noise; pitch, vocal-tract scale, tempo, loudness and background noise vary per call."""
    f0 = rng.uniform(85.0, 230.0)  # the voice's pitch
    scale = rng.uniform(0.88, 1.15)  # vocal-tract length: shifts every formant
    tempo = rng.uniform(0.8, 1.25)
    parts = []
    for phone in SYNTHETIC_WORDS[word]:
        n = int(rate * tempo * (rng.uniform(0.07, 0.11) if phone in _NOISES else rng.uniform(0.12, 0.2)))
        t = np.arange(n) / rate
        if phone in _NOISES:
            lo, hi = (f * scale for f in _NOISES[phone])
            spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
            freqs = np.fft.rfftfreq(n, 1.0 / rate)
            seg = np.fft.irfft(spectrum * ((freqs >= lo) & (freqs <= min(hi, rate / 2))), n) * 0.6
        else:
            f1, f2 = (f * scale for f in _VOWELS[phone])
            pitch = f0 * (1.0 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))  # a little vibrato  [n]
            phase = 2 * np.pi * np.cumsum(pitch) / rate  # [n]
            k = np.arange(1, int(rate / 2 / f0))[:, None]  # harmonics below Nyquist  [K, 1]
            fk = k * f0
            weight = np.exp(-((fk - f1) / 90.0) ** 2) + 0.6 * np.exp(-((fk - f2) / 120.0) ** 2)  # [K, 1]
            keep = weight[:, 0] > 1e-3  # the harmonics near a formant: the rest are inaudible
            seg = (weight[keep] * np.sin(k[keep] * phase[None, :])).sum(0)
            if phone == "n":
                seg *= 0.4  # a nasal is quieter than a vowel
        seg = seg / (np.abs(seg).max() + 1e-9) * (0.4 if phone in _NOISES else 1.0)
        edge = min(len(seg) // 4, int(0.015 * rate))  # soft edges: no clicks between phones
        if edge:
            ramp = np.hanning(2 * edge)
            seg[:edge] *= ramp[:edge]
            seg[-edge:] *= ramp[edge:]
        parts.append(seg)
    wave = np.concatenate(parts) * rng.uniform(0.3, 0.8)
    wave = wave + rng.normal(0.0, rng.uniform(0.002, 0.02), len(wave))  # room noise
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _pad_frames(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[T_i, M] each -> (x [B, T, M] zero-padded, lengths [B])."""
    lengths = torch.tensor([len(f) for f in feats], dtype=torch.long)
    x = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[-1])
    for i, f in enumerate(feats):
        x[i, : len(f)] = f
    return x, lengths


class SpeechTask(Task):
    """What both speech tasks share: spectrogram settings, the clips folder, the split."""

    Options = SpeechOptions

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        self.mel = MelSettings(sample_rate=o.sample_rate, window_ms=o.window_ms, hop_ms=o.hop_ms, n_mels=o.n_mels)
        self.mel.check()
        check_float(o, "val_fraction", 0.01, 0.9)
        check_float(o, "max_seconds", 0.05, 3600.0)
        check_int(o, "synthetic_clips", 20, 1_000_000)
        if bool(o.split_field) != bool(o.split_values):
            raise SpecError("data.options.split_values" if o.split_field else "data.options.split_field",
                            "split_field and split_values go together: a field of the label pattern and its "
                            "held-out values (e.g. index and 0-4)")
        self.classes: list[str] = []

    # -- data ----------------------------------------------------------------------------
    def _root(self, path: str) -> Path:
        root = resolve_data_path(path)
        if not root.exists():
            raise DataError(root, "no such folder: set data.path to a folder of audio clips (the built-in speech "
                                  "presets read the Free Spoken Digit Dataset's recordings folder, "
                                  "github.com/Jakobovski/free-spoken-digit-dataset)")
        return root

    def _read(self, path: str, classes: list[str] | None = None):
        """(waves [N_i] float32, labels, held-out flags or None, classes, paths) of a clips
        folder; with no path, of synthetic spoken digits (the last val_fraction held out)."""
        o = self.options
        if not path:
            rng = np.random.default_rng([self.seed, 17])
            names = list(SYNTHETIC_WORDS)
            labels = [i % len(names) for i in range(o.synthetic_clips)]
            waves = [synthetic_word(names[y], rng, self.mel.sample_rate) for y in labels]
            n_val = max(int(round(o.synthetic_clips * o.val_fraction)), 1)
            held = [i >= o.synthetic_clips - n_val for i in range(o.synthetic_clips)]
            return waves, labels, held, names, []
        clips = scan_clips(self._root(path), o.label_pattern, o.split_field, o.split_values, classes)
        limit = int(o.max_seconds * self.mel.sample_rate)
        waves = [read_audio(p, self.mel.sample_rate)[:limit] for p in clips.paths]
        return waves, clips.labels, clips.held_out, clips.classes, clips.paths

    def _split(self, labels: list[int], held_out: list[bool] | None, where: str) -> np.ndarray:
        """Boolean [N]: True for held-out clips."""
        labels_np = np.asarray(labels)
        if held_out is not None:
            mask = np.asarray(held_out, dtype=bool)
            if mask.all() or not mask.any():
                raise DataError(where, f"the split {self.options.split_field} in {self.options.split_values} holds "
                                       f"{'every' if mask.all() else 'no'} clip: it must leave some for training "
                                       f"and hold some out")
            return mask
        rng = np.random.default_rng(self.seed)
        mask = np.zeros(len(labels_np), dtype=bool)
        for c in range(len(self.classes)):
            members = np.nonzero(labels_np == c)[0]
            rng.shuffle(members)
            n_val = min(max(int(round(len(members) * self.options.val_fraction)), 1), len(members) - 1)
            mask[members[:n_val]] = True
        if not mask.any():
            raise DataError(where, "every class holds a single clip: at least two per class are needed to hold "
                                   "one out for validation")
        return mask

    def features(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Samples [N] -> normalised log-mel frames [T, n_mels] (float32, CPU)."""
        return log_mel(wave, self.mel)

    def audio_features(self, path: str | Path) -> tuple[np.ndarray, torch.Tensor]:
        """(samples [N], frames [T, n_mels]) of a file, read as in training."""
        wave = read_audio(resolve_data_path(path), self.mel.sample_rate)[: int(self.options.max_seconds *
                                                                              self.mel.sample_rate)]
        return wave, self.features(wave)

    # -- life cycle ----------------------------------------------------------------------
    def _common_artifacts(self) -> dict:
        o = self.options
        return {"task": self.name, "classes": list(self.classes), "sample_rate": self.mel.sample_rate,
                "window_ms": self.mel.window_ms, "hop_ms": self.mel.hop_ms, "n_mels": self.mel.n_mels,
                "max_seconds": o.max_seconds}

    def restore(self, artifacts: dict) -> None:
        try:
            self.classes = [str(c) for c in artifacts["classes"]]
            self.mel = MelSettings(sample_rate=int(artifacts["sample_rate"]), window_ms=float(artifacts["window_ms"]),
                                   hop_ms=float(artifacts["hop_ms"]), n_mels=int(artifacts["n_mels"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError("task.json", f"the speech task's saved state is incomplete ({exc})") from None
        self._saved_baseline = dict(artifacts.get("baseline", {}))
        self.prepared = True

    # -- shapes ----------------------------------------------------------------------------
    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if model.input.kind != "linear":
            raise SpecError("model.input.kind", "speech is read as spectrogram frames: use the 'linear' input")
        check_classification_head(model, self.name)

    @staticmethod
    def _device(model: torch.nn.Module) -> torch.device:
        return next(model.parameters()).device

    @torch.no_grad()
    def frame_logits(self, model: torch.nn.Module, feats: torch.Tensor) -> torch.Tensor:
        """feats [T, M] -> the head's output at every frame [T, K'] (for many-to-one: what
        the model answers for the clip cut after frame t)."""
        x = feats[None].to(self._device(model)).float()
        was_training = model.training
        model.eval()
        try:
            if self.name == "speech_classify" and any(layer.bidirectional for layer in model.spec.layers):
                # its backward direction would otherwise read later frames: one pass per prefix
                logits = torch.stack([model(x[:, : t + 1])[0] for t in range(x.shape[1])])  # [T, K]
            else:
                out, _ = model.encoder(model.encode_input(x))  # [1, T, H]
                logits = model.head(out)[0]  # [T, K']
        finally:
            model.train(was_training)
        return logits.float().cpu()


# ----------------------------------------------------------------------------- classification


class SpeechClassifyTask(SpeechTask):
    name = "speech_classify"
    title = "Spoken-word classification (a folder of audio clips)"
    topologies = ("many_to_one",)
    main_metric = "accuracy"
    lower_is_better = False

    def prepare(self) -> None:
        waves, labels, held_out, self.classes, paths = self._read(self.path)
        val_mask = self._split(labels, held_out, self.path)
        feats = [self.features(w) for w in waves]
        self.train_set = [(feats[i], labels[i]) for i in np.nonzero(~val_mask)[0]]
        self.val_set = [(feats[i], labels[i]) for i in np.nonzero(val_mask)[0]]
        counts = np.bincount([y for _, y in self.train_set], minlength=len(self.classes))
        self.majority = int(counts.argmax())

    def use_eval_file(self, path: str) -> None:
        waves, labels, _, _, _ = self._read(path, classes=self.classes)
        self.val_set = [(self.features(w), y) for w, y in zip(waves, labels)]

    def _batch(self, rows: Sequence[tuple[torch.Tensor, int]]) -> Batch:
        x, lengths = _pad_frames([f for f, _ in rows])  # [B, T, M], [B]
        return Batch(x=x, y=torch.tensor([y for _, y in rows], dtype=torch.long), lengths=lengths)

    def epoch_size(self, batch_size: int) -> int | None:
        return max(math.ceil(len(self.train_set) / batch_size), 1)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        for idx in bucketed_batches([len(f) for f, _ in self.train_set], batch_size, generator):
            yield self._batch([self.train_set[i] for i in idx])

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        for b, idx in enumerate(bucketed_batches([len(f) for f, _ in self.val_set], batch_size)):
            if b >= max_batches:
                break
            yield self._batch([self.val_set[i] for i in idx])

    def artifacts(self) -> dict:
        return {**self._common_artifacts(), "baseline": self.baseline()}

    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="features", feature_size=self.mel.n_mels, output_size=len(self.classes))

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(output.float(), batch.y)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        return {"accuracy": self.accuracy_sums(output, batch.y, None)}

    def baseline(self) -> dict[str, float]:
        """Accuracy of always answering the training set's most frequent class."""
        if not hasattr(self, "val_set") or not hasattr(self, "majority"):
            return dict(getattr(self, "_saved_baseline", {}))
        hits = sum(1 for _, y in self.val_set if y == self.majority)
        return {"accuracy": hits / max(len(self.val_set), 1)}

    def classify(self, model: torch.nn.Module, path: str | Path) -> list[tuple[str, float]]:
        """(class, probability) for an audio file, most likely first."""
        _, feats = self.audio_features(path)
        probs = torch.softmax(self.frame_logits(model, feats)[-1], dim=-1)
        ranked = sorted(zip(self.classes, probs.tolist()), key=lambda item: -item[1])
        return [(name, float(p)) for name, p in ranked]


# ----------------------------------------------------------------------------- connected words (CTC)


@dataclass
class ConnectedOptions(SpeechOptions):
    min_words: int = 2  # clips joined per utterance, at least
    max_words: int = 5  # and at most
    min_gap_ms: float = 30.0  # silence between two clips, drawn uniformly in this range
    max_gap_ms: float = 200.0
    val_utterances: int = 400  # held-out utterances, joined once from held-out clips
    beam_width: int = 8  # prefix beam search in `workbench eval` (greedy is always reported too)


class ConnectedSpeechTask(SpeechTask):
    name = "speech_connected"
    title = "Connected-word recognition with CTC (clips joined into utterances)"
    topologies = ("many_to_many",)
    Options = ConnectedOptions
    main_metric = "word_error_rate"
    lower_is_better = True
    step_aligned = False  # a label string per utterance, not a target per frame

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        check_int(o, "min_words", 1, 50)
        check_int(o, "max_words", o.min_words, 50)
        check_float(o, "min_gap_ms", 0.0, 5000.0)
        check_float(o, "max_gap_ms", o.min_gap_ms, 5000.0)
        check_int(o, "val_utterances", 1, 100_000)
        check_int(o, "beam_width", 1, 256)

    # -- data ----------------------------------------------------------------------------
    def _join(self, waves: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """Clips -> one utterance [N]: a short silence before, between and after them."""
        sr = self.mel.sample_rate
        o = self.options
        parts: list[np.ndarray] = []
        for w in waves:
            parts.append(np.zeros(int(rng.uniform(o.min_gap_ms, o.max_gap_ms) * sr / 1000), np.float32))
            parts.append(w)
        parts.append(np.zeros(int(rng.uniform(o.min_gap_ms, o.max_gap_ms) * sr / 1000), np.float32))
        return np.concatenate(parts)

    def _utterances(self, waves: list[np.ndarray], labels: list[int], n: int,
                    rng: np.random.Generator) -> list[tuple[torch.Tensor, list[int]]]:
        """n utterances of min_words..max_words random clips each: (frames [T, M], classes)."""
        o = self.options
        out = []
        for _ in range(n):
            k = int(rng.integers(o.min_words, o.max_words + 1))
            pick = rng.integers(0, len(waves), k)
            out.append((self.features(self._join([waves[i] for i in pick], rng)), [labels[i] for i in pick]))
        return out

    def prepare(self) -> None:
        waves, labels, held_out, self.classes, _ = self._read(self.path)
        val_mask = self._split(labels, held_out, self.path)
        self.train_waves = [waves[i] for i in np.nonzero(~val_mask)[0]]
        self.train_labels = [labels[i] for i in np.nonzero(~val_mask)[0]]
        rng = np.random.default_rng([self.seed, 1_000_003])
        val_idx = np.nonzero(val_mask)[0]
        self.val_set = self._utterances([waves[i] for i in val_idx], [labels[i] for i in val_idx],
                                        self.options.val_utterances, rng)
        counts = np.bincount(self.train_labels, minlength=len(self.classes))
        self.majority = int(counts.argmax())
        self.mean_words = (self.options.min_words + self.options.max_words) / 2

    def use_eval_file(self, path: str) -> None:
        waves, labels, _, _, _ = self._read(path, classes=self.classes)
        rng = np.random.default_rng([self.seed, 1_000_003])
        self.val_set = self._utterances(waves, labels, self.options.val_utterances, rng)

    def _batch(self, rows: Sequence[tuple[torch.Tensor, list[int]]]) -> Batch:
        x, lengths = _pad_frames([f for f, _ in rows])  # [B, T, M], [B]
        L = max(len(w) for _, w in rows)
        y = torch.zeros(len(rows), L, dtype=torch.long)  # [B, L]: class + 1, 0 (blank) pads
        for i, (_, words) in enumerate(rows):
            y[i, : len(words)] = torch.tensor(words) + 1
        return Batch(x=x, y=y, lengths=lengths)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        while True:  # fresh utterances every batch; numpy draws from the trainer's generator
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
            yield self._batch(self._utterances(self.train_waves, self.train_labels, batch_size, rng))

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        for b, start in enumerate(range(0, len(self.val_set), batch_size)):
            if b >= max_batches:
                break
            yield self._batch(self.val_set[start:start + batch_size])

    def artifacts(self) -> dict:
        return {**self._common_artifacts(), "baseline": self.baseline()}

    # -- shapes, loss, metrics -----------------------------------------------------------
    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="features", feature_size=self.mel.n_mels, output_size=len(self.classes) + 1)

    @staticmethod
    def _targets(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(padded targets [B, L], their lengths [B]): the labels are 1.., 0 pads."""
        return batch.y, (batch.y != BLANK).sum(dim=1)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """CTC over every alignment of each row's label string to its frames."""
        log_probs = torch.log_softmax(output.float(), dim=-1).transpose(0, 1)  # [T, B, K+1]
        T, B = log_probs.shape[:2]
        lengths = batch.lengths if batch.lengths is not None else torch.full((B,), T, dtype=torch.long)
        targets, target_lengths = self._targets(batch)
        # mean over rows of the loss per label (CTCLoss's "mean"); an impossible alignment
        # (more labels than frames) counts 0 instead of inf
        return F.ctc_loss(log_probs, targets, lengths.to(log_probs.device), target_lengths, blank=BLANK,
                          reduction="mean", zero_infinity=True)

    def _rows(self, output: torch.Tensor, batch: Batch):
        """Per row: (log probs [T_i, K+1] as numpy, reference labels)."""
        lp = torch.log_softmax(output.detach().float(), dim=-1).cpu().numpy()
        lengths = batch.lengths.tolist() if batch.lengths is not None else [lp.shape[1]] * lp.shape[0]
        targets, target_lengths = self._targets(batch)
        refs = [row[:n].tolist() for row, n in zip(targets.cpu(), target_lengths.tolist())]
        return [(lp[i, : lengths[i]], refs[i]) for i in range(len(refs))]

    @staticmethod
    def _error_sums(pairs) -> dict[str, tuple[float, float]]:
        edits = words = exact = 0
        for hyp, ref in pairs:
            e = ctc.edit_distance(hyp, ref)
            edits += e
            words += len(ref)
            exact += e == 0
        return {"word_error_rate": (float(edits), float(words)), "utterance_accuracy": (float(exact), float(len(pairs)))}

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        """Greedy decoding: the word error rate and the share of utterances decoded exactly."""
        return self._error_sums([(ctc.greedy_decode(lp, BLANK), ref) for lp, ref in self._rows(output, batch)])

    def decode_metrics(self, model, batch: Batch) -> dict[str, tuple[float, float]]:
        """Prefix beam search with ``beam_width``."""
        output = model(batch.x, None, batch.lengths)
        width = self.options.beam_width
        sums = self._error_sums([(ctc.beam_decode(lp, width, BLANK), ref) for lp, ref in self._rows(output, batch)])
        return {f"beam_{name}": value for name, value in sums.items()}

    def baseline(self) -> dict[str, float]:
        """Word error rate of answering the training set's most frequent word, repeated the
        mean number of words per utterance ("word_error_rate"), and of answering nothing
        ("empty_word_error_rate", always 1)."""
        if not hasattr(self, "val_set") or not hasattr(self, "majority"):
            return dict(getattr(self, "_saved_baseline", {}))
        guess = [self.majority + 1] * int(round(self.mean_words))
        edits = sum(ctc.edit_distance(guess, [w + 1 for w in words]) for _, words in self.val_set)
        total = sum(len(words) for _, words in self.val_set)
        return {"word_error_rate": edits / max(total, 1), "empty_word_error_rate": 1.0}

    # -- inference (try-out) -------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """The output columns' names: the blank, then the classes (output k + 1 is class k)."""
        return ["blank"] + list(self.classes)

    def label_string(self, labels: Sequence[int]) -> str:
        """Output ids (class + 1) -> "3 1 4"."""
        return " ".join(self.classes[i - 1] for i in labels)

    def transcribe(self, model: torch.nn.Module, feats: torch.Tensor, beam_width: int = 0) -> dict:
        """feats [T, M] -> the decoded words (greedy, and beam search when beam_width > 0),
        the per-frame probabilities [T, K+1] (column 0 the blank) and the greedy path."""
        lp = torch.log_softmax(self.frame_logits(model, feats), dim=-1)  # [T, K+1]
        path = lp.argmax(dim=-1).tolist()
        result = {"greedy": self.label_string(ctc.collapse(path, BLANK)), "path": path,
                  "probabilities": lp.exp()}
        if beam_width:
            beams = ctc.prefix_beam_search(lp.numpy(), beam_width, BLANK)
            result["beam"] = self.label_string(beams[0][0])
            result["beams"] = [(self.label_string(b), float(score)) for b, score in beams]
        return result
