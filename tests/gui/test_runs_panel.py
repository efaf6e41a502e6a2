"""The Runs panel as the window's hub: the history's runs at start (newest first,
searchable, the task's main metric by name), the selected run driving Compare, Try it,
Continue and Export, export from the window, and the action table's menus."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtGui import QKeySequence

from tests.gui.test_runs_model import history_with_rows
from workbench.runs import RunHistory

pytestmark = pytest.mark.gui


@pytest.fixture
def make_hub(make_window):
    """A window whose Runs panel lists its own history (not the session's shared one)."""
    return lambda history: make_window(history=history)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """An adding LSTM trained for 4 steps by `workbench train` (weights and a checkpoint)."""
    from workbench.cli import main

    folder = tmp_path_factory.mktemp("hub") / "adding-tiny"
    args = ["train", "adding_lstm", "--steps", "4", "--run-dir", str(folder), "--quiet"]
    for item in ("data.options.seq_len=8", "data.options.val_size=16", "model.layers.0.hidden_size=8",
                 "train.batch_size=8", "train.eval_every=2", "train.eval_batches=1", "train.probe_every=0",
                 "train.checkpoint_every=2", "train.steps=4"):
        args += ["--set", item]
    assert main(args) == 0
    assert (folder / "model.safetensors").is_file()
    return folder


def record(history: RunHistory, run_dir: Path, status: str = "finished") -> int:
    """The history row of a run folder trained elsewhere (another machine's history)."""
    from workbench import spec

    preset = spec.load(run_dir / "preset.json")
    run_id = history.start(preset, run_dir, source="cli")
    history.finish(run_id, status, metrics={"mse": 0.25, "val_loss": 0.25}, step=4)
    return run_id


def test_the_runs_panel_lists_the_history_at_start_and_search_filters(qtbot, tmp_path, make_hub):
    history, _ids = history_with_rows(tmp_path)
    window = make_hub(history)
    panel = window.runs_panel
    rows = panel.rows()
    assert len(rows) == 3
    assert rows[0].startswith("adding_lstm — ⚠ interrupted")  # newest first; the killed run says so
    assert rows[1].startswith("tagger_bilstm — stopped")
    # once the task classes are loaded, each line names its task's main metric
    qtbot.waitUntil(lambda: "tagging" in window.runs_model.metric_names, timeout=60_000)
    assert "accuracy 0.875" in panel.rows()[1] and "mse 0.002" in panel.rows()[2]
    panel.search.setText("tagg")
    assert [r.split(" — ")[0] for r in panel.rows()] == ["tagger_bilstm"]
    panel.search.setText("interrupted")
    assert len(panel.rows()) == 1 and "interrupted" in panel.rows()[0]
    panel.search.setText("")
    assert len(panel.rows()) == 3
    # nothing selected: nothing to compare, try, continue or export
    for button in (panel.compare, panel.try_it, panel.resume, panel.export):
        assert not button.isEnabled()
    assert not window.act_export_onnx.isEnabled() and not window.act_continue_run.isEnabled()


def test_selecting_a_run_drives_compare_try_continue_and_export(qtbot, tmp_path, make_hub, trained_run):
    history, _ids = history_with_rows(tmp_path)
    record(history, trained_run)
    window = make_hub(history)
    panel = window.runs_panel
    assert panel.rows()[0].startswith("adding_lstm — finished, 4 steps")
    # a row whose folder holds no run: listed, but nothing to do with it
    panel.list.setCurrentRow(2)
    assert window.runs_model.selected.task == "tagging"
    assert not panel.compare.isEnabled() and not panel.try_it.isEnabled() and not panel.resume.isEnabled()
    # the trained run: every action is there
    panel.list.setCurrentRow(0)
    entry = window.runs_model.selected
    assert entry.run_dir == str(trained_run.resolve())
    for button in (panel.compare, panel.try_it, panel.resume, panel.export):
        assert button.isEnabled(), button.text()
    assert window.act_export_weights.isEnabled() and window.act_continue_run.isEnabled()
    # Compare: its curves join the plots (ticked in the list)
    panel.compare.click()
    assert entry.data is not None and entry.data in window.runs and entry.data.last_step == 4
    assert panel.list.item(0).checkState().name == "Checked" and not panel.compare.isEnabled()
    qtbot.waitUntil(lambda: id(entry.data) in window.loss_panel._items, timeout=10_000)
    # unticking hides it
    panel.list.item(0).setCheckState(panel.list.item(0).checkState().Unchecked)
    assert not entry.data.visible
    # Try it: the run opens in the Try it panel
    panel.try_it.click()
    assert window.tryout_dock.isVisible()
    # Continue: trains it on in its own folder; one run at a time
    window.dialog_answers["continue_steps"] = "6"
    panel.resume.click()
    assert window.training_active and window.current_run is entry.data
    assert not panel.resume.isEnabled() and not window.act_continue_run.isEnabled()
    qtbot.waitUntil(lambda: not window.training_active, timeout=60_000)
    assert entry.data.last_step == 6 and panel.resume.isEnabled()
    assert window.runs_model.find(run_dir=trained_run) is entry  # still one entry for the folder
    (row,) = history.list(run_dir=trained_run)
    assert row.step == 6 and row.source == "gui"  # the window's run session reopened the same row


def test_export_from_the_window_writes_weights_onnx_and_a_script(qtbot, tmp_path, make_hub, trained_run):
    history = RunHistory(tmp_path / "history.sqlite")
    record(history, trained_run)
    window = make_hub(history)
    window.runs_panel.list.setCurrentRow(0)
    out = tmp_path / "exports"
    targets = {"weights": out / "adding.safetensors", "onnx": out / "adding.onnx", "script": out / "script"}
    written = {}
    for kind, target in targets.items():
        with qtbot.waitSignal(window.exporter.done, timeout=120_000) as blocker:
            assert window.export_selected(kind, target)
        assert blocker.args[0] == kind
        written[kind] = [Path(p) for p in blocker.args[1]]
        assert "Exported" in window.statusBar().currentMessage()
    from safetensors import safe_open

    assert written["weights"] == [targets["weights"]]
    with safe_open(str(targets["weights"]), "np") as fh:
        assert any(key.startswith("layers") or "weight" in key for key in fh.keys())
    assert targets["onnx"] in written["onnx"] and targets["onnx"].stat().st_size > 1000
    import onnx

    onnx.checker.check_model(onnx.load(str(targets["onnx"])))
    assert (targets["script"] / "train.py").is_file()
    assert json.loads((targets["script"] / "preset.json").read_text())["name"] == "adding_lstm"
    # a run that cannot be exported says why, in the window
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "preset.json").write_text((trained_run / "preset.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\0" * 16)
    with qtbot.waitSignal(window.exporter.failed, timeout=120_000):
        window.export_run(broken, "onnx", tmp_path / "broken.onnx")
    assert window.info.isVisible() and "Not exported" in window.info.label.text()


def test_the_action_table_builds_every_menu_item_with_its_shortcut(qtbot, tmp_path, make_hub):
    from workbench.gui.actions import ACTIONS

    window = make_hub(RunHistory(tmp_path / "history.sqlite"))
    bar_titles = [a.text() for a in window.menuBar().actions()]
    assert bar_titles == ["&File", "&Edit", "&Run", "&View", "&Help"]

    def items(menu):
        out = []
        for act in menu.actions():
            out.append(act)
            if act.menu() is not None:
                out += items(act.menu())
        return out

    in_menus = {id(a) for m in window.menus.values() for a in items(m)}
    for spec in ACTIONS:
        if spec.kind == "submenu":
            assert getattr(window, spec.id).menuAction().text() == spec.text
            continue
        if spec.kind == "docks":
            continue
        act = getattr(window, f"act_{spec.id}")
        assert id(act) in in_menus, spec.id
        assert act.text() == spec.text or spec.id in ("undo", "redo"), spec.id
        if spec.shortcut is not None:
            assert not act.shortcut().isEmpty(), spec.id
    assert window.act_train.shortcuts()[0] == QKeySequence("F5")
    assert QKeySequence("Ctrl+Y") in window.act_redo.shortcuts()
    assert window.act_open_run.shortcut() == QKeySequence("Ctrl+Shift+O")
    assert window.act_open_run in window.toolbars["File"].actions()
    assert window.act_train in window.toolbars["Run"].actions()
    # the dynamic menus are there too
    assert window.builtin_menu.actions() and window.device_menu.actions() and window.recent_menu.actions()
    # a slot given by name and one given as a function both reach the window
    window.act_add_layer.trigger()
    assert len(window.doc.preset.model.layers) == 2
    window.act_undo.trigger()
    assert len(window.doc.preset.model.layers) == 1
    window.act_log_loss.trigger()
    assert window.loss_panel.log_box.isChecked()
