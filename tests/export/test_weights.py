"""Weights in safetensors: bit-exact round trips, a complete run folder, and no
unpickling of anything handed to us. Plus `workbench export` on a real run folder."""
from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import torch

from tests.export.helpers import cases, tiny
from workbench import cli
from workbench.engine import checkpoint as ckpt
from workbench.export.runfolder import load_run

TRAIN = ["train", "adding_gru", "--steps", "4", "--quiet", "--set", "data.options.seq_len=6",
         "--set", "model.layers.0.hidden_size=6", "--set", "train.probe_every=0", "--set", "train.eval_every=0",
         "--set", "data.options.val_size=16", "--set", "train.checkpoint_every=2"]


@pytest.mark.parametrize("cell,topology,kind", cases()[::3])
def test_safetensors_round_trip_is_bit_exact(tmp_path, cell, topology, kind):
    model = tiny(cell, topology, kind, seed=5)
    with torch.no_grad():  # awkward values too: subnormals, negative zero, extremes
        first = next(model.parameters())
        first.view(-1)[:4] = torch.tensor([1e-45, -0.0, 3.4e38, -1.17e-38])
    ckpt.save_weights(tmp_path / "w.safetensors", model)
    loaded = ckpt.read_weights(tmp_path / "w.safetensors")
    state = model.state_dict()
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape
        assert loaded[name].numpy().tobytes() == tensor.numpy().tobytes(), name  # bit for bit
    fresh = tiny(cell, topology, kind, seed=6)
    ckpt.load_weights(tmp_path / "w.safetensors", fresh)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_pickle_posing_as_weights_or_checkpoint_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = pickle.dumps({"weight": _Boom()})
    (tmp_path / "model.safetensors").write_bytes(hostile)
    with pytest.raises(ckpt.WeightsError, match="model.safetensors"):
        ckpt.read_weights(tmp_path / "model.safetensors")
    buffer = io.BytesIO()
    torch.save({"optimizer": _Boom(), "step": 1}, buffer)
    model = tiny("gru", "many_to_one", "linear")
    ckpt.save_checkpoint(tmp_path / "run", 1, model, torch.optim.Adam(model.parameters()), None, _preset(model))
    stem = ckpt.latest_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / (stem.name + ".optim.pt")).write_bytes(buffer.getvalue())
    with pytest.raises(ckpt.WeightsError):
        ckpt.load_checkpoint(stem, model, torch.optim.Adam(model.parameters()))
    assert not (tmp_path / "PWNED").exists()


def _preset(model):
    from workbench.spec import Preset

    return Preset(name="t", model=model.spec)


def test_a_run_folder_is_complete_and_exports(tmp_path, monkeypatch, capsys):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    run_dir = tmp_path / "run"
    assert cli.main(TRAIN + ["--run-dir", str(run_dir)]) == 0
    for name in ("preset.json", "task.json", "metrics.jsonl", "model.safetensors"):
        assert (run_dir / name).is_file(), name
    run = load_run(run_dir)
    # the preset rides along inside the weights file too
    assert ckpt.preset_from_weights(run_dir / "model.safetensors").to_json() == run.preset.to_json()
    capsys.readouterr()
    assert cli.main(["export", str(run_dir), "--onnx", str(tmp_path / "adding.onnx"),
                     "--script", str(tmp_path / "script")]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "adding.onnx") in printed and str(tmp_path / "script" / "train.py") in printed
    x = torch.rand(3, 9, 2)
    lengths = torch.tensor([9, 5, 2])
    sess = ort.InferenceSession(str(tmp_path / "adding.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        want = run.model(x, None, lengths).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    manifest = json.loads((tmp_path / "adding.onnx.json").read_text())
    assert manifest["preset"]["name"] == "adding_gru" and manifest["x"]["shape"] == ["batch", "time", 2]


def test_export_refuses_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    assert cli.main(["export", str(tmp_path / "nowhere"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "nowhere" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    assert cli.main(TRAIN + ["--run-dir", str(run_dir)]) == 0
    assert cli.main(["export", str(run_dir)]) == 2
    (run_dir / "model.safetensors").write_bytes(b"\x00" * 10)  # truncated / corrupt
    capsys.readouterr()
    assert cli.main(["export", str(run_dir), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and len(err.strip().splitlines()) == 1
    (run_dir / "model.safetensors").unlink()  # a killed run: the latest checkpoint's weights are used
    assert load_run(run_dir).weights.name.startswith("step-")
    preset = json.loads((run_dir / "preset.json").read_text())
    preset["data"]["task"] = "brackets"
    preset["data"]["options"] = {}
    preset["model"]["input"]["kind"] = "embedding"
    preset["model"]["head"]["kind"] = "classification"
    (run_dir / "preset.json").write_text(json.dumps(preset))
    assert cli.main(["export", str(run_dir), "--script", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "'brackets'" in err and "adding" in err and len(err.strip().splitlines()) == 1
