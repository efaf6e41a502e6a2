"""One view per try-out mode. A view asks for work with ``request(kind, params)`` (the
panel runs it on the inference thread and hands the plain result back through
``on_result``), asks for the look inside the network with ``inside_request(dict)``
once it has an input and an output, and highlights the token or frame of a hovered
time step (``highlight(axis, t)``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from workbench import tryout_modes
from workbench.gui.tryout.widgets import (
    HIGHLIGHT,
    PALETTE,
    Heatmap,
    ImageView,
    ProbabilityBars,
    StepBars,
    Titled,
    TokenChips,
    colour_for,
    plain_axes,
)

GENERATED = "#1f5fbf"


class ModeView(QWidget):
    request = Signal(str, dict)
    inside_request = Signal(dict)
    busy_changed = Signal(bool)

    def __init__(self, info: dict, parent=None):
        super().__init__(parent)
        self.info = info
        self.last_result: dict | None = None
        self.last_inside: dict | None = None
        self.hint = QLabel(info.get("hint", ""))
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #555555;")

    def on_result(self, kind: str, data) -> None:
        pass

    def on_tokens(self, tokens: list) -> None:
        pass

    def on_failed(self, kind: str, message: str) -> None:
        pass

    def highlight(self, axis: str, t: int) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _sampling_row(layout, temperature: float = 0.8, with_length: bool = False):
    """Temperature / top-k (/ length) fields in one row; returns the widgets."""
    row = QHBoxLayout()
    temp = QDoubleSpinBox()
    temp.setObjectName("temperature")
    temp.setRange(0.0, 10.0)
    temp.setSingleStep(0.1)
    temp.setDecimals(2)
    temp.setValue(temperature)
    temp.setToolTip("Sampling temperature: 0 is greedy (always the likeliest), higher is more varied")
    top_k = QSpinBox()
    top_k.setObjectName("topK")
    top_k.setRange(0, 100_000)
    top_k.setToolTip("Sample only among the k likeliest tokens (0: all)")
    row.addWidget(QLabel("Temperature"))
    row.addWidget(temp)
    row.addWidget(QLabel("Top-k"))
    row.addWidget(top_k)
    length = None
    if with_length:
        length = QSpinBox()
        length.setObjectName("length")
        length.setRange(1, 100_000)
        length.setValue(200)
        length.setToolTip("Tokens to generate")
        row.addWidget(QLabel("Length"))
        row.addWidget(length)
    row.addStretch(1)
    layout.addLayout(row)
    return temp, top_k, length


# ----------------------------------------------------------------------------- language models


class GenerateView(ModeView):
    """Type a prompt; the continuation streams in token by token and can be stopped."""

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        lay = QVBoxLayout(self)
        lay.addWidget(self.hint)
        self.prompt = QPlainTextEdit()
        self.prompt.setObjectName("prompt")
        self.prompt.setPlaceholderText("Prompt")
        self.prompt.setMaximumHeight(70)
        lay.addWidget(self.prompt)
        self.temperature, self.top_k, self.length = _sampling_row(lay, 0.8, with_length=True)
        row = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setEnabled(False)
        row.addWidget(self.generate_button)
        row.addWidget(self.stop_button)
        self.status = QLabel("")
        row.addWidget(self.status, 1)
        lay.addLayout(row)
        self.output = QTextEdit()
        self.output.setObjectName("generated")
        self.output.setReadOnly(True)
        lay.addWidget(self.output, 1)
        self.generated_tokens: list[dict] = []
        self.streaming = False
        self.stopped = False
        self._full_text = ""
        self._spans: list[tuple[int, int] | None] = []
        self.generate_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)

    def start(self) -> None:
        if self.streaming:
            return
        prompt = self.prompt.toPlainText()
        self.generated_tokens = []
        self.stopped = False
        self.output.clear()
        cursor = QTextCursor(self.output.document())
        cursor.insertText(prompt, QTextCharFormat())
        self._set_streaming(True)
        self.status.setText("generating…")
        self.request.emit("generate", {"prompt": prompt, "length": self.length.value(),
                                       "temperature": self.temperature.value(), "top_k": self.top_k.value()})

    def stop(self) -> None:
        if self.streaming:
            self.stopped = True
            self.request.emit("stop", {})

    def _set_streaming(self, on: bool) -> None:
        self.streaming = on
        self.generate_button.setEnabled(not on)
        self.stop_button.setEnabled(on)
        self.busy_changed.emit(on)

    def on_tokens(self, tokens: list) -> None:
        cursor = QTextCursor(self.output.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        fmt = QTextCharFormat()
        fmt.setForeground(QColor(GENERATED))
        cursor.insertText("".join(t["text"] for t in tokens), fmt)
        self.generated_tokens += tokens
        self.status.setText(f"{len(self.generated_tokens)} / {self.length.value()} tokens…")

    def on_result(self, kind: str, data) -> None:
        if kind != "generate":
            return
        self._set_streaming(False)
        n = data["count"]
        self.status.setText(f"stopped after {n} tokens" if data["stopped"] and n < data["length"]
                            else f"{n} tokens")
        self.last_result = data
        self._full_text = self.prompt.toPlainText() + "".join(t["text"] for t in self.generated_tokens)
        if self._full_text:
            self.inside_request.emit({"text": self._full_text})

    def on_failed(self, kind: str, message: str) -> None:
        if kind == "generate":
            self._set_streaming(False)
            self.status.setText("")

    def generated_text(self) -> str:
        return "".join(t["text"] for t in self.generated_tokens)

    def set_inside_steps(self, steps: list[str]) -> None:
        self._spans = token_spans(self._full_text, steps)

    def highlight(self, axis: str, t: int) -> None:
        selections = []
        if axis == "in" and 0 <= t < len(self._spans) and self._spans[t] is not None:
            start, end = self._spans[t]
            sel = QTextEdit.ExtraSelection()
            cursor = QTextCursor(self.output.document())
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            sel.cursor = cursor
            fmt = QTextCharFormat()
            fmt.setBackground(QColor(HIGHLIGHT).lighter(160))
            sel.format = fmt
            selections.append(sel)
        self.output.setExtraSelections(selections)


def token_spans(text: str, tokens: list[str]) -> list[tuple[int, int] | None]:
    """Where each token sits in ``text`` (matched from the end, case-insensitively: the
    tokens are the text's last ones); None for one not found (e.g. <unk>)."""
    lower = text.lower()
    spans: list[tuple[int, int] | None] = [None] * len(tokens)
    end = len(text)
    for i in range(len(tokens) - 1, -1, -1):
        tok = tokens[i].lower()
        if not tok:
            continue
        at = lower.rfind(tok, 0, end)
        if at < 0 or tok in ("<unk>", "<pad>"):
            continue
        spans[i] = (at, at + len(tok))
        end = at
    return spans


# ----------------------------------------------------------------------------- taggers, classifiers


class _LineInputView(ModeView):
    """A line of text and a button; ``kind`` is the job it asks for."""

    kind = ""
    button_text = "Run"

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        self.layout_ = QVBoxLayout(self)
        self.layout_.addWidget(self.hint)
        row = QHBoxLayout()
        self.input = QLineEdit()
        self.input.setObjectName("textInput")
        row.addWidget(self.input, 1)
        self.run_button = QPushButton(self.button_text)
        self.run_button.setObjectName("runButton")
        row.addWidget(self.run_button)
        self.layout_.addLayout(row)
        self.run_button.clicked.connect(self.run)
        self.input.returnPressed.connect(self.run)

    def params(self) -> dict:
        return {"text": self.input.text()}

    def run(self) -> None:
        self.request.emit(self.kind, self.params())


class TagView(_LineInputView):
    kind = "tag"
    button_text = "Tag"

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        self.chips = TokenChips()
        self.chips.setObjectName("tagChips")
        self.layout_.addWidget(self.chips)
        self.layout_.addStretch(1)

    def on_result(self, kind: str, data) -> None:
        if kind != "tag":
            return
        self.last_result = data
        self.chips.set_tokens(data["words"], data["tags"], data["confidences"], data["tag_names"])
        self.inside_request.emit({"text": self.input.text()})

    def highlight(self, axis: str, t: int) -> None:
        self.chips.highlight(t if axis == "in" else None)


class ClassifyView(_LineInputView):
    kind = "classify"
    button_text = "Classify"

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        self.verdict = QLabel("")
        self.verdict.setObjectName("verdict")
        self.layout_.addWidget(self.verdict)
        self.bars = ProbabilityBars()
        self.bars.setObjectName("probabilityBars")
        self.layout_.addWidget(self.bars)
        self.chips = TokenChips()
        self.layout_.addWidget(self.chips)
        self.over_time = pg.PlotWidget(background="w")
        self.over_time.setMinimumHeight(110)
        self.over_time.setLabel("left", "p(class)")
        plain_axes(self.over_time.getPlotItem())
        self.over_time.setToolTip("What the model would answer if the text ended at each token")
        self.over_time.hide()
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen(HIGHLIGHT, width=2))
        self.cursor.hide()
        self.over_time.addItem(self.cursor)
        self._curves: list = []
        self.layout_.addWidget(self.over_time, 1)

    def on_result(self, kind: str, data) -> None:
        if kind != "classify":
            return
        self.last_result = data
        self.bars.set_values(data["classes"], data["probabilities"])
        truth = f" (a correct answer: {data['truth']})" if data.get("truth") else ""
        self.verdict.setText(f"<b>{data['predicted']}</b>{truth}")
        self.chips.set_tokens(data["tokens"])
        for c in self._curves:
            self.over_time.removeItem(c)
        self._curves = []
        over = data.get("over_time")
        if over is not None and len(over):
            over = np.asarray(over)
            for k, name in enumerate(data["classes"]):
                curve = self.over_time.plot(np.arange(len(over)), over[:, k], name=name,
                                            pen=pg.mkPen(colour_for(name, data["classes"]), width=2))
                self._curves.append(curve)
            self.over_time.setYRange(0, 1)
            self.over_time.show()
        else:
            self.over_time.hide()
        self.inside_request.emit({"text": self.input.text()})

    def highlight(self, axis: str, t: int) -> None:
        self.chips.highlight(t if axis == "in" else None)
        if axis == "in" and t >= 0:
            self.cursor.setPos(t)
            self.cursor.show()
        else:
            self.cursor.hide()


