"""Faults during training and saving: nothing the user had is lost.

- out of memory at step k (simulated: the model's forward raises as CUDA's allocator
  does, or as the CPU allocator does): the run ends 'failed' with advice to shrink the
  batch or the sequences, the weights of the last good step are saved, the process and
  its other runs go on;
- a non-finite loss, end to end through the CLI (the engine's own tests cover skip/stop
  and the roll-back in detail: tests/engine/test_trainer.py);
- Ctrl-C mid-run: the checkpoints and the history row stay, and --resume continues
  (SIGKILL is tests/export/test_kill.py);
- disk full / a read-only folder on every kind of save (preset, user preset, weights,
  checkpoint, ONNX, script, the run folder, mid-training checkpoints): the user is told
  in one line naming the file, the previous file is byte-for-byte unchanged, and no
  temp file is left behind. (Tests run as root, for whom a chmod'ed folder is still
  writable, so the failures are injected where the OS would report them.)
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from tests.reliability.helpers import TINY_ADDING
from workbench import cli, fileio, presets, spec
from workbench.engine import checkpoint as ckpt
from workbench.engine.model import RecurrentModel
from workbench.engine.trainer import Trainer
from workbench.fileio import SaveError
from workbench.runs import RunHistory


def tiny(*overrides: str):
    base = ["model.layers.0.hidden_size=4", "data.options.seq_len=6", "data.options.val_size=8", "train.batch_size=4",
            "train.probe_every=0", "train.eval_every=0", "train.eval_batches=2", "train.steps=5"]
    return spec.with_overrides(presets.load_builtin("adding_gru"), base + list(overrides))


class ForwardFails:
    """Make RecurrentModel.forward raise ``error()`` on training calls number ``at`` ..
    ``until`` (1-based; until=None: every call from ``at`` on, evaluation included)."""

    def __init__(self, monkeypatch, error, at: int, until: int | None = -1):
        self.calls, self.error, self.at = 0, error, at
        self.until = at if until == -1 else until
        original = RecurrentModel.forward

        def forward(model, *args, **kwargs):
            if torch.is_grad_enabled() or self.until is None:
                self.calls += 1
                if self.calls >= self.at and (self.until is None or self.calls <= self.until):
                    raise self.error()
            return original(model, *args, **kwargs)

        monkeypatch.setattr(RecurrentModel, "forward", forward)


def cuda_oom():
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.15 GiB total capacity)")


def cpu_oom():
    return RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                        "you tried to allocate 40000000000 bytes. Error code 12 (Cannot allocate memory)")


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- out of memory


@pytest.mark.parametrize("error,persistent", [(cuda_oom, False), (cuda_oom, True), (cpu_oom, True)],
                         ids=["cuda-once", "cuda-every-call-after", "cpu-allocator"])
def test_out_of_memory_ends_the_run_with_advice_and_keeps_the_last_good_weights(monkeypatch, tmp_path, error,
                                                                               persistent):
    ForwardFails(monkeypatch, error, at=3, until=None if persistent else -1)
    trainer = Trainer(tiny("train.checkpoint_every=1"), run_dir=tmp_path)
    records, good = [], None
    for record in trainer.run():
        records.append(record)
        if record["kind"] == "step" and record["step"] == 2:
            good = _weights(trainer.model)
    end = records[-1]
    assert end["kind"] == "end" and end["status"] == "failed" and end["step"] == 2
    assert "out of memory" in end["message"] and "step 3" in end["message"]
    assert "train.batch_size" in end["message"] and "shorter sequence" in end["message"]
    saved = ckpt.read_weights(tmp_path / "model.safetensors")  # the final weights: those of step 2
    assert all(torch.equal(saved[k], v) for k, v in good.items())
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000002"
    assert [r["kind"] for r in records if r["kind"] == "checkpoint"][-1:] == ["checkpoint"]


def test_after_an_out_of_memory_run_the_process_trains_on(monkeypatch):
    """The app and its other runs keep going: the same process trains the next run."""
    fails = ForwardFails(monkeypatch, cuda_oom, at=2)
    first = list(Trainer(tiny()).run())
    assert first[-1]["status"] == "failed"
    fails.at = 10**9  # the memory is back
    second = list(Trainer(tiny()).run())
    assert second[-1]["status"] == "finished" and second[-1]["step"] == 5


def test_out_of_memory_through_the_cli_is_one_clear_message_and_a_failed_history_row(monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    ForwardFails(monkeypatch, cuda_oom, at=2, until=None)
    code = cli.main(["train", "adding_gru", "--run-dir", str(tmp_path / "run"), *TINY_ADDING, "--steps", "4"])
    err = capfd.readouterr().err
    assert code == 1
    assert "Traceback" not in err and "internal error" not in err
    assert "out of memory" in err and "train.batch_size" in err
    (row,) = RunHistory(tmp_path / "home" / "history.sqlite3").list()
    assert row.status == "failed" and "out of memory" in row.message and row.step == 1
    ckpt.read_weights(tmp_path / "run" / "model.safetensors")  # the step-1 weights are there


def test_out_of_memory_while_building_the_model_is_a_clear_error(monkeypatch):
    from workbench.engine import trainer as trainer_mod

    def build(*args, **kwargs):
        raise cuda_oom()

    monkeypatch.setattr(trainer_mod, "build_model", build)
    with pytest.raises(trainer_mod.TrainingError, match="out of memory .* smaller layers"):
        next(Trainer(tiny()).run())


# ----------------------------------------------------------------------------- non-finite


def test_a_blow_up_through_the_cli_stops_with_the_step_and_the_cause_and_finite_weights(monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    code = cli.main(["train", "adding_rnn_tanh", "--run-dir", str(run), "--device", "cpu", "--quiet", "--steps", "12",
                     "--set", "train.on_non_finite=stop", "--set", "train.optimizer=sgd", "--set", "train.lr=100",
                     "--set", "train.clip=none", "--set", "train.momentum=0", "--set", "model.layers.0.cell=rnn_relu",
                     "--set", "model.init.recurrent=identity", "--set", "model.init.spectral_radius=3",
                     "--set", "model.layers.0.hidden_size=16", "--set", "data.options.seq_len=20",
                     "--set", "data.options.val_size=16", "--set", "train.eval_every=0", "--set", "train.probe_every=0"])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    bad = [r for r in records if r["kind"] == "non_finite"]
    assert len(bad) == 1 and bad[0]["action"] == "stopped" and bad[0]["what"] in ("loss", "gradients")
    assert f"step {bad[0]['step']}" in err and "train.lr" in err  # the step, the cause, the advice
    end = records[-1]
    assert end["status"] == "failed" and end["step"] == bad[0]["step"] - 1
    saved = ckpt.read_weights(run / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in saved.values())  # the last good weights
    (row,) = RunHistory(tmp_path / "home" / "history.sqlite3").list()
    assert row.status == "failed" and f"step {bad[0]['step']}" in row.message


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_mid_run_keeps_the_checkpoints_and_the_history_and_resumes(monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    fails = ForwardFails(monkeypatch, KeyboardInterrupt, at=4)  # the user presses Ctrl-C during step 4
    code = cli.main(["train", "adding_gru", "--run-dir", str(run), *TINY_ADDING, "--steps", "6"])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err and "--resume" in err
    assert ckpt.latest_checkpoint(run).name == "step-00000003"
    (row,) = RunHistory(tmp_path / "home" / "history.sqlite3").list()
    assert row.status == "stopped" and row.step == 3
    fails.at = 10**9
    assert cli.main(["train", "adding_gru", "--run-dir", str(run), "--resume", *TINY_ADDING, "--steps", "6"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.endswith("}")]
    starts = [r for r in records if r["kind"] == "start"]
    assert starts[-1]["step"] == 3 and starts[-1]["resumed_from"].endswith("step-00000003")
    assert [r["step"] for r in records if r["kind"] == "step"][-3:] == [4, 5, 6]
    (row,) = RunHistory(tmp_path / "home" / "history.sqlite3").list()
    assert row.status == "finished" and row.step == 6


# ----------------------------------------------------------------------------- disk full / read-only


def _fail_fsync(monkeypatch):  # disk full: the data does not reach the disk
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", fsync)
    return "No space left on device"


def _fail_create(monkeypatch):  # a read-only folder: no new file may be made in it
    def create(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(fileio, "_create_temp", create)
    return "Read-only file system"


def _fail_rename(monkeypatch):  # permission denied at the last moment
    def replace(src, dst, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(os, "replace", replace)
    return "Permission denied"


FAILURES = {"disk_full": _fail_fsync, "read_only": _fail_create, "no_permission": _fail_rename}


def _trained_model():
    from workbench.engine.model import build_model
    from workbench.tasks import make_task

    preset = tiny()
    return preset, build_model(preset.model, make_task(preset).model_io())


def _save_preset(target: Path):
    preset = tiny()
    preset.description = "the new version"
    spec.save(preset, target)


def _save_user_preset(target: Path):
    preset = tiny()
    preset.description = "the new version"
    presets.save_user(preset, target.stem, overwrite=True)


def _save_weights(target: Path):
    preset, model = _trained_model()
    ckpt.save_weights(target, model, preset)


def _save_checkpoint(target: Path):  # a checkpoint of step 1 over an existing one
    preset, model = _trained_model()
    ckpt.save_checkpoint(target.parent.parent, 1, model, torch.optim.Adam(model.parameters()), None, preset)


SAVES = {"preset": ("mine.json", _save_preset), "user_preset": (None, _save_user_preset),
         "weights": ("model.safetensors", _save_weights), "checkpoint": ("checkpoints/step-00000001.json", _save_checkpoint)}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("what", sorted(SAVES))
def test_a_failed_save_tells_the_user_and_leaves_the_previous_file(monkeypatch, tmp_path, failure, what):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    name, save = SAVES[what]
    target = presets.user_path("mine") if name is None else tmp_path / name
    save(target)  # the previous version, saved normally
    folder_before = {p: p.read_bytes() for p in target.parent.rglob("*") if p.is_file()}
    reason = FAILURES[failure](monkeypatch)
    with pytest.raises(SaveError) as info:
        save(target)
    assert str(target.parent) in str(info.value) and reason in str(info.value)
    monkeypatch.undo()
    after = {p: p.read_bytes() for p in target.parent.rglob("*") if p.is_file()}
    assert after == folder_before  # every old file byte for byte, and no temp file left


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_cli_saves_into_a_failing_folder_exit_2_in_one_line(monkeypatch, tmp_path, capfd, failure):
    """`workbench presets save --to`, `workbench export --script` and `train` itself."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    target = tmp_path / "mine.json"
    target.write_text("the previous file\n")
    run = tmp_path / "run"
    assert cli.main(["train", "adding_gru", "--run-dir", str(run), *TINY_ADDING]) == 0
    (tmp_path / "script").mkdir()
    (tmp_path / "script" / "train.py").write_text("# the previous script\n")
    capfd.readouterr()
    reason = FAILURES[failure](monkeypatch)
    for argv, named in ((["presets", "save", "adding_gru", "--to", str(target), "--force"], target),
                        (["export", str(run), "--script", str(tmp_path / "script")], tmp_path / "script"),
                        (["train", "adding_gru", "--run-dir", str(tmp_path / "run2"), *TINY_ADDING], tmp_path / "run2")):
        assert cli.main(argv) == 2, argv
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in lines[0], lines
        assert str(named) in lines[0] and reason in lines[0], lines[0]
    monkeypatch.undo()
    assert target.read_text() == "the previous file\n"
    assert (tmp_path / "script" / "train.py").read_text() == "# the previous script\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_onnx_export_into_a_full_disk_keeps_the_previous_model(monkeypatch, tmp_path, capfd):
    pytest.importorskip("onnx")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    assert cli.main(["train", "adding_gru", "--run-dir", str(run), *TINY_ADDING]) == 0
    out = tmp_path / "model.onnx"
    assert cli.main(["export", str(run), "--onnx", str(out)]) == 0
    before = out.read_bytes()
    capfd.readouterr()
    _fail_fsync(monkeypatch)
    assert cli.main(["export", str(run), "--onnx", str(out)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "model.onnx" in err[0]
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_disk_full_at_a_mid_run_checkpoint_keeps_the_last_one_resumable(monkeypatch, tmp_path, capfd):
    """The disk fills while checkpoint 3 is written: the run stops with one line naming the
    file; checkpoint 2 is complete, the history says failed, and --resume continues
    from step 2 once there is room again."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if "step-00000003" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert cli.main(["train", "adding_gru", "--run-dir", str(run), *TINY_ADDING, "--steps", "5"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert "step-00000003" in err[-1] and "No space left on device" in err[-1] and "Traceback" not in "".join(err)
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(run).name == "step-00000002"
    assert not any(p.name.endswith(".tmp") for p in run.rglob("*"))
    (row,) = RunHistory(tmp_path / "home" / "history.sqlite3").list()
    assert row.status == "failed" and "No space left on device" in row.message
    assert cli.main(["train", "adding_gru", "--run-dir", str(run), "--resume", *TINY_ADDING, "--steps", "5"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.endswith("}")]
    assert [r for r in records if r["kind"] == "start"][-1]["step"] == 2


def test_an_unusable_history_file_costs_a_warning_not_the_run(monkeypatch, tmp_path, capfd):
    """A history file that is not a database (or a disk too full for its journal): the
    run trains and saves all the same, with one warning."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "history.sqlite3").write_bytes(b"this is not an SQLite database" * 40)
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    assert cli.main(["train", "adding_gru", "--run-dir", str(tmp_path / "run"), *TINY_ADDING]) == 0
    err = capfd.readouterr().err
    assert err.count("warning: the run is not recorded in the history") == 1 and "Traceback" not in err
    ckpt.read_weights(tmp_path / "run" / "model.safetensors")


def test_ctrl_c_in_the_middle_of_a_save_leaves_the_previous_file_and_no_temp_file(monkeypatch, tmp_path):
    target = tmp_path / "mine.json"
    _save_preset(target)
    before = target.read_bytes()

    def fsync(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(KeyboardInterrupt):
        _save_preset(target)
    monkeypatch.undo()
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["mine.json"]
