"""`workbench sweep`: many runs, one question (the sweep itself is workbench/sweep.py).

    workbench sweep PRESET --param FIELD=SPEC [--param ...] [--trials N] [--jobs J]
                    [--metric val_loss] [--minimize|--maximize] [--sampler tpe|random|grid]
                    [--prune] [--minutes M] [--storage URL] [--study NAME] [--runs-dir DIR]
        SPEC: LOW..HIGH, log:LOW..HIGH, int:LOW..HIGH, int:log:LOW..HIGH, or A,B,C (choices).
        Run the same command again to resume a stopped study (Ctrl-C stops it cleanly).
    workbench sweep show [STUDY] [--storage URL] [--save-best NAME [--force]]
        the study's trials, best parameters and parameter importances; without STUDY,
        the studies in the storage. --save-best writes the best preset as a user preset.
"""
from __future__ import annotations

import signal
import sys

from workbench.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="a hyperparameter sweep: many runs of a preset (Optuna); 'show STUDY' for its results",
        description="Train a preset many times with swept fields and find the best. Each trial is an ordinary "
                    "run (run folder, history row tagged with the study). Ctrl-C stops it; the same command "
                    "resumes it. `workbench sweep show STUDY` prints a study's results.")
    p.add_argument("target", metavar="PRESET", help="a preset file or name; or 'show' to print a study")
    p.add_argument("name", nargs="?", metavar="STUDY", help="(with show) the study; without it, the studies there")
    p.add_argument("--param", action="append", default=[], metavar="FIELD=SPEC",
                   help="a swept field (the dotted paths --set takes) and its values: LOW..HIGH, log:LOW..HIGH, "
                        "int:LOW..HIGH, int:log:LOW..HIGH, or choices A,B,C (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset field for every trial first (as `workbench train --set`)")
    p.add_argument("--trials", type=int, help="trials in the study in all (default 20; grid: every point)")
    p.add_argument("--jobs", type=int, default=1,
                   help="trials at once on this machine, each in its own process with cores/jobs threads")
    p.add_argument("--metric", default="val_loss", help="the evaluation metric to optimise (default val_loss)")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--minimize", dest="direction", action="store_const", const="minimize",
                           help="lower is better (the default)")
    direction.add_argument("--maximize", dest="direction", action="store_const", const="maximize",
                           help="higher is better (accuracy, BLEU)")
    p.add_argument("--sampler", choices=["tpe", "random", "grid"], default="tpe", help="how trials pick values")
    p.add_argument("--prune", action="store_true",
                   help="stop a trial whose evaluations fall behind the median of the earlier trials")
    p.add_argument("--minutes", type=float, help="start no trial after this many minutes")
    p.add_argument("--storage", metavar="URL",
                   help="the study's database: an SQLite file or URL, or postgresql://... to share one study "
                        "between machines (default: sweeps.sqlite3 in the user's data folder)")
    p.add_argument("--study", metavar="NAME", help="the study's name (default: the preset's name and a hash "
                                                   "of the question, so the same command resumes it)")
    p.add_argument("--runs-dir", help="where the trials' run folders go (default runs/sweeps/STUDY)")
    p.add_argument("--save-best", metavar="NAME", help="(with show) save the best trial's preset as a user preset")
    p.add_argument("--force", action="store_true", help="(with --save-best) overwrite an existing user preset")
    p.set_defaults(func=cmd_sweep, direction=None)


