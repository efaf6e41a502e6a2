"""Learning quality on real data: each benchmark trains a built-in preset on a real file
from ../shared/data and prints one table against the baselines measured in the same run.

    .venv/bin/python bench/quality.py                   # every benchmark
    .venv/bin/python bench/quality.py --only timeseries # one (comma-separate several)

Benchmarks are entries of BENCHMARKS: name -> function(args) -> (title, rows), where rows
are dicts with the same keys (the table's columns). They run on the CPU with
``--threads`` torch threads unless ``--device`` says otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------- helpers


def train_preset(preset, device: str = "cpu", seed: int = 0):
    """Train ``preset`` to its step budget; return (task, model, seconds, the final
    evaluation's metrics)."""
    from workbench.engine.trainer import Trainer
    from workbench.spec import with_overrides
    from workbench.tasks import make_task

    preset = with_overrides(preset, [f"train.device={device}", f"train.seed={seed}", "train.checkpoint_every=0",
                                     "train.probe_every=0"])
    task = make_task(preset)
    trainer = Trainer(preset, task=task)
    started = time.perf_counter()
    end = {}
    for record in trainer.run():
        if record["kind"] == "end":
            end = record
    if end.get("status") != "finished":
        raise RuntimeError(f"{preset.name}: training ended {end.get('status')}: {end.get('message')}")
    return task, trainer.model, time.perf_counter() - started, end.get("metrics", {})


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (no rows)")
        return
    cols = list(rows[0])
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ----------------------------------------------------------------------------- time series

# (preset, what the data is) — the presets read the copies of ../shared/data/timeseries/...
# shipped in the package (workbench/builtin/data/timeseries/)
TIMESERIES_CASES = [
    ("forecast_temperature_lstm", "daily-min-temperatures.csv, next day"),
    ("forecast_airline_gru", "airline-passengers.csv, next 12 months"),
    ("forecast_sunspots_gru", "monthly-sunspots.csv, next month"),
]


def bench_timeseries(args) -> tuple[str, list[dict]]:
    """Each forecaster preset trained on its file (last 20% held out), scored on every
    held-out value in the file's units, against the seasonal-naive and last-value
    forecasts of the same values."""
    from workbench import presets

    rows = []
    for name, what in TIMESERIES_CASES:
        preset = presets.load_builtin(name)
        maes, mses, mases, secs = [], [], [], []
        for seed in range(args.seeds):
            task, model, seconds, _metrics = train_preset(preset, args.device, seed)
            res = task.validation_forecasts(model)
            err = res["predicted"] - res["actual"]
            scale = task.mase_scale
            maes.append(float(np.abs(err).mean()))
            mses.append(float((err ** 2).mean()))
            mases.append(float((np.abs(err) / scale).mean()))
            secs.append(seconds)
        base = task.baseline()
        cell = preset.model.layers[0].cell.upper()
        label = f"{cell} {preset.model.layers[0].hidden_size}"
        spread = f" (+-{np.std(maes):.3g}, {args.seeds} seeds)" if args.seeds > 1 else ""
        rows.append({"data": what, "forecaster": f"{label}, {preset.train.steps} steps",
                     "MAE": f"{np.mean(maes):.4g}{spread}", "MSE": float(np.mean(mses)), "MASE": float(np.mean(mases)),
                     "MAE / best baseline": float(np.mean(maes)) / base["mae"],
                     "train s": float(np.mean(secs))})
        season = preset.data.options.get("season", 1)
        rows.append({"data": "", "forecaster": f"seasonal naive (season {season})",
                     "MAE": f"{base['seasonal_naive_mae']:.4g}", "MSE": base["seasonal_naive_mse"],
                     "MASE": base["seasonal_naive_mase"],
                     "MAE / best baseline": base["seasonal_naive_mae"] / base["mae"], "train s": None})
        rows.append({"data": "", "forecaster": "last value",
                     "MAE": f"{base['last_value_mae']:.4g}", "MSE": base["last_value_mse"],
                     "MASE": base["last_value_mase"],
                     "MAE / best baseline": base["last_value_mae"] / base["mae"], "train s": None})
        print(f"  {name}: model MAE {np.mean(maes):.4g}, seasonal naive {base['seasonal_naive_mae']:.4g}, "
              f"last value {base['last_value_mae']:.4g}", flush=True)
    return "Time series: held-out MAE in the file's units (last 20% of each file)", rows


# ----------------------------------------------------------------------------- text: char-LM and POS tagging


def train_for_minutes(preset, minutes: float, device: str = "cpu", calibrate_steps: int = 30, steps: int = 0):
    """Train ``preset`` for at most ``minutes`` of wall-clock time (its periodic evals
    included), with the step budget sized so that its learning-rate schedule ends in
    that time: a short calibration run measures the step rate first (its time counts
    too). With ``steps``, exactly that many steps instead (no calibration, no time limit:
    the budget for a loaded machine, sized with bench/step_cost.py). Returns (task,
    model, seconds, steps done, eval records)."""
    from workbench.engine.trainer import Trainer
    from workbench.spec import with_overrides
    from workbench.tasks import make_task

    started = time.perf_counter()
    budget = minutes * 60.0 if not steps else float("inf")
    task = make_task(preset)
    if steps:
        return _train_steps(preset, task, steps, device, started, budget)
    probe = with_overrides(preset, [f"train.device={device}", f"train.steps={calibrate_steps}", "train.eval_every=0",
                                    "train.eval_batches=1", "train.checkpoint_every=0", "train.probe_every=0",
                                    "train.epochs=0"])
    times = [r["time_s"] for r in Trainer(probe, task=task).run() if r["kind"] == "step"]
    per_step = float(np.median(times[2:] or times))
    # periodic evals and the unmeasured overheads: keep ~8% of the budget in hand
    left = budget - (time.perf_counter() - started)
    steps = max(int(left * 0.92 / per_step), 1)
    if preset.train.epochs:
        steps = min(steps, preset.train.epochs * (task.epoch_size(preset.train.batch_size) or steps))
    return _train_steps(preset, task, steps, device, started, budget)


def _train_steps(preset, task, steps: int, device: str, started: float, budget: float):
    from workbench.engine.trainer import Trainer
    from workbench.spec import with_overrides

    run = with_overrides(preset, [f"train.device={device}", f"train.steps={steps}", "train.checkpoint_every=0"])
    trainer = Trainer(run, task=task)
    evals, done, recent = [], 0, []
    for record in trainer.run():
        if record["kind"] == "eval":
            evals.append({**record, "time_s": time.perf_counter() - started})
            main = task.main_metric
            train = f", training loss {np.mean(recent):.4f} (last {len(recent)} steps)" if recent else ""
            print(f"    step {record['step']:>6} of {steps}, {evals[-1]['time_s'] / 60:4.1f} min: "
                  f"{main} {record.get(main, float('nan')):.4f} (periodic eval){train}", flush=True)
        elif record["kind"] == "step":
            done = record["step"]
            recent = (recent + [float(record["loss"])])[-100:]  # overfitting shows as a gap to the evals
            if time.perf_counter() - started > budget:
                trainer.control.stop()  # the budget is a hard limit
        elif record["kind"] == "end" and record["status"] == "failed":
            raise RuntimeError(f"{preset.name}: training failed: {record['message']}")
    return task, trainer.model, time.perf_counter() - started, done, evals


def full_validation(task, model, batch_size: int, stream: bool = True) -> tuple[dict, float]:
    """The task's metrics over ALL of its validation data (not the periodic sample);
    ``stream``: with those of the data read as one stream (Task.stream_metrics)."""
    import torch

    started = time.perf_counter()
    model.eval()
    sums: dict[str, list[float]] = {}
    with torch.no_grad():
        for batch in task.val_batches(batch_size, 10**9):
            for name, (s, c) in task.metric_sums(model(batch.x, batch.y_in, batch.lengths), batch).items():
                acc = sums.setdefault(name, [0.0, 0.0])
                acc[0] += s
                acc[1] += c
    metrics = {k: s / c for k, (s, c) in sums.items() if c}
    metrics.update(task.derived_metrics(metrics))
    if stream:
        with torch.no_grad():
            metrics.update(task.stream_metrics(model))  # e.g. a language model's text read as one stream
    return metrics, time.perf_counter() - started


def _shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        raise SystemExit(f"the shared data file {path} is missing")
    return path


def bench_charlm(args) -> tuple[str, list[dict]]:
    """charlm_lstm (2x384 LSTM) on Tiny Shakespeare, last 10% held out, trained for
    --minutes (or --steps); validation nats/char over the whole held-out part, streamed
    (the text read as one sequence, state carried: the standard figure) and windowed
    (the task's overlapping windows, what training's evaluations report), against the
    uniform and unigram baselines measured on the same split and char-rnn's published ~1.5."""
    from workbench import presets
    from workbench.spec import with_overrides

    path = _shared("tinyshakespeare", "input.txt")
    preset = with_overrides(presets.load_builtin("charlm_lstm"),
                            [f"data.path={path}", f"train.seed={args.seed}"] + args.charlm_set)
    if args.load_model:  # evaluate weights saved by an earlier --save-model run of the same overrides
        import torch

        from workbench.engine.model import build_model
        from workbench.tasks import make_task

        task = make_task(preset)
        task.prepare()
        model = build_model(preset.model, task.model_io())
        model.load_state_dict(torch.load(args.load_model))
        seconds, steps, evals = float("nan"), args.steps or preset.train.steps, []  # --steps: as trained
    else:
        task, model, seconds, steps, evals = train_for_minutes(preset, args.minutes, args.device, steps=args.steps)
    if args.save_model:
        import torch

        torch.save(model.state_dict(), args.save_model)  # to evaluate again later (e.g. another way)
    metrics, eval_s = full_validation(task, model, preset.train.batch_size)
    shape = "x".join(str(layer.hidden_size) for layer in preset.model.layers)  # e.g. "384x384"
    base = task.baseline()
    nats, L = metrics["nats_per_char_streamed"], task.options.seq_len
    windowed = [(f"same model, windowed ({L}-char windows, {L // 2} warm-up)", metrics["nats_per_char"])]
    if L != 128:  # the windows the figures before streaming were measured with
        task.options.seq_len = 128
        windowed.append(("same model, windowed (128-char windows, 64 warm-up)",
                         full_validation(task, model, preset.train.batch_size, stream=False)[0]["nats_per_char"]))
        task.options.seq_len = L
    first = next((e for e in evals if e.get("nats_per_char", 9.9) <= 1.5), None)
    if first:
        reached = f"{first['time_s'] / 60:.1f} min (step {first['step']}, periodic eval, windowed)"
    else:
        reached = f"at the end ({seconds / 60:.1f} min)" if nats <= 1.5 else "not within the budget"
    print(f"  charlm: {nats:.5f} nats/char streamed; " + "; ".join(f"{v:.5f} {k[11:]}" for k, v in windowed)
          + f" after {seconds / 60:.1f} min, {steps} steps", flush=True)
    rows = [
        {"model": f"charlm_lstm {shape}, {steps} steps, streamed (state carried over the whole held-out text)",
         "val nats/char": f"{nats:.4f}", "bits/char": metrics["bits_per_char_streamed"],
         "perplexity": metrics["perplexity_streamed"], "x uniform": nats / base["nats_per_char"],
         "minutes": seconds / 60, "<= 1.50 first at": reached},
        *({"model": name, "val nats/char": f"{value:.4f}", "x uniform": value / base["nats_per_char"]}
          for name, value in windowed),
        {"model": "uniform over the characters", "val nats/char": base["nats_per_char"], "x uniform": 1.0},
        {"model": "unigram frequencies", "val nats/char": base["unigram_nats_per_char"],
         "x uniform": base["unigram_nats_per_char"] / base["nats_per_char"]},
        {"model": "char-rnn LSTM (published, stateful)", "val nats/char": "~1.5", "x uniform": 1.5 / base["nats_per_char"]},
    ]
    return (f"Char-LM, Tiny Shakespeare (90/10 split), {args.minutes:g} min budget on {args.device}, "
            f"{_threads()} torch threads; full validation evals (windowed and streamed) took {eval_s:.0f} s"), rows


def bench_pos(args) -> tuple[str, list[dict]]:
    """tagger_bilstm (word + char-CNN features, BiLSTM) trained on UD English EWT train
    for at most --minutes (or its epochs), UPOS accuracy on the whole dev file, against
    the most-frequent-tag baseline of the same split and published BiLSTM taggers (~95%)."""
    from workbench import presets
    from workbench.spec import with_overrides

    train = _shared("ud_english_ewt", "en_ewt-ud-train.conllu")
    dev = _shared("ud_english_ewt", "en_ewt-ud-dev.conllu")
    preset = with_overrides(presets.load_builtin("tagger_bilstm"),
                            [f"data.path={train}", f"data.options.val_path={dev}",
                             f"train.seed={args.seed}"])
    task, model, seconds, steps, evals = train_for_minutes(preset, args.minutes, args.device, steps=args.steps)
    metrics, _eval_s = full_validation(task, model, 256)
    base = task.baseline()["accuracy"]
    acc = metrics["accuracy"]
    first = next((e for e in evals if e.get("accuracy", 0.0) >= 0.95), None)
    if first:
        reached = f"{first['time_s'] / 60:.1f} min (step {first['step']}, periodic eval)"
    else:
        reached = f"at the end ({seconds / 60:.1f} min)" if acc >= 0.95 else "not within the budget"
    print(f"  pos: {acc:.4f} UPOS accuracy after {seconds / 60:.1f} min, {steps} steps", flush=True)
    epochs = steps / (task.epoch_size(preset.train.batch_size) or 1)
    rows = [
        {"tagger": f"tagger_bilstm, {steps} steps ({epochs:.1f} epochs)", "dev UPOS acc": f"{acc:.4f}",
         "unknown-word acc": metrics.get("oov_accuracy"), "errors / baseline's": (1 - acc) / (1 - base),
         "minutes": seconds / 60, ">= 95% first at": reached},
        {"tagger": "most frequent tag per word", "dev UPOS acc": base, "errors / baseline's": 1.0},
        {"tagger": "BiLSTM word+char (published)", "dev UPOS acc": "~0.95", "errors / baseline's": 0.05 / (1 - base)},
    ]
    return (f"POS tagging, UD English EWT train -> dev ({len(task.val_set)} sentences), {args.minutes:g} min budget "
            f"on {args.device}, {_threads()} torch threads"), rows


def bench_captions(args) -> tuple[str, list[dict]]:
    """captions_one_to_many (generated shape images -> captions) at its step budget, with
    and without the layer norm in front of the state bridge (model.bridge_norm): token
    accuracy (teacher-forced) and exact-match greedy captions on the whole validation
    set, against the task's baseline."""
    from workbench import presets
    from workbench.spec import with_overrides

    rows, base = [], None
    for norm in (False, True):
        preset = with_overrides(presets.load_builtin("captions_one_to_many"), [f"model.bridge_norm={str(norm).lower()}"])
        results = []
        for seed in range(args.seeds):
            task, _model, seconds, metrics = train_preset(preset, args.device, seed)
            base = base or task.baseline()
            results.append((metrics["token_accuracy"], metrics["exact_match"], seconds))
            print(f"  captions, bridge_norm {norm}, seed {seed}: token accuracy {results[-1][0]:.4f}, "
                  f"exact match {results[-1][1]:.4f}", flush=True)
        tokens, exact, seconds = (np.array(col) for col in zip(*results))
        rows.append({"bridge": "layer norm -> tanh(W v)" if norm else "tanh(W v)",
                     "token acc": f"{tokens.mean():.4f}" + (f" +-{tokens.std():.3f}" if args.seeds > 1 else ""),
                     "exact match": f"{exact.mean():.4f}" + (f" +-{exact.std():.3f}" if args.seeds > 1 else ""),
                     "minutes": seconds.mean() / 60})
    rows.append({"bridge": "baseline (most frequent token per position)",
                 "token acc": base.get("token_accuracy", ""), "exact match": base.get("exact_match", "")})
    return (f"Captioning generated shapes (one-to-many, image -> words), {preset.train.steps} steps, "
            f"{args.seeds} seed(s), on {args.device}, {_threads()} torch threads"), rows


# ----------------------------------------------------------------------------- translation and chatbot


def _seq2seq_scores(task, model, beam: int) -> tuple[dict, dict, float]:
    """Full validation metrics, corpus scores (BLEU/chrF greedy and beam, and the task's
    text baseline) over every held-out pair; seconds the decoding took."""
    metrics, _ = full_validation(task, model, 64)
    started = time.perf_counter()
    corpus = task.corpus_metrics(model, "cpu", 64, len(task.val_pairs), beam)
    metrics.update(corpus["metrics"])
    return metrics, corpus["baseline"], time.perf_counter() - started


def bench_translation(args) -> tuple[str, list[dict]]:
    """translate_en_fr_attention on eng-fra.tsv (10% of the pairs held out) trained for
    --minutes; BLEU and chrF (sacrebleu) of greedy and beam decoding over every held-out
    pair, against copying the source (the same run's split)."""
    from workbench import presets
    from workbench.spec import with_overrides

    path = _shared("translation", "eng-fra.tsv")
    preset = with_overrides(presets.load_builtin("translate_en_fr_attention"), [f"data.path={path}"])
    task, model, seconds, steps, _evals = train_for_minutes(preset, args.minutes, args.device)
    model.cpu().eval()
    m, base, decode_s = _seq2seq_scores(task, model, args.beam)
    print(f"  translation: BLEU {m['bleu']:.2f} greedy, {m['bleu_beam']:.2f} beam after {seconds / 60:.1f} min, "
          f"{steps} steps", flush=True)
    epochs = steps / (task.epoch_size(preset.train.batch_size) or 1)
    rows = [
        {"decoder": f"greedy ({steps} steps, {epochs:.0f} epochs, {seconds / 60:.1f} min)", "BLEU": m["bleu"],
         "chrF": m["chrf"], "BLEU x copy": m["bleu"] / max(base["bleu"], 1e-9), "token acc (teacher-forced)":
         m["token_accuracy"]},
        {"decoder": f"beam {args.beam}", "BLEU": m["bleu_beam"], "chrF": m["chrf_beam"],
         "BLEU x copy": m["bleu_beam"] / max(base["bleu"], 1e-9)},
        {"decoder": "copy the source (baseline)", "BLEU": base["bleu"], "chrF": base["chrf"], "BLEU x copy": 1.0},
    ]
    examples = [("I am cold.", ""), ("He is my brother.", ""), ("We are happy.", "")]
    examples += task.val_texts[:5]
    from workbench import inference

    session = inference.session_from_model(preset, task, model)
    print("  examples (source -> greedy | beam; reference):")
    for source, ref in examples:
        out = inference.transduce(session, source, temperature=0.0, beam=args.beam)
        print(f"    {source} -> {out['greedy']['text']} | {out['beam']['text']}" + (f"; {ref}" if ref else ""))
    return (f"Translation en->fr, eng-fra.tsv ({len(task.val_pairs)} held-out pairs), {args.minutes:g} min budget "
            f"on {args.device}, {_threads()} torch threads; decoding and scoring took {decode_s:.0f} s"), rows


def bench_chatbot(args) -> tuple[str, list[dict]]:
    """chatbot_encdec on the chatterbot English corpus (10% of the distinct conversations
    held out, those sharing a turn together) trained to its step budget (--chat-set
    overrides it): reply perplexity against a unigram model of the training replies,
    and BLEU/chrF of greedy and beam replies against nearest-question retrieval
    (TF-IDF) and the echo (the message as its own reply), all scored by sacrebleu on the
    same held-out replies; example exchanges."""
    from workbench import inference, presets
    from workbench.spec import with_overrides
    from workbench.tasks.dialogue import NearestQuestion

    if args.folds > 1:
        return bench_chatbot_folds(args)
    path = _shared("dialogue", "chatterbot-english")
    preset = with_overrides(presets.load_builtin("chatbot_encdec"), [f"data.path={path}"] + args.chat_set)
    task, model, seconds, _ = train_preset(preset, args.device, seed=args.seed)
    model.cpu().eval()
    m, base, decode_s = _seq2seq_scores(task, model, args.beam)
    unigram = task.baseline()["perplexity"]
    print(f"  chatbot: perplexity {m['perplexity']:.2f} (unigram {unigram:.2f}), BLEU {m['bleu']:.2f} greedy, "
          f"{m['bleu_beam']:.2f} beam (retrieval {base['retrieval_bleu']:.2f}) after {seconds / 60:.1f} min",
          flush=True)
    steps = preset.train.steps
    epochs = steps / (task.epoch_size(preset.train.batch_size) or 1)
    o = task.options

    def scored(name: str, bleu: float, chrf: float, ratio: float, **more) -> dict:
        return {"replies by": name, **more, "BLEU": bleu, "chrF": chrf, "BLEU x retrieval":
                bleu / max(base["retrieval_bleu"], 1e-9), "chrF x retrieval": chrf / max(base["retrieval_chrf"], 1e-9),
                "length / reference": ratio}
    rows = [
        scored(f"chatbot_encdec greedy ({steps} steps, {epochs:.0f} epochs, {seconds / 60:.1f} min)", m["bleu"],
               m["chrf"], m["length_ratio"], perplexity=m["perplexity"], **{"x unigram": m["perplexity"] / unigram}),
        scored(f"chatbot_encdec beam {args.beam} (length penalty {o.length_penalty:g}, no repeated "
               f"{o.no_repeat_ngram}-gram)", m["bleu_beam"], m["chrf_beam"], m["length_ratio_beam"]),
    ] + ([scored(f"chatbot_encdec retrieve-then-rerank (beam {args.beam} + {o.rerank} retrieved; a retrieved reply "
                 f"for {m['rerank_retrieved_share']:.0%})", m["bleu_rerank"], m["chrf_rerank"], m["length_ratio_rerank"])]
         if "bleu_rerank" in m else []) + [
        {"replies by": "unigram of the training replies", "perplexity": unigram, "x unigram": 1.0},
        scored("nearest training question's reply (TF-IDF)", base["retrieval_bleu"], base["retrieval_chrf"],
               base["retrieval_length_ratio"]),
        scored("the message itself (echo)", base["echo_bleu"], base["echo_chrf"], base["echo_length_ratio"]),
    ]
    retrieval = NearestQuestion(task.train_texts, task.tokenize)
    session = inference.session_from_model(preset, task, model)
    print("  example exchanges (message -> greedy | beam | retrieval | the preset's decoding; held-out reply):")
    for message, ref in [("Hello", ""), ("How are you?", ""), ("What is your name?", ""),
                         ("Tell me a joke", "")] + task.val_texts[:8]:
        greedy = inference.chat(session, message, rerank=0)["reply"]
        beam = inference.chat(session, message, beam=args.beam, rerank=0)["reply"]
        chosen = inference.chat(session, message, beam=args.beam)
        print(f"    {message} -> {greedy} | {beam} | {retrieval.reply(message)} | {chosen['reply']} "
              f"({chosen['decoding']})" + (f"; {ref}" if ref else ""))
    copies = len(task.train_pairs) - len(task.train_texts)
    return (f"Chatbot, chatterbot English ({len(task.val_pairs)} held-out exchanges, {len(task.train_texts)} "
            f"training + {copies} copy pairs), on {args.device}, {_threads()} torch threads; decoding and scoring took {decode_s:.0f} s"), rows


def bench_chatbot_folds(args) -> tuple[str, list[dict]]:
    """chatbot_encdec cross-validated over conversations (--folds k): the corpus's distinct
    conversations dealt into k folds, those sharing a turn in one (fold_conversations);
    each fold's model trains on the other folds (the preset's steps) and writes replies
    to its own fold's messages, so every exchange is scored once as held out. BLEU/chrF
    (sacrebleu, corpus level) over all folds' replies for the model (greedy, beam, and
    with --mbr N minimum Bayes risk over N samples), retrieval (TF-IDF, built per fold
    from that fold's training exchanges) and the echo, on exactly the same exchanges;
    and a paired bootstrap (1000 resamplings of the exchanges, then of the conversation
    groups: a cluster bootstrap, the honest interval) of model minus echo and model minus
    retrieval with its 95% interval. Nothing is chosen here: every setting
    comes from the preset (chosen on dev splits of training conversations)."""
    import tempfile

    import yaml

    from workbench import presets
    from workbench.io.dialogue import read_dialogue
    from workbench.spec import with_overrides
    from workbench.tasks.dialogue import fold_conversations
    from workbench.tasks.parroting import parroting_scores
    from workbench.tasks.transduction import paired_bootstrap, text_scores

    read = read_dialogue(_shared("dialogue", "chatterbot-english")).conversations
    folds = fold_conversations(read, args.folds)
    group_ids: list[int] = []  # per scored exchange: its group of conversations sharing turns (cluster bootstrap)
    first_group = 0
    out = Path(tempfile.mkdtemp(prefix="chatbot_folds_"))
    rerank_k = args.rerank if args.rerank >= 0 else with_overrides(presets.load_builtin("chatbot_encdec"),
                                                                   args.chat_set).data.options.get("rerank", 0)
    systems = ["greedy", f"beam {args.beam}"] + ([f"MBR {args.mbr}"] if args.mbr > 1 else [])
    systems += ([f"rerank {rerank_k}"] if rerank_k > 0 else []) + ["retrieval", "echo"]
    retrieved_share = []
    replies: dict[str, list[str]] = {k: [] for k in systems}
    refs: list[str] = []
    minutes = 0.0
    for k, held in enumerate(folds):
        train = [c for j, f in enumerate(folds) if j != k for c in f]
        paths = out / f"train{k}.yml", out / f"test{k}.yml"
        for path, convs in zip(paths, (train, held)):
            path.write_text(yaml.safe_dump({"categories": ["fold"], "conversations": convs}, allow_unicode=True))
        preset = with_overrides(presets.load_builtin("chatbot_encdec"),
                                [f"data.path={paths[0]}", f"data.options.val_path={paths[1]}",
                                 f"train.eval_every={10**6}"] + args.chat_set)
        task, model, seconds, _ = train_preset(preset, args.device, seed=args.seed)
        model.cpu().eval()
        minutes += seconds / 60
        texts = task.val_texts
        n = len(texts)
        # the fold's groups of conversations sharing a turn are the corpus's (folds hold whole
        # groups); numbered after the earlier folds' so every group id is the corpus's own
        _, ids = task._grouped_exchanges(held)
        assert len(ids) == n, "the held-out exchanges are read as the task reads them"
        group_ids += [first_group + g for g in ids]
        first_group += max(ids, default=-1) + 1
        refs += [task._as_compared(r) for _, r in texts]
        replies["greedy"] += task.decode_outputs(model, "cpu", 64, n)
        replies[f"beam {args.beam}"] += task.decode_outputs(model, "cpu", 64, n, args.beam)
        if args.mbr > 1:
            replies[f"MBR {args.mbr}"] += task.decode_outputs(model, "cpu", 64, n, mbr=args.mbr)
        if rerank_k > 0:  # the pool: this fold's training exchanges (task.train_texts), never its held-out ones
            chosen = task.rerank_outputs(model, 64, n, args.beam, rerank_k)
            replies[f"rerank {rerank_k}"] += [c.text for c in chosen]
            retrieved_share += [c.retrieved for c in chosen]
        # the messages as read (with data.options.retrieve the model's sources also hold the
        # reply retrieved for them, from this fold's training exchanges only: task.retrieval_index())
        messages = task.val_messages
        retrieval = task.retrieval_index()  # this fold's training exchanges
        replies["retrieval"] += [task._as_compared(retrieval.reply(m)) for m in messages]
        replies["echo"] += [task._as_compared(m) for m in messages]
        fold = {name: text_scores(replies[name][-n:], refs[-n:]) for name in systems}
        print(f"  fold {k + 1}/{len(folds)}: {len(task.train_texts)} training, {n} held-out exchanges, "
              f"{seconds / 60:.1f} min; " + "; ".join(f"{name} {v['bleu']:.2f} / {v['chrf']:.2f}"
                                                      for name, v in fold.items()), flush=True)
    scores = {name: text_scores(replies[name], refs) for name in systems}
    # parroting (workbench.tasks.parroting): replies taking >= 75% of their words from the message,
    # and replies repeating a word; the references' shares are the yardstick
    parrot = {name: parroting_scores(replies[name], replies["echo"]) for name in systems}
    parrot["references"] = parroting_scores(refs, replies["echo"])
    rows = []
    for name in systems:
        v = scores[name]
        row = {"replies by": name, "BLEU": v["bleu"], "chrF": v["chrf"], "length / reference": v["length_ratio"],
               "BLEU x echo": v["bleu"] / max(scores["echo"]["bleu"], 1e-9),
               "chrF x echo": v["chrf"] / max(scores["echo"]["chrf"], 1e-9),
               "BLEU x retrieval": v["bleu"] / max(scores["retrieval"]["bleu"], 1e-9),
               "chrF x retrieval": v["chrf"] / max(scores["retrieval"]["chrf"], 1e-9),
               "parrot": parrot[name]["parrot_share"], "repeat": parrot[name]["repeat_share"]}
        rows.append(row)
    rows.append({"replies by": "references", "parrot": parrot["references"]["parrot_share"],
                 "repeat": parrot["references"]["repeat_share"]})
    if retrieved_share:
        print(f"  rerank {rerank_k}: a retrieved reply chosen for {sum(retrieved_share) / len(retrieved_share):.0%} "
              "of the messages", flush=True)
    if args.save_replies:
        import json

        Path(args.save_replies).write_text(json.dumps({"refs": refs, "groups": group_ids, "replies": replies}))
    for what, clusters in (("exchanges", None), (f"{len(set(group_ids))} conversation groups", group_ids)):
        print(f"  paired bootstrap (1000 resamplings of the {what}), difference [95% interval]:")
        for name in systems[:-2]:
            for base in ("echo", "retrieval"):
                d = paired_bootstrap(replies[name], replies[base], refs, groups=clusters)
                print(f"    {name} - {base}: " + ", ".join(
                    f"{m} {d[m][0]:+.2f} [{d[m][1]:+.2f}, {d[m][2]:+.2f}]" for m in ("bleu", "chrf")), flush=True)
    return (f"Chatbot, chatterbot English, {len(folds)}-fold cross-validation over conversations ({len(refs)} "
            f"exchanges, each held out once), seed {args.seed}, {minutes:.1f} min of training in all, on "
            f"{args.device}, {_threads()} torch threads"), rows


# ----------------------------------------------------------------------------- speech


def _speech_eval(task, model, batch_size: int, decode: bool = False) -> dict:
    """The task's metrics over all of its held-out data; with ``decode`` also those that
    need beam search (task.decode_metrics)."""
    import torch

    model.eval()
    sums: dict[str, list[float]] = {}
    with torch.no_grad():
        for batch in task.val_batches(batch_size, 10**9):
            found = dict(task.metric_sums(model(batch.x, None, batch.lengths), batch))
            if decode:
                found.update(task.decode_metrics(model, batch))
            for name, (s, c) in found.items():
                acc = sums.setdefault(name, [0.0, 0.0])
                acc[0] += s
                acc[1] += c
    return {k: s / c for k, (s, c) in sums.items() if c}


def bench_speech(args) -> tuple[str, list[dict]]:
    """FSDD: speech_digits_gru (isolated digits, many-to-one) and speech_connected_ctc
    (2-5 joined digits, CTC) at their step budgets, trained on FSDD's customary training
    split (recordings 5-49) and scored on all of the test split (recordings 0-4; the
    connected-digit utterances are joined from test clips only): accuracy against the
    majority class, digit error rate (greedy and prefix beam search) against the most
    frequent digit repeated and the empty answer."""
    from workbench import presets
    from workbench.spec import with_overrides

    path = _shared("speech", "fsdd", "recordings")
    rows = []
    preset = with_overrides(presets.load_builtin("speech_digits_gru"), [f"data.path={path}"] + args.speech_set)
    task, model, seconds, _ = train_preset(preset, args.device)
    acc = _speech_eval(task, model, 256)["accuracy"]
    base = task.baseline()["accuracy"]
    print(f"  speech_digits_gru: accuracy {acc:.4f} in {seconds / 60:.1f} min", flush=True)
    rows.append({"task": f"isolated digits ({len(task.val_set)} test clips)", "model": "speech_digits_gru",
                 "steps": preset.train.steps, "metric": "accuracy", "model's": f"{acc:.4f}",
                 "baseline's": f"{base:.4f} (majority class)", "minutes": seconds / 60})
    preset = with_overrides(presets.load_builtin("speech_connected_ctc"), [f"data.path={path}"] + args.speech_set)
    task, model, seconds, _ = train_preset(preset, args.device)
    m = _speech_eval(task, model, 64, decode=True)
    base = task.baseline()
    print(f"  speech_connected_ctc: digit error rate {m['word_error_rate']:.4f} greedy, "
          f"{m['beam_word_error_rate']:.4f} beam in {seconds / 60:.1f} min", flush=True)
    what = f"connected digits ({len(task.val_set)} test utterances)"
    rows.append({"task": what, "model": "speech_connected_ctc, greedy", "steps": preset.train.steps,
                 "metric": "digit error rate", "model's": f"{m['word_error_rate']:.4f}",
                 "baseline's": f"{base['word_error_rate']:.4f} (most frequent digit x mean count)",
                 "minutes": seconds / 60})
    rows.append({"task": what, "model": f"speech_connected_ctc, beam {task.options.beam_width}",
                 "steps": preset.train.steps, "metric": "digit error rate", "model's": f"{m['beam_word_error_rate']:.4f}",
                 "baseline's": "1.0 (empty answer)"})
    rows.append({"task": what, "model": "speech_connected_ctc, greedy", "metric": "utterances exact",
                 "model's": f"{m['utterance_accuracy']:.4f}", "baseline's": "0"})
    return (f"Speech, FSDD (train: recordings 5-49, test: 0-4 of every digit and speaker), on {args.device}, "
            f"{_threads()} torch threads"), rows


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# ----------------------------------------------------------------------------- the table

from quality_adding import bench_adding  # noqa: E402  (bench/ is this script's folder)
from quality_video import bench_video  # noqa: E402

BENCHMARKS: dict[str, Callable[[argparse.Namespace], tuple[str, list[dict]]]] = {
    "timeseries": bench_timeseries,
    "charlm": bench_charlm,
    "pos": bench_pos,
    "captions": bench_captions,
    "adding": bench_adding,
    "translation": bench_translation,
    "chatbot": bench_chatbot,
    "speech": bench_speech,
    "video": bench_video,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names: " + ", ".join(BENCHMARKS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per case (mean reported)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="charlm, pos, translation: wall-clock training budget in minutes "
                             "(periodic evals included)")
    parser.add_argument("--steps", type=int, default=0,
                        help="charlm, pos: train exactly this many steps instead of for --minutes (pos: at most its "
                             "epochs); a step budget sized on an idle machine, for a loaded one")
    parser.add_argument("--seed", type=int, default=0, help="charlm, pos, chatbot: the training seed")
    parser.add_argument("--beam", type=int, default=4, help="translation, chatbot: beam width")
    parser.add_argument("--adding-steps", type=int, default=3000,
                        help="adding: the step budget per length and cell")
    parser.add_argument("--lengths", default="", help="adding: comma-separated sequence lengths (default 50,100,200,400)")
    parser.add_argument("--speech-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="speech: a preset override for both speech presets (repeatable)")
    parser.add_argument("--chat-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="chatbot: a preset override (repeatable)")
    parser.add_argument("--charlm-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="charlm: a preset override (repeatable)")
    parser.add_argument("--save-model", default="", help="charlm: write the trained weights (state_dict) here")
    parser.add_argument("--load-model", default="",
                        help="charlm: evaluate these saved weights (--save-model, same --charlm-set) instead of training")
    parser.add_argument("--folds", type=int, default=0,
                        help="chatbot: k > 1 cross-validates over k folds of conversations (paired bootstrap "
                             "against the echo and retrieval)")
    parser.add_argument("--mbr", type=int, default=0,
                        help="chatbot --folds: also score minimum Bayes risk decoding over this many samples")
    parser.add_argument("--rerank", type=int, default=-1, metavar="K",
                        help="chatbot --folds: also score retrieve-then-rerank over K retrieved replies (the pool "
                             "per fold: its training exchanges only); default: the preset's data.options.rerank")
    parser.add_argument("--save-replies", default="", metavar="FILE.json",
                        help="chatbot --folds: write every system's replies, the references and groups here")
    parser.add_argument("--video-steps", type=int, default=300, help="video: training steps per clip and model")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHMARKS)})")
    from workbench.engine import cpu_policy

    cpu_policy.apply("bench")  # the allocator policy every entry point applies (WORKBENCH_ALLOCATOR=default: off)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in names:
        print(f"[{name}] running ...", flush=True)
        title, rows = BENCHMARKS[name](args)
        print_table(title, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
