"""The architecture editor: task and data, topology, input side, the recurrent stack(s),
head and initialisation. Every widget edits the document (undoable); the document's
change notification refreshes every widget; errors appear in red under the field they
name (a layer's error under that layer's row)."""
from __future__ import annotations

import json

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workbench import cells, spec
from workbench.cells import conv as conv_cells
from workbench.gui.document import PresetDocument
from workbench.gui.widgets import Binder, ErrorBoard, ErrorLabel, guard_wheel, parse_option_text
from workbench.spec import Preset, SpecError

TIPS = {
    "name": "The preset's name, used for run folders and in the plots' legends.",
    "data.task": "What the network learns; each task brings its own data, loss and metrics.",
    "data.path": "A data file of your own for this task (empty: the task's built-in or generated data; "
                 "builtin:NAME: a data file shipped with the workbench).",
    "data.options": "Settings of the chosen task (e.g. sequence length); a preset keeps only those that differ "
                    "from the default.",
    "model.topology": "How inputs map to outputs: one output per sequence, one per step, an encoder feeding a "
                      "decoder, or one input unrolled into a sequence.",
    "cell": "The recurrent cell: vanilla RNN (tanh or ReLU), LSTM or GRU; gated cells carry gradients further "
            "back in time.",
    "model.conv_kernel": "Convolutional cells and the head over them: the side of each convolution's kernel "
                         "(odd). 1 learns each pixel's motion from its own past and generalises from a short "
                         "clip; 5 sees 2 pixels around and needs more footage.",
    "hidden_size": "Width of this layer's hidden state; for a conv cell, its feature maps x frame height x width. "
                   "What it costs in memory is the estimate under the diagram.",
    "bidirectional": "Also run the sequence backwards and join both directions' states.",
    "dropout": "Fraction of this layer's outputs zeroed at random while training.",
    "model.input.kind": "How raw inputs become vectors: a token embedding, a word embedding next to a "
                        "char-CNN summary of the word's spelling (tagging), a linear projection of numeric "
                        "features, a linear/conv encoder for video frames, or the frames as they are for "
                        "the convolutional cells (conv_lstm, conv_gru).",
    "model.input.embedding_dim": "Size of each token vector (also of the decoder's previous-token embedding).",
    "model.input.projection_size": "Output size of the linear or frame projection fed to the first layer; "
                                   "with a char-CNN, its number of filters.",
    "model.input.char_embedding_dim": "Size of each character vector the char-CNN reads.",
    "model.input.conv_channels": "Channels of each 3×3 conv + 2×2 pool block of the frames_conv encoder, "
                                 "e.g. 16, 32.",
    "model.head.kind": "Classification (softmax over classes or tokens) or regression (real-valued outputs).",
    "model.head.hidden_size": "An extra hidden layer between the recurrent stack and the output (0: none).",
    "model.head.residual": "Frames in, frames out: add each input frame to the output, so the model predicts the "
                           "change and starts out copying the last frame.",
    "model.head.extrapolate": "With the change predicted: also extend the last motion, x_t + a * (x_t - x_{t-1}), "
                              "with a learned a per colour channel starting at 0 (still copying the last frame "
                              "at first); the network learns what this linear guess misses.",
    "model.init.recurrent": "Initial recurrent weights: PyTorch's default, orthogonal, or identity (IRNN, "
                            "vanilla RNNs only).",
    "model.init.lru_r_min": "LRU layers: their eigenvalues start uniformly on the ring min |λ| ≤ |λ| ≤ max |λ| "
                            "(Orvieto et al. 2023); near 1 (0.9-0.999) for long memory.",
    "model.init.lru_r_max": "LRU layers: the ring's outer radius, below 1 (|λ| = 1 would neither forget nor decay).",
    "model.init.forget_bias": "LSTM forget-gate bias at the start; about 1 makes the cell remember by default.",
    "model.init.spectral_radius": "Rescale recurrent matrices to this spectral radius at the start (>1 makes "
                                  "gradients explode through time, <1 vanish).",
    "model.attention": "Let every decoder step read all encoder states (Luong dot-product attention).",
    "model.copy": "Copy mechanism (pointer-generator): each output word is either generated from the "
                  "vocabulary or copied from the input where the attention points, mixed by a learned gate. "
                  "Helps replies and translations repeat words of the input (names, rare words). Needs "
                  "attention and token input.",
    "model.bridge_norm": "Layer-normalise the vector that sets the generator's initial states (the image, "
                         "item or encoder summary) before tanh(W v): features far from unit scale otherwise "
                         "saturate tanh, and the states then carry little of the input. On the captioning "
                         "preset: exact-match captions 17% without, 93% with (three seeds).",
}

