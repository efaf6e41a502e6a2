"""The trainer's contract: records, control, resume, seeds, the non-finite guard,
clipping, schedules, optimizers, epochs, truncated BPTT, devices and precision."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from tests.engine.helpers import ToyStream, preset
from tests.engine.reference import reference_norms
from workbench.engine import checkpoint as ckpt
from workbench.engine.records import read_metrics, record_to_json
from workbench.engine.trainer import TrainControl, Trainer, TrainingError, lr_factor
from workbench.spec import SpecError, with_overrides
from workbench.tasks import make_task


def records_of(trainer: Trainer, stop_after: int | None = None) -> list[dict]:
    out = []
    for record in trainer.run():
        out.append(record)
        if stop_after is not None and record["kind"] == "step" and record["step"] == stop_after:
            trainer.control.stop()
    return out


def kinds(records, kind):
    return [r for r in records if r["kind"] == kind]


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- records


def test_step_records_carry_the_contract_and_serialise():
    p = preset("adding_lstm", "train.steps=4", "train.probe_every=2", "train.eval_every=2")
    records = records_of(Trainer(p, probe_budget=None))
    assert records[0]["kind"] == "start" and records[-1]["kind"] == "end"
    steps = kinds(records, "step")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for r in steps:
        for key in ("loss", "lr", "time_s", "units_per_s", "grad_norm", "grad_norm_clipped", "clipped"):
            assert key in r, key
        assert isinstance(r["loss"], float) and math.isfinite(r["loss"])
        taps = r["timestep_grad_norms"]["layers.0"]
        assert isinstance(taps, np.ndarray) and taps.shape == (12,)
        assert set(r["param_grad_norms"]["layers.0"]) == {"forward", "recurrent", "bias"}
    probes = kinds(records, "probe")
    assert [r["step"] for r in probes] == [0, 2, 4]  # step 0: before the first update
    assert records.index(probes[0]) < records.index(steps[0])
    assert probes[0]["hidden_grad_norms"]["layers.0"].shape == (12,)
    assert [r["step"] for r in kinds(records, "eval")] == [2, 4]
    assert records[-1]["status"] == "finished" and records[-1]["step"] == 4
    for r in records:
        record_to_json(r)  # plain data only


def test_log_every_sets_the_rate_of_the_arrays():
    records = records_of(Trainer(preset("adding_lstm", "train.steps=6", "train.log_every=3")))
    steps = kinds(records, "step")
    assert len(steps) == 6  # the scalars every step
    assert [r["step"] for r in steps if "timestep_grad_norms" in r] == [3, 6]


def test_step_records_match_an_independent_computation(monkeypatch):
    """timestep_grad_norms and hidden_grad_norms from a real training run, in float64,
    against the reference route at the same weights on the same batch."""
    torch.set_default_dtype(torch.float64)
    try:
        p = preset("adding_lstm", "train.steps=2", "train.probe_every=1", "train.optimizer=sgd",
                   model_layers=[dict(cell="gru", hidden_size=6, bidirectional=True, dropout=0.0),
                                 dict(cell="lstm", hidden_size=5, bidirectional=False, dropout=0.0)])
        trainer = Trainer(p, probe_budget=None)
        seen, last = [], {}
        loss_fn = trainer.task.loss

        def spying_loss(output, batch):  # the batch (and weights) each forward uses
            last["batch"] = batch
            if trainer.model.tap_inputs:  # a training forward, not the probe's
                seen.append((batch, weights(trainer)))
            return loss_fn(output, batch)

        monkeypatch.setattr(trainer.task, "loss", spying_loss)
        compared = []
        for record in trainer.run():
            if record["kind"] == "step":
                batch, before = seen[record["step"] - 1]
                after = weights(trainer)
                trainer.model.load_state_dict(before)
                ref_taps, _ = reference_norms(trainer.model, lambda m: loss_fn(m(batch.x), batch))
                trainer.model.load_state_dict(after)
                for name, ref in ref_taps.items():
                    np.testing.assert_allclose(record["timestep_grad_norms"][name], ref.numpy(), rtol=1e-5)
                compared.append("step")
            if record["kind"] == "probe":  # at the weights of the moment, on the batch it ran on
                batch = last["batch"]
                _, ref_hidden = reference_norms(trainer.model, lambda m: loss_fn(m(batch.x), batch))
                for name, ref in ref_hidden.items():
                    np.testing.assert_allclose(record["hidden_grad_norms"][name], ref.numpy(), rtol=1e-5)
                compared.append("probe")
        assert compared == ["probe", "step", "probe", "step", "probe"]
    finally:
        torch.set_default_dtype(torch.float32)


# ----------------------------------------------------------------------------- control


def test_stop_takes_effect_within_one_step():
    trainer = Trainer(preset("adding_lstm", "train.steps=50"))
    records = records_of(trainer, stop_after=3)
    assert [r["step"] for r in kinds(records, "step")] == [1, 2, 3]
    assert records[-1]["kind"] == "end" and records[-1]["status"] == "stopped" and records[-1]["step"] == 3


def test_pause_holds_the_trainer_until_resume():
    control = TrainControl()
    trainer = Trainer(preset("adding_lstm", "train.steps=5"), control=control)
    gen = trainer.run()
    got = []
    for record in gen:
        got.append(record)
        if record["kind"] == "step" and record["step"] == 2:
            break
    control.pause()
    arrived = threading.Event()
    box = {}

    def consume():
        box["record"] = next(gen)
        arrived.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    assert not arrived.wait(0.5), "a paused trainer took a step"
    assert control.paused
    control.resume()
    assert arrived.wait(60)
    worker.join()
    assert box["record"]["kind"] == "step" and box["record"]["step"] == 3
    rest = list(gen)
    assert rest[-1]["status"] == "finished" and rest[-1]["step"] == 5


def test_stop_while_paused_ends_the_run():
    control = TrainControl()
    trainer = Trainer(preset("adding_lstm", "train.steps=5"), control=control)
    records = []
    for record in trainer.run():
        records.append(record)
        if record["kind"] == "step" and record["step"] == 1:
            control.pause()
            threading.Timer(0.2, control.stop).start()
    assert records[-1]["status"] == "stopped" and records[-1]["step"] == 1


# ----------------------------------------------------------------------------- seeds and resume


def test_same_seed_repeats_bit_for_bit_and_another_seed_does_not():
    p = preset("adding_lstm", "train.steps=5", "model.layers.0.dropout=0.3", "train.probe_every=2")
    runs = []
    for seed in (3, 3, 4):
        trainer = Trainer(with_overrides(p, [f"train.seed={seed}"]))
        losses = [r["loss"] for r in records_of(trainer) if r["kind"] == "step"]
        runs.append((losses, weights(trainer)))
    assert runs[0][0] == runs[1][0]
    assert_same_weights(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_the_probe_does_not_change_the_training_run():
    p = preset("adding_lstm", "train.steps=4", "model.layers.0.dropout=0.3")
    a = Trainer(with_overrides(p, ["train.probe_every=1"]), probe_budget=None)
    b = Trainer(with_overrides(p, ["train.probe_every=0"]))
    assert len(kinds(records_of(a), "probe")) == 5 and not kinds(records_of(b), "probe")
    assert_same_weights(weights(a), weights(b))


@pytest.mark.parametrize("case", ["adding", "toy_epochs", "toy_tbptt"])
def test_resume_from_checkpoint_continues_bit_for_bit(tmp_path, case):
    """Stop at step 3, resume from the checkpoint: the final weights equal those of an
    uninterrupted run (data position, RNG, optimizer state and TBPTT carry restored)."""
    if case == "adding":
        p = preset("adding_lstm", "train.steps=7", "model.layers.0.dropout=0.25", "train.probe_every=2",
                   "train.checkpoint_every=3")
        make = lambda: None  # noqa: E731  (the preset's own task)
    else:
        extra = ["train.tbptt=6"] if case == "toy_tbptt" else ["train.epochs=3"]
        p = preset("adding_lstm", "train.steps=8", "train.batch_size=3", "model.topology=many_to_many",
                   "model.layers.0.dropout=0.25", "train.checkpoint_every=4", "model.head.kind=regression", *extra)
        # toy_epochs: 4 batches an epoch, the stop falls inside one; toy_tbptt: T=12 in 2 chunks, inside a batch
        n = 10 if case == "toy_epochs" else 7
        make = lambda: ToyStream({"n": n})  # noqa: E731
    whole = Trainer(p, run_dir=tmp_path / "whole", task=make())
    whole_records = records_of(whole)
    assert whole_records[-1]["status"] == "finished"
    first = Trainer(p, run_dir=tmp_path / "split", task=make())
    assert records_of(first, stop_after=3)[-1]["status"] == "stopped"
    second = Trainer(p, run_dir=tmp_path / "split", task=make(), resume=True)
    second_records = records_of(second)
    assert second_records[0]["resumed_from"] and second_records[0]["step"] == 3
    assert [r["step"] for r in kinds(second_records, "step")] == list(range(4, whole_records[-1]["step"] + 1))
    assert_same_weights(weights(whole), weights(second))
    whole_losses = [r["loss"] for r in kinds(whole_records, "step")][3:]
    assert [r["loss"] for r in kinds(second_records, "step")] == whole_losses
    # and the weights file the run leaves is the same too
    assert_same_weights(ckpt.read_weights(tmp_path / "whole" / "model.safetensors"),
                        ckpt.read_weights(tmp_path / "split" / "model.safetensors"))


class CountingDraws:
    """A task whose training batches are counted as they are drawn."""

    def __init__(self, task):
        self.task, self.draws = task, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def train_batches(self, batch_size, generator):
        for batch in self.task.train_batches(batch_size, generator):
            self.draws += 1
            yield batch


def test_a_resumed_endless_stream_replays_one_span_at_most_and_continues_bit_for_bit(monkeypatch, tmp_path):
    """Generated (endless) data restarts its iterator every ENDLESS_SPAN batches, so a
    resume replays at most that many draws, not every batch since the run began."""
    from workbench.engine.trainer import _DataCursor

    monkeypatch.setattr(_DataCursor, "ENDLESS_SPAN", 4)
    p = preset("adding_lstm", "train.steps=13", "model.layers.0.dropout=0.25", "train.checkpoint_every=10")
    whole = Trainer(p, run_dir=tmp_path / "whole")
    whole_records = records_of(whole)
    first = Trainer(p, run_dir=tmp_path / "split")
    assert records_of(first, stop_after=10)[-1]["status"] == "stopped"
    task = CountingDraws(make_task(p))
    second = Trainer(p, run_dir=tmp_path / "split", task=task, resume=True)
    records = second.run()
    assert next(records)["step"] == 10
    assert task.draws == 10 % 4  # the replay: the draws since the last restart, not 10
    rest = [r for r in records if r["kind"] == "step"]
    assert [r["loss"] for r in rest] == [r["loss"] for r in kinds(whole_records, "step")][10:]
    assert_same_weights(weights(whole), weights(second))


def test_checkpoints_at_intervals_and_the_end(tmp_path):
    p = preset("adding_lstm", "train.steps=5", "train.checkpoint_every=2")
    records = records_of(Trainer(p, run_dir=tmp_path))
    marks = kinds(records, "checkpoint")
    assert [(r["step"], r["final"]) for r in marks] == [(2, False), (4, False), (5, True)]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000005"
    assert (tmp_path / "model.safetensors").exists()


# ----------------------------------------------------------------------------- the non-finite guard


class NaNAt:
    """Wraps a task's loss: NaN (or, with where='grad', finite loss and NaN gradients)
    at the given training forward (1-based)."""

    def __init__(self, task, at: int, where: str = "loss"):
        self.task, self.at, self.where, self.calls = task, at, where, 0
        self.inner = task.loss
        task.loss = self

    def __call__(self, output, batch):
        loss = self.inner(output, batch)
        if not torch.is_grad_enabled():
            return loss
        self.calls += 1
        if self.calls == self.at:
            if self.where == "loss":
                return loss * float("nan")
            return loss + 0.0 * torch.sqrt(output * 0.0).sum()  # d sqrt(x)/dx at 0 = inf -> NaN
        return loss


@pytest.mark.parametrize("where,what", [("loss", "loss"), ("grad", "gradients")])
def test_non_finite_step_is_skipped_and_weights_kept(where, what):
    """A non-finite loss at step 3 rolls the weights back to before update 2 (the last
    weights whose loss was finite); non-finite gradients with a finite loss keep the
    weights of step 2 (they gave a finite loss)."""
    p = preset("adding_lstm", "train.steps=5", "train.on_non_finite=skip")
    trainer = Trainer(p)
    NaNAt(trainer.task, at=3, where=where)
    seen = {}
    records = []
    for record in trainer.run():
        records.append(record)
        if record["kind"] == "step":
            seen[record["step"]] = weights(trainer)
        if record["kind"] == "non_finite":
            seen["after"] = weights(trainer)
    bad = kinds(records, "non_finite")
    assert len(bad) == 1 and bad[0]["step"] == 3 and bad[0]["what"] == what and bad[0]["action"] == "skipped"
    assert "step 3" in bad[0]["message"]
    assert bad[0]["restored"] == (what == "loss")
    assert_same_weights(seen[1] if what == "loss" else seen[2], seen["after"])
    assert [r["step"] for r in kinds(records, "step")] == [1, 2, 4, 5]
    assert records[-1]["status"] == "finished"
    assert all(torch.isfinite(v).all() for v in weights(trainer).values())


def test_non_finite_stop_mode_ends_the_run_with_the_last_good_weights(tmp_path):
    p = preset("adding_lstm", "train.steps=5", "train.on_non_finite=stop")
    trainer = Trainer(p, run_dir=tmp_path)
    NaNAt(trainer.task, at=2)
    records = []
    for record in trainer.run():
        records.append(record)
        if record["kind"] == "start":
            good = weights(trainer)  # the loss of step 2 is NaN: back to before update 1
    bad = kinds(records, "non_finite")[0]
    assert bad["step"] == 2 and bad["action"] == "stopped"
    end = records[-1]
    assert end["status"] == "failed" and "step 2" in end["message"] and end["step"] == 1
    assert_same_weights(good, weights(trainer))
    assert_same_weights(good, ckpt.read_weights(tmp_path / "model.safetensors"))


def test_an_update_that_blows_up_the_weights_is_rolled_back():
    """Weights made non-finite by an update are caught at the next step's loss and
    replaced by the weights from before that update."""
    trainer = Trainer(preset("adding_lstm", "train.steps=4"))
    records, seen = [], {}
    original_step = None
    for record in trainer.run():
        records.append(record)
        if record["kind"] == "start":
            original_step = trainer.optimizer.step

            def exploding_step(*args, **kwargs):  # the 2nd update writes inf into a weight
                result = original_step(*args, **kwargs)
                if trainer.state.step == 1:
                    with torch.no_grad():
                        trainer.params[0].view(-1)[0] = float("inf")
                return result

            trainer.optimizer.step = exploding_step
        if record["kind"] == "step" and record["step"] == 1:
            seen["before_update_2"] = weights(trainer)
        if record["kind"] == "non_finite":
            seen["after"] = weights(trainer)
    bad = kinds(records, "non_finite")
    assert len(bad) == 1 and bad[0]["step"] == 3 and bad[0]["restored"]
    assert "rolled back to those before the update of step 2" in bad[0]["message"]
    assert_same_weights(seen["before_update_2"], seen["after"])
    assert all(torch.isfinite(v).all() for v in weights(trainer).values())
    assert records[-1]["status"] == "finished"


def test_a_huge_learning_rate_is_caught_not_propagated():
    p = preset("adding_rnn_tanh", "train.steps=12", "train.optimizer=sgd", "train.lr=100", "train.clip=none",
               "train.momentum=0", "model.init.recurrent=identity", "model.layers.0.cell=rnn_relu",
               "model.init.spectral_radius=3")
    trainer = Trainer(p)
    records = records_of(trainer)
    assert kinds(records, "non_finite"), "expected the blow-up to be reported"
    assert all(torch.isfinite(v).all() for v in weights(trainer).values())
    assert all(math.isfinite(r["loss"]) for r in kinds(records, "step"))


# ----------------------------------------------------------------------------- clipping


def _sgd_update_size(clip: str, value: float):
    p = preset("adding_lstm", "train.steps=1", "train.optimizer=sgd", "train.momentum=0", "train.lr=1",
               f"train.clip={clip}", f"train.clip_value={value}")
    trainer = Trainer(p)
    gen = trainer.run()
    next(gen)
    before = torch.cat([q.detach().reshape(-1).clone() for q in trainer.params])
    step = next(r for r in gen if r["kind"] == "step")
    after = torch.cat([q.detach().reshape(-1) for q in trainer.params])
    return step, before - after


def test_clip_by_norm_caps_the_update_and_reports_both_norms():
    step, update = _sgd_update_size("none", 1.0)
    assert step["grad_norm"] == pytest.approx(step["grad_norm_clipped"]) and not step["clipped"]
    assert float(update.norm()) == pytest.approx(step["grad_norm"], rel=1e-4)
    limit = step["grad_norm"] / 4
    step, update = _sgd_update_size("norm", limit)
    assert step["clipped"] and step["grad_norm_clipped"] == pytest.approx(limit, rel=1e-4)
    assert float(update.norm()) == pytest.approx(limit, rel=1e-4)


def test_clip_by_value_caps_each_gradient_entry():
    step, update = _sgd_update_size("none", 1.0)
    limit = float(update.abs().max()) / 3
    step, update = _sgd_update_size("value", limit)
    assert float(update.abs().max()) <= limit * (1 + 1e-6)
    assert step["clipped"] and step["grad_norm_clipped"] < step["grad_norm"]
    assert float(update.norm()) == pytest.approx(step["grad_norm_clipped"], rel=1e-4)


# ----------------------------------------------------------------------------- schedules, optimizers


def test_learning_rate_schedules():
    p = preset("adding_lstm", "train.steps=100", "train.lr=0.1")
    t = p.train
    assert [lr_factor(t, s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    t = with_overrides(p, ["train.schedule=cosine"]).train
    assert lr_factor(t, 0, 100) == 1.0 and lr_factor(t, 50, 100) == pytest.approx(0.5)
    assert lr_factor(t, 100, 100) == pytest.approx(0.0, abs=1e-12)
    t = with_overrides(p, ["train.schedule=step", "train.step_size=10", "train.gamma=0.5"]).train
    assert [lr_factor(t, s, 100) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    t = with_overrides(p, ["train.schedule=cosine", "train.warmup_steps=10"]).train
    assert [lr_factor(t, s, 100) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(t, 10, 100) == 1.0 and lr_factor(t, 55, 100) == pytest.approx(0.5)
    # and the trainer applies it
    p2 = with_overrides(p, ["train.steps=4", "train.schedule=step", "train.step_size=2", "train.gamma=0.1",
                            "train.warmup_steps=0"])
    trainer = Trainer(p2)
    lrs = [r["lr"] for r in records_of(trainer) if r["kind"] == "step"]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop)])
def test_each_optimizer_trains(name, cls):
    trainer = Trainer(preset("adding_lstm", "train.steps=3", f"train.optimizer={name}", "train.lr=0.01"))
    gen = trainer.run()
    next(gen)
    start = weights(trainer)
    records = list(gen)
    assert isinstance(trainer.optimizer, cls)
    assert records[-1]["status"] == "finished"
    assert any(not torch.equal(start[k], v) for k, v in weights(trainer).items())


# ----------------------------------------------------------------------------- epochs and TBPTT


def test_epochs_end_the_run_before_the_step_budget():
    p = preset("adding_lstm", "train.steps=100", "train.epochs=2", "train.batch_size=4",
               "model.topology=many_to_many")
    trainer = Trainer(p, task=ToyStream({"n": 10}))  # 3 batches an epoch
    records = records_of(trainer)
    assert records[0]["total_steps"] == 6
    assert len(kinds(records, "step")) == 6 and records[-1]["status"] == "finished"
    assert records[-1]["epoch"] == 2
    p = with_overrides(p, ["train.steps=4"])
    records = records_of(Trainer(p, task=ToyStream({"n": 10})))
    assert len(kinds(records, "step")) == 4 and records[-1]["epoch"] == 1


def test_epochs_do_not_cap_endless_data():
    # the cap counts passes over finite data (a user's short clip); a generated default has
    # none, and the same preset runs its steps there
    trainer = Trainer(preset("adding_lstm", "train.epochs=2", "train.steps=3", "train.eval_every=0",
                             "train.probe_every=0", "train.checkpoint_every=0"))
    records = records_of(trainer)
    assert records[0]["total_steps"] == 3 and len(kinds(records, "step")) == 3


def _param_grads(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def test_tbptt_many_to_many_carries_the_state_and_cuts_the_gradient():
    """T=12, tbptt=5: three optimizer steps per batch. With an lr too small to move the
    weights, chunk k's loss is the loss of positions [5k, 5k+5) of the whole-sequence
    forward (the state is carried), and its gradient is that of a forward whose state
    entering the chunk is a constant (detached)."""
    p = preset("adding_lstm", "train.steps=3", "train.batch_size=3", "train.tbptt=5", "model.topology=many_to_many",
               "train.optimizer=sgd", "train.momentum=0", "train.lr=1e-30", "train.clip=none")
    task = ToyStream({"n": 3})
    trainer = Trainer(p, task=task)
    grads = []
    records = []
    for record in trainer.run():
        records.append(record)
        if record["kind"] == "step":
            grads.append(_param_grads(trainer.model).clone())
    steps = kinds(records, "step")
    assert len(steps) == 3 and [len(r["timestep_grad_norms"]["layers.0"]) for r in steps] == [5, 5, 2]
    model = trainer.model
    batch = next(task.train_batches(3, torch.Generator().manual_seed(p.train.seed)))
    with torch.no_grad():
        whole = model(batch.x)
    for k, (s, e) in enumerate([(0, 5), (5, 10), (10, 12)]):
        piece = type(batch)(x=batch.x[:, s:e], y=batch.y[:, s:e], mask=batch.mask[:, s:e])
        assert steps[k]["loss"] == pytest.approx(float(task.loss(whole[:, s:e], piece)), rel=1e-5)
        model.zero_grad(set_to_none=True)
        state = None
        if s:
            with torch.no_grad():
                _, state = model(batch.x[:, :s], initial_states=None, return_states=True)
        out, _ = model(piece.x, initial_states=state, return_states=True)
        task.loss(out, piece).backward()
        torch.testing.assert_close(grads[k], _param_grads(model), rtol=1e-5, atol=1e-8)


def test_tbptt_many_to_one_backpropagates_through_the_last_chunk_only():
    p = preset("adding_lstm", "train.steps=1", "train.tbptt=5", "train.optimizer=sgd", "train.momentum=0",
               "train.lr=1e-30", "train.clip=none", "train.probe_every=1")
    trainer = Trainer(p, probe_budget=None)
    records = []
    for record in trainer.run():
        records.append(record)
        if record["kind"] == "step":
            grad = _param_grads(trainer.model).clone()
    step = kinds(records, "step")[0]
    probe = kinds(records, "probe")[0]
    assert len(step["timestep_grad_norms"]["layers.0"]) == 2  # T=12: chunks 5, 5, 2
    assert len(probe["hidden_grad_norms"]["layers.0"]) == 2
    model, task = trainer.model, trainer.task
    batch = next(task.train_batches(4, torch.Generator().manual_seed(p.train.seed)))
    with torch.no_grad():
        assert step["loss"] == pytest.approx(float(task.loss(model(batch.x), batch)), rel=1e-5)
        _, state = model(batch.x[:, :10], return_states=True)
    model.zero_grad(set_to_none=True)
    task.loss(model(batch.x[:, 10:], initial_states=state), batch).backward()
    torch.testing.assert_close(grad, _param_grads(model), rtol=1e-5, atol=1e-8)


def test_tbptt_many_to_one_with_padded_rows_takes_each_row_at_its_last_step():
    p = preset("adding_lstm", "train.steps=1", "train.batch_size=7", "train.tbptt=5", "train.optimizer=sgd",
               "train.momentum=0", "train.lr=1e-30")
    task = ToyStream({"n": 7}, topology="many_to_one")
    trainer = Trainer(p, task=task)
    step = kinds(records_of(trainer), "step")[0]
    batch = next(task.train_batches(7, torch.Generator().manual_seed(p.train.seed)))
    assert len(set(batch.lengths.tolist())) > 1
    with torch.no_grad():
        expected = float(task.loss(trainer.model(batch.x, None, batch.lengths), batch))
    assert step["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("case", ["encoder_decoder", "bidirectional"])
def test_tbptt_is_refused_where_it_cannot_apply(case):
    from workbench.spec import LayerSpec

    p = preset("adding_lstm", "train.tbptt=5")
    if case == "encoder_decoder":  # checked on the spec, before any data or model exists
        p.model.topology = "encoder_decoder"
        p.model.decoder_layers = [LayerSpec(cell="gru", hidden_size=4)]
    else:
        p.model.layers[0].bidirectional = True
    with pytest.raises(SpecError) as err:
        Trainer(p, task=make_task(preset("adding_lstm")))
    assert err.value.field == "train.tbptt"


# ----------------------------------------------------------------------------- devices, precision


def test_precision_is_off_on_the_cpu():
    records = records_of(Trainer(preset("adding_lstm", "train.steps=1", "train.precision=bf16")))
    assert records[0]["precision"] == "fp32" and records[0]["device"] == "cpu"
    assert records[-1]["status"] == "finished"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_named_device_that_is_absent_is_a_clear_error():
    trainer = Trainer(preset("adding_lstm", "train.device=cuda"))
    with pytest.raises(TrainingError, match="train.device"):
        next(trainer.run())


def test_metrics_file_round_trip(tmp_path):
    records = records_of(Trainer(preset("adding_lstm", "train.steps=2", "train.probe_every=1")))
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(record_to_json(r) + "\n" for r in records) + '{"kind": "st')  # torn last line
    back = read_metrics(path)
    assert [type(r) for r in back] == [type(r) for r in records]
    step, written = kinds(back, "step")[0], kinds(records, "step")[0]
    assert step.loss == written.loss  # scalars in full
    assert step.timestep_grad_norms["layers.0"] == pytest.approx(  # profiles to 4 significant digits
        written.timestep_grad_norms["layers.0"].tolist(), rel=1e-3)


def test_a_step_moves_its_numbers_to_the_host_once(monkeypatch):
    """The records' cost: one device-to-host transfer per step (loss, norms, taps and
    parameter norms together) and no other synchronising call."""
    calls = []
    for name in ("item", "__float__", "__bool__", "__int__", "tolist", "cpu"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    trainer = Trainer(preset("adding_lstm", "train.steps=8", "train.probe_every=0"))
    for record in trainer.run():
        if record["kind"] == "step" and record["step"] == 4:
            calls.clear()
        if record["kind"] == "step" and record["step"] == 8:
            assert "timestep_grad_norms" in record
            break
    assert calls == ["cpu"] * 4
