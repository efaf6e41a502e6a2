"""The edited preset as a small Qt-free document: the current Preset, an undo stack of
preset states, a dirty flag and the file path. Widgets subscribe to it (napari style)
and every edit goes through ``edit``/``set``, so undo and redo cover all of them.

No Qt and no torch here: the document is tested on its own, and the window only wires
widgets to it.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from workbench import spec
from workbench.spec import LayerSpec, Preset, SpecError

# Consecutive edits of the same field within this many seconds become one undo step
# (spin-box arrows, slider drags), like QUndoCommand.mergeWith.
MERGE_WINDOW_S = 1.5
MAX_UNDO = 500


@dataclass
class Change:
    """What a listener is told. kind: "edit" (an edit, undo or redo), "replace" (a
    new/opened preset), "saved" (path or clean state changed)."""

    kind: str
    text: str = ""


@dataclass
class _Entry:
    text: str
    before: Preset
    after: Preset
    merge_key: str | None
    when: float


def get_field(obj: Any, dotted: str) -> Any:
    """``get_field(preset, "model.layers.0.hidden_size")``; dict keys (data.options) too."""
    node = obj
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node[part]
        else:
            node = getattr(node, part)
    return node


def set_field(obj: Any, dotted: str, value: Any) -> None:
    """Set a field by its dotted path on a preset (mutates ``obj``)."""
    parts = dotted.split(".")
    parent = get_field(obj, ".".join(parts[:-1])) if len(parts) > 1 else obj
    last = parts[-1]
    if isinstance(parent, list):
        parent[int(last)] = value
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        if is_dataclass(parent) and last not in {f.name for f in fields(parent)}:
            raise SpecError(dotted, "unknown field")
        setattr(parent, last, value)


class PresetDocument:
    """The preset being edited. ``preset`` is the current state: read it, never mutate it
    in place (use ``edit``/``set``), or undo loses track."""

    def __init__(self, preset: Preset | None = None, path: str | Path | None = None,
                 builtin: str | None = None, clock: Callable[[], float] = time.monotonic):
        self._preset = preset.copy() if preset is not None else Preset()
        self.path: Path | None = Path(path) if path else None
        self.builtin = builtin  # name of the built-in preset this came from (read-only on disk)
        self._undo: list[_Entry] = []
        self._redo: list[_Entry] = []
        self._clean_depth: int | None = 0  # len(self._undo) when last saved; None: unreachable
        self._listeners: list[Callable[[Change], None]] = []
        self._clock = clock

    # ------------------------------------------------------------------ listeners
    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback(Change)`` after every change; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self, change: Change) -> None:
        for cb in list(self._listeners):
            cb(change)

    # ------------------------------------------------------------------ state
    @property
    def preset(self) -> Preset:
        return self._preset

    @property
    def dirty(self) -> bool:
        return self._clean_depth != len(self._undo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].text if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].text if self._redo else ""

    @property
    def title(self) -> str:
        if self.path is not None:
            return self.path.name
        if self.builtin:
            return f"{self.builtin} (built-in)"
        return self._preset.name or "untitled"

    def validation_error(self) -> SpecError | None:
        """The first spec error (field path + message), or None. Task checks are separate
        (they need the task's module, see resolver.py)."""
        try:
            spec.validate(self._preset)
        except SpecError as exc:
            return exc
        return None

    # ------------------------------------------------------------------ edits
    def edit(self, text: str, mutate: Callable[[Preset], None], merge_key: str | None = None) -> bool:
        """Apply ``mutate`` to a copy of the preset and push it as one undo step.
        Returns False (and records nothing) when the edit changed nothing."""
        before = self._preset
        after = before.copy()
        mutate(after)
        if after == before:
            return False
        now = self._clock()
        top = self._undo[-1] if self._undo else None
        if (merge_key is not None and top is not None and top.merge_key == merge_key and not self._redo
                and now - top.when <= MERGE_WINDOW_S and self._clean_depth != len(self._undo)):
            top.after = after.copy()
            top.when = now
            if top.after == top.before:  # merged back to where it started: drop the step
                self._undo.pop()
        else:
            self._undo.append(_Entry(text, before, after.copy(), merge_key, now))
            if len(self._undo) > MAX_UNDO:
                self._undo.pop(0)
                if self._clean_depth is not None:
                    self._clean_depth = self._clean_depth - 1 if self._clean_depth > 0 else None
        if self._clean_depth is not None and self._clean_depth > len(self._undo):
            self._clean_depth = None  # the saved state was in the discarded redo branch
        self._redo.clear()
        self._preset = after
        self._notify(Change("edit", text))
        return True

    def set(self, dotted: str, value: Any, text: str | None = None, merge: bool = True) -> bool:
        """Set one field by its dotted path (``train.lr``, ``model.layers.1.cell``)."""
        label = text or f"Set {dotted}"
        return self.edit(label, lambda p: set_field(p, dotted, value), merge_key=dotted if merge else None)

    def replace(self, preset: Preset, path: str | Path | None = None, builtin: str | None = None) -> None:
        """A new or opened preset: fresh history, clean."""
        self._preset = preset.copy()
        self.path = Path(path) if path else None
        self.builtin = builtin
        self._undo.clear()
        self._redo.clear()
        self._clean_depth = 0
        self._notify(Change("replace", preset.name))

    def undo(self) -> bool:
        if not self._undo:
            return False
        entry = self._undo.pop()
        self._redo.append(entry)
        self._preset = entry.before.copy()
        self._notify(Change("edit", f"Undo {entry.text}"))
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        entry = self._redo.pop()
        self._undo.append(entry)
        self._preset = entry.after.copy()
        self._notify(Change("edit", f"Redo {entry.text}"))
        return True

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path | None = None) -> Path:
        """Write the preset (validated) to ``path`` or the current path; raises SpecError
        for an invalid preset and workbench.fileio.SaveError for a failed write."""
        target = Path(path) if path else self.path
        if target is None:
            raise SpecError("", "this preset has no file yet: choose where to save it")
        spec.save(self._preset, target)
        self.path = target
        self.builtin = None
        self._clean_depth = len(self._undo)
        for entry in self._undo:  # a save ends merging into the step before it
            entry.merge_key = None
        self._notify(Change("saved", str(target)))
        return target

    # ------------------------------------------------------------------ layer operations
    @staticmethod
    def _stack(preset: Preset, stack: str) -> list[LayerSpec]:
        if stack not in ("layers", "decoder_layers"):
            raise ValueError(f"unknown stack {stack!r}")
        return getattr(preset.model, stack)

    def add_layer(self, stack: str = "layers", index: int | None = None) -> bool:
        """Insert a copy of the neighbouring layer (or a default LSTM) at ``index``."""
        def mutate(p: Preset) -> None:
            layers = self._stack(p, stack)
            at = len(layers) if index is None else max(0, min(index, len(layers)))
            template = layers[at - 1] if at > 0 and layers else (layers[0] if layers else None)
            if template is None and stack == "decoder_layers" and p.model.layers:
                template = p.model.layers[-1]
            new = copy.deepcopy(template) if template is not None else LayerSpec()
            if stack == "decoder_layers" or p.model.topology == "one_to_many":
                new.bidirectional = False
            layers.insert(at, new)
        return self.edit(f"Add {'decoder ' if stack == 'decoder_layers' else ''}layer", mutate)

    def remove_layer(self, stack: str, index: int) -> bool:
        def mutate(p: Preset) -> None:
            layers = self._stack(p, stack)
            if 0 <= index < len(layers):
                layers.pop(index)
        return self.edit(f"Remove {'decoder ' if stack == 'decoder_layers' else ''}layer {index + 1}", mutate)

    def move_layer(self, stack: str, index: int, delta: int) -> bool:
        def mutate(p: Preset) -> None:
            layers = self._stack(p, stack)
            to = index + delta
            if 0 <= index < len(layers) and 0 <= to < len(layers):
                layers[index], layers[to] = layers[to], layers[index]
        return self.edit(f"Move layer {index + 1} {'up' if delta < 0 else 'down'}", mutate)

    def set_topology(self, topology: str) -> bool:
        """Change the topology and keep the preset coherent where the change implies it
        (apply_topology). The result is still validated and any remaining conflict (e.g.
        with the task) is shown beside its field."""
        return self.edit(f"Set topology to {spec.TOPOLOGY_LABELS.get(topology, topology)}",
                         lambda p: apply_topology(p, topology))

    def set_task(self, task: str, check: Callable[[spec.ModelSpec], None] | None = None,
                 reference: Preset | None = None, topologies: tuple[str, ...] = ()) -> bool:
        """Switch to another task in one undoable edit: its options and data path are
        cleared (the previous task's mean nothing to it), and the fields the task decides
        (fit_to_task) are set to what it needs."""
        def mutate(p: Preset) -> None:
            p.data.task = task
            p.data.options = {}
            p.data.path = ""
            if check is not None:
                fit_to_task(p, check, reference, topologies)
        return self.edit(f"Set task to {task}", mutate)


