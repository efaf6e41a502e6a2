"""Property-based, whole presets: hypothesis writes presets for the adding task with every
training setting and task option (tests/foundation/test_spec_properties.py covers the
model builder alone), and sometimes breaks one field. Each preset either trains
(make_task, the Trainer's set-up, its steps and the final evaluation, all records well
formed) or is refused with the project's own errors, SpecError or TrainingError, and
nothing else; a broken field is always refused."""
from __future__ import annotations

import math
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.engine.trainer import Trainer, TrainingError
from workbench.spec import (
    CELLS,
    CLIP_MODES,
    NON_FINITE_ACTIONS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    Preset,
    SpecError,
    apply_override,
)
from workbench.tasks import make_task

layer = st.fixed_dictionaries({"cell": st.sampled_from(CELLS), "hidden_size": st.integers(1, 5),
                               "bidirectional": st.booleans(), "dropout": st.sampled_from([0.0, 0.3])})
model = st.fixed_dictionaries({
    "topology": st.just("many_to_one"),
    "input": st.fixed_dictionaries({"kind": st.just("linear"), "projection_size": st.integers(1, 4)}),
    "layers": st.lists(layer, min_size=1, max_size=2),
    "head": st.fixed_dictionaries({"kind": st.just("regression"), "hidden_size": st.sampled_from([0, 3])}),
    "init": st.fixed_dictionaries({"recurrent": st.sampled_from(["default", "orthogonal", "identity"]),
                                   "forget_bias": st.sampled_from([0.0, 1.0]),
                                   "spectral_radius": st.sampled_from([None, 0.9, 1.5])}),
})
train = st.fixed_dictionaries({
    "steps": st.integers(1, 3),
    "batch_size": st.integers(1, 4),
    "optimizer": st.sampled_from(OPTIMIZERS),
    "lr": st.sampled_from([1e-3, 0.1, 50.0]),
    "momentum": st.sampled_from([0.0, 0.9]),
    "weight_decay": st.sampled_from([0.0, 0.1]),
    "schedule": st.sampled_from(SCHEDULES),
    "warmup_steps": st.integers(0, 4),
    "step_size": st.integers(1, 3),
    "gamma": st.sampled_from([0.5, 1.0]),
    "clip": st.sampled_from(CLIP_MODES),
    "clip_value": st.sampled_from([0.1, 1.0]),
    "tbptt": st.sampled_from([0, 0, 2, 3]),
    "eval_every": st.integers(0, 2),
    "eval_batches": st.integers(1, 2),
    "probe_every": st.integers(0, 2),
    "log_every": st.integers(1, 2),
    "seed": st.integers(0, 2**31),
    "device": st.sampled_from(["cpu", "auto"]),
    "precision": st.sampled_from(PRECISIONS),
    "on_non_finite": st.sampled_from(NON_FINITE_ACTIONS),
    "num_threads": st.sampled_from([0, 1]),
})
options = st.fixed_dictionaries({"seq_len": st.integers(2, 7), "val_size": st.integers(1, 5)})
# One field broken: each of these must be refused.
BROKEN = [("model.layers.0.hidden_size", 0), ("model.layers.0.hidden_size", -4), ("model.layers.0.cell", "transformer"),
          ("model.layers", []), ("model.topology", "many_to_many"), ("model.input.kind", "embedding"),
          ("model.head.kind", "classification"), ("model.init.recurrent", "xavier"), ("model.layers.0.dropout", 1.0),
          ("train.steps", 0), ("train.epochs", -1), ("train.batch_size", 0), ("train.optimizer", "adamax"),
          ("train.lr", 0.0), ("train.lr", "fast"), ("train.clip_value", 0.0), ("train.tbptt", -1),
          ("train.device", "tpu"), ("train.precision", "fp8"), ("train.on_non_finite", "ignore"),
          ("train.log_every", 0), ("train.eval_batches", 0), ("data.options.seq_len", 1),
          ("data.options.val_size", 0), ("data.options.surprise", 1), ("data.path", "numbers.csv"),
          ("data.task", "poetry"), ("schema_version", 2)]


def test_any_whole_preset_trains_or_is_refused_with_our_own_error():
    outcomes: Counter = Counter()

    @settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(model, train, options, st.one_of(st.none(), st.none(), st.sampled_from(BROKEN)))
    def check(m, t, o, broken):
        raw = Preset().to_dict()
        raw["model"] = m
        raw["train"].update(t, checkpoint_every=0)
        raw["data"] = {"task": "adding", "path": "", "options": o}
        if broken is not None:
            apply_override(raw, *broken)
        try:
            preset = Preset.from_dict(raw)
            trainer = Trainer(preset, task=make_task(preset))
            records = list(trainer.run())
        except (SpecError, TrainingError):
            outcomes["refused"] += 1
            return  # refused, by name
        assert broken is None, f"{broken} was not refused"
        outcomes["trained"] += 1
        kinds = [r["kind"] for r in records]
        assert kinds[0] == "start" and kinds[-1] == "end", kinds
        end = records[-1]
        steps = [r for r in records if r["kind"] in ("step", "non_finite")]
        assert end["status"] == "finished" and len(steps) == preset.train.steps or (
            end["status"] == "failed" and preset.train.on_non_finite == "stop" and "step" in end["message"]), end
        for r in records:
            if r["kind"] == "step":
                assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])

    check()
    # both halves of the property were exercised
    assert outcomes["trained"] >= 10 and outcomes["refused"] >= 5, outcomes
