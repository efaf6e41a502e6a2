"""The window under bad input and faults: a malformed preset, a hostile run folder, a bad
data file, a preset too big for the machine, an out-of-memory mid-run and a failed save
each show a message (info bar / status bar, never a blocking dialog), the document and
the app stay as they were, and the window trains again afterwards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from tests.reliability.test_faults import ForwardFails, _fail_fsync, cuda_oom  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from workbench.gui.main_window import MainWindow

    blocked = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: blocked.append(box.text()) or 0)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, data_dir=tmp_path / "data")
    w.dialog_answers = {"keep_run": "keep", "save_changes": "discard", "info": "ok"}
    qtbot.addWidget(w)
    w.show()
    w.blocked_dialogs = blocked
    yield w
    if w.training_active:
        w._worker.stop()
        qtbot.waitUntil(lambda: not w.training_active, timeout=60_000)
    assert not blocked, f"a modal dialog would have blocked the user: {blocked}"


def shown(window) -> str:
    """What the window tells the user: the info bar and the status bar."""
    return window.info.label.text() + " | " + window.statusBar().currentMessage()


def tiny_adding(window, steps: int = 6) -> None:
    window.open_builtin("adding_gru", quiet=True)
    for key, value in (("model.layers.0.hidden_size", 4), ("data.options.seq_len", 6), ("data.options.val_size", 8),
                       ("train.batch_size", 4), ("train.steps", steps), ("train.eval_every", 0),
                       ("train.eval_batches", 1), ("train.probe_every", 0), ("train.checkpoint_every", 1)):
        window.doc.set(key, value)


def train_to_the_end(qtbot, window) -> bool:
    started = window.start_training()
    qtbot.waitUntil(lambda: not window.training_active, timeout=120_000)
    return started


def run_folders(window) -> list[Path]:
    root = window.data_dir / "runs"
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def test_malformed_presets_are_refused_with_a_message_and_the_document_is_kept(qtbot, window, tmp_path):
    before = window.doc.preset.to_json()
    good = json.loads(before)
    bad_files = {
        "not_json.json": b'{"schema_version": 1,, }',
        "binary.json": bytes(range(256)) * 4,
        "version.json": json.dumps({**good, "schema_version": 7}).encode(),
        "negative.json": json.dumps({**good, "train": {**good["train"], "batch_size": -3}}).encode(),
        "pickle.json": b"\x80\x04\x95" + bytes(40),
    }
    for name, data in bad_files.items():
        path = tmp_path / name
        path.write_bytes(data)
        window.info.hide()
        assert window.open_preset(path) is False, name
        assert window.info.isVisible() and str(path) in window.info.label.text(), (name, shown(window))
        assert window.doc.preset.to_json() == before  # nothing of the bad file got in
    window.info.hide()
    assert window.open_dropped(tmp_path / "negative.json") == "error"
    assert "train.batch_size" in window.info.label.text()
    assert window.isVisible() and window.act_train.isEnabled()


def test_a_hostile_run_folder_to_compare_is_refused_or_read_safely(qtbot, window, tmp_path):
    binary = tmp_path / "binary_run"
    binary.mkdir()
    (binary / "metrics.jsonl").write_bytes(b"\xff\xfe" + bytes(range(256)) * 8)
    assert window.load_run_folder(binary) is None
    assert str(binary) in window.info.label.text() or "metrics.jsonl" in window.info.label.text(), shown(window)
    odd = tmp_path / "odd_run"
    odd.mkdir()
    (odd / "preset.json").write_bytes(b"\x80\x04 not a preset")
    (odd / "metrics.jsonl").write_text("\n".join([
        '[1, 2, 3]', '"just text"', 'null', '{"no_kind": 1}', '{"kind": "step"}', '{"kind": "step", "step": "x"}',
        '{"kind": "step", "step": [1]}', '{"kind": "step", "step": 1, "loss": "nan", "timestep_grad_norms": 5}',
        '{"kind": "eval", "step": 2, "val_loss": {"a": 1}}', '{"kind": "step", "step": 3, "loss": 0.5}',
        '{"kind": "end", "step": 3, "status": 12}', '{"kind": "step", "st']))
    run = window.load_run_folder(odd)  # either refused with a message, or the readable records shown
    if run is None:
        assert "odd_run" in shown(window)
    else:
        assert run.last_step == 3
    window._on_frame(force=True)  # and the plots still draw
    assert window.isVisible()


def test_a_bad_data_file_fails_the_run_with_a_message_and_no_run_folder(qtbot, window, tmp_path):
    bad = tmp_path / "corpus.txt"
    bad.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    window.open_builtin("charlm_gru", quiet=True)
    window.doc.set("data.path", str(bad))
    window.doc.set("model.layers.0.hidden_size", 4)
    window.doc.set("model.layers.1.hidden_size", 4)
    train_to_the_end(qtbot, window)
    qtbot.waitUntil(lambda: str(bad) in shown(window), timeout=60_000)
    assert "binary" in shown(window)
    assert run_folders(window) == []
    tiny_adding(window)  # the window goes on: a good run trains
    assert train_to_the_end(qtbot, window)
    assert window.current_run.status == "finished", shown(window)


def test_a_preset_too_big_for_the_machine_is_refused_before_it_allocates(qtbot, window):
    tiny_adding(window)
    window.doc.set("model.layers.0.hidden_size", 16384)
    window.doc.set("train.batch_size", 65536)
    window.doc.set("data.options.seq_len", 100_000)
    train_to_the_end(qtbot, window)
    qtbot.waitUntil(lambda: "needs about" in shown(window), timeout=60_000)
    assert "available" in shown(window) and "train.batch_size" in shown(window)
    assert window.current_run.status == "failed"
    assert run_folders(window) == []  # refused before the run folder was written


def test_out_of_memory_mid_run_is_reported_and_the_window_trains_on(qtbot, window, monkeypatch):
    fails = ForwardFails(monkeypatch, cuda_oom, at=3)
    tiny_adding(window)
    assert train_to_the_end(qtbot, window)
    qtbot.waitUntil(lambda: "out of memory" in shown(window), timeout=60_000)
    assert "train.batch_size" in shown(window)
    assert window.current_run.status == "failed"
    (folder,) = run_folders(window)
    assert (folder / "model.safetensors").is_file()  # the weights of step 2 are kept
    fails.at = 10**9
    assert train_to_the_end(qtbot, window)
    assert window.current_run.status == "finished", shown(window)
    assert len(window.runs) == 2 and window.isVisible()


def test_saving_into_a_full_disk_says_so_and_keeps_the_previous_file(qtbot, window, tmp_path, monkeypatch):
    target = tmp_path / "mine.json"
    tiny_adding(window)
    assert window.save_as(target)
    before = target.read_bytes()
    window.doc.set("train.steps", 123)
    _fail_fsync(monkeypatch)
    assert window.save() is False
    assert "No space left on device" in shown(window) and str(target) in shown(window)
    monkeypatch.undo()
    assert target.read_bytes() == before and window.doc.dirty
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".json", ".tmp")) == ["mine.json"]
    assert window.save() and json.loads(target.read_text())["train"]["steps"] == 123


def test_opening_a_run_with_a_pickle_for_weights_in_the_window_runs_nothing(qtbot, window, tmp_path):
    """Comparing with a run folder hands it to the Try-it panel, which loads its weights:
    a pickle posing as model.safetensors is refused with a message, never unpickled."""
    from tests.reliability.helpers import TINY_ADDING, hostile_pickle
    from workbench import cli

    run = tmp_path / "run"
    assert cli.main(["train", "adding_gru", "--run-dir", str(run), *TINY_ADDING]) == 0
    marker = tmp_path / "PWNED"
    (run / "model.safetensors").write_bytes(hostile_pickle(marker))
    tryout = getattr(window, "tryout", None)
    if tryout is None:
        pytest.skip("the window has no Try-it panel yet")
    with qtbot.waitSignal(tryout.failed, timeout=60_000) as failed:
        assert window.load_run_folder(run) is not None  # the curves are plain JSON: they load
    assert "model.safetensors" in failed.args[0] and "not a valid safetensors" in failed.args[0]
    assert not marker.exists() and window.isVisible()
