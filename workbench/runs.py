"""The run history: every training run (GUI or CLI) as a row in a local SQLite file.

No Qt and no torch here: the CLI (``workbench runs``) and the GUI's runs panel use the
same plain API:

    history = RunHistory()                     # userdirs.history_path(), or a path
    run_id = history.start(preset, run_dir, source="gui")
    history.update(run_id, device="cuda", total_steps=3000, step=500)
    history.finish(run_id, "finished", metrics={"mse": 0.002}, step=3000)
    history.list(status="finished", task="adding", name="gru", limit=50)  # -> [RunInfo]
    history.get(run_id); history.mark(run_id, "stopped"); history.delete(run_id)

or, fed with the trainer's records (workbench/engine/records.py) by the one run
session (workbench/engine/session.py) that the CLI, the window and torchrun all use:
the row is 'running' from the start, with a heartbeat while the run goes, so a killed
app's run shows up as 'interrupted':

    with RunRecorder(preset, run_dir, source="gui") as rec:
        for record in trainer.run():
            rec.observe(record, train_s)

The metrics series stay in the run folder (metrics.jsonl); the history holds what a list
needs: the preset (name and JSON), start/end time, training time (pauses and the idle
time between the sessions of a continued run left out), device, status, final metrics
and the run folder's path.

Crash safety: the file is in WAL mode (readers never block the one writer, and a killed
writer leaves the last committed state), every write is one short ``BEGIN IMMEDIATE``
transaction, and a busy timeout makes concurrent writers (a GUI and two CLI runs) wait
their turn instead of failing. A run whose process was killed stays ``running`` in the
file; the next time anyone opens the history on that machine, rows whose process is gone
(pid not alive, or reused by another process) are marked ``interrupted``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("running", "finished", "stopped", "failed", "interrupted")
ENDED = ("finished", "stopped", "failed", "interrupted")
BUSY_TIMEOUT_S = 10.0
# train_s, study and trial were added as columns without a new version: an older
# workbench (which names its columns) reads and writes such a file as before.
SCHEMA_VERSION = 1
# A heartbeat (step, training time) is written at most this often while a run goes.
HEARTBEAT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,            -- the preset's name
    task        TEXT    NOT NULL DEFAULT '',
    topology    TEXT    NOT NULL DEFAULT '',
    preset_json TEXT    NOT NULL,            -- the resolved preset, as run
    status      TEXT    NOT NULL,            -- one of STATUSES
    source      TEXT    NOT NULL DEFAULT '', -- 'cli' / 'gui'
    run_dir     TEXT    NOT NULL DEFAULT '', -- absolute path of the run folder
    device      TEXT    NOT NULL DEFAULT '',
    started_at  REAL    NOT NULL,            -- unix seconds
    updated_at  REAL    NOT NULL,            -- last progress written
    ended_at    REAL,
    step        INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    metrics     TEXT    NOT NULL DEFAULT '{}', -- final (or latest eval) metrics, JSON
    message     TEXT    NOT NULL DEFAULT '',
    host        TEXT    NOT NULL DEFAULT '',
    pid         INTEGER NOT NULL DEFAULT 0,
    pid_start   TEXT    NOT NULL DEFAULT '', -- the process's start tick, to spot a reused pid
    train_s     REAL    NOT NULL DEFAULT 0,  -- training time: pauses and gaps between sessions left out
    study       TEXT,                        -- a sweep's trial: the Optuna study's name (workbench/sweep.py)
    trial       INTEGER                      -- ... and the trial's number in it; both NULL for a plain run
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""
_COLUMNS = ("id", "name", "task", "topology", "preset_json", "status", "source", "run_dir", "device",
            "started_at", "updated_at", "ended_at", "step", "total_steps", "metrics", "message",
            "host", "pid", "pid_start", "train_s", "study", "trial")
# Columns added after the first release, with their definitions (ALTER TABLE on an older file).
_ADDED_COLUMNS = {"train_s": "REAL NOT NULL DEFAULT 0", "study": "TEXT", "trial": "INTEGER"}
_UPDATABLE = {"status", "device", "step", "total_steps", "metrics", "message", "ended_at", "run_dir", "train_s"}


class HistoryError(RuntimeError):
    """The history file cannot be opened, read or written; the message names it."""


def trial_label(study: str, trial: int) -> str:
    """A sweep trial's run as the window names it: 'STUDY #7'."""
    return f"{study} #{trial}"


