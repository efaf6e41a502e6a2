"""`workbench runs`: the run history in the terminal.

    workbench runs [--status S] [--task T] [--name TEXT] [--study NAME] [--since DATE] [--limit N] [--json]
    workbench runs show ID          one run in full (JSON)
    workbench runs delete ID [--files]
"""
from __future__ import annotations

import datetime as _dt
import json
import sys
import time

from workbench.runs import STATUSES, HistoryError, RunHistory, RunInfo

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list the run history (newest first); 'show ID', 'delete ID'",
                              description="The run history: every training run, GUI or CLI, with its status.")
    p.add_argument("--status", action="append", choices=STATUSES, help="only runs with this status (repeatable)")
    p.add_argument("--task", help="only runs of this task")
    p.add_argument("--name", help="only runs whose preset name contains this text")
    p.add_argument("--study", help="only the trials of this sweep study (`workbench sweep`)")
    p.add_argument("--since", help="only runs started on or after this date (YYYY-MM-DD) or this long ago (e.g. 3d, 12h)")
    p.add_argument("--limit", type=int, default=50, help="at most this many runs (0: all; default 50)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.set_defaults(func=cmd_runs, runs_action=None)
    actions = p.add_subparsers(dest="runs_action")
    s = actions.add_parser("show", help="one run in full, as JSON")
    s.add_argument("id", type=int)
    s.set_defaults(func=cmd_runs)
    d = actions.add_parser("delete", help="remove a run from the history")
    d.add_argument("id", type=int)
    d.add_argument("--files", action="store_true", help="also delete its run folder")
    d.set_defaults(func=cmd_runs)


def parse_since(text: str) -> float:
    """'2024-05-01' (local midnight) or a span back from now: '90m', '12h', '3d', '2w'."""
    text = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[-1:].lower() in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1].lower()]
    try:
        return _dt.datetime.strptime(text, "%Y-%m-%d").timestamp()
    except ValueError:
        raise ValueError(f"--since: {text!r} is neither a date (YYYY-MM-DD) nor a span like 3d or 12h") from None


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _metric_text(info: RunInfo) -> str:
    parts = []
    for key, value in info.metrics.items():
        if key == "last_loss" and len(info.metrics) > 1:
            continue
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts[:3])


def format_table(runs: list[RunInfo]) -> list[str]:
    header = ("id", "status", "preset", "task", "started", "time", "steps", "device", "final metrics", "run folder")
    rows = [(str(r.id), r.status, r.name + (f" [{r.study}#{r.trial}]" if r.study else ""), r.task, _when(r.started_at), _duration(r.duration_s),
             f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step), r.device or "-",
             _metric_text(r) or "-", r.run_dir) for r in runs]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = 0  # the last column is not padded
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [fmt(header)] + [fmt(row) for row in rows]


def cmd_runs(args) -> int:
    try:
        history = RunHistory()
        if args.runs_action == "show":
            info = history.get(args.id)
            if info is None:
                print(f"workbench: error: no run {args.id} in the history {history.path}", file=sys.stderr)
                return EXIT_INVALID
            print(json.dumps(info.to_dict(), indent=2))
            return EXIT_OK
        if args.runs_action == "delete":
            if not history.delete(args.id, remove_folder=args.files):
                print(f"workbench: error: no run {args.id} in the history {history.path}", file=sys.stderr)
                return EXIT_INVALID
            print(f"deleted run {args.id}" + (" and its run folder" if args.files else ""), file=sys.stderr)
            return EXIT_OK
        since = parse_since(args.since) if args.since else None
        if args.limit < 0:
            raise ValueError(f"--limit must be 0 (all) or more, got {args.limit}")
        runs = history.list(status=tuple(args.status) if args.status else None, task=args.task, name=args.name,
                            since=since, limit=args.limit or None, study=args.study)
    except (HistoryError, ValueError) as exc:
        print(f"workbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        for info in runs:
            print(json.dumps(info.to_dict()))
        return EXIT_OK
    if not runs:
        print(f"no runs recorded yet (history: {history.path})" if not any(
            (args.status, args.task, args.name, args.since, args.study)) else "no runs match", file=sys.stderr)
        return EXIT_OK
    for line in format_table(runs):
        print(line)
    return EXIT_OK
