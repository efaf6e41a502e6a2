"""Sweeps: many runs, one question, on Optuna (TPE, random or grid sampling, pruning).

No Qt here (the CLI's `workbench sweep` and the window use it alike) and no torch at
module level (the trials import it when they train).

    params = check_params(preset, [parse_param("train.lr=log:1e-4..1e-2"),
                                   parse_param("model.layers.0.cell=lstm,gru")])
    sweep = Sweep(preset, params, metric="val_loss", direction="minimize", trials=20, jobs=2)
    sweep.run(say=print)        # creates or resumes the study, runs the missing trials

Each trial is an ordinary run through the engine's RunSession: its own run folder
(``runs/sweeps/<study>/trial-0007``) and a history row tagged with the study and the
trial number. Its evaluations are the trial's intermediate values, so with ``prune`` a
MedianPruner stops a trial that is worse than the median of the earlier ones at the
same step (its run ends 'stopped'); its final value is the metric of the run's last,
whole-validation-set evaluation.

A study lives in an Optuna storage: by default an SQLite file in the user's data folder
(``userdirs.data_dir()/sweeps.sqlite3``); a ``postgresql://`` URL lets workers on several
machines share one study, each started with the same command. ``trials`` counts the
whole study's trials (finished or pruned, plus those running): a command run again
after a stop runs only what is missing. Workers on other machines may each add one
trial beyond it at the very end (they cannot reserve a trial atomically).

Stopping: ``stop`` (an event) makes every worker stop its trial after the current step;
the trial is recorded as failed with the user attribute ``interrupted`` and its
parameters are queued again, so the resumed study tries them first. A trial whose worker
was killed outright stays 'running' in the study until the next sweep on this machine
sees its process is gone and marks it the same way.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import spec
from workbench.errors import TrainingError, UsageError, UserError, one_line
from workbench.spec import Preset, SpecError

SAMPLERS = ("tpe", "random", "grid")
DEFAULT_TRIALS = 20
MAX_GRID = 10_000  # grid points: beyond this a grid is a typo (use tpe or random)
STUDY_ATTR = "workbench"  # the study's user attribute holding its question (preset, params, metric)
# MedianPruner: the first trials always run to the end, to give the median something to stand on.
PRUNE_STARTUP_TRIALS = 2


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One swept field: a dotted preset path (as `--set` takes) and where its values come from.

    kind: "float" (uniform), "log" (log-uniform float), "int", "int_log", or "choice"."""

    field: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    typed: bool = False  # float: given: a range that stays float even on a whole-number field

    @property
    def is_range(self) -> bool:
        return self.kind != "choice"

    def text(self) -> str:
        """The canonical `--param` text (what the study stores)."""
        if self.kind == "choice":
            return f"{self.field}=" + ",".join(json.dumps(c) if not isinstance(c, str) else c for c in self.choices)
        prefix = {"float": "float:", "log": "log:", "int": "int:", "int_log": "int:log:"}[self.kind]
        return f"{self.field}={prefix}{self.low!r}..{self.high!r}"

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.field, list(self.choices))
        if self.kind in ("int", "int_log"):
            return trial.suggest_int(self.field, int(self.low), int(self.high), log=self.kind == "int_log")
        return trial.suggest_float(self.field, float(self.low), float(self.high), log=self.kind == "log")

    def grid_values(self) -> list:
        """Every value a grid visits: the choices, or each whole number of an int range."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise UsageError(f"--sampler grid: {self.field} is a continuous range; give it choices instead "
                         f"(e.g. {self.field}={self.low!r},{self.high!r})")


def parse_param(text: str) -> Param:
    """`FIELD=SPEC`, SPEC one of: ``A..B`` (a number range: whole numbers on a whole-number
    field), ``log:A..B`` (log scale), ``int:A..B``, ``int:log:A..B``, ``float:A..B``, or
    ``X,Y,Z`` (choices, each read as --set reads a value: JSON where it parses, else text)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"--param {text!r}: expected FIELD=RANGE or FIELD=CHOICES, e.g. train.lr=log:1e-4..1e-2")
    value = value.strip()
    mods: list[str] = []
    while True:
        head, colon, rest = value.partition(":")
        if colon and head.strip().lower() in ("log", "int", "float"):
            mods.append(head.strip().lower())
            value = rest.strip()
        else:
            break
    if ".." in value or mods:
        low_text, dots, high_text = value.partition("..")
        if not dots:
            raise UsageError(f"--param {name}: {':'.join(mods)}: needs a range LOW..HIGH, got {value!r}")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise UsageError(f"--param {name}: the range {value!r} needs two numbers, LOW..HIGH") from None
        if not (math.isfinite(low) and math.isfinite(high)):
            raise UsageError(f"--param {name}: the range {value!r} must be finite")
        if low >= high:
            raise UsageError(f"--param {name}: the range {value!r} is empty (LOW must be below HIGH)")
        if "int" in mods and "float" in mods:
            raise UsageError(f"--param {name}: int: and float: contradict each other")
        log = "log" in mods
        if log and low <= 0:
            raise UsageError(f"--param {name}: a log range needs LOW above 0, got {low_text}")
        if "int" in mods:
            if not (low.is_integer() and high.is_integer()):
                raise UsageError(f"--param {name}: int: needs whole-number bounds, got {value!r}")
            return Param(name, "int_log" if log else "int", int(low), int(high))
        # "float" marks the range as decided; a plain range may still become int (check_params)
        kind = "log" if log else "float"
        return Param(name, kind, low, high, typed="float" in mods)
    choices = tuple(spec.parse_override_value(c.strip()) for c in value.split(",") if c.strip())
    if not choices:
        raise UsageError(f"--param {name}: the choice list is empty (give values separated by commas, "
                         f"or a range LOW..HIGH)")
    for c in choices:
        if not (c is None or isinstance(c, (str, int, float, bool))):
            raise UsageError(f"--param {name}: the choice {json.dumps(c)} is not a plain value "
                             f"(a sweep's choices are numbers, text, true/false or null)")
    if len(set(map(json.dumps, choices))) != len(choices):
        raise UsageError(f"--param {name}: a choice is given twice in {value!r}")
    return Param(name, "choice", choices=choices)