TOPOLOGY_HINTS = {
    "many_to_one": "reads a sequence, predicts once at the end",
    "many_to_many": "predicts at every step",
    "encoder_decoder": "an encoder reads the input; a decoder writes an output of another length",
    "one_to_many": "one input (a class, vector or image) unrolls into a sequence",
}


def _compact(combo: QComboBox, chars: int = 8) -> None:
    """Let a combo box shrink with the dock instead of widening it to its longest item."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)


COLUMNS = ("", "cell", "hidden", "", "dropout")  # the layer table's headers, one per column


class LayerRow(QObject):
    """One recurrent layer: cell, hidden size, bidirectional, dropout, move/remove; and
    the red line under it for that layer's errors. Its widgets sit in the layer list's
    one grid (``place``), under that grid's column headers."""

    def __init__(self, doc: PresetDocument, stack: str, index: int, parent=None):
        super().__init__(parent)
        self.doc, self.stack, self.index = doc, stack, index
        self.path = f"model.{stack}.{index}"
        self.label = QLabel(("D" if stack == "decoder_layers" else "L") + str(index + 1))
        self.label.setFixedWidth(20)
        self.cell = QComboBox()
        for c in cells.names():
            self.cell.addItem(cells.get(c).label, c)
        self.cell.setToolTip(TIPS["cell"])
        _compact(self.cell, 4)
        self.hidden = QSpinBox()
        # 0 is let through to be reported under the row, not clamped; the maximum follows the
        # cell (refresh): a conv cell's state on 64x64 frames is larger than any vector cell's
        self.hidden.setRange(0, spec.max_hidden_size(self.cell.currentData() or ""))
        self.hidden.setKeyboardTracking(False)
        self.hidden.setToolTip(TIPS["hidden_size"])
        self.hidden.setAccelerated(True)
        self.bi = QCheckBox("bi")
        self.bi.setToolTip(TIPS["bidirectional"])
        self.dropout = QDoubleSpinBox()
        self.dropout.setRange(0.0, 0.95)
        self.dropout.setSingleStep(0.05)
        self.dropout.setDecimals(2)
        self.dropout.setKeyboardTracking(False)
        self.dropout.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)  # room: type or scroll
        self.dropout.setToolTip(TIPS["dropout"])
        self.up = self._tool("▲", "Move this layer one place toward the input", -1)
        self.down = self._tool("▼", "Move this layer one place toward the output", +1)
        self.remove = QToolButton()
        self.remove.setFixedSize(20, 22)
        self.remove.setText("✕")
        self.remove.setToolTip("Remove this layer")
        self.remove.clicked.connect(lambda: self.doc.remove_layer(self.stack, self.index))
        self.error = ErrorLabel()
        self.cell.currentIndexChanged.connect(
            lambda i: self.doc.set(f"{self.path}.cell", self.cell.itemData(i), text=f"Set layer {self.index + 1} cell",
                                   merge=False))
        self.hidden.valueChanged.connect(lambda v: self.doc.set(f"{self.path}.hidden_size", int(v),
                                                                text=f"Set layer {self.index + 1} hidden size"))
        self.bi.toggled.connect(lambda on: self.doc.set(f"{self.path}.bidirectional", bool(on), merge=False,
                                                        text=f"Set layer {self.index + 1} bidirectional"))
        self.dropout.valueChanged.connect(lambda v: self.doc.set(f"{self.path}.dropout", float(v),
                                                                 text=f"Set layer {self.index + 1} dropout"))

    @property
    def fields(self) -> tuple[QWidget, ...]:
        """The row's widgets, one per grid column (COLUMNS names the first five)."""
        return (self.label, self.cell, self.hidden, self.bi, self.dropout, self.up, self.down, self.remove)

    def place(self, grid: QGridLayout, row: int) -> None:
        for col, w in enumerate(self.fields):
            grid.addWidget(w, row, col)
        grid.addWidget(self.error, row + 1, 1, 1, len(self.fields) - 1)

    def dispose(self) -> None:
        for w in (*self.fields, self.error):
            w.setParent(None)
            w.deleteLater()
        self.deleteLater()

    def _tool(self, text: str, tip: str, delta: int) -> QToolButton:
        b = QToolButton()
        b.setFixedSize(20, 22)
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(lambda: self.doc.move_layer(self.stack, self.index, delta))
        return b

    def refresh(self, layer: spec.LayerSpec, count: int) -> None:
        for w in (self.cell, self.hidden, self.bi, self.dropout):
            w.blockSignals(True)
        try:
            i = self.cell.findData(layer.cell)
            self.cell.setCurrentIndex(i)
            # before the value, never below it: a size the cell refuses is shown as it is and
            # reported under the row, not clamped out of sight
            self.hidden.setMaximum(max(spec.max_hidden_size(layer.cell), layer.hidden_size))
            self.hidden.setValue(layer.hidden_size)
            self.bi.setChecked(layer.bidirectional)
            self.dropout.setValue(layer.dropout)
        finally:
            for w in (self.cell, self.hidden, self.bi, self.dropout):
                w.blockSignals(False)
        self.up.setEnabled(self.index > 0)
        self.down.setEnabled(self.index < count - 1)
        self.remove.setEnabled(count > 1)


