"""Hyperparameter fields (train.*), each with a one-sentence tooltip, bound to the
document like the architecture editor."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from workbench import spec
from workbench.gui.document import PresetDocument
from workbench.gui.widgets import Binder, ErrorBoard, ErrorLabel, SciSpinBox, guard_wheel

TRAIN_TIPS = {
    "steps": "How many optimizer updates to run: the training budget.",
    "epochs": "Stop after this many passes over the training data (0: run for the number of steps; "
              "generated data is endless and runs for the steps).",
    "batch_size": "How many sequences are averaged into each gradient step.",
    "optimizer": "The update rule: SGD with momentum, Adam, AdamW or RMSprop.",
    "lr": "Learning rate, the size of each update: too high diverges, too low crawls.",
    "momentum": "For SGD and RMSprop: how much of the previous update carries into the next.",
    "weight_decay": "An L2 pull of every weight toward zero at each step (0: off).",
    "schedule": "How the learning rate changes over the run: constant, cosine decay to zero, or step decay.",
    "warmup_steps": "Steps over which the learning rate ramps up linearly from zero at the start.",
    "step_size": "For the step schedule: multiply the learning rate by gamma every this many steps.",
    "gamma": "For the step schedule: the factor applied to the learning rate at each decay.",
    "clip": "Gradient clipping: rescale the whole gradient when its norm exceeds the threshold (norm), clamp "
            "each entry (value), or none.",
    "clip_value": "The clipping threshold: the largest gradient norm allowed (or entry, for value clipping).",
    "tbptt": "Truncated backpropagation through time: backpropagate through chunks of this many steps "
             "(0: the whole sequence).",
    "eval_every": "Measure the validation loss every this many steps (0: only at the end).",
    "eval_batches": "How many validation batches each evaluation during training averages over "
                    "(the final one reads the whole validation set).",
    "probe_every": "Run the exact dL/dh_t probe (costing about one training step) every this many steps "
                   "(0: off); it is postponed when it would take more than 2% of the training time.",
    "dynamics": "After each probe, also measure why the gradient vanishes or explodes (the Dynamics panel: "
                "one-step Jacobian norms, Lyapunov exponents, W_hh spectra, gates, hidden-state PCA), within "
                "the probe's time budget; off: the probe alone.",
    "log_every": "Record the per-timestep gradient norms every this many steps; on a GPU the steps in "
                 "between can run the stack as one fused kernel.",
    "checkpoint_every": "Save a resumable checkpoint every this many steps (0: only at the end).",
    "seed": "Random seed for the initial weights and the data order, so a run can be repeated exactly.",
    "device": "Where to train: auto picks a GPU when there is one, else the CPU.",
    "precision": "Number format on a GPU: fp32, or bf16/fp16 mixed precision for speed (the CPU uses fp32).",
    "on_non_finite": "When the loss or gradient turns NaN or infinite: skip that step and keep the last good "
                     "weights, or stop the run.",
    "num_threads": "Torch CPU threads (0: automatic: every core, or one where the first step trains faster on one; in the window below the interface's priority).",
}

DEVICE_LABELS = {"auto": "auto", "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}


def set_device_availability(combo: QComboBox, available: list[str] | None) -> None:
    """Grey out devices this machine lacks (auto and cpu always work)."""
    model = combo.model()
    if not isinstance(model, QStandardItemModel):
        return
    for i in range(combo.count()):
        name = combo.itemData(i)
        item = model.item(i)
        ok = name in ("auto", "cpu") or (available is not None and name in available)
        item.setEnabled(ok or combo.currentIndex() == i)
        tip = TRAIN_TIPS["device"] if ok else (f"no {DEVICE_LABELS.get(name, name)} found on this machine"
                                               if available is not None else "checking…")
        item.setToolTip(tip)


class TrainingPanel(QScrollArea):
    def __init__(self, doc: PresetDocument, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.binder = Binder(doc)
        self.errors = ErrorBoard()
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        groups = {
            "Budget": ["steps", "epochs", "batch_size"],
            "Optimizer": ["optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_steps", "step_size",
                          "gamma"],
            "Gradients": ["clip", "clip_value", "tbptt", "on_non_finite"],
            "Monitoring": ["eval_every", "eval_batches", "probe_every", "dynamics", "log_every", "checkpoint_every"],
            "Machine": ["device", "precision", "num_threads", "seed"],
        }
        self.fields: dict[str, QWidget] = {}
        for title, names in groups.items():
            box = QGroupBox(title)
            form = QFormLayout(box)
            form.setContentsMargins(6, 4, 6, 4)
            form.setSpacing(3)
            for name in names:
                widget = self._make(name)
                widget.setToolTip(TRAIN_TIPS[name])
                self.fields[name] = widget
                cell = QWidget()
                v = QVBoxLayout(cell)
                v.setContentsMargins(0, 0, 0, 0)
                v.setSpacing(0)
                v.addWidget(widget)
                v.addWidget(self.errors.register(f"train.{name}", ErrorLabel()))
                label = QLabel(name.replace("_", " "))
                label.setToolTip(TRAIN_TIPS[name])
                form.addRow(label, cell)
            lay.addWidget(box)
        lay.addWidget(self.errors.register("train", ErrorLabel()))
        lay.addStretch(1)
        self.refresh(doc.preset)
        guard_wheel(body)

    def _make(self, name: str) -> QWidget:
        path = f"train.{name}"
        choices = {"optimizer": spec.OPTIMIZERS, "schedule": spec.SCHEDULES, "clip": spec.CLIP_MODES,
                   "device": spec.DEVICES, "precision": spec.PRECISIONS, "on_non_finite": spec.NON_FINITE_ACTIONS}
        if name in choices:
            combo = QComboBox()
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
            self.binder.combo(combo, path, choices[name], DEVICE_LABELS if name == "device" else None)
            return combo
        if name == "dynamics":
            return self.binder.check(QCheckBox("measure the dynamics"), path)
        if name in ("lr", "clip_value", "weight_decay"):
            lo = 0.0 if name == "weight_decay" else 1e-12
            box = SciSpinBox(lo, 100.0 if name != "clip_value" else 1e9)
            self.binder.spin(box, path)
            return box
        if name in ("momentum", "gamma"):
            box = QDoubleSpinBox()
            box.setRange(0.0 if name == "momentum" else 0.001, 0.9999 if name == "momentum" else 1.0)
            box.setDecimals(4)
            box.setSingleStep(0.05)
            self.binder.spin(box, path)
            return box
        box = QSpinBox()
        hi = {"batch_size": spec.MAX_BATCH, "num_threads": 1024, "eval_batches": 100_000}.get(name, 2_000_000_000)
        lo = 0  # one below the spec's minimum of steps, batch size...: 0 is reported under the field, not reverted
        box.setRange(lo, hi)
        box.setAccelerated(True)
        if name in ("steps", "epochs", "eval_every", "probe_every", "checkpoint_every", "warmup_steps", "tbptt"):
            box.setGroupSeparatorShown(True)
        if name in ("epochs", "eval_every", "probe_every", "checkpoint_every", "tbptt", "num_threads"):
            box.setSpecialValueText({"epochs": "0 (use steps)", "num_threads": "auto", "tbptt": "full sequence",
                                     "checkpoint_every": "at the end", "probe_every": "off",
                                     "eval_every": "at the end"}[name])
        self.binder.spin(box, path)
        return box

    def set_devices(self, available: list[str] | None) -> None:
        set_device_availability(self.fields["device"], available)

    def refresh(self, preset) -> None:
        self.binder.refresh(preset)
        t = preset.train
        self.fields["momentum"].setEnabled(t.optimizer in ("sgd", "rmsprop"))
        self.fields["step_size"].setEnabled(t.schedule == "step")
        self.fields["gamma"].setEnabled(t.schedule == "step")
        self.fields["clip_value"].setEnabled(t.clip != "none")
        self.fields["dynamics"].setEnabled(t.probe_every > 0)  # the instruments follow each probe

    def show_errors(self, errors: list) -> list:
        return self.errors.show(errors)