_MISSING = object()


def _current(raw: dict, dotted: str) -> Any:
    """The preset's value at a dotted path (already checked to exist, but for new
    data.options keys: _MISSING)."""
    node: Any = raw
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def apply_values(preset: Preset, values: dict[str, Any]) -> Preset:
    """The preset with each dotted field set to its value, validated (like --set, but
    with the values as they are, not text)."""
    raw = preset.to_dict()
    for dotted, value in values.items():
        spec.apply_override(raw, dotted, value)
    return Preset.from_dict(raw)


def check_params(preset: Preset, params: list[Param]) -> list[Param]:
    """Validate the swept fields against the preset before the first trial, and settle
    each plain range's type by its field (whole numbers on a whole-number field). Every
    range's ends and every choice must make a valid preset on their own."""
    if not params:
        raise UsageError("a sweep needs at least one --param FIELD=RANGE or FIELD=CHOICES")
    raw = preset.to_dict()
    seen: set[str] = set()
    out: list[Param] = []
    for p in params:
        if p.field in seen:
            raise UsageError(f"--param {p.field}: given twice")
        seen.add(p.field)
        try:
            spec.apply_override(preset.to_dict(), p.field, None)  # unknown fields, bad indexes
        except SpecError as exc:
            raise UsageError(f"--param {p.field}: {exc.message if exc.field else exc}") from None
        now = _current(raw, p.field)
        if p.is_range:
            if isinstance(now, (str, bool, list, dict)):
                kind = {str: "text", bool: "true/false", list: "a list", dict: "an object"}[type(now)]
                raise UsageError(f"--param {p.field}: a range needs a number field, and this one is {kind} "
                                 f"({json.dumps(now)}); give choices instead, e.g. {p.field}=A,B")
            if isinstance(now, int) and p.typed:
                raise UsageError(f"--param {p.field}: a whole-number field takes no float: range")
            if isinstance(now, int) and p.kind in ("float", "log"):
                if not (float(p.low).is_integer() and float(p.high).is_integer()):
                    raise UsageError(f"--param {p.field}: a whole-number field needs whole-number bounds, "
                                     f"got {p.low!r}..{p.high!r}")
                p = Param(p.field, "int_log" if p.kind == "log" else "int", int(p.low), int(p.high))
            elif p.kind in ("float", "log"):
                p = Param(p.field, p.kind, float(p.low), float(p.high))
            ends = [p.low, p.high]
        else:
            ends = list(p.choices)
        for value in ends:
            try:
                apply_values(preset, {p.field: value})
            except SpecError as exc:
                raise UsageError(f"--param {p.field}: {json.dumps(value)} does not make a valid preset: "
                                 f"{one_line(exc)}") from None
        out.append(p)
    return out