class NumbersView(_LineInputView):
    """Forecasting and the adding problem: numbers typed in, numbers out."""

    kind = "numbers"
    button_text = "Predict"

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        self.answer = QLabel("")
        self.answer.setObjectName("answer")
        self.answer.setWordWrap(True)
        self.answer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.layout_.addWidget(self.answer)
        self.chips = TokenChips()
        self.layout_.addWidget(self.chips)
        self.layout_.addStretch(1)

    def on_result(self, kind: str, data) -> None:
        if kind != "numbers":
            return
        self.last_result = data
        if "forecast" in data:
            cols = data["columns"]
            rows = ["; ".join(f"{c} {v:.4g}" for c, v in zip(cols, row)) for row in data["forecast"]]
            self.answer.setText("<b>Forecast</b>: " + " → ".join(rows))
            self.chips.set_tokens([", ".join(f"{v:g}" for v in row) for row in data["history"]])
        else:
            self.answer.setText(f"<b>Predicted sum</b> {data['prediction']:.4f} (true sum of the marked numbers "
                                f"{data['target']:.4f})")
            self.chips.set_tokens([f"{v:g}{'*' if m else ''}" for v, m in zip(data["values"], data["marked"])])
        self.inside_request.emit({"text": self.input.text()})

    def highlight(self, axis: str, t: int) -> None:
        self.chips.highlight(t if axis == "in" else None)


# ----------------------------------------------------------------------------- encoder-decoder