@dataclass
class RunInfo:
    """One row of the history (plain data for any UI)."""

    id: int
    name: str
    task: str
    topology: str
    preset_json: str
    status: str
    source: str
    run_dir: str
    device: str
    started_at: float
    updated_at: float
    ended_at: float | None
    step: int
    total_steps: int
    metrics: dict = field(default_factory=dict)
    message: str = ""
    host: str = ""
    pid: int = 0
    pid_start: str = ""
    train_s: float = 0.0
    study: str | None = None  # a sweep trial's study and trial number (None: a plain run)
    trial: int | None = None

    @property
    def label(self) -> str:
        """The name a list shows: a sweep trial's study and number, else the preset's name."""
        return trial_label(self.study, self.trial) if self.study and self.trial is not None else self.name

    @property
    def duration_s(self) -> float | None:
        """Training time: the sessions' training time without pauses or the idle time
        between sessions; rows written before it was kept fall back to wall time."""
        if self.train_s > 0 or self.status == "running":
            return self.train_s
        end = self.ended_at
        return None if end is None else max(end - self.started_at, 0.0)

    def preset(self):
        """The stored preset as a workbench.spec.Preset (validated)."""
        from workbench.spec import loads

        return loads(self.preset_json, source=f"the preset of run {self.id} in the history")

    def to_dict(self) -> dict:
        out = {name: getattr(self, name) for name in _COLUMNS if name != "preset_json"}
        out["preset"] = json.loads(self.preset_json) if self.preset_json else None
        out["duration_s"] = self.duration_s
        return out


# ----------------------------------------------------------------------------- processes


def _process_start(pid: int) -> str:
    """An id of the process's start (Linux: start time in clock ticks), '' if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return ""
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else ""  # field 22 overall = index 19 after comm


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform.startswith("win"):
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return False
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return False
    return True


def _zombie(pid: int) -> bool:
    """A killed child its parent has not reaped yet is dead for our purposes."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            rest = fh.read().decode("ascii", "replace").rsplit(")", 1)[-1].split()
        return bool(rest) and rest[0] in ("Z", "X")
    except OSError:
        return False


def process_gone(pid: int, pid_start: str) -> bool:
    """True when the process that wrote a 'running' row is certainly no longer running."""
    if not _pid_alive(pid) or _zombie(pid):
        return True
    if pid_start:
        now = _process_start(pid)
        return bool(now) and now != pid_start  # the pid now belongs to another process
    return False


_HOST = socket.gethostname()


# ----------------------------------------------------------------------------- the history


def _plain_metrics(metrics: dict | None) -> str:
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if isinstance(v, str):
                out[str(k)] = v
            continue
        v = float(v)
        out[str(k)] = v if math.isfinite(v) else str(v)  # JSON has no NaN/Inf
    return json.dumps(out, sort_keys=True)