def grid_space(params: list[Param]) -> dict[str, list]:
    space = {p.field: p.grid_values() for p in params}
    size = math.prod(len(v) for v in space.values())
    if size > MAX_GRID:
        raise UsageError(f"--sampler grid: {size:,} grid points (at most {MAX_GRID:,}); narrow the ranges "
                         f"or use --sampler tpe")
    return space


# ----------------------------------------------------------------------------- storage


def default_storage() -> str:
    from workbench.userdirs import data_dir

    return "sqlite:///" + str(data_dir() / "sweeps.sqlite3")


def storage_url(text: str | None) -> str:
    """--storage: a database URL, a plain path (an SQLite file), or None (the default file)."""
    if not text:
        return default_storage()
    if "://" not in text:
        return "sqlite:///" + str(Path(text).expanduser().resolve())
    return text


def shown_url(url: str) -> str:
    """The URL without its password (for messages)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if sep and at and ":" in creds:
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def open_storage(url: str):
    """An Optuna RDB storage; an unusable URL is a UsageError naming it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"--storage {url}: cannot make its folder: {exc}") from None
        # several worker processes write the one file: wait for the lock, do not fail
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as exc:  # noqa: BLE001 - bad scheme, no driver, no server, wrong password: the user's URL
        text = one_line(exc)[:240]
        if isinstance(exc, ImportError) or "import DB access module" in text:
            text += "; install its Python driver, e.g. pip install 'psycopg[binary]' for postgresql://"
        raise UsageError(f"--storage {shown_url(url)}: cannot open it ({text})") from None


def study_names(storage) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_study(storage, name: str, sampler=None, pruner=None):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        names = study_names(storage)
        there = f" (studies there: {', '.join(names)})" if names else " (it holds no study)"
        raise UsageError(f"no study {name!r} in {shown_url(storage.url)}{there}") from None


# ----------------------------------------------------------------------------- the sweep


def _host() -> str:
    return socket.gethostname()


