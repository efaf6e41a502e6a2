"""Next-frame prediction on real footage, against copying the last frame.

For each shared clip (../shared/data/video: cockatoo.mp4, realshort.mp4,
newtonscradle.gif) and for generated bouncing shapes, train each built-in next-frame
preset (the flattening LSTM with the residual head, ConvLSTM, ConvGRU; all start out
copying the last frame exactly) on the clip's first 80% of frames for at most a fixed
step budget (each preset's train.epochs caps the passes over a clip: on a 36-frame clip
25 passes are 50 steps; "steps" is what ran), then score every held-out frame of the last 20%, each predicted from the
``window`` frames before it: MSE as a ratio to copying the last frame (below 1: the model
beats doing nothing), PSNR and SSIM beside copy-last's, and the free-running rollout
(the model fed its own frames) 1, 5 and 10 frames ahead as a ratio to copy-last at the
same horizon (horizons the held-out part has no room for are left empty). Beside
copy-last, the linear predictor the presets' extrapolating head contains, fitted alone by
least squares (``linear_baseline``: x_t + a * (x_t - x_{t-1})): "linear/copy" is its
ratio, "mse/linear" the model's over it (below 1: the network adds to it). Training
time is seconds of wall clock on one torch thread. Registered in bench/quality.py
as the benchmark "video".
"""
from __future__ import annotations

import argparse
import time

CLIPS = ("cockatoo.mp4", "realshort.mp4", "newtonscradle.gif")
MODELS = (("LSTM + residual", "video_nextframe_lstm"), ("ConvLSTM", "video_nextframe_convlstm"),
          ("ConvGRU", "video_nextframe_convgru"))


def linear_baseline(task, max_batches: int = 64) -> dict:
    """The linear next-frame predictor the extrapolating head contains, fitted alone:
    x_hat_{t+1} = x_t + a_c * (x_t - x_{t-1}), a_c per colour channel by least squares on
    the training windows' (motion, next change) pairs (generated clips: ``max_batches``
    batches of them), scored on the held-out frames the models are (a window's first frame
    has no predecessor: no motion, as in the model). Returns "alpha" [C] and "mse"."""
    import torch

    g = torch.Generator().manual_seed(0)
    num = den = 0.0
    for b, batch in enumerate(task.train_batches(32, g)):
        if b >= max_batches:
            break
        x = batch.x.double()  # [B, W, C, H, W]
        y = batch.y.double().reshape(x.shape)
        motion, change = x[:, 1:] - x[:, :-1], y[:, 1:] - x[:, 1:]
        num = num + (motion * change).sum(dim=(0, 1, 3, 4))  # [C]
        den = den + (motion * motion).sum(dim=(0, 1, 3, 4))
    alpha = num / den.clamp_min(1e-12) if torch.is_tensor(den) else torch.zeros(task.frame_shape[0])
    sq = count = 0.0
    for batch in task.val_batches(256, 10**9):
        x = batch.x.double()
        before = torch.cat([x[:, :1], x[:, :-1]], dim=1)
        guess = x + alpha[:, None, None] * (x - before)
        err = (guess.flatten(2) - batch.y.double()).pow(2).mean(-1)  # [B, W]
        m = torch.ones_like(err) if batch.mask is None else batch.mask.double()
        sq, count = sq + float((err * m).sum()), count + float(m.sum())
    return {"alpha": alpha.tolist(), "mse": sq / count}


def _run(preset_name: str, path: str, steps: int, overrides: list[str], device: str, seed: int) -> dict:
    from workbench import presets
    from workbench.engine.trainer import Trainer
    from workbench.spec import with_overrides
    from workbench.tasks import make_task

    preset = with_overrides(presets.load_builtin(preset_name), [
        f"data.path={path}", f"train.steps={steps}", "train.eval_every=0", "train.probe_every=0",
        "train.checkpoint_every=0", f"train.device={device}", f"train.seed={seed}", "train.log_every=1000000",
    ] + overrides)
    task = make_task(preset)
    trainer = Trainer(preset, task=task)
    started = time.perf_counter()
    step_times, end = [], {}
    for record in trainer.run():
        if record["kind"] == "step":
            step_times.append(record["time_s"])
        elif record["kind"] == "end":
            end = record
    seconds = time.perf_counter() - started
    if end.get("status") != "finished":
        raise RuntimeError(f"{preset_name} on {path}: {end.get('status')}: {end.get('message')}")
    metrics = end["metrics"]
    base = task.baseline()
    rolled = task.free_running_metrics(trainer.model)
    linear = linear_baseline(task)
    row = {"mse/copy": metrics["mse"] / base["copy_last_mse"],
           "linear/copy": linear["mse"] / base["copy_last_mse"], "mse/linear": metrics["mse"] / linear["mse"],
           "alpha (linear)": ", ".join(f"{a:.2f}" for a in linear["alpha"]),
           "mse/mean": metrics["mse"] / base["mean_frame_mse"] if "mean_frame_mse" in base else None,
           "psnr": metrics["psnr"], "copy psnr": base["copy_last_psnr"],
           "ssim": metrics["ssim"], "copy ssim": base["copy_last_ssim"]}
    for h in (1, 5, 10):
        key = f"rollout_mse_h{h}"
        row[f"roll h{h}/copy"] = rolled[key] / base[f"copy_last_mse_h{h}"] if key in rolled else None
    # the steps it ran: the preset's train.epochs caps passes over a short clip below ``steps``
    row.update({"steps": len(step_times), "train s": seconds,
                "ms/step": 1000 * sorted(step_times)[len(step_times) // 2] if step_times else None})
    return row


def bench_video(args: argparse.Namespace) -> tuple[str, list[dict]]:
    from quality import _shared  # noqa: PLC0415  (bench/ is this script's folder)

    steps = {name: args.video_steps for _label, name in MODELS}
    frames = ["data.options.width=16", "data.options.height=16", "data.options.window=8"]
    rows = []
    cases = [(clip, str(_shared("video", clip))) for clip in CLIPS] + [("moving shapes (generated)", "")]
    for clip, path in cases:
        for label, name in MODELS:
            extra = frames + (["data.options.val_clips=128"] if not path else [])
            print(f"  {label} on {clip} ...", flush=True)
            row = _run(name, path, steps[name], extra, args.device, seed=0)
            rows.append({"clip": clip, "model": label, **row})
            print(f"    MSE / copy-last {row['mse/copy']:.3f} (linear {row['linear/copy']:.3f}) in {row['train s']:.0f} s", flush=True)
    return (f"Next-frame prediction, 16x16 grey, windows of 8 frames, at most {args.video_steps} steps each (the "
            f"presets' train.epochs caps passes over a clip), last 20% "
            f"held out (generated: 128 held-out clips), on {args.device}, one torch thread"), rows
