"""The window's run collection as a small Qt-free model: the history's runs (every run
on this machine, from workbench.runs.RunHistory) and this session's runs (trained in
the window or opened from a folder), one entry per run folder, with the curves the
plots draw (RunData) for those the user overlays. Widgets subscribe to it, as to the
PresetDocument; it publishes add / remove / update / select / reset events.

No Qt and no torch here: the model is tested on its own, and the Runs panel and the
window only render it and forward clicks.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.gui.rundata import RunData, load_run_folder
from workbench.runs import HistoryError, RunHistory, RunInfo

HISTORY_LIMIT = 500  # rows listed at start; older runs stay in `workbench runs`


@dataclass
class RunsEvent:
    """What a listener is told. kind: "add", "remove", "update" (status, steps, metrics
    or overlay changed), "select" (the selected entry; None when none), "reset" (the
    whole list, e.g. the history reloaded or the metric names arrived)."""

    kind: str
    entry: RunEntry | None = None


@dataclass(eq=False)
class RunEntry:
    """One run: its history row (``info``) and/or its curves (``data``, once loaded or
    while it trains in this window)."""

    key: str  # the resolved run folder; "memory:<n>" for a run without one
    info: RunInfo | None = None
    data: RunData | None = None
    session: bool = False  # trained or opened in this window
    added_at: float = 0.0
    copy: bool = False  # a folder opened a second time beside its first entry (goes when taken out)

    @property
    def run_dir(self) -> str:
        if self.data is not None and self.data.run_dir:
            return self.data.run_dir
        return self.info.run_dir if self.info is not None else ""

    @property
    def name(self) -> str:
        return self.data.name if self.data is not None else (self.info.label if self.info else "run")

    @property
    def task(self) -> str:
        if self.data is not None and self.data.task:
            return self.data.task
        return self.info.task if self.info is not None else ""

    @property
    def status(self) -> str:
        # a run training here knows better than its row (written every few seconds); a
        # folder's curves do not know that their run was killed, its row does
        if self.data is not None and (self.data.live or self.info is None):
            return self.data.status or "loaded"
        return self.info.status if self.info is not None else "loaded"

    @property
    def step(self) -> int:
        if self.data is not None and len(self.data.steps):
            return self.data.last_step
        return self.info.step if self.info is not None else 0

    @property
    def started_at(self) -> float:
        return self.info.started_at if self.info is not None else self.added_at

    def metrics(self) -> dict[str, float]:
        """The latest evaluation's metrics: the live curves' when there are any, else the row's."""
        if self.data is not None and self.data.val_metrics:
            return {k: v[-1] for k, v in self.data.val_metrics.items() if v}
        return dict(self.info.metrics) if self.info is not None else {}

    def val_loss(self) -> float:
        if self.data is not None and len(self.data.val_loss):
            return self.data.val_loss.last()
        metrics = self.metrics()
        value = metrics.get("val_loss", metrics.get("loss", math.nan))
        return float(value) if isinstance(value, (int, float)) else math.nan

    def folder_has(self, *names: str) -> bool:
        folder = Path(self.run_dir) if self.run_dir else None
        return folder is not None and all((folder / n).is_file() for n in names)

    def has_weights(self) -> bool:
        """Trained weights to try or export: model.safetensors, or a checkpoint's."""
        if not self.folder_has("preset.json"):
            return False
        folder = Path(self.run_dir)
        return (folder / "model.safetensors").is_file() or any((folder / "checkpoints").glob("*.safetensors"))

    def can_overlay(self) -> bool:
        return self.data is not None or self.folder_has("metrics.jsonl")

    def in_plots(self, plotted: list[RunData]) -> bool:
        return self.data is not None and any(r is self.data for r in plotted) and self.data.visible


def folder_key(run_dir: str | Path) -> str:
    try:
        return str(Path(run_dir).resolve())
    except OSError:
        return str(run_dir)