@dataclass
class Sweep:
    """One sweep: a base preset, its swept fields and the metric to optimise.

    ``trials``: the study's total (None: DEFAULT_TRIALS, or every grid point). ``jobs``:
    worker processes on this machine (1: in this process); each trains with
    max(1, cores // jobs) threads unless train.num_threads is swept. ``minutes``: no
    trial starts after this long. ``runs_dir``: where the trials' run folders go
    (default runs/sweeps/<study>)."""

    preset: Preset
    params: list[Param]
    metric: str = "val_loss"
    direction: str = "minimize"
    sampler: str = "tpe"
    prune: bool = False
    trials: int | None = None
    jobs: int = 1
    minutes: float | None = None
    storage: str | None = None
    study: str | None = None
    runs_dir: str | Path | None = None
    seed: int | None = None
    source: str = "sweep"
    question: dict = field(init=False)

    def __post_init__(self):
        if self.direction not in ("minimize", "maximize"):
            raise UsageError(f"direction {self.direction!r} is not minimize or maximize")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler {self.sampler!r} is not one of: {', '.join(SAMPLERS)}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be 1 or more, got {self.jobs}")
        if self.trials is not None and self.trials < 1:
            raise UsageError(f"--trials must be 1 or more, got {self.trials}")
        if self.minutes is not None and not self.minutes > 0:
            raise UsageError(f"--minutes must be above 0, got {self.minutes}")
        if not self.metric:
            raise UsageError("--metric is empty")
        self.params = check_params(self.preset, self.params)
        if self.sampler == "grid":
            size = math.prod(len(v) for v in grid_space(self.params).values())
            self.trials = size if self.trials is None else min(self.trials, size)
        elif self.trials is None:
            self.trials = DEFAULT_TRIALS
        self.storage = storage_url(self.storage)
        # What the study answers: a study found under the same name must ask the same.
        self.question = {"preset": self.preset.to_dict(), "params": [p.text() for p in self.params],
                         "metric": self.metric, "direction": self.direction}
        if not self.study:
            digest = hashlib.sha1(json.dumps(self.question, sort_keys=True).encode()).hexdigest()[:8]
            self.study = f"{self.preset.name}-{digest}"
        self.runs_dir = Path(self.runs_dir) if self.runs_dir else Path("runs") / "sweeps" / self.study

    # -- the study -------------------------------------------------------------------
    def threads(self) -> int | None:
        """Each trial's train.num_threads: the cores shared among the workers (None: the
        preset's own, for one worker or when the sweep varies it)."""
        if self.jobs == 1 or any(p.field == "train.num_threads" for p in self.params):
            return None
        from workbench.engine.cpu_policy import cpu_cores

        return max(1, cpu_cores() // self.jobs)

    def make_sampler(self):
        import optuna

        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=self.seed)
        if self.sampler == "grid":
            return _grid_sampler(grid_space(self.params), seed=self.seed)
        return optuna.samplers.TPESampler(seed=self.seed)

    def make_pruner(self):
        import optuna

        if self.prune:
            return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS, n_warmup_steps=0)
        return optuna.pruners.NopPruner()

    def open_study(self, storage=None):
        """Create the study, or load it when it exists and asks the same question."""
        import optuna

        storage = storage or open_storage(self.storage)
        study = optuna.create_study(storage=storage, study_name=self.study, direction=self.direction,
                                    sampler=self.make_sampler(), pruner=self.make_pruner(), load_if_exists=True)
        asked = study.user_attrs.get(STUDY_ATTR)
        if asked is None:
            study.set_user_attr(STUDY_ATTR, self.question)
        elif asked != self.question:
            differs = [k for k in ("params", "metric", "direction", "preset") if asked.get(k) != self.question[k]]
            raise UsageError(f"study {self.study!r} in {shown_url(self.storage)} was started with another "
                             f"{', '.join(differs)}; give another --study, or the same settings to resume it")
        return study

    def counted(self, study) -> int:
        """Trials that count toward ``trials``: finished, pruned, and running."""
        from optuna.trial import TrialState

        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                            TrialState.RUNNING)))

    def recover(self, study) -> list[int]:
        """Trials left 'running' by a killed worker of this machine: failed (interrupted),
        their parameters queued again."""
        from optuna.trial import TrialState

        from workbench.runs import process_gone

        gone = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            a = t.user_attrs
            if a.get("host") == _host() and a.get("pid") and process_gone(int(a["pid"]), a.get("pid_start", "")):
                try:
                    study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                except Exception:  # noqa: BLE001 - another worker got there first
                    continue
                if t.params:
                    study.enqueue_trial(t.params)
                gone.append(t.number)
        return gone

    # -- running it ------------------------------------------------------------------
    def run(self, say=None, stop=None) -> dict:
        """Run the missing trials (``jobs`` workers), until the study has ``trials``, the
        minutes are up, or ``stop`` (a threading/multiprocessing Event) is set. Returns
        {"study", "storage", "ran", "stopped"}. A UserError in a trial (a bad metric, a
        data option no trial can run with) stops the sweep and is raised here."""
        say = say or (lambda text: print(text, file=sys.stderr))
        storage = open_storage(self.storage)
        study = self.open_study(storage)
        for number in self.recover(study):
            say(f"trial {number}: its worker is gone; marked interrupted, its parameters queued again")
        remaining = max(0, self.trials - self.counted(study))
        deadline = time.time() + self.minutes * 60 if self.minutes else None
        if self.jobs == 1 or remaining == 0:
            import threading

            stop = stop or threading.Event()
            tickets = _Tickets(remaining)
            ran = _work(self, tickets, stop, deadline, say, study=study)
            return {"study": self.study, "storage": self.storage, "ran": ran, "stopped": stop.is_set()}
        return self._run_processes(remaining, deadline, say, stop)

    def _run_processes(self, remaining: int, deadline, say, stop) -> dict:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no forked torch threads or locks
        stop = stop or ctx.Event()
        tickets = ctx.Value("i", remaining)
        errors = ctx.Queue()
        ran = ctx.Value("i", 0)
        workers = [ctx.Process(target=_worker_main, args=(self, tickets, stop, deadline, errors, ran),
                               name=f"sweep-worker-{i}") for i in range(min(self.jobs, remaining))]
        for w in workers:
            w.start()
        try:
            for w in workers:
                w.join()
        finally:
            for w in workers:  # only when this process itself is failing: no worker outlives it
                if w.is_alive():
                    w.terminate()
                    w.join()
        messages = []
        while not errors.empty():
            messages.append(errors.get_nowait())
        user = [text for kind, text in messages if kind == "user"]
        if user:
            raise UsageError(user[0])
        if messages:
            raise RuntimeError(messages[0][1])
        bad = [w.exitcode for w in workers if w.exitcode not in (0, None)]
        if bad:
            raise RuntimeError(f"a sweep worker ended with exit code {bad[0]}")
        return {"study": self.study, "storage": self.storage, "ran": ran.value, "stopped": stop.is_set()}


