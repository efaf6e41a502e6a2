"""What the window needs from the tasks, fetched off the GUI thread and cached.

Task modules import torch, and a task's ModelIO may need its data read (a vocabulary
built from a corpus), so neither may run on the GUI thread. A one-thread pool loads
the task classes, prepares tasks for their ModelIO (newest request first; stale ones
are dropped) and probes the devices; results come back through a queued signal.
Until a result is there the window shows estimates (``fallback_io``) and says so.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal, Slot

from workbench.errors import describe
from workbench.spec import ModelIO, Preset, SpecError


@dataclass
class TaskInfo:
    name: str
    title: str = ""
    topologies: tuple[str, ...] = ()
    options: dict = dataclasses.field(default_factory=dict)  # the defaults of data.options
    cls: type | None = None
    error: str = ""  # the module failed to import


@dataclass
class IOResult:
    io: ModelIO | None
    error: SpecError | None  # why the task could not prepare (field + message)


def io_key(preset: Preset) -> str:
    d = preset.data
    return json.dumps([d.task, d.path, d.options, preset.train.seed], sort_keys=True, default=str)


def fallback_io(preset: Preset) -> ModelIO:
    """A plausible ModelIO from the spec alone, for sizes while the task is not ready."""
    kind = preset.model.input.kind
    topo = preset.model.topology
    generating = topo in ("encoder_decoder", "one_to_many")
    if kind == "embedding":
        io = ModelIO(input_kind="class" if topo == "one_to_many" else "tokens", vocab_size=100, output_size=100)
    elif kind == "embedding_chars":  # words with their characters (never one-to-many: validation refuses it)
        io = ModelIO(input_kind="tokens", vocab_size=100, char_vocab_size=60, output_size=100)
    elif kind == "linear":
        io = ModelIO(input_kind="vector" if topo == "one_to_many" else "features", feature_size=1, output_size=1)
    else:
        io = ModelIO(input_kind="image" if topo == "one_to_many" else "frames", frame_shape=(3, 32, 32),
                     output_size=10)
    if generating:
        io.output_vocab_size = 100
        io.output_size = 100
    return io


def input_lengths(preset: Preset, info: TaskInfo | None) -> tuple[int | None, int | None]:
    """(input length, output length) for the diagram, from the options under the names
    the tasks use (a series' "length" is not it), else the task's defaults."""
    options = dict(info.options) if info is not None else {}
    options.update(preset.data.options)

    def first(*keys):
        for k in keys:
            v = options.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return None

    seq = first("seq_len", "clip_len", "window", "max_len", "src_len", "context", "num_frames")
    out = first("out_len", "target_len", "tgt_len", "output_len", "max_target_len", "caption_len", "gen_len",
                "horizon")
    return seq, out


class Resolver(QObject):
    task_info_ready = Signal()  # task classes loaded (titles, topologies, option defaults)
    io_ready = Signal(str)  # io_key whose result arrived
    devices_ready = Signal(list)  # e.g. ["cpu", "cuda"]

    _done = Signal(str, object)  # (what, payload) from the pool thread; queued to ours

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-resolver")
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskInfo] = {}
        self._io: OrderedDict[str, IOResult] = OrderedDict()
        self._wanted_io: str | None = None  # newest requested key; older queued ones are skipped
        self._pending_io: set[str] = set()
        self.devices: list[str] | None = None
        self._closed = False
        self._tasks_requested = False
        self._done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)

    # ------------------------------------------------------------------ requests (GUI thread)
    def start(self) -> None:
        """Load the task classes and probe the devices (imports torch, in the pool)."""
        if self._tasks_requested or self._closed:
            return
        self._tasks_requested = True
        self._submit(self._load_tasks)
        self._submit(self._probe_devices)

    def task_names(self) -> list[str]:
        from workbench.tasks import TASKS

        return list(TASKS)

    def task_info(self, name: str) -> TaskInfo | None:
        with self._lock:
            return self._tasks.get(name)

    def check(self, preset: Preset) -> SpecError | None | bool:
        """The task's own checks (options, path, model fits the task): a SpecError, None
        when it passes, or False while the task class is still loading."""
        from workbench.tasks import TASKS

        name = preset.data.task
        if name not in TASKS:
            known = ", ".join(sorted(TASKS))
            return SpecError("data.task", f"unknown task {name!r} (known tasks: {known})")
        info = self.task_info(name)
        if info is None:
            self.start()
            return False
        if info.cls is None:
            return SpecError("data.task", f"task {name!r} cannot be loaded: {info.error}")
        try:
            task = info.cls(preset.data.options, preset.data.path, preset.train.seed)
            task.check_model(preset.model)
        except SpecError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a task's own check failing must not crash the editor
            return SpecError("data", describe(exc))  # a user's error as its message, a defect with its class
        return None

    def model_io(self, preset: Preset) -> IOResult | None:
        """The task's ModelIO (cached), or None while it is being prepared."""
        key = io_key(preset)
        with self._lock:
            result = self._io.get(key)
            if result is not None:
                self._io.move_to_end(key)
                return result
            if self._closed:
                return None
            self._wanted_io = key
            if key in self._pending_io:
                return None
            self._pending_io.add(key)
        self._submit(self._prepare, preset.copy(), key)
        return None

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # ------------------------------------------------------------------ pool thread
    def _submit(self, fn, *args) -> None:
        if self._closed:
            return
        try:
            self._pool.submit(self._guard, fn, *args)
        except RuntimeError:  # shut down meanwhile
            pass

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - never let a background job die silently
            self._emit("error", describe(exc))

    def _emit(self, what: str, payload) -> None:
        if not self._closed:
            try:
                self._done.emit(what, payload)
            except RuntimeError:  # the QObject is gone (window closed)
                pass

    def _load_tasks(self) -> None:
        from workbench.tasks import TASKS, task_class

        infos = {}
        for name in list(TASKS):
            try:
                cls = task_class(name)
            except Exception as exc:  # noqa: BLE001 - one broken task module must not hide the others
                infos[name] = TaskInfo(name, error=f"{type(exc).__name__}: {exc}")
                continue
            defaults = {}
            opts = getattr(cls, "Options", type(None))
            if dataclasses.is_dataclass(opts):
                try:
                    defaults = dataclasses.asdict(opts())
                except TypeError:
                    defaults = {}
            infos[name] = TaskInfo(name, getattr(cls, "title", "") or name,
                                   tuple(getattr(cls, "topologies", ()) or ()), defaults, cls)
        with self._lock:
            self._tasks.update(infos)
        self._emit("tasks", None)

    def _probe_devices(self) -> None:
        from workbench.gui.worker import available_devices

        self._emit("devices", available_devices())

    def _prepare(self, preset: Preset, key: str) -> None:
        with self._lock:
            stale = self._wanted_io != key
            if stale:
                self._pending_io.discard(key)
        if stale:
            return  # a newer request superseded this one before it started
        from workbench.tasks import task_class

        try:
            task = task_class(preset.data.task)(preset.data.options, preset.data.path, preset.train.seed)
            task.ensure_prepared()
            result = IOResult(task.model_io(), None)
        except SpecError as exc:
            result = IOResult(None, exc)
        except Exception as exc:  # noqa: BLE001 - DataError and the like: shown beside data.path
            from workbench.io.errors import DataError

            field = "data.path" if isinstance(exc, (DataError, FileNotFoundError, IsADirectoryError,
                                                    PermissionError)) else "data"
            result = IOResult(None, SpecError(field, " ".join(str(exc).split()) or type(exc).__name__))
        with self._lock:
            self._io[key] = result
            while len(self._io) > 16:
                self._io.popitem(last=False)
            self._pending_io.discard(key)
        self._emit("io", key)

    # ------------------------------------------------------------------ back on the GUI thread
    @Slot(str, object)
    def _on_done(self, what: str, payload) -> None:
        if self._closed:
            return
        if what == "tasks":
            self.task_info_ready.emit()
        elif what == "io":
            self.io_ready.emit(payload)
        elif what == "devices":
            self.devices = list(payload)
            self.devices_ready.emit(self.devices)