def main_metric(entry: RunEntry, names: dict[str, str]) -> tuple[str, float] | None:
    """The task's main metric (``names``: task -> its ``main_metric``) and its latest
    value; a per-unit metric ("nats_per_char") matches the run's own unit
    ("nats_per_word"). None when the run has none yet (the caller falls back to its
    validation loss)."""
    metrics = entry.metrics()
    wanted = names.get(entry.task)
    candidates = [wanted] if wanted else []
    if wanted and "_per_" in wanted:
        prefix = wanted.split("_per_")[0] + "_per_"
        candidates += sorted(k for k in metrics if k.startswith(prefix))
    for name in candidates:
        value = metrics.get(name)
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        return name, value
    return None


def describe(entry: RunEntry, names: dict[str, str]) -> str:
    """The entry's line in the Runs list: name, status, steps, the main metric by name."""
    status = entry.status
    parts = ["⚠ interrupted" if status == "interrupted" else status]
    if entry.step:
        parts.append(f"{entry.step} steps")
    found = main_metric(entry, names)
    if found is not None and math.isfinite(found[1]):
        parts.append(f"{found[0].replace('_', ' ')} {found[1]:.4g}")
    elif math.isfinite(entry.val_loss()):
        parts.append(f"val loss {entry.val_loss():.4g}")
    if entry.data is not None and entry.data.non_finite:
        parts.append(f"{len(entry.data.non_finite)} non-finite")
    if entry.task:
        parts.append(entry.task)
    return f"{entry.name} — " + ", ".join(parts)


def matches(entry: RunEntry, text: str) -> bool:
    """The search field: every word found in the name, task or status (any case)."""
    hay = f"{entry.name} {entry.task} {entry.status}".lower()
    return all(word in hay for word in text.lower().split())


