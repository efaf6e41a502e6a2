"""The scan cells' built-in presets end to end: the trainer trains them with the exact
probe on, the run folder's safetensors reopen to the same model, and the standalone
script trains them step for step like the workbench."""
from __future__ import annotations

import json

import pytest
import torch

from tests.export.test_script import load_script
from workbench import cli
from workbench.engine.trainer import Trainer
from workbench.export import script as xs
from workbench.export.runfolder import load_run
from workbench.presets import load_builtin
from workbench.spec import with_overrides


def tiny(name: str, **train):
    overrides = ["data.options.seq_len=12", "data.options.val_size=16", "train.batch_size=8", "train.eval_batches=1",
                 "train.device=cpu", "train.eval_every=0", "train.checkpoint_every=0", "train.probe_every=2",
                 "train.steps=4", "train.num_threads=1"]
    overrides += [f"model.layers.{i}.hidden_size=6" for i in range(len(load_builtin(name).model.layers))]
    return with_overrides(load_builtin(name), overrides + [f"train.{k}={json.dumps(v)}" for k, v in train.items()])


@pytest.mark.parametrize("name", ["adding_long_mingru", "adding_long_lru"])
def test_preset_trains_probes_and_reopens(tmp_path, name):
    preset = tiny(name)
    assert preset.data.options["seq_len"] == 12
    (tmp_path / "preset.json").write_text(preset.to_json())
    assert cli.main(["train", str(tmp_path / "preset.json"), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    probes = [r for r in records if r["kind"] == "probe"]
    assert probes, "the exact probe ran"
    for layer, norms in probes[-1]["hidden_grad_norms"].items():
        assert len(norms) == 12 and min(norms) > 0, layer  # the gradient reaches every step
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    run = load_run(tmp_path / "run")
    x = torch.rand(3, 12, 2)
    assert [l.cell for l in run.preset.model.layers] == [l.cell for l in preset.model.layers]
    run.model.eval()
    first = run.model(x)
    again = load_run(tmp_path / "run").model.eval()(x)
    assert torch.equal(first, again)


@pytest.mark.parametrize("name", ["adding_long_mingru", "adding_long_lru"])
def test_script_trains_like_the_workbench(tmp_path, name):
    preset = tiny(name, probe_every=0, schedule="cosine", warmup_steps=1)
    losses = [r["loss"] for r in Trainer(preset, probe_budget=None).run() if r["kind"] == "step"]
    xs.export_script(preset, {}, tmp_path / "script")
    mod = load_script(tmp_path / "script" / "train.py", f"modern_{name}")
    assert mod.main(["--out", str(tmp_path / "out"), "--log-every", "1"]) == 0
    records = [json.loads(l) for l in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    script_losses = [r["loss"] for r in records if r["kind"] == "step"]
    assert len(script_losses) == len(losses) == 4
    assert script_losses == pytest.approx(losses, rel=1e-5)
