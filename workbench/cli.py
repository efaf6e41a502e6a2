"""Command line: `workbench` (the window) and its headless commands.

Argument parsing only; each command's work lives in the engine or its own module.
Exit status: 0 success, 1 the run itself failed (e.g. a non-finite loss stopped it),
2 invalid input (one line on stderr, never a traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from workbench.errors import TrainingError, UsageError, is_user_error, one_line
from workbench.spec import SpecError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


# ----------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar with ETA on stderr (plain lines when not a terminal)."""

    def __init__(self, total: int, stream=sys.stderr, start_step: int = 0):
        self.total = max(total, 1)
        self.stream = stream
        self.start = time.perf_counter()
        self.start_step = start_step
        self.tty = stream.isatty()
        self.last_print = 0.0

    def update(self, step: int, text: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_print < (0.2 if self.tty else 5.0):
            return
        self.last_print = now
        done = step - self.start_step
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        frac = min(step / self.total, 1.0)
        bar = "#" * int(frac * 24)
        eta_text = _duration(eta) if eta == eta else "?"
        line = f"[{bar:<24}] {step}/{self.total} {frac:4.0%} elapsed {_duration(elapsed)} ETA {eta_text} {text}"
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# ----------------------------------------------------------------------------- commands


def cmd_presets(args) -> int:
    from workbench import presets

    for path in presets.builtin_paths():
        try:
            p = presets.load_builtin(path.stem)
            print(f"{path.stem}\t{p.data.task}\t{p.model.topology}\t{p.description}")
        except SpecError as exc:
            print(f"{path.stem}\t(invalid: {exc})")
    from workbench.commands.presets import list_user_lines  # the user's own, marked [user]

    for line in list_user_lines():
        print(line)
    return EXIT_OK


def load_preset_with_overrides(name: str, overrides: list[str], steps=None, device=None, seed=None):
    from workbench import presets, spec

    preset = presets.resolve(name)
    extra = list(overrides or [])
    if steps is not None:
        extra.append(f"train.steps={steps}")
    if device is not None:
        extra.append(f"train.device={device}")
    if seed is not None:
        extra.append(f"train.seed={seed}")
    return spec.with_overrides(preset, extra) if extra else preset


def default_run_dir(preset_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in preset_name)[:60] or "run"
    return Path("runs") / f"{safe}-{stamp}"


def _preset_context(args, exc: BaseException) -> BaseException:
    """A preset or set-up error raised after loading (task options, task vs model, memory),
    with where the preset came from, as spec.load does for the fields it checks."""
    from workbench.spec import SpecError

    field = getattr(exc, "field", "")
    overridden = [item.partition("=")[0].strip() for item in (getattr(args, "set", None) or [])]
    if field and any(field == key or field.startswith(key + ".") or key.startswith(field + ".") for key in overridden):
        where = "set with --set"
    elif Path(args.preset).is_file():
        where = f"in {args.preset}"
    else:
        where = f"preset {args.preset}"
    if where in str(exc):
        return exc
    if isinstance(exc, SpecError):
        return SpecError(exc.field, f"{exc.message} ({where})")
    return type(exc)(f"{one_line(exc)} ({where})")


def cmd_train(args) -> int:
    preset = load_preset_with_overrides(args.preset, args.set, args.steps, args.device, args.seed)
    from workbench.engine import distributed, gradstats
    from workbench.engine.records import Dynamics, End, NonFinite, Probe, Start, Step
    from workbench.engine.session import RunSession

    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(preset.name)
    resume = bool(args.resume)
    session = RunSession(preset, run_dir, source="cli", resume=resume)
    if not session.writes:  # torchrun rank > 0: trains in step with rank 0, writes and prints nothing
        session.open()
        with session:
            return distributed.run_worker(session)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume and (run_dir / "preset.json").exists():
        raise UsageError(f"run folder {run_dir} already holds a run; pass --resume to continue it "
                         f"or choose another --run-dir")
    # Everything that can refuse the input happens before the run folder is touched (the
    # session's open(): the task reads its data, the trainer checks the memory, builds
    # the model and, with --resume, restores the checkpoint).
    try:
        session.open()
    except (SpecError, TrainingError) as exc:  # (a data or weights error names its own file)
        raise _preset_context(args, exc) from None
    progress = None
    last_probe: dict = {}
    last_taps: dict = {}
    last_dynamics: Dynamics | None = None
    end = End(status="failed", message="the run gave no end record")
    with session:
        try:
            for record in session:
                if isinstance(record, Step):
                    if record.timestep_grad_norms:
                        last_taps = record.timestep_grad_norms
                    if progress and not args.quiet:
                        progress.update(record.step, f"loss {record.loss:.4g}")
                elif isinstance(record, Start):
                    progress = Progress(record.total_steps, start_step=record.step)
                    if not args.quiet:
                        print(f"training {preset.name} on {record.device}: {record.parameters:,} parameters, "
                              f"{record.total_steps} steps -> {run_dir}", file=sys.stderr)
                elif isinstance(record, Probe):
                    last_probe = record.hidden_grad_norms
                elif isinstance(record, Dynamics):
                    last_dynamics = record
                elif isinstance(record, NonFinite):
                    if progress and not args.quiet:
                        progress.close()
                    print(f"warning: {record.message}", file=sys.stderr)
                elif isinstance(record, End):
                    end = record
        except KeyboardInterrupt:
            session.stop()
            print("\ninterrupted: the last checkpoint is kept; continue with --resume", file=sys.stderr)
            return EXIT_FAILED
    if progress and not args.quiet:
        progress.update(end.step, force=True)
        progress.close()
    print(f"status: {end.status} after {end.step} steps in {end.time_s:.1f} s", file=sys.stderr)
    if end.message:
        print(end.message, file=sys.stderr)
    if end.metrics:
        baseline = session.task.baseline()
        parts = [f"{k} {v:.4g}" for k, v in end.metrics.items() if isinstance(v, (int, float))]
        if baseline:
            parts.append("trivial baseline: " + ", ".join(f"{k} {v:.4g}" for k, v in baseline.items()))
        print(f"final (all {end.eval_examples:,} validation examples): " + "; ".join(parts))
    profiles = last_probe or last_taps
    if profiles:
        which = "exact dL/dh_t (last probe)" if last_probe else "dL/dx_t at layer inputs"
        print(f"gradient through time, {which}:")
        for line in gradstats.summary_lines(profiles):
            print("  " + line)
    if last_dynamics is not None:
        print(f"dynamics (step {last_dynamics.step}, on the probe's batch):")
        for line in gradstats.dynamics_lines(last_dynamics):
            print("  " + line)
    return EXIT_OK if end.status in ("finished", "stopped") else EXIT_FAILED


def cmd_gui(args) -> int:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        print("workbench: no display found (DISPLAY is not set): the window cannot open here. "
              "Use the headless commands instead, e.g. `workbench train adding_lstm` (see `workbench --help`).",
              file=sys.stderr)
        return EXIT_INVALID
    from workbench.gui.app import run_app

    return run_app(args.file)


# Further commands, each in its own module under workbench/commands/:
# name -> "module:function", the function adding its subparser to ``sub``.
EXTRA_COMMANDS: dict[str, str] = {
    "eval": "workbench.commands.evaluate:register",
    "runs": "workbench.commands.runs:register",
    "export": "workbench.commands.export:register",
    "try": "workbench.commands.tryout:register",
    "install-desktop": "workbench.commands.desktop:register",
    "sweep": "workbench.commands.sweep:register",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2) like every other bad
    input, pointing at --help instead of printing the whole usage. Sub-commands' parsers
    are made with the same class (argparse's default for add_subparsers)."""

    def error(self, message: str):
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workbench", description="RNN Workbench: design, train and inspect recurrent networks. "
                                     "With no command, opens the window.")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("gui", help="open the window (the default)")
    p.add_argument("file", nargs="?", help="a preset to open")
    p.set_defaults(func=cmd_gui)
    p = sub.add_parser("presets", help="list the presets (built-in, then the user's own marked [user]), one a line, "
                       "name first; 'save', 'delete', 'folder' manage the user's own")
    p.set_defaults(func=cmd_presets)
    from workbench.commands.presets import add_actions

    add_actions(p)
    p = sub.add_parser("train", help="train a preset headless")
    p.add_argument("preset", help="a preset file, or the name of a built-in preset")
    p.add_argument("--steps", type=int, help="optimizer steps (sets train.steps)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="sets train.device")
    p.add_argument("--seed", type=int, help="sets train.seed")
    p.add_argument("--run-dir", help="where to write preset.json, metrics.jsonl and the weights")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any preset field by its dotted path, e.g. model.layers.0.hidden_size=256")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
    import importlib

    for target in EXTRA_COMMANDS.values():
        module, _, func = target.partition(":")
        try:
            getattr(importlib.import_module(module), func)(sub)
        except ImportError:
            continue
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *argv])
    from workbench.engine import cpu_policy

    # The allocator's settings must precede the first large allocation: before any command
    # loads data or torch (workbench/engine/cpu_policy.py).
    cpu_policy.apply(f"cli {args.command}")
    try:
        return args.func(args)
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which handles its own): no traceback
        print("workbench: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if is_user_error(exc):
            print(f"workbench: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_INVALID
        if os.environ.get("WORKBENCH_DEBUG"):
            raise
        print(f"workbench: internal error: {type(exc).__name__}: {one_line(exc)} "
              f"(set WORKBENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILED



if __name__ == "__main__":
    sys.exit(main())
