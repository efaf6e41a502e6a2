"""The end-of-training evaluation reads the whole validation set, as `workbench eval`
does, so the two report the same val_loss; evaluations during training take the quick
sample of train.eval_batches batches, and the end record says how many examples the
final one read."""
from __future__ import annotations

import json

import pytest

from workbench import cli

CASES = {
    # generated data: 30 validation examples in batches of 4 (the last one short), a
    # 1-batch sample during training
    "adding_gru": ["data.options.seq_len=8", "data.options.val_size=30", "model.layers.0.hidden_size=4"],
    # a shipped file (builtin:), its last 20% held out
    "forecast_airline_gru": ["model.layers.0.hidden_size=4"],
}


@pytest.mark.parametrize("preset", sorted(CASES))
def test_end_of_training_val_loss_is_workbench_eval_s(tmp_path, capsys, preset):
    run = tmp_path / "run"
    args = ["train", preset, "--steps", "3", "--run-dir", str(run), "--quiet", "--device", "cpu"]
    for item in CASES[preset] + ["train.batch_size=4", "train.eval_batches=1", "train.eval_every=2",
                                 "train.probe_every=0", "train.checkpoint_every=0", "train.num_threads=1"]:
        args += ["--set", item]
    assert cli.main(args) == 0
    final_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("final"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    end = records[-1]
    assert any(r["kind"] == "eval" and r["step"] == 2 for r in records)  # the sample during training still runs
    assert cli.main(["eval", str(run), "--no-decode", "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["examples"] > 4  # more than the one batch the sample took
    assert end["eval_examples"] == evaluated["examples"]
    assert f"all {evaluated['examples']:,} validation examples" in final_line
    assert end["metrics"]["val_loss"] == pytest.approx(evaluated["metrics"]["val_loss"], rel=1e-5)
    for name, value in end["metrics"].items():
        assert evaluated["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