def make_stop_event(jobs: int):
    """The event that stops a sweep: a plain one for a sweep in this process, else one the
    worker processes share."""
    if jobs == 1:
        import threading

        return threading.Event()
    import multiprocessing

    return multiprocessing.get_context("spawn").Event()


def _grid_sampler(space: dict[str, list], seed=None):
    import optuna

    class Grid(optuna.samplers.GridSampler):
        # GridSampler stops an optimize() loop once the grid is done; the sweep asks and
        # tells (no such loop, and Study.stop refuses outside one) and counts the grid's
        # points itself (Sweep.trials).
        def after_trial(self, study, trial, state, values):
            return None

    return Grid(space, seed=seed)


class _Tickets:
    """Trials this command may still start (one worker in this process)."""

    def __init__(self, n: int):
        self.n = n

    def take(self) -> bool:
        if self.n <= 0:
            return False
        self.n -= 1
        return True


def _take(tickets) -> bool:
    if isinstance(tickets, _Tickets):
        return tickets.take()
    with tickets.get_lock():
        if tickets.value <= 0:
            return False
        tickets.value -= 1
        return True


def _worker_main(sweep: Sweep, tickets, stop, deadline, errors, ran) -> None:
    """A worker process: ignores Ctrl-C (the parent turns it into ``stop``, so a trial
    ends cleanly after its current step) and runs trials until the tickets run out."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from workbench.engine import cpu_policy

    cpu_policy.apply("sweep worker")
    import workbench.engine.session  # noqa: F401 - torch's import before the first ticket, not inside a trial

    name = f"[{os.getpid()}]"
    try:
        n = _work(sweep, tickets, stop, deadline, lambda text: print(f"{name} {text}", file=sys.stderr, flush=True))
        with ran.get_lock():
            ran.value += n
    except UserError as exc:
        stop.set()
        errors.put(("user", one_line(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        stop.set()
        errors.put(("internal", f"{type(exc).__name__}: {one_line(exc)}"))
        raise


def _work(sweep: Sweep, tickets, stop, deadline, say, study=None) -> int:
    """One worker's loop: ask, train, tell. Returns how many trials it ran."""
    if study is None:
        study = load_study(open_storage(sweep.storage), sweep.study, sampler=sweep.make_sampler(),
                           pruner=sweep.make_pruner())
    ran = 0
    while not stop.is_set():
        if deadline is not None and time.time() >= deadline:
            say("the sweep's minutes are up: no further trial starts")
            break
        if not _take(tickets):
            break
        if sweep.counted(study) >= sweep.trials:  # workers elsewhere filled the study
            break
        trial = study.ask()
        run_trial(sweep, study, trial, stop, say)
        ran += 1
    return ran


def _metric_value(sweep: Sweep, metrics: dict) -> float:
    if sweep.metric not in metrics:
        known = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float))) or "none"
        raise UsageError(f"--metric {sweep.metric}: this preset's task does not report it (it reports: {known})")
    return float(metrics[sweep.metric])