def apply_topology(p: Preset, topology: str) -> None:
    """Set ``p``'s topology and what it implies: an encoder-decoder gets a decoder (a
    copy of the top encoder layer); leaving it drops the decoder and attention; a
    one-to-many generator cannot be bidirectional; a model that gains a state bridge
    gets its layer norm (model.bridge_norm: the better default, off in the dataclass
    only so that old run folders keep theirs)."""
    m = p.model
    bridged = ("encoder_decoder", "one_to_many")
    if topology in bridged and m.topology not in bridged:
        m.bridge_norm = True
    m.topology = topology
    if topology == "encoder_decoder":
        if not m.decoder_layers and m.layers:
            dec = copy.deepcopy(m.layers[-1])
            dec.bidirectional = False
            m.decoder_layers = [dec]
    else:
        m.decoder_layers = []
        m.attention = False
        m.copy = False
    if topology == "one_to_many":
        for layer in m.layers:
            layer.bidirectional = False


# The fields a task decides: its check_model names one of them when the model does not fit.
TASK_FIELDS = ("model.topology", "model.input.kind", "model.head.kind")


def fit_to_task(p: Preset, check: Callable[[spec.ModelSpec], None], reference: Preset | None,
                topologies: tuple[str, ...] = ()) -> list[str]:
    """Make ``p.model`` fit its task where the task decides: while ``check`` (the task's
    check_model) names the topology, input kind or head, take that field from
    ``reference`` (a built-in preset of the task) or, for the topology, the first one
    the task supports. Returns the fields changed; anything else that does not fit is
    left for validation to show beside its field."""
    changed: list[str] = []
    for _ in range(len(TASK_FIELDS) + 1):
        try:
            check(p.model)
            return changed
        except SpecError as exc:
            field = exc.field
        if field not in TASK_FIELDS or field in changed:
            return changed
        if field == "model.topology":
            wanted = reference.model.topology if reference is not None else ""
            if topologies and wanted not in topologies:
                wanted = topologies[0]
            if not wanted:
                return changed
            apply_topology(p, wanted)
        elif reference is not None:
            set_field(p, field, get_field(reference, field))
            if field == "model.input.kind" and not p.model.input.conv_channels:
                p.model.input.conv_channels = list(reference.model.input.conv_channels)
        else:
            return changed
        changed.append(field)
    return changed
