"""Run by tests/export/test_distributed.py under torchrun: the workbench's own Trainer on
a tiny adding preset; every rank saves its final weights and losses to OUT/rank<r>.*."""
from __future__ import annotations

import json
import os
import sys

import torch

from workbench.engine.checkpoint import save_weights
from workbench.engine.trainer import Trainer
from workbench.presets import load_builtin
from workbench.spec import with_overrides


def tiny_preset(steps: int):
    return with_overrides(load_builtin("adding_gru"), [
        "data.options.seq_len=8", "data.options.val_size=32", "model.layers.0.hidden_size=8",
        "model.input.projection_size=4", "train.batch_size=8", "train.eval_batches=2", "train.device=cpu",
        "train.probe_every=5", "train.eval_every=0", "train.checkpoint_every=0", f"train.steps={steps}"])


def main(out: str, steps: int) -> None:
    torch.set_num_threads(1)
    preset = tiny_preset(steps)
    trainer = Trainer(preset, run_dir=os.path.join(out, "run"))
    records = list(trainer.run())
    losses = [r["loss"] for r in records if r["kind"] == "step"]
    rank = os.environ["RANK"]
    save_weights(os.path.join(out, f"rank{rank}.safetensors"), trainer.model)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"losses": losses, "cpu_policy": records[0]["cpu_policy"], "run_dir": None if trainer.run_dir is None else str(trainer.run_dir)}, fh)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