def trial_folder(sweep: Sweep, number: int) -> Path:
    """trial-0007 under the sweep's runs folder; a suffix when that name is taken (a study
    of the same name in another storage)."""
    base = Path(sweep.runs_dir) / f"trial-{number:04d}"
    folder, n = base, 1
    while folder.exists() and any(folder.iterdir()):
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def run_trial(sweep: Sweep, study, trial, stop, say) -> str:
    """Train one trial's preset as an ordinary run and tell the study how it went.
    Returns the trial's state name (COMPLETE, PRUNED, FAIL)."""
    from optuna.trial import TrialState

    from workbench.engine.records import End, Eval
    from workbench.engine.session import RunSession
    from workbench.runs import _process_start

    values = {p.field: p.suggest(trial) for p in sweep.params}
    shown = ", ".join(f"{k}={fmt_value(v)}" for k, v in values.items())
    threads = sweep.threads()
    try:
        preset = apply_values(sweep.preset, {**values, **({"train.num_threads": threads} if threads else {})})
    except SpecError as exc:  # a combination no preset allows (each value alone was checked)
        trial.set_user_attr("error", one_line(exc))
        study.tell(trial, state=TrialState.FAIL)
        say(f"trial {trial.number}: not run, {shown} is not a valid preset: {one_line(exc)}")
        return "FAIL"
    run_dir = trial_folder(sweep, trial.number)
    pid = os.getpid()
    for key, value in (("run_dir", str(run_dir.resolve())), ("host", _host()), ("pid", pid),
                       ("pid_start", _process_start(pid))):
        trial.set_user_attr(key, value)
    session = RunSession(preset, run_dir, source=sweep.source, study=sweep.study, trial=trial.number)
    try:
        session.open()
    except TrainingError as exc:  # this point does not fit (memory, device): the next one may
        trial.set_user_attr("error", one_line(exc))
        study.tell(trial, state=TrialState.FAIL)
        say(f"trial {trial.number}: failed to start ({shown}): {one_line(exc)}")
        return "FAIL"
    except BaseException as exc:
        trial.set_user_attr("error", one_line(exc))
        study.tell(trial, state=TrialState.FAIL)
        raise
    say(f"trial {trial.number}: {shown} -> {run_dir}")
    reported: set[int] = set()
    pruned_at = None
    interrupted = False
    end = None
    try:
        with session:
            trial.set_user_attr("run_id", session.run_id)
            for record in session:
                if stop.is_set() and not session.control.stopped:
                    interrupted = True
                    session.stop()  # the trainer ends after this step, evaluating what it has
                if isinstance(record, Eval) and record.step not in reported:
                    value = _metric_value(sweep, record.metrics)
                    if math.isfinite(value):
                        trial.report(value, record.step)
                        reported.add(record.step)
                        if sweep.prune and pruned_at is None and not interrupted and trial.should_prune():
                            pruned_at = record.step
                            session.stop()
                elif isinstance(record, End):
                    end = record
    except BaseException as exc:  # Ctrl-C in this process, a bad metric, a defect: the trial failed
        trial.set_user_attr("error", one_line(exc))
        if isinstance(exc, KeyboardInterrupt):
            trial.set_user_attr("interrupted", True)
            study.enqueue_trial(values)
        study.tell(trial, state=TrialState.FAIL)
        raise
    if interrupted:
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(values)  # the resumed study tries this point first
        say(f"trial {trial.number}: interrupted; its parameters are queued for the resumed study")
        return "FAIL"
    if pruned_at is not None:
        _note_run(session.run_id, f"pruned by sweep {sweep.study} at step {pruned_at}")
        study.tell(trial, state=TrialState.PRUNED)
        say(f"trial {trial.number}: pruned at step {pruned_at}")
        return "PRUNED"
    if end is None or end.status != "finished":
        message = end.message if end is not None else "the run gave no end record"
        trial.set_user_attr("error", message or (end.status if end else ""))
        study.tell(trial, state=TrialState.FAIL)
        say(f"trial {trial.number}: failed: {message}")
        return "FAIL"
    value = _metric_value(sweep, end.metrics)
    if not math.isfinite(value):
        trial.set_user_attr("error", f"{sweep.metric} is {value}")
        study.tell(trial, state=TrialState.FAIL)
        say(f"trial {trial.number}: failed: {sweep.metric} is {value}")
        return "FAIL"
    study.tell(trial, value)
    say(f"trial {trial.number}: {sweep.metric} {value:.5g}")
    return "COMPLETE"


def _note_run(run_id: int | None, message: str) -> None:
    if run_id is None:
        return
    from workbench.runs import HistoryError, RunHistory

    try:
        RunHistory().update(run_id, message=message)
    except HistoryError:
        pass  # the run itself is recorded; only this note is lost


def fmt_value(value: Any) -> str:
    """A parameter's value for a table or a line (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ----------------------------------------------------------------------------- reading a study


def question(study) -> dict:
    asked = study.user_attrs.get(STUDY_ATTR)
    if not isinstance(asked, dict):
        raise UsageError(f"study {study.study_name!r} was not made by `workbench sweep` (no preset stored with it)")
    return asked


def best_preset(study, name: str | None = None) -> Preset:
    """The study's preset with its best trial's parameters (named ``name`` if given)."""
    asked = question(study)
    try:
        best = study.best_trial
    except ValueError:
        raise UsageError(f"study {study.study_name!r} has no finished trial yet") from None
    base = Preset.from_dict(asked["preset"])
    preset = apply_values(base, dict(best.params))
    if name:
        preset.name = name
    preset.description = (f"{base.description} Tuned by sweep {study.study_name} (trial {best.number}: "
                          f"{asked['metric']} {best.value:.5g}).").strip()
    return preset


def importances(study) -> dict[str, float] | str:
    """Each parameter's share of the metric's variation (optuna.importance), or why there
    are none yet."""
    import optuna
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return "need two finished trials or more"
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError) as exc:
        return one_line(exc)