class LayerList(QWidget):
    """The rows of one stack (model.layers or model.decoder_layers) and an Add button.
    Headers and rows share one grid, so each header stands over its column."""

    def __init__(self, doc: PresetDocument, stack: str, errors: ErrorBoard, parent=None):
        super().__init__(parent)
        self.doc, self.stack, self.errors = doc, stack, errors
        self.rows: list[LayerRow] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(1)
        self.grid = QGridLayout()
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(3)
        self.grid.setVerticalSpacing(1)
        self.headers: dict[str, QLabel] = {}
        for col, text in enumerate(COLUMNS):
            if text:
                lab = QLabel(f"<small>{text}</small>")
                self.grid.addWidget(lab, 0, col)
                self.headers[text] = lab
        self.grid.setColumnStretch(1, 2)
        self.grid.setColumnStretch(2, 1)
        outer.addLayout(self.grid)
        self.error = errors.register(f"model.{stack}", ErrorLabel())
        outer.addWidget(self.error)
        self.add = QPushButton("Add layer" if stack == "layers" else "Add decoder layer")
        self.add.setToolTip("Add a layer on top of the stack (a copy of the current top layer)")
        self.add.clicked.connect(lambda: self.doc.add_layer(self.stack))
        outer.addWidget(self.add, 0, Qt.AlignmentFlag.AlignLeft)

    def refresh(self, layers: list[spec.LayerSpec]) -> None:
        if len(layers) != len(self.rows):
            for row in self.rows:
                self.errors.unregister_prefix(row.path)
                row.dispose()
            self.rows = []
            for i in range(len(layers)):
                row = LayerRow(self.doc, self.stack, i, self)
                row.place(self.grid, 1 + 2 * i)
                for w in row.fields:
                    guard_wheel(w)
                self.errors.register(row.path, row.error)
                self.rows.append(row)
        for row, layer in zip(self.rows, layers):
            row.refresh(layer, len(layers))


