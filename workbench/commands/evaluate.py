"""`workbench eval RUN_DIR [--data PATH]`: a finished run's metrics, as JSON on stdout.

The run is reopened from its folder (preset.json, task.json, the weights; see
workbench.export.runfolder). Without --data it is evaluated on the whole of its task's
validation data: generated tasks regenerate it from the run's seed, file tasks read
their file again but keep the run's vocabularies. With --data PATH the whole file or
folder (in the task's format) is the evaluation set, e.g. a treebank's test split for a
tagger, or a folder of audio clips labelled like the training clips for a speech model.

Besides the task's averaged metrics (the same the trainer reports, over all batches,
not a sample) it adds the task's derived metrics (e.g. perplexity), those of the data
read as one stream with the state carried (a language model's ``nats_per_char_streamed``:
the standard held-out figure, beside the windowed ``nats_per_char``), and those that need
free-running inference (e.g. greedy-decoding exact match, next-frame rollouts scored K
frames ahead), and the trivial baseline.
Tasks that write text from a file (translation, chatbot replies) add corpus scores of
the decoded text (BLEU and chrF, greedy and ``--beam`` width) and their baselines'.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

from workbench.commands.argtypes import non_negative_int, positive_int


def evaluate_run(run_dir: str, data: str | None = None, batch_size: int | None = None, max_batches: int = 0,
                 device: str = "auto", decode: bool = True, beam: int = 4, mbr: int = 0,
                 rerank: int | None = None) -> dict:
    """Evaluate a run folder; returns the JSON-ready result."""
    import torch

    from workbench.engine.trainer import WHOLE_SET, resolve_device
    from workbench.export.runfolder import load_run

    run = load_run(run_dir)
    task, model, preset = run.task, run.model, run.preset
    if rerank is not None and hasattr(task.options, "rerank"):
        task.options.rerank = rerank  # chatbots: retrieve-then-rerank over this many retrieved replies (0: off)
    if data:
        task.use_eval_file(data)
    else:
        task.prepare()  # the validation data again; restored vocabularies are kept
    dev = resolve_device(device)
    model.to(dev).eval()
    batch_size = batch_size or preset.train.batch_size
    sums: dict[str, list[float]] = {}
    loss_sum, n = 0.0, 0
    started = time.perf_counter()
    with torch.no_grad():
        for batch in task.val_batches(batch_size, max_batches or WHOLE_SET):
            batch = batch.to(dev)
            output = model(batch.x, batch.y_in, batch.lengths)
            loss_sum += float(task.loss(output, batch)) * batch.size
            n += batch.size
            found = dict(task.metric_sums(output, batch))
            if decode:
                found.update(task.decode_metrics(model, batch))
            for name, (s, c) in found.items():
                acc = sums.setdefault(name, [0.0, 0.0])
                acc[0] += s
                acc[1] += c
    metrics: dict[str, float] = {"val_loss": loss_sum / n if n else float("nan")}
    metrics.update({name: s / c for name, (s, c) in sums.items() if c})
    with torch.no_grad():
        metrics.update(task.stream_metrics(model))  # e.g. a language model's text read as one stream
    if decode:
        metrics.update(task.free_running_metrics(model))
    metrics.update(task.derived_metrics(metrics))
    baseline = task.baseline()
    if decode and hasattr(task, "corpus_metrics"):
        with torch.no_grad():
            corpus = task.corpus_metrics(model, dev, batch_size, n, beam, mbr=mbr)
        metrics.update(corpus.get("metrics", {}))
        baseline.update(corpus.get("baseline", {}))
    return {
        "run_dir": str(run.run_dir),
        "task": preset.data.task,
        "data": data or (preset.data.path or "built-in") + " (validation part)",
        "examples": n,
        "metrics": {k: _finite(v) for k, v in metrics.items()},
        "baseline": {k: _finite(v) for k, v in baseline.items()},
        "main_metric": task.main_metric,
        "weights": str(run.weights),
        "time_s": round(time.perf_counter() - started, 3),
    }


def _finite(value: float):
    value = float(value)
    return value if math.isfinite(value) else str(value)  # JSON has no NaN


def cmd_eval(args: argparse.Namespace) -> int:
    from workbench.engine import cpu_policy

    # training's thread policy (cores - 1, at least one; --threads or WORKBENCH_THREADS overrides)
    policy = cpu_policy.apply("cli eval", threads=args.threads or cpu_policy.default_threads())
    result = evaluate_run(args.run_dir, data=args.data, batch_size=args.batch_size, max_batches=args.max_batches,
                          device=args.device, decode=not args.no_decode, beam=args.beam, mbr=args.mbr,
                          rerank=args.rerank)
    result["cpu_policy"] = policy
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a finished run on its validation data or a file; prints JSON")
    p.add_argument("run_dir", help="a run folder written by `workbench train`")
    p.add_argument("--data", help="evaluate on the whole of this file or folder (in the task's format: e.g. a "
                                  "folder of audio clips for a speech model) instead")
    p.add_argument("--batch-size", type=positive_int, help="evaluation batch size (default: the run's)")
    p.add_argument("--max-batches", type=positive_int, default=0, help="stop after this many batches (default: all)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: the cores less one, at least one; "
                   "or WORKBENCH_THREADS)")
    p.add_argument("--no-decode", action="store_true",
                   help="skip metrics that need free-running decoding (greedy exact match, BLEU, chrF, CTC beam search)")
    p.add_argument("--beam", type=positive_int, default=4,
                   help="beam width for the beam-search scores of text-writing tasks (1: greedy only); default 4")
    p.add_argument("--mbr", type=positive_int, default=0, metavar="N",
                   help="text-writing tasks: also score minimum Bayes risk decoding over N samples (bleu_mbr, chrf_mbr)")
    p.add_argument("--rerank", type=non_negative_int, metavar="K",
                   help="chatbots: score retrieve-then-rerank over the beam-search reply and the K nearest "
                   "training questions' replies (bleu_rerank, chrf_rerank; 0: off; default: the run's "
                   "data.options.rerank)")
    p.set_defaults(func=cmd_eval)