class TransduceView(_LineInputView):
    kind = "transduce"
    button_text = "Decode"

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        self.temperature, self.top_k, _ = _sampling_row(self.layout_, 1.0)
        self.beam = QSpinBox()
        self.beam.setObjectName("beamWidth")
        self.beam.setRange(1, 64)
        self.beam.setToolTip("Beam width: above 1 the output is also found by beam search")
        beam_row = QHBoxLayout()
        beam_row.addWidget(QLabel("Beam width"))
        beam_row.addWidget(self.beam)
        beam_row.addStretch(1)
        self.layout_.addLayout(beam_row)
        form = QFormLayout()
        self.greedy = QLabel("")
        self.greedy.setObjectName("greedyOutput")
        self.greedy.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sampled = QLabel("")
        self.sampled.setObjectName("sampledOutput")
        self.sampled.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.beam_output = QLabel("")
        self.beam_output.setObjectName("beamOutput")
        self.beam_output.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Greedy", self.greedy)
        form.addRow("Sampled", self.sampled)
        form.addRow("Beam search", self.beam_output)
        self.layout_.addLayout(form)
        self.source_chips = TokenChips()
        self.output_chips = TokenChips()
        self.layout_.addWidget(Titled("Source", self.source_chips))
        self.layout_.addWidget(Titled("Greedy output", self.output_chips))
        self.attention = Heatmap(colormap="viridis", units="attention weight")
        self.attention.setObjectName("attentionHeatmap")
        self.attention_box = Titled("Attention (rows: output tokens, columns: source tokens)", self.attention)
        self.attention_box.setVisible(bool(info.get("attention")))
        self.layout_.addWidget(self.attention_box, 1)
        self.attention.hovered.connect(lambda t: self.source_chips.highlight(t if t >= 0 else None))

    def params(self) -> dict:
        return {"text": self.input.text(), "temperature": self.temperature.value(), "top_k": self.top_k.value(),
                "beam": self.beam.value()}

    def on_result(self, kind: str, data) -> None:
        if kind != "transduce":
            return
        self.last_result = data
        self.greedy.setText(data["greedy"]["text"] or "(empty)")
        self.sampled.setText(data["sampled"]["text"] or "(empty)")
        beam = data.get("beam")
        self.beam_output.setText(f"{beam['text'] or '(empty)'}  (width {beam['width']})" if beam
                                 else "(beam width 1: the greedy output)")
        self.source_chips.set_tokens(data["source_tokens"])
        self.output_chips.set_tokens(data["greedy"]["tokens"])
        att = data.get("attention")
        if att is not None and np.size(att):
            self.attention.set_matrix(att, x_labels=data["source_tokens"], y_labels=data["greedy"]["tokens"],
                                      levels=(0.0, float(np.max(att)) or 1.0))
            self.attention_box.show()
        self.inside_request.emit({"text": self.input.text(), "output_ids": data["greedy"]["ids"]})

    def highlight(self, axis: str, t: int) -> None:
        self.source_chips.highlight(t if axis == "in" else None)
        self.output_chips.highlight(t if axis == "out" else None)
        self.attention.set_cursor(t if axis == "in" else None)


# ----------------------------------------------------------------------------- chatbots