def cmd_sweep(args) -> int:
    if args.target == "show":
        return cmd_show(args)
    if args.name:
        raise UsageError(f"sweep: unexpected argument {args.name!r} (give swept fields with --param FIELD=SPEC)")
    if args.save_best or args.force:
        raise UsageError("sweep: --save-best and --force go with `workbench sweep show STUDY`")
    from workbench import sweep
    from workbench.cli import load_preset_with_overrides

    preset = load_preset_with_overrides(args.target, args.set)
    params = [sweep.parse_param(text) for text in args.param]
    job = sweep.Sweep(preset, params, metric=args.metric, direction=args.direction or "minimize",
                      sampler=args.sampler, prune=args.prune, trials=args.trials, jobs=args.jobs,
                      minutes=args.minutes, storage=args.storage, study=args.study, runs_dir=args.runs_dir)
    sweep.open_storage(job.storage)  # an unusable --storage is refused before anything is printed
    threads = job.threads()
    print(f"sweep {job.study}: {job.trials} trials of {preset.name}, {job.direction} {job.metric}, "
          f"{job.sampler} sampler{', pruning' if job.prune else ''}; {job.jobs} worker(s)"
          f"{f' x {threads} threads' if threads else ''}; storage {sweep.shown_url(job.storage)}; "
          f"runs in {job.runs_dir}", file=sys.stderr)
    stop = sweep.make_stop_event(job.jobs)
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame):
        if stop.is_set():  # a second Ctrl-C: leave now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping: the running trials end after their current step (Ctrl-C again to leave at once)",
              file=sys.stderr)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = job.run(stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    study = sweep.load_study(sweep.open_storage(job.storage), job.study)
    _print_best(study, job.metric)
    where = "" if job.storage == sweep.default_storage() else f" --storage {sweep.shown_url(job.storage)}"
    if result["stopped"]:
        print(f"stopped after {result['ran']} trial(s) in this command: run the same command to resume; "
              f"results: workbench sweep show {job.study}{where}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{result['ran']} trial(s) run; results: workbench sweep show {job.study}{where}", file=sys.stderr)
    return EXIT_OK


def _print_best(study, metric: str) -> None:
    from workbench import sweep

    try:
        best = study.best_trial
    except ValueError:
        print("no finished trial yet")
        return
    params = ", ".join(f"{k}={sweep.fmt_value(v)}" for k, v in best.params.items())
    print(f"best: trial {best.number}, {metric} {best.value:.5g}: {params}")


def cmd_show(args) -> int:
    from workbench import presets, sweep

    storage = sweep.open_storage(sweep.storage_url(args.storage))
    if not args.name:
        if args.save_best:
            raise UsageError("sweep show: --save-best needs the STUDY")
        names = sweep.study_names(storage)
        if not names:
            print(f"no studies in {sweep.shown_url(storage.url)}", file=sys.stderr)
        for name in names:
            print(name)
        return EXIT_OK
    study = sweep.load_study(storage, args.name)
    asked = sweep.question(study)
    trials = study.get_trials(deepcopy=False)
    fields = [text.partition("=")[0] for text in asked["params"]]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    print(f"study {study.study_name}: {asked['direction']} {asked['metric']} of preset {asked['preset']['name']}; "
          f"{len(trials)} trials ({', '.join(f'{n} {k.lower()}' for k, n in sorted(counts.items())) or 'none'})")
    print("swept: " + "; ".join(asked["params"]))
    header = ["trial", "state", asked["metric"], *fields, "run folder"]
    rows = []
    for t in trials:
        state = "interrupted" if t.user_attrs.get("interrupted") else t.state.name.lower()
        value = f"{t.value:.5g}" if t.value is not None else "-"
        rows.append([str(t.number), state, value, *(sweep.fmt_value(t.params[f]) if f in t.params else "-" for f in fields),
                     t.user_attrs.get("run_dir", "-")])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    _print_best(study, asked["metric"])
    found = sweep.importances(study)
    if isinstance(found, str):
        print(f"importances: none ({found})")
    else:
        print("importances:")
        for name, share in found.items():
            print(f"  {name:<{max(map(len, found))}}  {share:5.2f}  {'#' * round(share * 40)}")
    if args.save_best:
        preset = sweep.best_preset(study, args.save_best)
        path = presets.save_user(preset, args.save_best, overwrite=args.force)
        print(f"saved the best preset as {args.save_best}: {path}", file=sys.stderr)
    return EXIT_OK