class RunHistory:
    """The SQLite run history. Each call opens, uses and closes its own connection, so
    one object may be shared between threads and a killed process holds no lock."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            from workbench.userdirs import history_path

            path = history_path()
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open the run history {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not self._ready:
                self._initialise(conn)
            yield conn
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"the run history {self.path} cannot be used: {exc} "
                               f"(move the file away to start a new history)") from None
        finally:
            conn.close()

    def _initialise(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            # WAL: readers never block the writer; a killed writer loses at most its open
            # transaction. synchronous=NORMAL is durable against process crashes in WAL mode.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError(f"cannot switch to WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"it was written by a newer workbench (schema {version})")
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for name, definition in _ADDED_COLUMNS.items():
                if name in have:
                    continue
                try:  # a file from before this column (another process may be adding it right now)
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {definition}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):
                        raise
            self._ready = True
            self._recover(conn)

    @staticmethod
    def _write(conn: sqlite3.Connection, fn):
        """One short write transaction (BEGIN IMMEDIATE takes the write lock up front, so
        a busy database waits for the busy timeout instead of failing half-way)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- interrupted runs -----------------------------------------------------------
    def _recover(self, conn: sqlite3.Connection) -> list[int]:
        rows = conn.execute("SELECT id, pid, pid_start, updated_at FROM runs "
                            "WHERE status = 'running' AND host = ?", (_HOST,)).fetchall()
        gone = [(rid, updated) for rid, pid, start, updated in rows if process_gone(pid, start)]
        if gone:
            def mark(c):
                for rid, updated in gone:
                    c.execute("UPDATE runs SET status = 'interrupted', ended_at = ?, message = "
                              "'the process ended without closing the run (killed or crashed)' "
                              "WHERE id = ? AND status = 'running'", (updated, rid))
            self._write(conn, mark)
        return [rid for rid, _ in gone]

    def recover_interrupted(self) -> list[int]:
        """Mark 'running' rows of this machine whose process is gone as 'interrupted'.

        Runs automatically the first time a RunHistory object touches the file; call it
        again (e.g. when the runs panel refreshes) to catch runs killed since."""
        with self._connect() as conn:
            return self._recover(conn)

    # -- writing ----------------------------------------------------------------------
    def start(self, preset, run_dir: str | Path, source: str = "cli", device: str = "",
              total_steps: int = 0, resume: bool = False, study: str | None = None,
              trial: int | None = None) -> int:
        """A new row with status 'running' for this process; returns its id.

        ``study``, ``trial``: the sweep trial this run is (workbench/sweep.py).

        ``resume``: the most recent row for the same run folder (if any, and not running)
        is reopened instead, so one run folder stays one row across resumes (its
        training time goes on from where it was)."""
        run_dir_text = str(Path(run_dir).resolve()) if run_dir else ""
        now = time.time()
        pid = os.getpid()
        fields = dict(name=preset.name, task=preset.data.task, topology=preset.model.topology,
                      preset_json=preset.to_json(), status="running", source=source, run_dir=run_dir_text,
                      device=device, started_at=now, updated_at=now, ended_at=None, step=0,
                      total_steps=int(total_steps), metrics="{}", message="", host=_HOST, pid=pid,
                      pid_start=_process_start(pid), study=study, trial=None if trial is None else int(trial))

        def insert(c):
            if resume and run_dir_text:
                row = c.execute("SELECT id FROM runs WHERE run_dir = ? AND status != 'running' "
                                "ORDER BY id DESC LIMIT 1", (run_dir_text,)).fetchone()
                if row is not None:
                    c.execute("UPDATE runs SET status = 'running', preset_json = ?, device = ?, updated_at = ?, "
                              "ended_at = NULL, message = '', host = ?, pid = ?, pid_start = ?, source = ? "
                              "WHERE id = ?", (fields["preset_json"], device, now, _HOST, pid,
                                               fields["pid_start"], source, row[0]))
                    return int(row[0])
            names = [k for k in fields]
            cur = c.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                            [fields[k] for k in names])
            return int(cur.lastrowid)

        with self._connect() as conn:
            return self._write(conn, insert)

    def update(self, run_id: int, **fields: Any) -> None:
        """Set some of: status, device, step, total_steps, metrics (dict), message,
        ended_at, run_dir. Unknown names are a programming error (ValueError)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update run fields {sorted(unknown)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status {fields['status']!r} is not one of {', '.join(STATUSES)}")
        if "metrics" in fields:
            fields["metrics"] = _plain_metrics(fields["metrics"])
        fields["updated_at"] = time.time()
        names = sorted(fields)
        with self._connect() as conn:
            self._write(conn, lambda c: c.execute(
                f"UPDATE runs SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                [fields[n] for n in names] + [int(run_id)]))

    def finish(self, run_id: int, status: str, metrics: dict | None = None, message: str = "",
               step: int | None = None, train_s: float | None = None) -> None:
        """Close a run: status one of finished / stopped / failed / interrupted."""
        if status not in ENDED:
            raise ValueError(f"a run ends as one of {', '.join(ENDED)}, not {status!r}")
        fields: dict[str, Any] = {"status": status, "ended_at": time.time(), "message": message}
        if metrics is not None:
            fields["metrics"] = metrics
        if step is not None:
            fields["step"] = int(step)
        if train_s is not None:
            fields["train_s"] = float(train_s)
        self.update(run_id, **fields)

    def mark(self, run_id: int, status: str, message: str | None = None) -> None:
        """Set a run's status (e.g. the GUI marks a run 'stopped' when the user stops it)."""
        fields: dict[str, Any] = {"status": status}
        if status in ENDED:
            fields["ended_at"] = time.time()
        if message is not None:
            fields["message"] = message
        self.update(run_id, **fields)

    def delete(self, run_id: int, remove_folder: bool = False) -> bool:
        """Remove a run's row (and, if asked, its run folder). Returns whether it existed.

        The folder is removed only when it holds a run (a preset.json), never a bare path."""
        info = self.get(run_id)
        if info is None:
            return False
        if remove_folder and info.run_dir:
            folder = Path(info.run_dir)
            if folder.is_dir() and (folder / "preset.json").is_file():
                import shutil

                shutil.rmtree(folder)
        with self._connect() as conn:
            self._write(conn, lambda c: c.execute("DELETE FROM runs WHERE id = ?", (int(run_id),)))
        return True

    # -- reading ----------------------------------------------------------------------
    def get(self, run_id: int) -> RunInfo | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        return _info(row) if row else None

    def list(self, status: str | tuple[str, ...] | None = None, task: str | None = None,
             name: str | None = None, since: float | None = None, run_dir: str | Path | None = None,
             limit: int | None = None, newest_first: bool = True, study: str | None = None) -> list[RunInfo]:
        """Runs matching every filter given: status (one or several), task (exact),
        name (case-insensitive substring of the preset name), since (unix seconds,
        started at or after), run_dir (that folder), study (a sweep's trials)."""
        where, args = [], []
        if status:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += list(statuses)
        if task:
            where.append("task = ?")
            args.append(task)
        if name:
            where.append("instr(lower(name), lower(?)) > 0")
            args.append(name)
        if since is not None:
            where.append("started_at >= ?")
            args.append(float(since))
        if run_dir is not None:
            where.append("run_dir = ?")
            args.append(str(Path(run_dir).resolve()))
        if study is not None:
            where.append("study = ?")
            args.append(study)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY started_at {'DESC' if newest_first else 'ASC'}, id {'DESC' if newest_first else 'ASC'}"
        if limit:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_info(r) for r in rows]


