"""The Design and Training forms guide the user (issue 15): the wheel scrolls the form,
not an unfocused field; the task sets the fields it depends on; task options are typed
fields; an out-of-range value is reported under its field; the layer table's headers
stand over their columns."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui


def wheel(widget, clicks: int = -1) -> None:
    """One notch of the mouse wheel over the middle of ``widget`` (down for -1)."""
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * clicks),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_form_unless_the_field_has_focus(qtbot, window):
    window.design_dock.raise_()
    window.resizeDocks([window.loss_dock], [600], Qt.Orientation.Vertical)  # a short Design dock: it scrolls
    qtbot.waitUntil(lambda: window.editor.verticalScrollBar().maximum() > 0, timeout=5000)
    editor, doc = window.editor, window.doc
    bar = editor.verticalScrollBar()
    fields = [editor.topology, editor.layers.rows[0].hidden, editor.layers.rows[0].cell, editor.head_kind,
              editor.forget_bias]
    before = doc.preset.copy()
    for field in fields:
        window.activateWindow()
        window.setFocus()
        bar.setValue(0)
        wheel(field)
        assert doc.preset == before, field.objectName() or type(field).__name__
        assert bar.value() > 0, "the wheel scrolled the form"
    assert not doc.can_undo
    # the training form too
    window.training_dock.raise_()
    steps = window.training.fields["steps"]
    wheel(steps)
    wheel(window.training.fields["optimizer"])
    assert doc.preset == before
    # a field with focus takes the wheel
    window.design_dock.raise_()
    qtbot.waitExposed(window)
    window.activateWindow()
    hidden = editor.layers.rows[0].hidden
    hidden.setFocus()
    qtbot.waitUntil(hidden.hasFocus, timeout=5000)
    wheel(hidden, +1)
    assert doc.preset.model.layers[0].hidden_size == before.model.layers[0].hidden_size + 1
