"""The Design and Training forms guide the user (issue 15): the wheel scrolls the form,
not an unfocused field; the task sets the fields it depends on; task options are typed
fields; an out-of-range value is reported under its field; the layer table's headers
stand over their columns."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QCheckBox

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


def wait_task_info(qtbot, window):
    qtbot.waitUntil(lambda: window.editor.task_infos.get(window.doc.preset.data.task) is not None, timeout=60_000)


def test_layer_table_headers_stand_over_their_columns(qtbot, window):
    layers = window.editor.layers
    window.design_dock.raise_()
    qtbot.waitUntil(lambda: layers.rows[0].cell.width() > 0 and layers.isVisible(), timeout=5000)
    row = layers.rows[0]
    for name, field in (("cell", row.cell), ("hidden", row.hidden), ("dropout", row.dropout)):
        head = layers.headers[name]
        x0 = field.mapTo(layers, field.rect().topLeft()).x()
        hx = head.mapTo(layers, head.rect().topLeft()).x()
        assert abs(hx - x0) <= 2, f"header {name!r} at x={hx}, its column at x={x0}"


def test_hidden_size_zero_is_reported_under_its_row(qtbot, window):
    row = window.editor.layers.rows[0]
    row.hidden.lineEdit().selectAll()
    row.hidden.lineEdit().setText("0")
    row.hidden.interpretText()
    assert row.hidden.value() == 0 and window.doc.preset.model.layers[0].hidden_size == 0
    assert not row.error.isHidden() and "hidden_size" in row.error.text()
    assert not window.act_train.isEnabled()
    row.hidden.setValue(8)
    assert row.error.isHidden()
    steps = window.training.fields["steps"]
    steps.setValue(0)
    assert not window.training.errors.labels["train.steps"].isHidden()


def test_changing_the_task_fits_the_model_in_one_undoable_edit(qtbot, window):
    editor, doc = window.editor, window.doc
    wait_task_info(qtbot, window)
    assert doc.preset.data.task == "adding"
    # the Shape combo offers only what the adding task supports
    enabled = {editor.topology.itemData(i) for i in range(editor.topology.count())
               if editor.topology.model().item(i).isEnabled()}
    assert enabled == {"many_to_one"}
    before = doc.preset.copy()
    editor.task.setCurrentIndex(editor.task.findData("transduction"))
    m = doc.preset.model
    assert doc.preset.data.task == "transduction"
    assert (m.topology, m.input.kind, m.head.kind) == ("encoder_decoder", "embedding", "classification")
    assert len(m.decoder_layers) == 1
    qtbot.waitUntil(lambda: window.resolver.check(doc.preset) is None, timeout=60_000)
    for field in ("model.topology", "model.input.kind", "model.head.kind"):
        assert not editor.errors.labels[field].isVisible(), field
    enabled = {editor.topology.itemData(i) for i in range(editor.topology.count())
               if editor.topology.model().item(i).isEnabled()}
    assert enabled == {"encoder_decoder"}
    window.act_undo.trigger()  # one step back to where it was
    assert doc.preset == before
    # to a video classifier: frames in, classes out
    editor.task.setCurrentIndex(editor.task.findData("video_classify"))
    m = doc.preset.model
    assert (m.topology, m.head.kind) == ("many_to_one", "classification")
    assert m.input.kind in ("frames_linear", "frames_conv")


def test_task_options_are_typed_fields(qtbot, window):
    editor, doc = window.editor, window.doc
    wait_task_info(qtbot, window)
    editor.task.setCurrentIndex(editor.task.findData("charlm"))
    fields = editor._option_edits
    from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

    assert isinstance(fields["level"], QComboBox)
    assert [fields["level"].itemText(i) for i in range(fields["level"].count())] == ["char", "word"]
    assert fields["level"].currentText() == "char"  # the default, without quotes
    assert isinstance(fields["seq_len"], QSpinBox) and fields["seq_len"].value() == 128
    assert isinstance(fields["val_fraction"], QDoubleSpinBox)
    assert isinstance(fields["lowercase"], QCheckBox)
    assert hasattr(fields["val_path"], "edit")  # a file field
    fields["level"].activated.emit(fields["level"].findData("word"))
    assert doc.preset.data.options == {"level": "word"}
    fields["seq_len"].setValue(64)
    assert doc.preset.data.options == {"level": "word", "seq_len": 64}
    fields["seq_len"].setValue(128)  # back to the default: not kept in the preset
    assert doc.preset.data.options == {"level": "word"}
    fields["seq_len"].setValue(0)  # out of the task's range: said under the field
    label = editor.errors.labels["data.options.seq_len"]
    qtbot.waitUntil(lambda: not label.isHidden(), timeout=10_000)
    assert "seq_len" in label.text() or "between" in label.text()


def test_preset_combo_and_status_bar_tell_the_truth(qtbot, window):
    from tests.gui.conftest import tiny

    assert window.preset_combo.currentData() == window.doc.builtin == "adding_rnn_tanh"
    steps = window.doc.preset.train.steps
    assert window.progress.maximum() == steps and f"{steps:,} steps" in window.progress.text()
    window.open_builtin("adding_lstm", quiet=True)
    assert window.preset_combo.currentData() == "adding_lstm"
    window.preset_combo.activated.emit(window.preset_combo.findData("adding_gru"))  # picked in the combo
    assert window.doc.builtin == "adding_gru" and window.preset_combo.currentText() == "adding_gru"
    tiny(window, steps=100_000)
    assert "100,000 steps" in window.progress.text()
    assert window.start_training()
    run = window.current_run
    qtbot.waitUntil(lambda: run.last_step >= 20 and "ETA" in window.time_label.text(), timeout=60_000)
    assert "steps/s" in window.speed_label.text()
    window.stop_training()
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    qtbot.waitUntil(lambda: "ETA" not in window.time_label.text(), timeout=10_000)
    assert window.speed_label.text() == ""


def test_a_conv_cells_state_on_64x64_rgb_frames_is_shown_as_it_is(qtbot, window):
    """The hidden-size field's limit is the spec's for the row's cell: 8 maps of 64x64 frames
    are 32,768 values (more than any vector cell's 16,384), shown, not clamped."""
    from workbench import presets, spec

    preset = spec.with_overrides(presets.load_builtin("video_nextframe_convgru"), [
        "data.options.width=64", "data.options.height=64", "data.options.grey=false",
        "model.layers.0.hidden_size=32768", "model.conv_kernel=1"])
    window.doc.replace(preset)
    editor = window.editor
    row = editor.layers.rows[0]
    assert row.hidden.value() == 32768 and row.hidden.maximum() == spec.max_hidden_size("conv_gru")
    assert editor.conv_kernel.isEnabled() and editor.conv_kernel.value() == 1
    # as an LSTM the same size is over the vector cells' limit: kept, and said under the row
    row.cell.setCurrentIndex(row.cell.findData("lstm"))
    assert window.doc.preset.model.layers[0].hidden_size == 32768 and row.hidden.value() == 32768
    assert not row.error.isHidden() and "hidden_size" in row.error.text()
    assert not editor.conv_kernel.isEnabled()


def test_the_dynamics_switch_is_a_checkbox_bound_to_train_dynamics(qtbot, window):
    box = window.training.fields["dynamics"]
    assert isinstance(box, QCheckBox) and box.isChecked() and "Dynamics panel" in box.toolTip()
    box.setChecked(False)
    assert window.doc.preset.train.dynamics is False
    window.doc.set("train.probe_every", 0)
    assert not box.isEnabled()  # the instruments follow the probe: off with it
    window.doc.set("train.probe_every", 25)
    assert box.isEnabled()


def test_the_copy_option_is_shown_where_valid(qtbot, window):
    """model.copy: a checkbox with a tooltip under the decoder, shown only for an encoder-decoder
    with attention over token ids; leaving the encoder-decoder turns it off."""
    from workbench import presets

    window.doc.replace(presets.load_builtin("chatbot_encdec"))
    editor = window.editor
    qtbot.waitUntil(lambda: any("copies input words" in getattr(item, "text", str)()
                                for item in window.diagram.diagram.items()), timeout=5000)
    assert not editor.copy.isHidden() and "pointer-generator" in editor.copy.toolTip()
    editor.copy.setChecked(not window.doc.preset.model.copy)
    assert window.doc.preset.model.copy is editor.copy.isChecked()
    window.doc.set("model.copy", False)
    window.doc.set("model.attention", False)
    assert editor.copy.isHidden()
    window.doc.set("model.attention", True)
    window.doc.set("model.copy", True)
    window.doc.set_topology("many_to_one")
    assert window.doc.preset.model.copy is False and editor.copy.isHidden()