def _info(row) -> RunInfo:
    values = dict(zip(_COLUMNS, row))
    try:
        values["metrics"] = json.loads(values["metrics"] or "{}")
    except json.JSONDecodeError:
        values["metrics"] = {}
    return RunInfo(**values)


# ----------------------------------------------------------------------------- recording a run


class RunRecorder:
    """Keeps one run's row in step with the trainer's records (the run session's part).

    Opened ('running') on enter; ``observe(record, train_s)`` takes each record with the
    run's training time so far (Start: device and total steps; Step: a heartbeat at most
    every HEARTBEAT_S; Eval: progress and latest metrics; Checkpoint: progress; End: the
    final status and metrics). Leaving the block without an End marks the run 'stopped'
    (e.g. Ctrl-C) or, on an exception, 'failed' with its message.

    The history must never cost a user their run: if the file cannot be used, a single
    warning goes to ``warn`` and training goes on unrecorded."""

    def __init__(self, preset, run_dir: str | Path, source: str = "cli", resume: bool = False,
                 history: RunHistory | None = None, warn=None, clock=time.monotonic,
                 study: str | None = None, trial: int | None = None):
        self.preset = preset
        self.study, self.trial = study, trial
        self.run_dir = run_dir
        self.source = source
        self.resume = resume
        self.history = history
        self.warn = warn if warn is not None else (lambda text: print(text, file=sys.stderr))
        self.clock = clock
        self.run_id: int | None = None
        self.ended = False
        self.train_s_before = 0.0  # training time of the run's earlier sessions (a continued run)
        self._step = 0
        self._train_s = 0.0
        self._beat = -math.inf

    def _safely(self, fn, *args, **kwargs):
        if self.history is None:
            return None
        try:
            return fn(*args, **kwargs)
        except HistoryError as exc:
            self.warn(f"warning: the run is not recorded in the history: {exc}")
            self.history = None
            return None

    def __enter__(self) -> RunRecorder:
        if self.history is None:
            try:
                self.history = RunHistory()
            except Exception as exc:  # noqa: BLE001 - an unusable data folder must not stop training
                self.warn(f"warning: the run is not recorded in the history: {exc}")
                return self
        self.run_id = self._safely(self.history.start, self.preset, self.run_dir, source=self.source,
                                   resume=self.resume, study=self.study, trial=self.trial)
        if self.run_id is not None and self.resume:
            info = self._safely(self.history.get, self.run_id)
            self.train_s_before = float(info.train_s) if info is not None else 0.0
        return self

    def observe(self, record, train_s: float | None = None) -> None:
        """``train_s``: this session's training time so far (pauses left out)."""
        from workbench.engine.records import Checkpoint, End, Eval, Start, Step

        if self.run_id is None:
            return
        if train_s is not None:
            self._train_s = float(train_s)
        total = self.train_s_before + self._train_s
        if isinstance(record, Step):
            self._step = record.step
            if self.clock() - self._beat >= HEARTBEAT_S:  # the heartbeat: progress while it runs
                self._beat = self.clock()
                self._safely(self.history.update, self.run_id, step=self._step, train_s=total)
        elif isinstance(record, Start):
            self._step = record.step
            self._safely(self.history.update, self.run_id, device=record.device,
                         total_steps=record.total_steps, step=self._step, train_s=total)
        elif isinstance(record, Eval):
            self._step = record.step
            self._safely(self.history.update, self.run_id, step=self._step, metrics=record.metrics, train_s=total)
        elif isinstance(record, Checkpoint):
            self._step = record.step
            self._safely(self.history.update, self.run_id, step=self._step, train_s=total)
        elif isinstance(record, End):
            self.ended = True
            metrics = dict(record.metrics)
            metrics.setdefault("last_loss", record.last_loss)
            status = record.status if record.status in ENDED else "failed"
            self._safely(self.history.finish, self.run_id, status, metrics=metrics, message=record.message,
                         step=record.step, train_s=self.train_s_before + (self._train_s if train_s is not None
                                                                          else record.time_s))

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.run_id is not None and not self.ended:
            total = self.train_s_before + self._train_s
            if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
                self._safely(self.history.finish, self.run_id, "stopped", message="stopped before the end",
                             step=self._step, train_s=total)
            else:
                text = " ".join(str(exc).split()) or exc_type.__name__
                self._safely(self.history.finish, self.run_id, "failed", message=f"{exc_type.__name__}: {text}",
                             step=self._step, train_s=total)
        return False
