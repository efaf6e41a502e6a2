"""The standalone training script: it imports no workbench, builds the very same network,
reads the same data the same way, and trains under torchrun with two CPU processes."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.engine.model import build_model
from workbench.export import script as xs
from workbench.presets import load_builtin
from workbench.spec import InitSpec, InputSpec, LayerSpec, ModelIO, ModelSpec, Preset, with_overrides

PROJECT = Path(__file__).resolve().parents[2]


def tiny_adding_preset(**train) -> Preset:
    preset = load_builtin("adding_gru")
    overrides = ["data.options.seq_len=8", "data.options.val_size=64", "model.layers.0.hidden_size=8",
                 "model.input.projection_size=4", "train.batch_size=16", "train.eval_batches=2",
                 "train.device=cpu", "train.probe_every=0", "train.eval_every=0", "train.checkpoint_every=0"]
    overrides += [f"train.{k}={json.dumps(v)}" for k, v in train.items()]
    return with_overrides(preset, overrides)


def load_script(path: Path, name: str = "exported_train"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_same_sums(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, (s, c) in want.items():
        assert got[name][1] == c and got[name][0] == pytest.approx(s, rel=1e-6, abs=1e-9), name


@pytest.fixture(scope="module")
def adding_script(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adding_script")
    xs.export_script(tiny_adding_preset(), {}, folder)
    return folder


def test_script_runs_without_the_workbench(adding_script, tmp_path):
    text = (adding_script / "train.py").read_text()
    assert "workbench" not in "\n".join(l for l in text.splitlines() if l.lstrip().startswith(("import", "from")))
    # A fresh interpreter where `import workbench` fails: the script still trains.
    blocker = ("import runpy, sys; sys.modules['workbench'] = None; "
               f"sys.argv = ['train.py', '--steps', '3', '--out', {str(tmp_path / 'out')!r}]; "
               f"runpy.run_path({str(adding_script / 'train.py')!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rank 0/1: finished at step 3" in out.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (adding_script / "requirements.txt").read_text().split() == ["torch>=2.3", "safetensors>=0.4"]


MODEL_CASES = [
    ("many_to_one", "linear", [LayerSpec("lstm", 6, True), LayerSpec("gru", 5, True)], InitSpec("orthogonal", 2.0), 4),
    ("many_to_one", "embedding", [LayerSpec("rnn_relu", 6)], InitSpec("identity", 1.0, 0.9), 0),
    ("many_to_many", "embedding", [LayerSpec("rnn_tanh", 7, True), LayerSpec("lstm", 5)], InitSpec(), 3),
    ("many_to_many", "linear", [LayerSpec("gru", 6), LayerSpec("gru", 4)], InitSpec("default", 1.0, 1.3), 0),
    # the scan cells (ScanLayer: the workbench's own scan functions, copied in)
    ("many_to_one", "linear", [LayerSpec("mingru", 6, True), LayerSpec("lru", 5, True)],
     InitSpec(lru_r_min=0.5, lru_r_max=0.9), 4),
    ("many_to_many", "embedding", [LayerSpec("minlstm", 7), LayerSpec("lstm", 5), LayerSpec("lru", 4)], InitSpec(), 0),
]


@pytest.mark.parametrize("topology,kind,layers,init,head_hidden", MODEL_CASES)
def test_script_model_is_the_workbench_model(adding_script, topology, kind, layers, init, head_hidden):
    mod = load_script(adding_script / "train.py")
    spec = ModelSpec(topology=topology, input=InputSpec(kind=kind, embedding_dim=5, projection_size=4),
                     layers=layers, init=init)
    spec.head.hidden_size = head_hidden
    io = ModelIO(vocab_size=9, feature_size=3, output_size=4)
    torch.manual_seed(7)
    ours = build_model(spec, io)
    torch.manual_seed(7)
    theirs = mod.RecurrentModel(dataclasses.asdict(spec), {"vocab_size": 9, "feature_size": 3, "output_size": 4})
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # the same names, in the same order: weights move both ways
    for name in a:
        assert torch.equal(a[name], b[name]), name  # the same initialisation from the same seed
    x = torch.randint(0, 9, (3, 6)) if kind == "embedding" else torch.randn(3, 6, 3)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        if not any(l.bidirectional for l in layers):  # truncated BPTT: the carried state
            _, finals = ours(x[:, :3], return_states=True)
            want, _ = ours(x[:, 3:], initial_states=finals, return_states=True)
            _, finals2 = theirs(x[:, :3], return_states=True)
            got, _ = theirs(x[:, 3:], finals2, return_states=True)
            assert torch.equal(want, got)


@pytest.mark.parametrize("tbptt", [0, 3])
def test_adding_script_trains_like_the_workbench_trainer(tmp_path, tbptt):
    """Same seed: same initial weights, same batches, same optimizer, schedule, clipping
    and truncated BPTT, so the first steps' losses agree with the workbench's trainer."""
    from workbench.engine.trainer import Trainer

    preset = tiny_adding_preset(schedule="cosine", warmup_steps=2, clip="norm", clip_value=0.5, steps=6,
                                tbptt=tbptt)
    folder = tmp_path / "script"
    xs.export_script(preset, {}, folder)
    losses = [r["loss"] for r in Trainer(preset, probe_budget=None).run() if r["kind"] == "step"]
    mod = load_script(folder / "train.py", f"adding_train_{tbptt}")
    assert mod.main(["--out", str(tmp_path / "out"), "--log-every", "1"]) == 0
    records = [json.loads(l) for l in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    script_losses = [r["loss"] for r in records if r["kind"] == "step"]
    assert len(script_losses) == len(losses) == 6
    assert script_losses == pytest.approx(losses, rel=1e-5)
    end = records[-1]
    assert end["kind"] == "end" and end["status"] == "finished" and "mse" in end["metrics"]


def test_script_resumes_from_its_checkpoint(adding_script, tmp_path):
    mod = load_script(adding_script / "train.py", "adding_resume")
    out = str(tmp_path / "out")
    assert mod.main(["--out", out, "--steps", "4", "--log-every", "1"]) == 0
    saved = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 4
    assert mod.main(["--out", out, "--steps", "6", "--log-every", "1", "--resume"]) == 0
    records = [json.loads(l) for l in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]


def test_charlm_data_is_read_like_the_workbench(tmp_path):
    from workbench.tasks import make_task

    text = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
            "must be in want of a wife.\r\n") * 12 + "Ünïcode ends it."
    (tmp_path / "text.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    preset = with_overrides(load_builtin("charlm_gru"), [f"data.path={tmp_path / 'text.txt'}",
                                                         "data.options.seq_len=16"])
    task = make_task(preset)
    folder = tmp_path / "script"
    xs.export_script(preset, task.artifacts(), folder)
    mod = load_script(folder / "train.py", "charlm_train")
    exported = json.loads((folder / "preset.json").read_text())
    data = mod.Data(exported, json.loads((folder / "task.json").read_text()), exported["data"]["path"], 0)
    assert torch.equal(data.train_ids, task.train_ids) and torch.equal(data.val_ids, task.val_ids)
    for ours, theirs in zip(task.val_batches(4, 3), data.val_batches(4, 3), strict=True):
        assert torch.equal(ours.x, theirs.x) and torch.equal(ours.y, theirs.y) and torch.equal(ours.mask, theirs.mask)
        logits = torch.randn(*ours.y.shape, len(task.vocab))
        assert float(data.loss(logits, theirs)) == pytest.approx(float(task.loss(logits, ours)), rel=1e-6)
        assert_same_sums(data.metric_sums(logits, theirs), task.metric_sums(logits, ours))
    assert data.model_io() == {"vocab_size": len(task.vocab), "output_size": len(task.vocab)}


@pytest.mark.parametrize("topology,relative", [("many_to_one", True), ("many_to_many", False)])
def test_forecast_data_is_read_like_the_workbench(tmp_path, shared_data, topology, relative):
    from workbench.tasks import make_task

    csv_path = shared_data / "timeseries" / "airline-passengers.csv"
    preset = with_overrides(load_builtin("forecast_airline_gru"),
                            [f"data.path={csv_path}", f"model.topology={topology}",
                             f"data.options.relative={json.dumps(relative)}"])
    task = make_task(preset)
    folder = tmp_path / "script"
    xs.export_script(preset, task.artifacts(), folder)
    assert "numpy" in (folder / "requirements.txt").read_text()
    mod = load_script(folder / "train.py", f"forecast_train_{topology}")
    exported = json.loads((folder / "preset.json").read_text())
    data = mod.Data(exported, {}, exported["data"]["path"], 0)
    assert torch.equal(data.z, task.z)
    assert torch.equal(data.train_origins, task.train_origins) and torch.equal(data.val_origins, task.val_origins)
    for ours, theirs in zip(task.val_batches(8, 4), data.val_batches(8, 4), strict=True):
        assert torch.equal(ours.x, theirs.x) and torch.equal(ours.y, theirs.y)
        out = torch.randn_like(ours.y)
        assert_same_sums(data.metric_sums(out, theirs), task.metric_sums(out, ours))


def test_unsupported_tasks_and_models_are_refused_by_name(tmp_path):
    with pytest.raises(xs.ScriptExportError) as err:
        xs.render(load_builtin("brackets_gru"))
    assert "'brackets'" in str(err.value)
    for supported in xs.PIPELINES:
        assert supported in str(err.value)
    preset = load_builtin("adding_gru")
    preset.model.input.kind = "frames_linear"  # the script's input side is embedding or linear only
    with pytest.raises(xs.ScriptExportError, match="model.input.kind"):
        xs.render(preset)


def test_an_option_the_script_does_not_know_is_refused_unless_default(monkeypatch):
    forecast = xs.PIPELINES["forecast"]
    without = dataclasses.replace(forecast, options=tuple(o for o in forecast.options if o != "relative"))
    monkeypatch.setitem(xs.PIPELINES, "forecast", without)
    preset = with_overrides(load_builtin("forecast_sine_gru"), ["data.options.relative=false"])
    xs.render(preset)  # at its default: the script's behaviour
    with pytest.raises(xs.ScriptExportError, match="data.options.relative"):
        xs.render(with_overrides(preset, ["data.options.relative=true"]))


def test_exported_script_runs_under_torchrun_with_two_cpu_processes(tmp_path):
    """Both ranks finish (gloo), the loss falls, and the weights load into the workbench."""
    from workbench.engine.checkpoint import load_weights
    from workbench.tasks import make_task

    words = "the quick brown fox jumps over the lazy dog and then sleeps in the warm sun".split()
    g = torch.Generator().manual_seed(0)
    text = "\n".join(" ".join(words[int(i)] for i in torch.randint(0, len(words), (12,), generator=g))
                     for _ in range(120))
    (tmp_path / "corpus.txt").write_text(text)
    preset = with_overrides(load_builtin("charlm_gru"), [
        f"data.path={tmp_path / 'corpus.txt'}", "data.options.seq_len=24", "model.input.embedding_dim=16",
        "model.layers.0.hidden_size=32", "model.layers.1.hidden_size=32", "train.batch_size=16",
        "train.lr=0.01", "train.schedule=constant", "train.warmup_steps=0", "train.eval_every=0",
        "train.eval_batches=2", "train.checkpoint_every=10", "train.device=cpu", "train.num_threads=1"])
    task = make_task(preset)
    folder = tmp_path / "script"
    xs.export_script(preset, task.artifacts(), folder)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "PYTHONPATH")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(folder / "train.py"), "--steps", "30", "--log-every", "1", "--out", str(tmp_path / "out")]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "rank 0/2: finished at step 30" in run.stderr and "rank 1/2: finished at step 30" in run.stderr
    assert "x 2 process(es)" in run.stdout
    records = [json.loads(l) for l in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "step"]
    assert len(losses) == 30  # rank 0 alone writes
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.75 * first, losses
    model = build_model(preset.model, task.model_io())
    load_weights(tmp_path / "out" / "model.safetensors", model)
    assert (tmp_path / "out" / "checkpoint.pt").is_file()