class ChatView(ModeView):
    """A conversation: the transcript of user and model turns, the reply streamed in as
    it is decoded (greedy or sampled at the temperature; beam search, width > 1, MBR and
    retrieve-then-rerank answer whole, the last labelled "reranked: retrieved #r" or
    "reranked: beam N"), and the attention of the last reply over the user's words."""

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        lay = QVBoxLayout(self)
        lay.addWidget(self.hint)
        self.transcript = QTextEdit()
        self.transcript.setObjectName("chatTranscript")
        self.transcript.setReadOnly(True)
        row = QHBoxLayout()
        self.input = QLineEdit()
        self.input.setObjectName("chatInput")
        self.input.setPlaceholderText("Your message")
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("clearChatButton")
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        row.addWidget(self.clear_button)
        # the message box first, under the hint, then the transcript: in the window's default
        # layout at 1280x800 the Try it dock shows ~140 px of this view, and a box below the
        # transcript was out of sight until scrolled to
        lay.addLayout(row)
        lay.addWidget(self.transcript, 2)
        self.temperature = QDoubleSpinBox()
        self.temperature.setObjectName("temperature")
        self.temperature.setRange(0.0, 10.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(0.0)
        self.temperature.setToolTip("Sampling temperature: 0 is greedy (always the likeliest word)")
        self.beam = QSpinBox()
        self.beam.setObjectName("beamWidth")
        self.beam.setRange(1, 64)
        self.beam.setToolTip("Beam width: above 1 the reply is found by beam search (shown whole, not streamed; "
                             "the temperature is then not used)")
        self.mbr = QSpinBox()
        self.mbr.setObjectName("mbrSamples")
        self.mbr.setRange(0, 64)
        self.mbr.setSpecialValueText("off")
        self.mbr.setToolTip("Minimum Bayes risk: above 1, this many replies are sampled (at the temperature, or 1 "
                            "at 0) and the one most like the others (mean chrF) is shown whole; the beam is then "
                            "not used")
        self.rerank = QSpinBox()
        self.rerank.setObjectName("rerankRetrieved")
        self.rerank.setRange(0, 100)
        self.rerank.setSpecialValueText("off")
        self.rerank.setValue(int(info.get("rerank", 0)))
        self.rerank.setToolTip("Retrieve-then-rerank: above 0, the model scores its own reply (beam search, width 4 "
                               "when the beam width is 1) and the replies of this many nearest training questions, "
                               "and answers with the one it rates best (the transcript says whether it was written "
                               "or retrieved); used at temperature 0 without MBR")
        # two rows of two: one row of four made the panel wider than its dock at 1280x800
        decoding = QGridLayout()
        decoding.setHorizontalSpacing(6)
        decoding.setVerticalSpacing(2)
        for i, (label, box) in enumerate((("Temperature", self.temperature), ("Beam width", self.beam),
                                          ("MBR samples", self.mbr), ("Rerank retrieved", self.rerank))):
            decoding.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            decoding.addWidget(box, i // 2, 2 * (i % 2) + 1)
        decoding.setColumnStretch(4, 1)
        lay.addLayout(decoding)
        self.source_chips = TokenChips()
        lay.addWidget(Titled("What the model read", self.source_chips))
        self.attention = Heatmap(colormap="viridis")
        self.attention.setObjectName("attentionHeatmap")
        self.attention_box = Titled("Attention of the last reply (rows: reply words, columns: the words it read)",
                                    self.attention)
        self.attention_box.setVisible(bool(info.get("attention")))
        lay.addWidget(self.attention_box, 1)
        self.attention.hovered.connect(lambda t: self.source_chips.highlight(t if t >= 0 else None))
        self.turns: list[tuple[str, str]] = []  # (who, text), "user" / "model"
        self.streaming = False
        self._reply = ""
        self._message = ""
        self.send_button.clicked.connect(self.send)
        self.input.returnPressed.connect(self.send)
        self.clear_button.clicked.connect(self.clear)

    def previous_reply(self) -> str:
        return next((text for who, text in reversed(self.turns) if who == "model"), "")

    def send(self, text: str | None = None) -> None:
        message = (text if text is not None else self.input.text()).strip()
        if not message or self.streaming:
            return
        self.input.clear()
        params = {"text": message, "previous": self.previous_reply(), "temperature": self.temperature.value()}
        self._message, self._reply = message, ""
        self.turns.append(("user", message))
        self._append(f"<b>You:</b> {_escape(message)}<br/><b>Model:</b> ")
        self._set_streaming(True)
        if self.mbr.value() > 1:
            self.request.emit("chat", {**params, "mbr": self.mbr.value()})
        elif self.rerank.value() > 0 and self.temperature.value() <= 0:
            self.request.emit("chat", {**params, "beam": self.beam.value(), "rerank": self.rerank.value()})
        elif self.beam.value() > 1:
            self.request.emit("chat", {**params, "beam": self.beam.value()})
        else:
            self.request.emit("chat_stream", params)

    def clear(self) -> None:
        if self.streaming:
            self.request.emit("stop", {})
        self.turns = []
        self.transcript.clear()

    def _append(self, html: str) -> None:
        cursor = QTextCursor(self.transcript.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertHtml(html)
        self.transcript.setTextCursor(cursor)

    def _set_streaming(self, on: bool) -> None:
        self.streaming = on
        self.send_button.setEnabled(not on)
        self.busy_changed.emit(on)

    def on_tokens(self, tokens: list) -> None:
        text = "".join(t["text"] for t in tokens)
        self._reply += text
        cursor = QTextCursor(self.transcript.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        fmt = QTextCharFormat()
        fmt.setForeground(QColor(GENERATED))
        cursor.insertText(text, fmt)

    def on_result(self, kind: str, data) -> None:
        if kind not in ("chat", "chat_stream"):
            return
        self._set_streaming(False)
        self.last_result = data
        if kind == "chat":  # beam search, MBR, reranked: the reply arrives whole
            self.on_tokens([{"text": data["reply"]}])
            if data.get("decoding", "").startswith("reranked"):  # written or retrieved: say which
                self._append(f"&nbsp;<i>({_escape(data['decoding'])})</i>")  # (insertHtml drops a leading space)
        self._append("<br/>")
        self.turns.append(("model", data["reply"]))
        self.source_chips.set_tokens(data["source_tokens"])
        att = data.get("attention")
        if att is not None and np.size(att):
            self.attention.set_matrix(att, x_labels=data["source_tokens"], y_labels=data["reply_tokens"] or ["(empty)"],
                                      levels=(0.0, float(np.max(att)) or 1.0))
            self.attention_box.show()
        if data["ids"]:
            self.inside_request.emit({"text": data["source"], "output_ids": data["ids"]})

    def on_failed(self, kind: str, message: str) -> None:
        if kind in ("chat", "chat_stream"):
            self._set_streaming(False)
            self._append("<br/>")

    def highlight(self, axis: str, t: int) -> None:
        self.source_chips.highlight(t if axis == "in" else None)
        self.attention.set_cursor(t if axis == "in" else None)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------- one-to-many


class CaptionView(ModeView):
    """Generate a new image (or open one) and see the caption the model writes."""

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        lay = QVBoxLayout(self)
        lay.addWidget(self.hint)
        row = QHBoxLayout()
        self.new_button = QPushButton("New image")
        self.new_button.setObjectName("newImageButton")
        self.open_button = QPushButton("Open image…")
        self.open_button.setObjectName("openImageButton")
        self.seed = QSpinBox()
        self.seed.setObjectName("imageSeed")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The generated image's seed (New image takes the next one)")
        row.addWidget(self.new_button)
        row.addWidget(QLabel("seed"))
        row.addWidget(self.seed)
        row.addWidget(self.open_button)
        row.addStretch(1)
        lay.addLayout(row)
        self.temperature, self.top_k, _ = _sampling_row(lay, 1.0)
        body = QHBoxLayout()
        self.image = ImageView()
        self.image.setObjectName("captionImage")
        self.image.setFixedSize(160, 160)
        body.addWidget(self.image)
        form = QFormLayout()
        self.truth = QLabel("")
        self.greedy = QLabel("")
        self.greedy.setObjectName("greedyCaption")
        self.sampled = QLabel("")
        self.sampled.setObjectName("sampledCaption")
        form.addRow("True caption", self.truth)
        form.addRow("Greedy", self.greedy)
        form.addRow("Sampled", self.sampled)
        body.addLayout(form, 1)
        lay.addLayout(body)
        self.chips = TokenChips()
        lay.addWidget(self.chips)
        lay.addStretch(1)
        self.new_button.clicked.connect(self.new_image)
        self.open_button.clicked.connect(lambda: self.open_image())
        self._image = None

    def _sampling(self) -> dict:
        return {"temperature": self.temperature.value(), "top_k": self.top_k.value()}

    def new_image(self) -> None:
        if self.last_result is not None:
            self.seed.setValue((self.seed.value() + 1) % (2**31 - 1))
        self.request.emit("caption", {"seed": self.seed.value(), **self._sampling()})

    def open_image(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open an image", "",
                                                  "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp)")
            if not path:
                return
        self.request.emit("caption", {"path": str(path), "seed": self.seed.value(), **self._sampling()})

    def on_result(self, kind: str, data) -> None:
        if kind != "caption":
            return
        self.last_result = data
        self._image = data["image"]
        self.image.set_image(data["image"])
        self.truth.setText(data.get("truth") or "(an image of your own)")
        self.greedy.setText(data["greedy"]["text"] or "(empty)")
        self.sampled.setText(data["sampled"]["text"] or "(empty)")
        self.chips.set_tokens(data["greedy"]["tokens"])
        self.inside_request.emit({"image": data["image"], "output_ids": data["greedy"]["ids"]})

    def highlight(self, axis: str, t: int) -> None:
        # Output step t reads the token before it and writes token t.
        self.chips.highlight(t if axis == "out" else None)


# ----------------------------------------------------------------------------- video


# Frames of a rollout shown side by side (the curve covers all of them).
ROLLOUT_VIEWS = 10


class _OpensDroppedFiles:
    """A view that opens the first local file dropped on it with ``_open_dropped``."""

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self._open_dropped(urls[0])
            event.acceptProposedAction()


class VideoView(_OpensDroppedFiles, ModeView):
    """Open a video (or a frames folder, or drop one here), play it with a timeline
    scrubber, and see the model's output per frame: class probabilities over time, or
    the predicted next frame beside the real one and their difference. Frames are
    decoded on demand by the inference thread."""

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        self.setAcceptDrops(True)
        self.classifier = info["mode"] == "video_classify"
        lay = QVBoxLayout(self)
        lay.addWidget(self.hint)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open video…")
        self.open_button.setObjectName("openVideoButton")
        self.open_folder_button = QPushButton("Open frames folder…")
        self.path_label = QLabel("(drop a video file or a frames folder here)")
        self.path_label.setObjectName("videoPath")
        row.addWidget(self.open_button)
        row.addWidget(self.open_folder_button)
        row.addWidget(self.path_label, 1)
        lay.addLayout(row)

        grid = QGridLayout()
        self.frame_view = ImageView()
        self.frame_view.setObjectName("videoFrame")
        self.frame_view.setMinimumSize(200, 140)
        grid.addWidget(self.frame_view, 0, 0)
        side = QVBoxLayout()
        if self.classifier:
            self.bars = ProbabilityBars()
            self.bars.setObjectName("frameProbabilities")
            self.clip_label = QLabel("")
            self.clip_label.setWordWrap(True)
            side.addWidget(QLabel("<b>Class probabilities at this frame</b>"))
            side.addWidget(self.bars)
            side.addWidget(self.clip_label)
        else:
            frames = QHBoxLayout()
            self.real_view, self.pred_view, self.diff_view = ImageView(), ImageView(), ImageView()
            self.pred_view.setObjectName("predictedFrame")
            for title, view in (("real", self.real_view), ("predicted", self.pred_view),
                                ("|difference|", self.diff_view)):
                view.setMinimumSize(90, 90)
                frames.addWidget(Titled(title, view))
            side.addLayout(frames)
            self.error_label = QLabel("")
            self.error_label.setWordWrap(True)
            side.addWidget(self.error_label)
            # the model rolled forward on its own frames from the frame on screen
            self.rollout_label = QLabel("<b>Rolled forward from this frame</b> (real above, predicted below)")
            self.rollout_label.setWordWrap(True)
            side.addWidget(self.rollout_label)
            strips = QGridLayout()
            strips.setSpacing(2)
            self.rollout_real, self.rollout_pred = [], []
            for k in range(ROLLOUT_VIEWS):
                for row, views in ((0, self.rollout_real), (1, self.rollout_pred)):
                    view = ImageView()
                    view.setMinimumSize(28, 28)
                    strips.addWidget(view, row, k)
                    views.append(view)
            side.addLayout(strips)
            self.rollout_plot = pg.PlotWidget(background="w")
            self.rollout_plot.setObjectName("rolloutCurve")
            self.rollout_plot.setMinimumHeight(90)
            self.rollout_plot.setLabel("bottom", "frames ahead")
            self.rollout_plot.setLabel("left", "MSE")
            self.rollout_plot.addLegend(offset=(5, 5))
            side.addWidget(self.rollout_plot)
        side.addStretch(1)
        grid.addLayout(side, 0, 1)
        lay.addLayout(grid, 2)

        row = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("playButton")
        self.play_button.setCheckable(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("timeline")
        self.slider.setRange(0, 0)
        self.frame_label = QLabel("frame –")
        self.frame_label.setMinimumWidth(110)
        row.addWidget(self.play_button)
        row.addWidget(self.slider, 1)
        row.addWidget(self.frame_label)
        lay.addLayout(row)

        self.timeline = pg.PlotWidget(background="w")
        self.timeline.setObjectName("videoTimeline")
        self.timeline.setMinimumHeight(110)
        self.timeline.setLabel("bottom", "frame")
        # short enough not to be cut on a low plot; the value's scale is plain (no SI prefix)
        self.timeline.setLabel("left", "p(class)" if self.classifier else "MSE/pixel")
        self.timeline.setToolTip("Per frame: " + ("the class probabilities" if self.classifier else
                                 "the mean squared error per pixel of the predicted frame (pixels in 0..1), "
                                 "against copying the last frame"))
        plain_axes(self.timeline.getPlotItem())
        self.timeline.addLegend(offset=(5, 5))
        self.timeline_empty = pg.TextItem("open a video to see its outputs per frame", color="#999999",
                                          anchor=(0.5, 0.5))
        self.timeline.addItem(self.timeline_empty, ignoreBounds=True)
        self.timeline_empty.setPos(0.5, 0.5)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen(HIGHLIGHT, width=2))
        self.timeline.addItem(self.cursor)
        self.hover_cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#888888", width=1, style=Qt.PenStyle.DashLine))
        self.hover_cursor.hide()
        self.timeline.addItem(self.hover_cursor)
        self._timeline_axes(False)
        lay.addWidget(self.timeline, 1)

        self.path: str = ""
        self.video_info: dict = {}
        self.outputs: dict = {}
        self.shown_index = -1  # frame on screen
        self.wanted_index = -1  # frame the slider (or a hover preview) asks for
        self.preview_index: int | None = None
        self._frame_in_flight = False
        self._inside_window: tuple[int, int] | None = None
        self._rollout_start: int | None = None
        self.rollout: dict = {}
        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._tick)
        self.inside_timer = QTimer(self)
        self.inside_timer.setSingleShot(True)
        self.inside_timer.setInterval(250)
        self.inside_timer.timeout.connect(self._request_inside)
        self.open_button.clicked.connect(lambda: self.open_video())
        self.open_folder_button.clicked.connect(self._open_folder)
        self.slider.valueChanged.connect(self._on_slider)
        self.play_button.toggled.connect(self._on_play)

    # -- opening -------------------------------------------------------------------------
    def open_video(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open a video", "",
                                                  "Videos (*.mp4 *.m4v *.mov *.avi *.mkv *.webm *.gif *.mpg "
                                                  "*.mpeg *.ogv *.wmv *.flv *.ts *.3gp);;All files (*)")
            if not path:
                return
        self.play_button.setChecked(False)
        self.path = str(path)
        self.path_label.setText(Path(self.path).name + " (opening…)")
        self.outputs = {}
        self.shown_index = self.wanted_index = -1
        self._inside_window = None
        self._rollout_start = None
        self.request.emit("video_open", {"path": self.path})
        self.request.emit("video_outputs", {"path": self.path})

    def _open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of frame images")
        if path:
            self.open_video(path)

    _open_dropped = open_video

    # -- results -------------------------------------------------------------------------
    def on_result(self, kind: str, data) -> None:
        if kind == "video_open":
            self.video_info = data
            n = max(int(data["frames"]), 1)
            fps = f", {data['fps']:.3g} fps" if data.get("fps") else ""
            self.path_label.setText(f"{Path(data['path']).name}: {data['frames']} frames{fps}")
            self.slider.blockSignals(True)
            self.slider.setRange(0, n - 1)
            self.slider.setValue(0)
            self.slider.blockSignals(False)
            self.play_timer.setInterval(int(1000 / min(max(data.get("fps") or 10.0, 1.0), 30.0)))
            self._want_frame(0)
        elif kind == "video_outputs":
            self.outputs = data
            self.last_result = data
            n = int(data["frames"])
            if self.slider.maximum() < n - 1:
                self.slider.setRange(0, n - 1)
            self._draw_timeline()
            self._show_outputs(self.slider.value())
            self._schedule_inside()
        elif kind == "video_rollout":
            self.rollout = data
            self._draw_rollout()
        elif kind == "frame":
            self._frame_in_flight = False
            self.frame_view.set_image(data["image"])
            self.shown_index = int(data["index"])
            target = self.preview_index if self.preview_index is not None else self.slider.value()
            if target != self.shown_index:
                self._want_frame(target)

    def on_failed(self, kind: str, message: str) -> None:
        if kind == "frame":
            self._frame_in_flight = False
        if kind in ("video_open", "video_outputs"):
            self.path_label.setText(f"{Path(self.path).name}: cannot be read")
            self.play_button.setChecked(False)

    def _timeline_axes(self, on: bool) -> None:
        """No axes (frame -400..400) before a video is loaded: nothing to measure yet."""
        item = self.timeline.getPlotItem()
        for axis in ("left", "bottom"):
            item.showAxis(axis, on)
        self.timeline_empty.setVisible(not on)
        self.cursor.setVisible(on)
        if not on:
            item.getViewBox().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        else:  # setRange above switched auto-range off: the plots of a video set the range again
            item.getViewBox().enableAutoRange()

    def _draw_timeline(self) -> None:
        self.timeline.clear()
        self._timeline_axes(True)
        self.timeline.addItem(self.cursor)
        self.timeline.addItem(self.hover_cursor)
        d = self.outputs
        if self.classifier:
            probs = np.asarray(d["probabilities"])
            for k, name in enumerate(d["classes"]):
                self.timeline.plot(np.arange(len(probs)), probs[:, k], name=name,
                                   pen=pg.mkPen(colour_for(name, d["classes"]), width=2))
            for clip in d["clips"][1:]:
                self.timeline.addItem(pg.InfiniteLine(pos=clip["start"] - 0.5, angle=90,
                                                      pen=pg.mkPen("#cccccc", width=1)))
            self.timeline.setYRange(0, 1)
        else:
            x = np.arange(1, len(d["mse"]) + 1)  # mse[i] scores the guess for frame i + 1
            self.timeline.plot(x, d["mse"], name="model", pen=pg.mkPen(PALETTE[0], width=2))
            self.timeline.plot(x, d["copy_last_mse"], name="copy last frame",
                               pen=pg.mkPen(PALETTE[7], width=1, style=Qt.PenStyle.DashLine))
            # the range now, not at the next paint: the axis reads the errors themselves
            found = np.concatenate([np.asarray(d["mse"], float), np.asarray(d["copy_last_mse"], float)])
            found = found[np.isfinite(found)]
            top = float(found.max()) if found.size else 0.0
            self.timeline.setXRange(0, max(len(x), 1))
            self.timeline.setYRange(0.0, top if top > 0 else 1e-6)

    def _draw_rollout(self) -> None:
        d = self.rollout
        K = len(d["mse"])
        for k in range(ROLLOUT_VIEWS):
            for views, key in ((self.rollout_real, "real"), (self.rollout_pred, "predicted")):
                if k < K:
                    views[k].set_image(np.asarray(d[key][k]))
                views[k].setVisible(k < K)
        self.rollout_plot.clear()
        x = np.arange(1, K + 1)
        self.rollout_plot.plot(x, d["mse"], name="model", pen=pg.mkPen(PALETTE[0], width=2), symbol="o",
                               symbolSize=5)
        self.rollout_plot.plot(x, d["copy_last_mse"], name="copy last frame",
                               pen=pg.mkPen(PALETTE[7], width=1, style=Qt.PenStyle.DashLine))
        self.rollout_label.setText(f"<b>Rolled forward from frame {d['start']}</b> (real above, predicted "
                                   f"below): {K} frames ahead MSE {d['mse'][-1]:.4g}, copying frame "
                                   f"{d['start']}: {d['copy_last_mse'][-1]:.4g}")

    def _show_outputs(self, t: int) -> None:
        d = self.outputs
        self.cursor.setPos(t)
        if not d:
            return
        if self.classifier:
            probs = np.asarray(d["probabilities"])
            if 0 <= t < len(probs):
                self.bars.set_values(d["classes"], probs[t])
                clip = next((c for c in d["clips"] if c["start"] <= t < c["end"]), None)
                if clip:
                    self.clip_label.setText(f"Clip of frames {clip['start']}–{clip['end'] - 1} "
                                            f"(read from a fresh state, {d['clip_len']} frames as in training): "
                                            f"<b>{clip['predicted']}</b>")
        else:
            i = t - 1  # predicted[i] is the guess for frame i + 1
            if 0 <= i < len(d["predicted"]):
                real, pred = np.asarray(d["real"][i]), np.asarray(d["predicted"][i])
                self.real_view.set_image(real)
                self.pred_view.set_image(pred)
                self.diff_view.set_image(np.abs(real - pred))
                self.error_label.setText(f"frame {t}: MSE {d['mse'][i]:.4g} (copying the last frame: "
                                         f"{d['copy_last_mse'][i]:.4g})")
            else:
                self.error_label.setText(f"frame {t}: the first frame has nothing before it to predict from")

    # -- scrubbing, playing ----------------------------------------------------------------
    def _on_slider(self, value: int) -> None:
        n = self.slider.maximum() + 1
        self.frame_label.setText(f"frame {value} / {n}")
        self.preview_index = None
        self._want_frame(value)
        self._show_outputs(value)
        self._schedule_inside()

    def _want_frame(self, index: int) -> None:
        """Ask for a frame; while one is being decoded, only the latest wish is kept."""
        self.wanted_index = index
        if self._frame_in_flight or index == self.shown_index or not self.video_info:
            return
        self._frame_in_flight = True
        self.request.emit("frame", {"index": index, "preview": self.preview_index is not None})

    def _on_play(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        if on:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self.play_timer.start()
        else:
            self.play_timer.stop()
            self._schedule_inside()

    def _tick(self) -> None:
        if self._frame_in_flight:
            return  # decoding is slower than the frame rate: wait rather than pile up
        if self.slider.value() >= self.slider.maximum():
            self.play_button.setChecked(False)
            return
        self.slider.setValue(self.slider.value() + 1)

    def _inside_range(self, t: int) -> tuple[int, int]:
        if self.classifier:
            L = int(self.outputs.get("clip_len") or self.info.get("clip_len", 12))
            start = (t // L) * L
            return start, L
        W = int(self.info.get("window", 12))
        start = max(0, t - W + 1)
        return start, W

    def _schedule_inside(self) -> None:
        if self.outputs and not self.play_timer.isActive():
            self.inside_timer.start()

    def _request_inside(self) -> None:
        if not self.outputs:
            return
        t = self.slider.value()
        if not self.classifier and t != self._rollout_start and t < self.slider.maximum():
            self._rollout_start = t
            self.request.emit("video_rollout", {"path": self.path, "start": t})
        window = self._inside_range(t)
        if window != self._inside_window:
            self._inside_window = window
            self.inside_request.emit({"video": self.path, "start": window[0], "count": window[1]})

    def highlight(self, axis: str, t: int) -> None:
        """Hovering step t of the look inside previews that frame."""
        if axis != "in" or self._inside_window is None or t < 0:
            self.preview_index = None
            self.hover_cursor.hide()
            self._want_frame(self.slider.value())
            return
        index = min(self._inside_window[0] + t, self.slider.maximum())
        self.preview_index = index
        self.hover_cursor.setPos(index)
        self.hover_cursor.show()
        self._want_frame(index)

    def shutdown(self) -> None:
        self.play_timer.stop()
        self.inside_timer.stop()


def ctc_runs(path: list[int], labels: list[str], hop_s: float) -> str:
    """A CTC path [T] of output ids as runs: "blank 0.00-0.31 s · 3 0.32-0.45 s · ..."."""
    runs: list[str] = []
    start = 0
    for t in range(1, len(path) + 1):
        if t == len(path) or path[t] != path[start]:
            runs.append(f"{labels[path[start]]} {start * hop_s:.2f}–{t * hop_s:.2f} s")
            start = t
    return " · ".join(runs)


class AudioView(_OpensDroppedFiles, ModeView):
    """Open an audio file (or drop one here): its waveform, the log-mel spectrogram the
    model reads, the output at every frame (many-to-one: the class probabilities of the
    clip cut after that frame; CTC: the per-frame distribution over the words and the
    blank, with the greedy path), and saliency over time. The look inside the network
    (hidden states, gates) reads the same frames; hovering a frame anywhere marks it in
    every plot."""

    def __init__(self, info: dict, parent=None):
        super().__init__(info, parent)
        self.setAcceptDrops(True)
        self.ctc = info.get("task") == "speech_connected"
        lay = QVBoxLayout(self)
        lay.addWidget(self.hint)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open audio…")
        self.open_button.setObjectName("openAudioButton")
        self.path_label = QLabel("(drop a WAV, FLAC, MP3 or OGG file here)")
        self.path_label.setObjectName("audioPath")
        row.addWidget(self.open_button)
        row.addWidget(self.path_label, 1)
        lay.addLayout(row)
        self.answer = QLabel("")
        self.answer.setObjectName("audioAnswer")
        self.answer.setWordWrap(True)
        self.answer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.answer)

        self.wave_plot = pg.PlotWidget(background="w")
        self.wave_plot.setObjectName("audioWaveform")
        self.wave_plot.setMinimumHeight(80)
        self.wave_plot.setLabel("bottom", "seconds")
        self.wave_plot.setLabel("left", "amplitude")
        self.wave_plot.setMouseEnabled(x=False, y=False)
        for side in ("left", "bottom"):
            self.wave_plot.getAxis(side).enableAutoSIPrefix(False)  # seconds stay seconds
        self.wave_cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen(HIGHLIGHT, width=2))
        self.wave_cursor.hide()
        self.spectrogram = Heatmap(colormap="magma")
        self.spectrogram.setObjectName("audioSpectrogram")
        self.probabilities = Heatmap(colormap="viridis")
        self.probabilities.setObjectName("audioProbabilities")
        self.saliency = StepBars()
        self.saliency.setObjectName("audioSaliency")
        self.path_text = QLabel("")
        self.path_text.setObjectName("ctcPath")
        self.path_text.setWordWrap(True)
        self.path_text.setVisible(self.ctc)
        what = ("Per frame: p(word or blank) (CTC)" if self.ctc else
                "Per frame: p(class) of the clip cut there")
        for title, widget in (("Waveform", self.wave_plot), ("Log-mel spectrogram (what the model reads: mel bins by "
                              "their centre frequency, normalised per utterance)", self.spectrogram), (what, self.probabilities),
                              ("Saliency over time: |d answer / d frame|", self.saliency)):
            lay.addWidget(Titled(title, widget), 1)
        lay.addWidget(self.path_text)
        self.path = ""
        self.outputs: dict = {}
        for plot in (self.spectrogram, self.probabilities, self.saliency):
            plot.hovered.connect(lambda t: self.mark(t))
        self.open_button.clicked.connect(lambda: self.open_audio())

    # -- opening -------------------------------------------------------------------------
    def open_audio(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open audio", "", "Audio (*.wav *.flac *.mp3 *.ogg *.oga "
                                                  "*.opus *.m4a *.aac *.aif *.aiff *.au);;All files (*)")
            if not path:
                return
        self.path = str(path)
        self.path_label.setText(Path(self.path).name + " (reading…)")
        self.outputs = {}
        self.request.emit("audio_outputs", {"path": self.path})

    _open_dropped = open_audio

    # -- results -------------------------------------------------------------------------
    def on_result(self, kind: str, data) -> None:
        if kind != "audio_outputs":
            return
        self.outputs = self.last_result = data
        T = len(data["spectrogram"])
        self.path_label.setText(f"{Path(data['path']).name}: {data['seconds']:.2f} s at {data['sample_rate']} Hz, "
                                f"{T} frames of {data['hop_s'] * 1000:.0f} ms")
        steps = [f"{t * data['hop_s']:.2f}" for t in range(T)]
        self.wave_plot.clear()
        env = np.asarray(data["wave"])
        times = np.asarray(data["wave_times"])
        self.wave_plot.plot(np.repeat(times, 2), env.reshape(-1), pen=pg.mkPen(PALETTE[0], width=1))
        self.wave_plot.addItem(self.wave_cursor)
        self.wave_plot.setXRange(0, max(data["seconds"], 1e-3), padding=0)
        spec = np.asarray(data["spectrogram"]).T[::-1]  # [M, T], the highest bin on top
        self.spectrogram.set_matrix(spec, steps, None)
        hz = list(data["mel_hz"])
        M, every = len(hz), max(1, len(hz) // 5)  # a few frequencies on the axis, the lowest bin's among them
        self.spectrogram.getAxis("left").setTicks([[(M - 1 - i + 0.5, f"{hz[i]:.0f} Hz") for i in range(0, M, every)]])
        probs = np.asarray(data["probabilities"]).T  # [K, T]
        self.probabilities.set_matrix(probs, steps, list(data["labels"]), levels=(0.0, 1.0))
        self.saliency.set_values(data["saliency"], steps)
        if self.ctc:
            self.answer.setText(f"Greedy: <b>{data['greedy'] or '(nothing)'}</b> &nbsp; Beam search: "
                                f"<b>{data.get('beam') or '(nothing)'}</b>")
            self.path_text.setText("Greedy path: " + ctc_runs(list(data["ctc_path"]), list(data["labels"]),
                                                                data["hop_s"]))
        else:
            top = ", ".join(f"{c} {p:.0%}" for c, p in data["classes"][:3])
            self.answer.setText(f"Says <b>{data['predicted']}</b> ({top})")
        self.inside_request.emit({"audio": self.path})

    def on_failed(self, kind: str, message: str) -> None:
        if kind == "audio_outputs":
            self.path_label.setText(message)

    def mark(self, t: int) -> None:
        """Frame t (-1: none) marked in every plot."""
        hop = float(self.outputs.get("hop_s", 0.0)) if self.outputs else 0.0
        for plot in (self.spectrogram, self.probabilities, self.saliency):
            plot.set_cursor(t if t >= 0 else None)
        if t >= 0 and hop:
            self.wave_cursor.setPos(t * hop + 0.5 * float(self.outputs.get("window_s", 0.0)))  # the window's centre
            self.wave_cursor.show()
        else:
            self.wave_cursor.hide()

    def highlight(self, axis: str, t: int) -> None:
        """Hovering step t of the look inside marks that frame."""
        self.mark(t if axis == "in" else -1)


# mode -> its view, as each mode names it (workbench.tryout_modes: Mode.view)
VIEWS = {m.name: globals()[m.view] for m in tryout_modes.MODES}
