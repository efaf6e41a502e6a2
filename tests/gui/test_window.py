"""The workbench window, driven headless with pytest-qt: design edits follow through to
the spec and the diagram, undo/redo, errors beside fields, training in the worker thread
(records reach the plots; pause, resume, stop), closing mid-run, files and overlays."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from tests.gui.conftest import tiny
from workbench import spec
from workbench.gui.main_window import FIRST_PRESET
from workbench.runs import RunHistory

pytestmark = pytest.mark.gui


def wait_task_info(qtbot, window):
    qtbot.waitUntil(lambda: window.resolver.task_info(window.doc.preset.data.task) is not None, timeout=60_000)


def test_first_start_opens_a_builtin_and_points_at_the_pairs(window):
    assert window.doc.builtin == FIRST_PRESET
    assert window.welcome.isVisible()
    names = [b.text() for b in window.welcome.findChildren(type(window.welcome._button("x", lambda n: None)))]
    for name in ("adding_rnn_tanh", "adding_lstm", "exploding_relu_noclip", "exploding_relu_clip"):
        assert name in names
    assert window.act_train.isEnabled()
    assert window.diagram.diagram.model.topology == "many_to_one"


def test_editing_the_stack_updates_spec_and_diagram(qtbot, window):
    editor = window.editor
    qtbot.mouseClick(editor.layers.add, Qt.MouseButton.LeftButton)
    assert len(window.doc.preset.model.layers) == 2
    assert len(editor.layers.rows) == 2
    rows = window.diagram.diagram.model.rows
    assert any(r.startswith("L2 ") for r in rows)
    below = window.doc.preset.model.layers[0].hidden_size
    row = editor.layers.rows[1]
    row.cell.setCurrentIndex(row.cell.findData("gru"))  # as the user picks it
    row.hidden.setValue(48)
    assert window.doc.preset.model.layers[1].cell == "gru"
    assert window.doc.preset.model.layers[1].hidden_size == 48
    rows = window.diagram.diagram.model.rows
    l2 = next(r for r in rows if r.startswith("L2 "))
    assert "GRU" in l2 and f"{below}→48" in l2
    total = window.diagram.diagram.model.total_params
    row.bi.setChecked(True)
    assert window.diagram.diagram.model.total_params > total
    # reorder and remove through the row buttons
    qtbot.mouseClick(editor.layers.rows[1].up, Qt.MouseButton.LeftButton)
    assert [l.cell for l in window.doc.preset.model.layers] == ["gru", "rnn_tanh"]
    qtbot.mouseClick(editor.layers.rows[0].remove, Qt.MouseButton.LeftButton)
    assert [l.cell for l in window.doc.preset.model.layers] == ["rnn_tanh"]
    assert not any(r.startswith("L2 ") for r in window.diagram.diagram.model.rows)
    # topology: an encoder-decoder gets a decoder, drawn as a second stack
    editor.topology.setCurrentIndex(editor.topology.findData("encoder_decoder"))
    assert window.doc.preset.model.topology == "encoder_decoder"
    assert editor.decoder_box.isVisible()
    assert any(r.startswith("D1 ") for r in window.diagram.diagram.model.rows)
    assert window.diagram.diagram.model.decoder_columns


def test_undo_redo_cover_all_edits(qtbot, window):
    start = window.doc.preset.copy()
    hidden, lr = start.model.layers[0].hidden_size + 3, start.train.lr * 4
    window.editor.layers.rows[0].hidden.setValue(hidden)
    window.training.fields["lr"].setValue(lr)
    window.editor.topology.setCurrentIndex(window.editor.topology.findData("many_to_many"))
    qtbot.mouseClick(window.editor.layers.add, Qt.MouseButton.LeftButton)
    assert window.isWindowModified()
    for _ in range(4):
        window.act_undo.trigger()
    assert window.doc.preset == start
    assert window.editor.layers.rows[0].hidden.value() == start.model.layers[0].hidden_size
    assert not window.act_undo.isEnabled() and not window.isWindowModified()
    for _ in range(4):
        window.act_redo.trigger()
    p = window.doc.preset
    assert (p.model.layers[0].hidden_size, p.train.lr, p.model.topology, len(p.model.layers)) == \
        (hidden, pytest.approx(lr), "many_to_many", 2)
    assert window.training.fields["lr"].value() == pytest.approx(lr)
    rows = window.diagram.diagram.model.rows  # [input side, L1, L2]
    assert rows[1].startswith("L1 ") and f"→{hidden} " in rows[1] and rows[2].startswith("L2 ")


def test_invalid_combinations_are_explained_beside_the_field(qtbot, window):
    init = window.editor.init_kind
    window.doc.set("model.layers.0.cell", "lstm")
    init.setCurrentIndex(init.findData("identity"))  # IRNN needs vanilla RNN layers
    label = window.editor.errors.labels["model.init.recurrent"]
    assert label.isVisible() and "vanilla RNN" in label.text()
    assert not window.act_train.isEnabled()
    window.act_undo.trigger()
    assert not label.isVisible() and window.act_train.isEnabled()
    # a layer's error goes under that layer's row
    window.doc.edit("bad", lambda p: (setattr(p.model, "topology", "one_to_many"),
                                       setattr(p.model.layers[0], "bidirectional", True)))
    row_error = window.editor.layers.rows[0].error
    assert row_error.isVisible() and "bidirectional" in row_error.text()
    window.act_undo.trigger()
    # the task's own checks: the adding problem is many-to-one only
    wait_task_info(qtbot, window)
    window.doc.set_topology("many_to_many")
    topo = window.editor.errors.labels["model.topology"]
    qtbot.waitUntil(topo.isVisible, timeout=10_000)
    assert "many_to_one" in topo.text()
    assert not window.start_training()  # refused, and the reason is shown
    assert window.info.isVisible()


def test_train_pause_resume_stop(qtbot, window):
    tiny(window)
    assert window.start_training()
    run = window.current_run
    qtbot.waitUntil(lambda: run.last_step >= 30 and len(run.val_steps) >= 1, timeout=60_000)
    assert window.device_label.text().startswith("device: cpu")
    # the plots received data (drawn by the frame timer, not per step)

    def plotted(panel, name):
        items = panel._items.get(id(run))
        xs = items[name].getData()[0] if items is not None else None
        return 0 if xs is None else len(xs)

    qtbot.waitUntil(lambda: plotted(window.loss_panel, "raw") >= 30, timeout=10_000)
    qtbot.waitUntil(lambda: plotted(window.norm_panel, "before") >= 30, timeout=10_000)
    qtbot.waitUntil(lambda: "layers.0" in window.grad_panel._heat_plots, timeout=5000)
    qtbot.waitUntil(lambda: window.grad_panel._heat_plots["layers.0"][1].image is not None, timeout=5000)
    assert window.grad_panel._heat_plots["layers.0"][1].image.shape[1] == 12  # T columns
    assert "per step" in window.grad_panel.decay_label.text()
    assert window.progress.value() >= 30
    # the exact probe is selectable as the heatmap source
    window.grad_panel.source.setCurrentIndex(window.grad_panel.source.findData("exact"))
    assert window.grad_panel._heat_plots["layers.0"][1].image is not None
    # pause: the step count stops moving
    window.act_pause.trigger()
    assert window.paused and window.act_pause.text() == "&Resume"
    qtbot.wait(600)
    paused_at = run.last_step
    qtbot.wait(600)
    assert run.last_step == paused_at
    window.act_pause.trigger()  # resume
    qtbot.waitUntil(lambda: run.last_step > paused_at + 5, timeout=30_000)
    window.act_stop.trigger()
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    assert run.status == "stopped" and run.last_step < 5000
    folder = Path(run.run_dir)
    for name in ("preset.json", "task.json", "metrics.jsonl", "model.safetensors"):
        assert (folder / name).is_file(), name
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    window_policy = records[0]["cpu_policy"]["window"]  # the window's thread policy, in the Start record
    assert window_policy["threads"] >= 1 and window_policy["policy"] in ("every core, below the interface", "cores - 1")
    kinds = {r["kind"] for r in records}
    assert {"start", "step", "probe", "eval", "end"} <= kinds
    assert window.act_train.isEnabled() and not window.act_stop.isEnabled()

    # a second run keeps the first for overlay, each in its own colour with a legend entry
    window.doc.set("model.layers.0.cell", "lstm")
    window.doc.set("train.steps", 20)
    assert window.start_training()
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    assert len(window.runs) == 2 and window.runs[0].colour != window.runs[1].colour
    assert window.current_run.status == "finished" and window.current_run.last_step == 20
    window._on_frame(force=True)
    legend = [label.text for _sample, label in window.loss_panel.legend.items]
    assert legend == [r.name for r in window.runs] and legend[0] != legend[1]
    assert window.grad_panel.chosen_run() is window.current_run  # the heatmap follows the new run
    # loading a finished run folder overlays it too
    overlay = window.load_run_folder(folder)
    assert overlay is not None and len(window.runs) == 3
    assert id(overlay) in window.loss_panel._items


def test_close_during_training_stops_cleanly(qtbot, qtlog, make_window):
    window = make_window()
    tiny(window, steps=100_000)
    window.dialog_answers["keep_run"] = "discard"
    assert window.start_training()
    run = window.current_run
    qtbot.waitUntil(lambda: run.last_step >= 5, timeout=60_000)
    window.act_pause.trigger()  # closing must also wake a paused trainer
    window.close()
    assert window.isVisible()  # waits for the worker, never blocks the event loop
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not window.training_active
    assert not Path(run.run_dir).exists()  # discarded as answered
    assert not RunHistory().list(run_dir=run.run_dir)  # and so is its row in the history
    assert not [r for r in qtlog.records if "QThread" in r.message or "Destroyed" in r.message]


def test_close_during_training_keeps_the_run_when_asked(qtbot, make_window):
    window = make_window()
    tiny(window, steps=100_000)
    assert window.start_training()
    run = window.current_run
    qtbot.waitUntil(lambda: run.last_step >= 5, timeout=60_000)
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert (Path(run.run_dir) / "model.safetensors").is_file()
    (row,) = RunHistory().list(run_dir=run.run_dir)  # recorded from its start by the run session
    assert row.source == "gui" and row.status == "stopped" and row.step >= 5 and row.train_s > 0


def test_files_recent_drop_and_settings(qtbot, tmp_path, make_window):
    window = make_window()
    target = tmp_path / "mine.json"
    window.doc.set("name", "mine")
    assert window.save_as(target)
    assert spec.load(target).name == "mine" and not window.isWindowModified()
    assert str(target.resolve()) in window.recent_files()
    # a dropped data file becomes data.path (undoable); a dropped preset opens
    data = tmp_path / "series.csv"
    data.write_text("a,b\n1,2\n")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(data))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.doc.preset.data.path == str(data)
    # the adding task refuses a file: said beside the data field
    wait_task_info(qtbot, window)
    qtbot.waitUntil(lambda: window.editor.errors.labels["data.path"].isVisible(), timeout=10_000)
    window.act_undo.trigger()
    other = tmp_path / "other.json"
    p = spec.load(target)
    p.name = "other"
    spec.save(p, other)
    assert window.open_dropped(other) == "preset"
    assert window.doc.path == other and window.doc.preset.name == "other"
    assert window.open_dropped(tmp_path) == "error"  # a folder without metrics.jsonl
    window.loss_panel.smooth.setValue(25)
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    # the next session restores the recent files, the last preset and the plot settings
    again = make_window()
    assert again.recent_files()[0] == str(other.resolve())
    assert again.doc.path == other
    assert again.loss_panel.smooth.value() == 25
    assert not again.welcome.isVisible()  # only on the first start


def test_exports(qtbot, tmp_path, window):
    for suffix in ("png", "svg"):
        out = window.export_diagram(tmp_path / f"diagram.{suffix}")
        assert out.stat().st_size > 1000
    assert "<svg" in (tmp_path / "diagram.svg").read_text()
    from workbench.gui.rundata import RunData

    run = RunData("fake", colour="#123456")
    run.add([{"kind": "step", "step": i, "loss": 1 / i, "lr": 1e-3, "grad_norm": 2.0, "grad_norm_clipped": 1.0,
              "clipped": True, "timestep_grad_norms": {"layers.0": [0.1 * i, 0.2, 0.3]}} for i in range(1, 40)])
    window.runs.append(run)
    window._plots_changed()
    for panel in window.panels:
        png = window.export_panel(panel, "image", tmp_path / f"{panel.csv_name}.png")
        svg = window.export_panel(panel, "image", tmp_path / f"{panel.csv_name}.svg")
        csv = window.export_panel(panel, "csv", tmp_path / panel.csv_name)
        assert png.stat().st_size > 500 and "<svg" in svg.read_text()
        lines = csv.read_text().splitlines()
        assert len(lines) > 10, panel.csv_name
    profiles = (tmp_path / "gradient_through_time-profiles.csv").read_text().splitlines()
    assert profiles[0] == "t,fake:layers.0" and len(profiles) == 4  # header + T=3
    assert window.export_preset(tmp_path / "copy.json")
    assert spec.load(tmp_path / "copy.json") == window.doc.preset


def test_non_finite_is_marked_and_reported(qtbot, window):
    from workbench.gui.rundata import RunData

    run = RunData("bad", live=True)
    window.runs.append(run)
    window.current_run = run
    window._on_records([{"kind": "step", "step": 1, "loss": 1.0, "grad_norm": 1.0},
                        {"kind": "non_finite", "step": 2, "what": "loss", "action": "skipped",
                         "message": "step 2: the loss is nan"}])
    assert "non-finite" in window.statusBar().currentMessage()
    window._on_frame(force=True)
    xs, _ = window.loss_panel._items[id(run)]["bad"].getData()
    assert list(xs) == [2.0, 2.0]


def test_a_run_that_cannot_start_says_why(qtbot, window):
    tiny(window, steps=50)
    window.doc.set("train.device", "cuda" if not window.resolver.devices or "cuda" not in window.resolver.devices
                   else "mps")
    qtbot.waitUntil(lambda: window.resolver.devices is not None, timeout=60_000)
    if window.doc.preset.train.device in window.resolver.devices:
        pytest.skip("this machine has every device")
    assert window.start_training()
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    assert window.info.isVisible() and "train.device" in window.info.label.text()
    assert window.current_run.status == "failed" and not len(window.current_run.steps)
    assert "failed" in window.runs_panel.list.item(0).text()  # the runs list says so too
    assert window.act_train.isEnabled()


def test_every_builtin_preset_opens_valid_and_drawn(qtbot, window):
    from workbench import presets

    qtbot.waitUntil(lambda: all(window.resolver.task_info(n) is not None for n in window.resolver.task_names()),
                    timeout=60_000)
    window._on_task_info()
    for name in presets.builtin_names():
        assert window.open_builtin(name, quiet=True)
        assert window._errors == [], (name, window._errors)
        model = window.diagram.diagram.model
        assert model is not None and model.topology == window.doc.preset.model.topology, name
        assert window.act_train.isEnabled(), name


def test_the_char_cnn_input_has_its_fields_and_sizes_before_the_task_is_read(qtbot, window):
    """The 'embedding_chars' input (the tagger's word + char-CNN): its character vector size
    is a field of its own, bound to the preset and undoable, enabled only for that input;
    and the sizes shown before the task's vocabularies are known treat it as words with
    characters, not as video frames."""
    from workbench.gui.resolver import fallback_io
    from workbench.spec import parameter_report

    assert window.open_builtin("tagger_bilstm", quiet=True)
    editor = window.editor
    assert window.doc.preset.model.input.kind == "embedding_chars"
    assert editor.char_embedding_dim.isEnabled() and editor.embedding_dim.isEnabled()
    assert editor.input_kind.currentText() == "word embedding + char-CNN"
    before = window.doc.preset.model.input.char_embedding_dim
    editor.char_embedding_dim.setValue(before + 8)
    assert window.doc.preset.model.input.char_embedding_dim == before + 8
    window.doc.undo()
    assert window.doc.preset.model.input.char_embedding_dim == before
    qtbot.waitUntil(lambda: any("char-CNN" in row for row in window.diagram.diagram.model.rows), timeout=10_000)
    io = fallback_io(window.doc.preset)
    assert io.input_kind == "tokens" and io.char_vocab_size > 0
    assert parameter_report(window.doc.preset.model, io).input_side > 0
    editor.input_kind.setCurrentIndex(editor.input_kind.findData("embedding"))
    assert window.doc.preset.model.input.kind == "embedding"
    assert not editor.char_embedding_dim.isEnabled()


def stopped_run(qtbot, window, after_steps: int):
    """Start a long run and stop it once it has trained ``after_steps`` steps."""
    tiny(window, steps=100_000)
    assert window.start_training()
    run = window.current_run
    qtbot.waitUntil(lambda: run.last_step >= after_steps, timeout=60_000)
    window.act_stop.trigger()
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    return run


def test_a_stopped_run_continues_from_its_checkpoint_and_a_finished_one_trains_further(qtbot, window):
    run = stopped_run(qtbot, window, 20)
    stopped_at = run.last_step
    folder = Path(run.run_dir)
    lines_before = len((folder / "metrics.jsonl").read_text().splitlines())
    # nothing to continue from: said, and nothing starts
    bare = window.load_run_folder(folder)
    bare_copy = type(bare)(name="no folder", colour="#000000")
    assert not window.continue_run(bare_copy) and not window.training_active
    window.remove_run(bare)
    # continue the stopped run, but only to a budget just above where it stopped
    preset = spec.load(folder / "preset.json")
    (folder / "preset.json").write_text(spec.with_overrides(preset, [f"train.steps={stopped_at + 15}"]).to_json())
    window.runs_panel.select_data(run)
    assert window.runs_panel.resume.isEnabled()
    window.runs_panel.resume.click()
    assert window.training_active and window.current_run is run
    assert not window.runs_panel.resume.isEnabled()  # one run trains at a time
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    assert run.status == "finished" and run.last_step == stopped_at + 15
    steps = list(run.steps.view())
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # the curve goes on, no step twice
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(records) > lines_before  # appended, not rewritten
    starts = [r for r in records if r["kind"] == "start"]
    assert len(starts) == 2 and starts[1]["step"] == stopped_at and starts[1]["resumed_from"]
    # a finished run trains further as far as asked
    window.dialog_answers["continue_steps"] = str(stopped_at + 25)
    window._continue_selected()
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    assert run.status == "finished" and run.last_step == stopped_at + 25
    assert spec.load(folder / "preset.json").train.steps == stopped_at + 25


def test_continuing_from_a_corrupt_checkpoint_says_so_and_loses_nothing(qtbot, window):
    run = stopped_run(qtbot, window, 10)
    folder = Path(run.run_dir)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    for weights in (folder / "checkpoints").glob("*.safetensors"):
        weights.write_bytes(b"\x00" * 16)  # a truncated, corrupt weights file
    assert window.continue_run(run)
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    assert run.status == "failed"
    message = window.info.label.text()
    assert "safetensors" in message or "checkpoint" in message.lower(), message
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before  # preset, task, metrics and weights as they were


def test_the_bridge_norm_checkbox_is_bound_shown_where_there_is_a_bridge_and_undoable(qtbot, window):
    assert window.open_builtin("captions_one_to_many", quiet=True)
    box = window.editor.bridge_norm
    assert not box.isHidden() and box.isChecked() and window.doc.preset.model.bridge_norm
    box.click()
    assert window.doc.preset.model.bridge_norm is False
    window.act_undo.trigger()
    assert window.doc.preset.model.bridge_norm is True and box.isChecked()
    window.doc.set_topology("many_to_one")
    assert box.isHidden()  # no bridge, nothing to normalise
    # a design that gains a bridge gets the norm: the better default for a new generator
    window.doc.set("model.bridge_norm", False)
    window.doc.set_topology("one_to_many")
    assert window.doc.preset.model.bridge_norm is True and not box.isHidden() and box.isChecked()


def test_throughput_after_continue_counts_only_the_continued_steps(window, monkeypatch):
    """A run continued from step 1000 that did 100 steps in 10 s trains at 10 steps/s
    (not 1100 / 10), and its ETA follows from that."""
    from workbench.engine.records import Start, Step
    from workbench.gui.rundata import RunData

    run = RunData(name="continued", live=True)
    window.current_run = run
    clock = [100.0]
    with monkeypatch.context() as m:
        m.setattr(window.trainer, "clock", lambda: clock[0])
        window._on_records([Start(step=1000, total_steps=2000, device="cpu", layers=["layers.0"])])
        run.add([Step(step=s, loss=1.0) for s in range(1001, 1101)])
        clock[0] = 110.0
        m.setattr(type(window.trainer), "active", property(lambda _self: True))  # as while a worker trains
        window._update_progress()
    window.current_run = None
    assert window.speed_label.text().startswith("10.0 steps/s"), window.speed_label.text()
    assert "ETA 01:30" in window.time_label.text(), window.time_label.text()


def test_scan_cells_are_chosen_per_layer_and_their_limits_shown_under_the_field(qtbot, window):
    """minGRU / minLSTM / LRU in the layer's cell list; orthogonal init has no recurrent
    matrix to act on there (said under the field); the LRU's ring fields are bound."""
    combo = window.editor.layers.rows[0].cell
    assert {combo.itemData(i) for i in range(combo.count())} >= {"mingru", "minlstm", "lru"}
    window.doc.set("model.layers.0.cell", "lru")
    assert "LRU" in window.diagram.diagram.model.rows[1]
    init = window.editor.init_kind
    init.setCurrentIndex(init.findData("orthogonal"))
    label = window.editor.errors.labels["model.init.recurrent"]
    assert label.isVisible() and "no recurrent matrix" in label.text()
    assert not window.act_train.isEnabled()
    window.act_undo.trigger()
    assert not label.isVisible() and window.act_train.isEnabled()
    window.doc.set("model.init.lru_r_min", 0.95)
    window.doc.set("model.init.lru_r_max", 0.9)
    ring = window.editor.errors.labels["model.init.lru_r_min"]
    assert ring.isVisible() and "must not exceed" in ring.text()