class RunsModel:
    """The runs the window knows, most recent first (``entries``), and the curves in the
    plots in drawing order (``plotted``: the list the plot panels read)."""

    def __init__(self, history: RunHistory | None = None, clock: Callable[[], float] = time.time):
        self.history = history
        self.clock = clock
        self.entries: list[RunEntry] = []
        self.plotted: list[RunData] = []
        self.selected: RunEntry | None = None
        self.metric_names: dict[str, str] = {}  # task -> main_metric, once the task classes are loaded
        self.history_error = ""
        self._listeners: list[Callable[[RunsEvent], None]] = []
        self._memory = 0

    # -- subscribe ----------------------------------------------------------------------
    def subscribe(self, callback: Callable[[RunsEvent], None]) -> Callable[[], None]:
        """Call ``callback(RunsEvent)`` after every change; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self, kind: str, entry: RunEntry | None = None) -> None:
        event = RunsEvent(kind, entry)
        for cb in list(self._listeners):
            cb(event)

    # -- reading ------------------------------------------------------------------------
    def sorted_entries(self) -> list[RunEntry]:
        return sorted(self.entries, key=lambda e: e.started_at, reverse=True)

    def find(self, run_dir: str | Path | None = None, data: RunData | None = None) -> RunEntry | None:
        for e in self.entries:
            if data is not None and e.data is data:
                return e
        if run_dir:
            key = folder_key(run_dir)
            for e in self.entries:
                if e.key == key:
                    return e
        return None

    def describe(self, entry: RunEntry) -> str:
        return describe(entry, self.metric_names)

    # -- the history --------------------------------------------------------------------
    def load_history(self, limit: int = HISTORY_LIMIT) -> int:
        """(Re)read the history's rows: rows of runs killed since are marked interrupted
        first. Returns how many rows were read; an unusable history file is kept in
        ``history_error`` (the list then shows this session's runs only)."""
        if self.history is None:
            try:
                self.history = RunHistory()
            except Exception as exc:  # noqa: BLE001 - an unusable data folder must not stop the window
                self.history_error = str(exc)
                return 0
        try:
            self.history.recover_interrupted()
            rows = self.history.list(limit=limit)
        except HistoryError as exc:
            self.history_error = str(exc)
            return 0
        self.history_error = ""
        by_key = {e.key: e for e in self.entries}
        for info in rows:
            key = folder_key(info.run_dir) if info.run_dir else f"history:{info.id}"
            entry = by_key.get(key)
            if entry is None:
                entry = RunEntry(key=key, info=info, added_at=info.started_at)
                self.entries.append(entry)
                by_key[key] = entry
            else:
                entry.info = info
        self._notify("reset")
        return len(rows)

    def refresh_row(self, entry: RunEntry) -> None:
        """Re-read one entry's history row (after its run ended here)."""
        if self.history is None or not entry.run_dir:
            return
        try:
            rows = self.history.list(run_dir=entry.run_dir, limit=1)
        except HistoryError:
            return
        if rows:
            entry.info = rows[0]
            self._notify("update", entry)

    def set_metric_names(self, names: dict[str, str]) -> None:
        if names != self.metric_names:
            self.metric_names = dict(names)
            self._notify("reset")

    # -- changing -----------------------------------------------------------------------
    def add_run(self, data: RunData, session: bool = True, plot: bool = True, merge: bool = True) -> RunEntry:
        """A run trained or opened here: its entry (the history's, when the folder has
        one) gets the curves; ``plot`` puts them in the plots. ``merge=False``: a second
        entry even when the folder has one (the same run opened twice)."""
        entry = self.find(data=data)
        if entry is None and merge and data.run_dir:
            entry = self.find(run_dir=data.run_dir)
        if entry is None:
            copy = not merge and bool(data.run_dir)
            if data.run_dir and not copy:
                key = folder_key(data.run_dir)
            else:
                self._memory += 1
                key = f"memory:{self._memory}"
            entry = RunEntry(key=key, data=data, session=session, added_at=self.clock(), copy=copy)
            self.entries.append(entry)
            kind = "add"
        else:
            entry.data, entry.session = data, entry.session or session
            kind = "update"
        if plot and not any(r is data for r in self.plotted):
            self.plotted.append(data)
        self._notify(kind, entry)
        return entry

    def attach(self, entry: RunEntry, data: RunData) -> RunData:
        """Put ``data`` (the entry's curves, read from its folder) in the plots."""
        entry.data = data
        if entry.info is not None:
            data.name = entry.info.label
        data.visible = True
        if not any(r is data for r in self.plotted):
            self.plotted.append(data)
        self._notify("update", entry)
        return data

    def overlay(self, entry: RunEntry, colour: str) -> RunData:
        """Put ``entry``'s curves in the plots, reading its metrics.jsonl the first time.
        Raises what load_run_folder raises (a missing or malformed file, named)."""
        if entry.data is None:
            return self.attach(entry, load_run_folder(entry.run_dir, colour))
        entry.data.visible = True
        if not any(r is entry.data for r in self.plotted):
            self.plotted.append(entry.data)
        self._notify("update", entry)
        return entry.data

    def set_visible(self, entry: RunEntry, visible: bool) -> None:
        if entry.data is not None:
            entry.data.visible = visible
            if visible and not any(r is entry.data for r in self.plotted):
                self.plotted.append(entry.data)
            self._notify("update", entry)

    def unplot(self, data: RunData) -> None:
        """Take a run's curves out of the plots; its entry stays listed when the history
        has it (or it has a folder), else it goes."""
        self.plotted[:] = [r for r in self.plotted if r is not data]
        entry = self.find(data=data)
        if entry is None:
            return
        if entry.copy or (entry.info is None and not entry.run_dir):
            self.remove(entry)
        else:
            entry.data.visible = False
            self._notify("update", entry)

    def remove(self, entry: RunEntry) -> None:
        if entry in self.entries:
            self.entries.remove(entry)
            if entry.data is not None:
                self.plotted[:] = [r for r in self.plotted if r is not entry.data]
            if self.selected is entry:
                self.select(None)
            self._notify("remove", entry)

    def forget_row(self, entry: RunEntry) -> None:
        """A discarded run: its history row is deleted and its entry goes."""
        if self.history is not None and entry.info is not None:
            try:
                self.history.delete(entry.info.id)
            except HistoryError:
                pass
        self.remove(entry)

    def changed(self, entry: RunEntry) -> None:
        """Tell listeners an entry's status, steps or metrics moved (a live run)."""
        self._notify("update", entry)

    def select(self, entry: RunEntry | None) -> None:
        if entry is not self.selected:
            self.selected = entry
            self._notify("select", entry)