class ArchitectureEditor(QScrollArea):
    """The design panel. ``errors`` places SpecErrors beside their fields."""

    browse_requested = Signal()

    def __init__(self, doc: PresetDocument, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.errors = ErrorBoard()
        self.binder = Binder(doc)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("editorBody")
        self.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        self.task_infos: dict = {}

        # ---- task and data
        box, form = self._group("Task and data")
        self.name = self.binder.line(QLineEdit(), "name")
        self.name.setToolTip(TIPS["name"])
        self._row(form, "Name", self.name, "name")
        self.task = QComboBox()
        self.task.setToolTip(TIPS["data.task"])
        self.task.currentIndexChanged.connect(self._on_task)
        self.binder.custom("data.task", self.task, self._refresh_task)
        self._row(form, "Task", self.task, "data.task")
        path_row = QWidget()
        pl = QHBoxLayout(path_row)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(2)
        self.path = self.binder.line(QLineEdit(), "data.path")
        self.path.setPlaceholderText("built-in data")
        self.path.setToolTip(TIPS["data.path"])
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose a data file")
        self.browse.clicked.connect(self.browse_requested.emit)
        self.clear_path = QToolButton()
        self.clear_path.setText("✕")
        self.clear_path.setToolTip("Use the task's built-in data")
        self.clear_path.clicked.connect(lambda: self.doc.set("data.path", "", text="Clear data path", merge=False))
        pl.addWidget(self.path, 1)
        pl.addWidget(self.browse)
        pl.addWidget(self.clear_path)
        self._row(form, "Data file", path_row, "data.path")
        self.options_box = QWidget()
        self.options_form = QFormLayout(self.options_box)
        self.options_form.setContentsMargins(0, 0, 0, 0)
        self.options_form.setSpacing(2)
        self.options_box.setToolTip(TIPS["data.options"])
        self._option_edits: dict[str, QWidget] = {}
        self._option_signature: tuple | None = None
        self._references: dict[str, Preset | None] = {}
        self._row(form, "Options", self.options_box, "data.options")
        lay.addWidget(box)

        # ---- topology
        box, form = self._group("Topology")
        self.topology = QComboBox()
        self.topology.setToolTip(TIPS["model.topology"])
        self.binder.combo(self.topology, "model.topology", spec.TOPOLOGIES, spec.TOPOLOGY_LABELS,
                          on_change=self.doc.set_topology)
        self._row(form, "Shape", self.topology, "model.topology")
        self.topology_hint = QLabel()
        self.topology_hint.setObjectName("hint")
        self.topology_hint.setWordWrap(True)
        form.addRow(self.topology_hint)
        self.bridge_norm = self.binder.check(QCheckBox("Normalise what sets the initial state"), "model.bridge_norm")
        self.bridge_norm.setToolTip(TIPS["model.bridge_norm"])
        form.addRow(self.bridge_norm)
        form.addRow(self.errors.register("model.bridge_norm", ErrorLabel()))
        lay.addWidget(box)

        # ---- input side
        box, form = self._group("Input side")
        self.input_kind = QComboBox()
        self.input_kind.setToolTip(TIPS["model.input.kind"])
        self.binder.combo(self.input_kind, "model.input.kind", spec.INPUT_KINDS,
                          {"embedding": "token embedding", "embedding_chars": "word embedding + char-CNN",
                           "linear": "linear (features)", "frames_linear": "frames → linear",
                           "frames_conv": "frames → conv", "frames_grid": "frames as they are (conv cells)"})
        self._row(form, "Kind", self.input_kind, "model.input.kind")
        self.embedding_dim = self._spin(0, spec.MAX_EMBEDDING, "model.input.embedding_dim")
        self._row(form, "Embedding size", self.embedding_dim, "model.input.embedding_dim")
        self.projection = self._spin(0, spec.MAX_EMBEDDING, "model.input.projection_size")
        self._row(form, "Projection size", self.projection, "model.input.projection_size")
        self.char_embedding_dim = self._spin(0, spec.MAX_EMBEDDING, "model.input.char_embedding_dim")
        self._row(form, "Character vector size", self.char_embedding_dim, "model.input.char_embedding_dim")
        self.conv = QLineEdit()
        self.conv.setToolTip(TIPS["model.input.conv_channels"])
        self.conv.editingFinished.connect(self._on_conv)
        self.binder.custom("model.input.conv_channels", self.conv,
                           lambda p: self.conv.setText(", ".join(map(str, p.model.input.conv_channels))))
        self._row(form, "Conv channels", self.conv, "model.input.conv_channels")
        self.input_error = self.errors.register("model.input", ErrorLabel())
        form.addRow(self.input_error)
        lay.addWidget(box)

        # ---- recurrent stack(s)
        self.layers_box = QGroupBox("Recurrent layers")
        v = QVBoxLayout(self.layers_box)
        v.setContentsMargins(6, 4, 6, 4)
        self.layers = LayerList(doc, "layers", self.errors)
        v.addWidget(self.layers)
        kernel_form = QFormLayout()
        kernel_form.setContentsMargins(0, 0, 0, 0)
        self.conv_kernel = self._spin(0, conv_cells.MAX_KERNEL + 1, "model.conv_kernel")
        self._row(kernel_form, "Conv kernel", self.conv_kernel, "model.conv_kernel")
        v.addLayout(kernel_form)
        lay.addWidget(self.layers_box)
        self.decoder_box = QGroupBox("Decoder layers")
        v = QVBoxLayout(self.decoder_box)
        v.setContentsMargins(6, 4, 6, 4)
        self.decoder = LayerList(doc, "decoder_layers", self.errors)
        v.addWidget(self.decoder)
        self.attention = self.binder.check(QCheckBox("Attention over encoder states"), "model.attention")
        self.attention.setToolTip(TIPS["model.attention"])
        v.addWidget(self.attention)
        v.addWidget(self.errors.register("model.attention", ErrorLabel()))
        self.copy = self.binder.check(QCheckBox("Copy words from the input (pointer-generator)"), "model.copy")
        self.copy.setToolTip(TIPS["model.copy"])
        v.addWidget(self.copy)
        v.addWidget(self.errors.register("model.copy", ErrorLabel()))
        lay.addWidget(self.decoder_box)

        # ---- head and init
        box, form = self._group("Output head")
        self.head_kind = QComboBox()
        self.head_kind.setToolTip(TIPS["model.head.kind"])
        self.binder.combo(self.head_kind, "model.head.kind", spec.HEAD_KINDS)
        self._row(form, "Kind", self.head_kind, "model.head.kind")
        self.head_hidden = self._spin(0, spec.MAX_HIDDEN, "model.head.hidden_size")
        self._row(form, "Hidden layer", self.head_hidden, "model.head.hidden_size")
        self.head_residual = self.binder.check(QCheckBox("Predict the change from the last frame"),
                                               "model.head.residual")
        self.head_residual.setToolTip(TIPS["model.head.residual"])
        form.addRow(self.head_residual)
        self.head_extrapolate = self.binder.check(QCheckBox("Extend the last motion (learned linear part)"),
                                                  "model.head.extrapolate")
        self.head_extrapolate.setToolTip(TIPS["model.head.extrapolate"])
        form.addRow(self.head_extrapolate)
        # it extends the residual head's copy of the frame: nothing to extend without it
        self.head_residual.toggled.connect(self.head_extrapolate.setEnabled)
        self.head_extrapolate.setEnabled(self.head_residual.isChecked())
        form.addRow(self.errors.register("model.head", ErrorLabel()))
        lay.addWidget(box)

        box, form = self._group("Initialisation")
        self.init_kind = QComboBox()
        self.init_kind.setToolTip(TIPS["model.init.recurrent"])
        self.binder.combo(self.init_kind, "model.init.recurrent", spec.RECURRENT_INITS)
        self._row(form, "Recurrent", self.init_kind, "model.init.recurrent")
        self.forget_bias = QDoubleSpinBox()
        self.forget_bias.setRange(-20, 20)
        self.forget_bias.setSingleStep(0.5)
        self.forget_bias.setToolTip(TIPS["model.init.forget_bias"])
        self.binder.spin(self.forget_bias, "model.init.forget_bias")
        self._row(form, "Forget bias", self.forget_bias, "model.init.forget_bias")
        radius_row = QWidget()
        rl = QHBoxLayout(radius_row)
        rl.setContentsMargins(0, 0, 0, 0)
        self.radius_on = QCheckBox()
        self.radius_on.setToolTip(TIPS["model.init.spectral_radius"])
        self.radius = QDoubleSpinBox()
        self.radius.setRange(0.01, 100.0)
        self.radius.setSingleStep(0.05)
        self.radius.setKeyboardTracking(False)
        self.radius.setToolTip(TIPS["model.init.spectral_radius"])
        rl.addWidget(self.radius_on)
        rl.addWidget(self.radius, 1)
        self.radius_on.toggled.connect(
            lambda on: self.doc.set("model.init.spectral_radius", float(self.radius.value()) if on else None,
                                    text="Set spectral radius", merge=False))
        self.radius.valueChanged.connect(lambda v: self.doc.set("model.init.spectral_radius", float(v)))
        self.binder.custom("model.init.spectral_radius", radius_row, self._refresh_radius)
        self._row(form, "Spectral radius", radius_row, "model.init.spectral_radius")
        for path, label in (("model.init.lru_r_min", "LRU ring, min |λ|"), ("model.init.lru_r_max", "LRU ring, max |λ|")):
            ring = QDoubleSpinBox()
            ring.setRange(0.0, 1.0)
            ring.setDecimals(3)
            ring.setSingleStep(0.01)
            ring.setToolTip(TIPS[path])
            self.binder.spin(ring, path)
            self._row(form, label, ring, path)
        form.addRow(self.errors.register("model.init", ErrorLabel()))
        lay.addWidget(box)

        self.general_error = self.errors.register("model", ErrorLabel())
        lay.addWidget(self.general_error)
        lay.addStretch(1)
        for combo in body.findChildren(QComboBox):
            _compact(combo)
        self.refresh(doc.preset)
        guard_wheel(body)

    # ------------------------------------------------------------------ building helpers
    def _group(self, title: str) -> tuple[QGroupBox, QFormLayout]:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setContentsMargins(6, 4, 6, 4)
        form.setSpacing(3)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        return box, form

    def _row(self, form: QFormLayout, label: str, widget: QWidget, path: str) -> None:
        cell = QWidget()
        v = QVBoxLayout(cell)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(0)
        v.addWidget(widget)
        v.addWidget(self.errors.register(path, ErrorLabel()))
        lab = QLabel(label)
        lab.setToolTip(TIPS.get(path, widget.toolTip()))
        form.addRow(lab, cell)

    def _spin(self, lo: int, hi: int, path: str) -> QSpinBox:
        """A whole-number field. ``lo`` is one below what the spec allows where a value
        below it can be typed: that value reaches the preset and is reported under the
        field (a spin box held at the spec's minimum would silently revert it)."""
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setAccelerated(True)
        s.setToolTip(TIPS.get(path, ""))
        self.binder.spin(s, path)
        return s

    # ------------------------------------------------------------------ task
    def set_task_infos(self, infos: dict) -> None:
        """Titles, topologies and option defaults of the tasks, once loaded (resolver)."""
        self.task_infos = dict(infos)
        self.refresh(self.doc.preset)

    def _refresh_task(self, preset: Preset) -> None:
        from workbench.tasks import TASKS

        names = list(TASKS)
        if preset.data.task not in names:
            names.append(preset.data.task)
        labels = []
        for n in names:
            info = self.task_infos.get(n)
            labels.append(f"{n} — {info.title}" if info is not None and info.title and info.title != n else n)
        current = [self.task.itemText(i) for i in range(self.task.count())]
        if current != labels:
            self.task.clear()
            for n, label in zip(names, labels):
                self.task.addItem(label, n)
        self.task.setCurrentIndex(self.task.findData(preset.data.task))

    def _reference(self, task: str) -> Preset | None:
        """The first built-in preset of ``task``: where a task change takes the input kind
        and head that the task needs."""
        if task not in self._references:
            from workbench import presets

            self._references[task] = None
            for name in presets.builtin_names():
                try:
                    p = presets.load_builtin(name)
                except (OSError, SpecError):
                    continue
                if p.data.task == task:
                    self._references[task] = p
                    break
        return self._references[task]

    def _on_task(self, index: int) -> None:
        name = self.task.itemData(index)
        if name is None or name == self.doc.preset.data.task:
            return
        info = self.task_infos.get(name)
        check = None
        if info is not None and info.cls is not None:
            def check(model, cls=info.cls):
                cls({}, "", self.doc.preset.train.seed).check_model(model)
        self.doc.set_task(name, check, self._reference(name), info.topologies if info is not None else ())

    def _refresh_topologies(self, preset: Preset) -> None:
        """Offer only the topologies the task supports (the others greyed, saying why)."""
        info = self.task_infos.get(preset.data.task)
        allowed = info.topologies if info is not None and info.topologies else None
        model = self.topology.model()
        for i in range(self.topology.count()):
            value = self.topology.itemData(i)
            ok = allowed is None or value in allowed or value == preset.model.topology
            item = model.item(i)
            if item is not None:
                item.setEnabled(ok)
            self.topology.setItemData(i, None if ok else f"the {preset.data.task} task supports: "
                                      + ", ".join(spec.TOPOLOGY_LABELS.get(t, t) for t in allowed or ()),
                                      Qt.ItemDataRole.ToolTipRole)

    def _option_widget(self, key: str, hint, default, choices: tuple[str, ...] | None) -> QWidget:
        """A field of the type the option takes: choice -> combo box, whole number or
        number -> spin box, yes/no -> check box, file -> path field; anything else text."""
        if choices:
            w = QComboBox()
            for c in choices:
                w.addItem(c, c)
            w.activated.connect(lambda i, k=key, w=w: self._set_option(k, w.itemData(i)))
            _compact(w)
        elif hint is bool:
            w = QCheckBox()
            w.toggled.connect(lambda on, k=key: self._set_option(k, bool(on)))
        elif hint is int:
            w = QSpinBox()
            w.setRange(min(-1, int(default)) if default is not None and default < 0 else 0, 2_000_000_000)
            w.setGroupSeparatorShown(True)
            w.setKeyboardTracking(False)
            w.valueChanged.connect(lambda v, k=key: self._set_option(k, int(v)))
        elif hint is float:
            w = QDoubleSpinBox()
            w.setDecimals(4)
            w.setRange(-1e9 if default is not None and default < 0 else 0.0, 1e9)
            w.setSingleStep(0.05 if default is not None and abs(default) <= 1 else 1.0)
            w.setKeyboardTracking(False)
            w.valueChanged.connect(lambda v, k=key: self._set_option(k, float(v)))
        elif key.endswith("_path"):
            w = QWidget()
            row = QHBoxLayout(w)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(2)
            w.edit = QLineEdit()
            w.edit.setPlaceholderText("none")
            browse = QToolButton()
            browse.setText("…")
            browse.setToolTip("Choose a file")
            browse.clicked.connect(lambda _=False, k=key, w=w: self._browse_option(k, w.edit))
            row.addWidget(w.edit, 1)
            row.addWidget(browse)
            w.edit.editingFinished.connect(lambda k=key, w=w: self._set_option(k, w.edit.text().strip()))
        elif hint is str:
            w = QLineEdit()
            w.editingFinished.connect(lambda k=key, w=w: self._set_option(k, w.text()))
        elif hint == list[str]:
            w = QLineEdit()
            w.setPlaceholderText("all")
            w.setToolTip("Names separated by commas")
            w.editingFinished.connect(
                lambda k=key, w=w: self._set_option(k, [t.strip() for t in w.text().split(",") if t.strip()]))
        else:  # an option this form has no field type for: JSON text
            w = QLineEdit()
            w.editingFinished.connect(lambda k=key, w=w: self._set_option(k, parse_option_text(w.text().strip())
                                                                           if w.text().strip() else None))
        w.setObjectName(f"option_{key}")
        return w

    def _browse_option(self, key: str, edit: QLineEdit) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, f"Choose {key.replace('_', ' ')}", edit.text())
        if path:
            self._set_option(key, path)

    def _set_option(self, key: str, value) -> None:
        """Set one task option; its default (or None) removes it from data.options, so a
        preset lists only what differs from the task's defaults."""
        info = self.task_infos.get(self.doc.preset.data.task)
        defaults = dict(info.options) if info is not None else {}

        def mutate(p: Preset) -> None:
            if value is None or (key in defaults and value == defaults[key]):
                p.data.options.pop(key, None)
            else:
                p.data.options[key] = value

        self.doc.edit(f"Set option {key}", mutate, merge_key=f"data.options.{key}")

    def _refresh_options(self, preset: Preset) -> None:
        import typing

        info = self.task_infos.get(preset.data.task)
        defaults = dict(info.options) if info is not None else {}
        hints, choices = {}, {}
        if info is not None and info.cls is not None:
            try:
                hints = typing.get_type_hints(info.cls.Options)
            except TypeError:
                hints = {}
            choices = dict(getattr(info.cls, "option_choices", {}) or {})
        keys = list(defaults) + [k for k in preset.data.options if k not in defaults]
        signature = (preset.data.task, tuple(keys))
        if self._option_signature != signature:
            self._option_signature = signature
            for key in self._option_edits:
                self.errors.unregister_prefix(f"data.options.{key}")
            while self.options_form.rowCount():
                self.options_form.removeRow(0)
            self._option_edits = {}
            for key in keys:
                w = self._option_widget(key, hints.get(key), defaults.get(key), choices.get(key))
                cell = QWidget()
                v = QVBoxLayout(cell)
                v.setContentsMargins(0, 0, 0, 0)
                v.setSpacing(0)
                v.addWidget(w)
                v.addWidget(self.errors.register(f"data.options.{key}", ErrorLabel()))
                self.options_form.addRow(key.replace("_", " "), cell)
                self._option_edits[key] = w
            if not keys:
                self.options_form.addRow(QLabel("<i>none</i>" if info is not None else "<i>loading…</i>"))
            guard_wheel(self.options_box)
        for key, w in self._option_edits.items():
            value = preset.data.options.get(key, defaults.get(key))
            default_tip = f"default: {defaults[key]!r}" if key in defaults else "not an option of this task"
            w.blockSignals(True)
            try:
                if isinstance(w, QComboBox):
                    i = w.findData(value)
                    if i < 0:
                        w.addItem(str(value), value)
                        i = w.count() - 1
                    w.setCurrentIndex(i)
                elif isinstance(w, QCheckBox):
                    w.setChecked(bool(value))
                elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        w.setValue(value)
                elif isinstance(w, QLineEdit):
                    if isinstance(value, list):
                        text = ", ".join(map(str, value))
                    elif isinstance(value, str):
                        text = value
                    else:
                        text = "" if value is None else json.dumps(value)
                    if w.text() != text:
                        w.setText(text)
                elif hasattr(w, "edit"):
                    w.edit.blockSignals(True)
                    if w.edit.text() != (value or ""):
                        w.edit.setText(value or "")
                    w.edit.blockSignals(False)
            finally:
                w.blockSignals(False)
            w.setToolTip(f"{TIPS['data.options']} ({default_tip})")

    def _on_conv(self) -> None:
        try:
            channels = [int(c) for c in self.conv.text().replace(";", ",").split(",") if c.strip()]
        except ValueError:
            self.errors.labels["model.input.conv_channels"].show_error("write whole numbers separated by commas, "
                                                                       "e.g. 16, 32")
            return
        self.doc.set("model.input.conv_channels", channels, text="Set conv channels")

    def _refresh_radius(self, preset: Preset) -> None:
        r = preset.model.init.spectral_radius
        self.radius_on.blockSignals(True)
        self.radius.blockSignals(True)
        self.radius_on.setChecked(r is not None)
        self.radius.setEnabled(r is not None)
        if r is not None:
            self.radius.setValue(r)
        self.radius_on.blockSignals(False)
        self.radius.blockSignals(False)

    # ------------------------------------------------------------------ refresh
    def refresh(self, preset: Preset) -> None:
        self.binder.refresh(preset)
        self._refresh_options(preset)
        self._refresh_topologies(preset)
        m = preset.model
        from workbench.tasks import TOPOLOGY_NOTES

        note = TOPOLOGY_NOTES.get(preset.data.task) if m.topology == "many_to_many" else None
        self.topology_hint.setText(" ".join(t for t in (TOPOLOGY_HINTS.get(m.topology, ""), note and note[1]) if t))
        kind = m.input.kind
        self.embedding_dim.setEnabled(kind in ("embedding", "embedding_chars")
                                      or m.topology in ("encoder_decoder", "one_to_many"))
        self.projection.setEnabled(kind != "embedding")
        self.char_embedding_dim.setEnabled(kind == "embedding_chars")
        self.conv.setEnabled(kind == "frames_conv")
        self.conv_kernel.setEnabled(any(conv_cells.is_spatial(layer.cell) for layer in m.layers))
        enc_dec = m.topology == "encoder_decoder"
        self.layers_box.setTitle("Encoder layers" if enc_dec else "Recurrent layers")
        self.layers.refresh(m.layers)
        self.decoder_box.setVisible(enc_dec or bool(m.decoder_layers))
        self.decoder.refresh(m.decoder_layers)
        self.attention.setEnabled(enc_dec or m.attention)
        # shown where valid (and where set, so an invalid setting can be cleared)
        self.copy.setVisible((enc_dec and m.attention and kind == "embedding") or m.copy)
        self.bridge_norm.setVisible(m.topology in ("encoder_decoder", "one_to_many"))
        for row in self.layers.rows:
            row.bi.setEnabled(m.topology != "one_to_many" or m.layers[row.index].bidirectional)

    def show_errors(self, errors: list) -> list:
        """Place errors beside their fields; returns those without a place."""
        return self.errors.show(errors)
