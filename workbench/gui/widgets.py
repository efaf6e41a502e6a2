"""Small widgets shared by the editor panels: field bindings to the document, a
spin box for values spanning decades (learning rates), and red error labels."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from workbench.gui.document import PresetDocument, get_field
from workbench.spec import SpecError


class SciSpinBox(QDoubleSpinBox):
    """A float field that shows 0.002 or 1e-05 (not 0.002000) and steps by x2 / /2."""

    def __init__(self, minimum: float = 1e-12, maximum: float = 1e9, parent=None):
        super().__init__(parent)
        self.setDecimals(15)
        self.setRange(minimum, maximum)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        try:
            v = float(text)
        except ValueError:
            return QValidator.State.Intermediate, text, pos
        if self.minimum() <= v <= self.maximum() and math.isfinite(v):
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        v = self.value()
        if v == 0:
            v = max(self.minimum(), 1e-4)
        self.setValue(min(max(v * (2.0 ** steps), self.minimum()), self.maximum()))


class _WheelGuard(QObject):
    """Wheel events over an unfocused combo or spin box scroll the form around it
    instead of changing the field's value (scrolling the Design form once turned
    Encoder-decoder into One-to-many). A field that has focus (clicked or tabbed into)
    still takes the wheel."""

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() != QEvent.Type.Wheel or not isinstance(obj, QWidget) or obj.hasFocus():
            return False
        parent = obj.parentWidget()
        while parent is not None and not isinstance(parent, QAbstractScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            QCoreApplication.sendEvent(parent.verticalScrollBar(), event)
        return True  # never the field's own wheel handling


_WHEEL_GUARD: _WheelGuard | None = None


def guard_wheel(root: QWidget) -> None:
    """Give every combo and spin box under ``root`` (and ``root`` itself, if one) the
    wheel guard and a focus policy that a wheel cannot take (idempotent: call again
    after adding fields)."""
    global _WHEEL_GUARD
    if _WHEEL_GUARD is None:
        _WHEEL_GUARD = _WheelGuard()
    fields = [w for w in [root, *root.findChildren(QWidget)] if isinstance(w, (QComboBox, QAbstractSpinBox))]
    for w in fields:
        w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        w.removeEventFilter(_WHEEL_GUARD)
        w.installEventFilter(_WHEEL_GUARD)


class ErrorLabel(QLabel):
    """The red line under a field that says what is wrong with it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("fieldError")
        self.setWordWrap(True)
        self.setStyleSheet("color: #c0392b;")
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def show_error(self, message: str) -> None:
        self.setText("⚠ " + message)
        self.setToolTip(message)
        self.show()

    def clear_error(self) -> None:
        self.clear()
        self.hide()


class ErrorBoard:
    """Field path -> ErrorLabel. An error goes to the label whose path is the longest
    prefix of the error's field (``model.layers.1.bidirectional`` -> the row of layer 1)."""

    def __init__(self):
        self.labels: dict[str, ErrorLabel] = {}
        self.shown: dict[str, str] = {}  # label path -> message

    def register(self, path: str, label: ErrorLabel) -> ErrorLabel:
        self.labels[path] = label
        return label

    def unregister_prefix(self, prefix: str) -> None:
        for k in [k for k in self.labels if k == prefix or k.startswith(prefix + ".")]:
            del self.labels[k]

    def target(self, field: str) -> str | None:
        parts = field.split(".") if field else []
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in self.labels:
                return key
        return None

    def show(self, errors: list[SpecError]) -> list[SpecError]:
        """Show each error beside its field; returns the ones no label took."""
        self.shown.clear()
        for label in self.labels.values():
            label.clear_error()
        unplaced = []
        for err in errors:
            key = self.target(err.field)
            if key is None:
                unplaced.append(err)
                continue
            message = err.message if err.field == key else f"{err.field.removeprefix(key + '.')}: {err.message}"
            previous = self.shown.get(key)
            message = f"{previous}\n{message}" if previous else message
            self.shown[key] = message
            self.labels[key].show_error(message)
        return unplaced


class Binder:
    """Two-way binding of plain widgets to preset fields through the document: a user
    edit calls ``doc.set`` (undoable); ``refresh`` writes the preset back into the
    widgets with their signals blocked."""

    def __init__(self, doc: PresetDocument):
        self.doc = doc
        self._refreshers: list[Callable[[Any], None]] = []
        self.widgets: dict[str, QWidget] = {}

    def _value(self, preset, path: str):
        try:
            return get_field(preset, path)
        except (KeyError, IndexError, AttributeError):
            return None

    def combo(self, widget: QComboBox, path: str, values: tuple[str, ...], labels: dict[str, str] | None = None,
              on_change: Callable[[str], None] | None = None) -> QComboBox:
        for v in values:
            widget.addItem((labels or {}).get(v, v), v)

        def user(index: int) -> None:
            value = widget.itemData(index)
            if on_change is not None:
                on_change(value)
            else:
                self.doc.set(path, value, text=f"Set {path} to {value}", merge=False)

        widget.currentIndexChanged.connect(user)

        def refresh(preset) -> None:
            value = self._value(preset, path)
            i = widget.findData(value)
            if i < 0 and value is not None:  # a value from a file that the list lacks: show it
                widget.addItem(str(value), value)
                i = widget.count() - 1
            widget.setCurrentIndex(i)

        self._add(path, widget, refresh)
        return widget

    def spin(self, widget: QSpinBox | QDoubleSpinBox, path: str, none_value: Any = None) -> QWidget:
        widget.setKeyboardTracking(False)
        integer = isinstance(widget, QSpinBox)

        def user(value) -> None:
            self.doc.set(path, int(value) if integer else float(value))

        widget.valueChanged.connect(user)

        def refresh(preset) -> None:
            value = self._value(preset, path)
            if value is None:
                value = none_value if none_value is not None else widget.minimum()
            widget.setValue(value)

        self._add(path, widget, refresh)
        return widget

    def check(self, widget: QCheckBox, path: str) -> QCheckBox:
        widget.toggled.connect(lambda on: self.doc.set(path, bool(on), merge=False))
        self._add(path, widget, lambda preset: widget.setChecked(bool(self._value(preset, path))))
        return widget

    def line(self, widget: QLineEdit, path: str) -> QLineEdit:
        def user() -> None:
            self.doc.set(path, widget.text().strip() if path != "description" else widget.text())

        widget.editingFinished.connect(user)

        def refresh(preset) -> None:
            value = self._value(preset, path)
            text = "" if value is None else str(value)
            if widget.text() != text:
                widget.setText(text)

        self._add(path, widget, refresh)
        return widget

    def custom(self, path: str, widget: QWidget, refresh: Callable[[Any], None]) -> None:
        self._add(path, widget, refresh)

    def _add(self, path: str, widget: QWidget, refresh: Callable[[Any], None]) -> None:
        self.widgets[path] = widget

        def guarded(preset) -> None:
            widget.blockSignals(True)
            try:
                refresh(preset)
            finally:
                widget.blockSignals(False)

        self._refreshers.append(guarded)

    def refresh(self, preset) -> None:
        for r in self._refreshers:
            r(preset)


def parse_option_text(text: str) -> Any:
    """A data.options value typed by the user: JSON where it parses, else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
