"""The try-out panel's inference thread: a QObject living in a QThread that runs
workbench.inference jobs one after another and emits plain data.

It imports workbench.inference (and so torch) lazily, in its own thread: this module
imports Qt only. The session (the model) and an open video live here, in the worker;
the panel holds neither. Jobs are queued through a signal, so they run in order; a
streaming generation is stopped through ``stop_stream()``, which the GUI thread calls
directly (a threading.Event, checked before each token). Streamed tokens are batched
to at most ~30 signals a second, so a fast model cannot flood the GUI thread.
"""
from __future__ import annotations

import os
import threading
import time
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

EMIT_INTERVAL_S = 1 / 30


class InferenceWorker(QObject):
    """Runs jobs (kind, params) in its thread. Results: ``result(job_id, kind, data)``,
    ``failed(job_id, kind, message)``, ``tokens(job_id, [token dict, ...])`` while a
    generation streams."""

    result = Signal(int, str, object)
    failed = Signal(int, str, str)
    tokens = Signal(int, list)
    _job = Signal(int, str, object)

    def __init__(self):
        super().__init__()
        self._job.connect(self._run)
        self._stop = threading.Event()
        self.session = None  # workbench.inference.Session, made in this thread
        self.video = None  # workbench.inference.VideoFrames of the open video

    # -- called from the GUI thread ----------------------------------------------------
    def submit(self, job_id: int, kind: str, params: dict) -> None:
        if kind in ("generate", "chat_stream"):
            self._stop.clear()
        self._job.emit(job_id, kind, params)

    def stop_stream(self) -> None:
        self._stop.set()

    # -- the worker thread ---------------------------------------------------------------
    @Slot(int, str, object)
    def _run(self, job_id: int, kind: str, params: dict) -> None:
        try:
            data = self._do(job_id, kind, dict(params or {}))
        except Exception as exc:  # noqa: BLE001 - every failure must reach the panel as a message
            if os.environ.get("WORKBENCH_DEBUG"):
                traceback.print_exc()
            self.failed.emit(job_id, kind, _describe(exc))
            return
        self.result.emit(job_id, kind, data)

    def _do(self, job_id: int, kind: str, p: dict):
        from workbench import inference  # torch loads here, off the GUI thread

        if kind == "open":
            self.session, self.video = None, None
            self.session = inference.open_run(p["path"])
            return self.session.describe()
        if kind == "session":
            self.session, self.video = p["session"], None
            return self.session.describe()
        s = self.session
        if s is None:
            raise RuntimeError("no run is open")
        if kind == "generate":
            return self._generate(job_id, inference, s, p)
        if kind == "tag":
            return inference.tag(s, p["text"])
        if kind == "classify":
            return inference.classify(s, p["text"])
        if kind == "transduce":
            return inference.transduce(s, p["text"], temperature=p.get("temperature", 1.0),
                                       top_k=p.get("top_k", 0), seed=p.get("seed"), beam=p.get("beam", 1))
        if kind == "chat":
            out = inference.chat(s, p["text"], previous=p.get("previous", ""), beam=p.get("beam", 1),
                                 temperature=p.get("temperature", 0.0), mbr=p.get("mbr", 0),
                                 rerank=p.get("rerank", 0))
            return {**out, "source": inference.chat_source(s, p["text"], p.get("previous", ""))}
        if kind == "chat_stream":
            return self._chat_stream(job_id, inference, s, p)
        if kind == "caption":
            return inference.caption(s, image=p.get("image"), path=p.get("path"), seed=p.get("seed"),
                                     temperature=p.get("temperature", 1.0), top_k=p.get("top_k", 0))
        if kind == "numbers":
            return inference.numbers(s, p["text"])
        if kind == "inside":
            return inference.inside(s, p["request"], target=p.get("target"))
        if kind == "video_open":
            self.video = None
            self.video = inference.open_video(s, p["path"])
            v = self.video
            return {"path": str(v.path), "frames": len(v), "fps": v.fps, "width": v.width, "height": v.height}
        if kind == "video_outputs":
            return inference.video_outputs(s, p["path"], max_frames=p.get("max_frames", 0))
        if kind == "audio_outputs":
            return inference.audio_outputs(s, p["path"])
        if kind == "video_rollout":
            return inference.video_rollout(s, p["path"], p["start"], steps=p.get("steps", inference.ROLLOUT_STEPS))
        if kind == "frame":
            if self.video is None:
                raise RuntimeError("no video is open")
            return {"index": p["index"], "image": self.video.frame(p["index"]), "preview": p.get("preview", False)}
        raise ValueError(f"unknown job {kind!r}")

    def _generate(self, job_id: int, inference, s, p: dict) -> dict:
        pending: list[dict] = []
        count = 0
        last = time.perf_counter()
        for step in inference.generate(s, p.get("prompt", ""), length=p.get("length", 200),
                                       temperature=p.get("temperature", 1.0), top_k=p.get("top_k", 0),
                                       seed=p.get("seed"), stop=self._stop.is_set):
            pending.append(step)
            count += 1
            now = time.perf_counter()
            if now - last >= EMIT_INTERVAL_S:
                self.tokens.emit(job_id, pending)
                pending, last = [], now
        if pending:
            self.tokens.emit(job_id, pending)
        return {"count": count, "stopped": self._stop.is_set(), "length": p.get("length", 200)}

    def _chat_stream(self, job_id: int, inference, s, p: dict) -> dict:
        """A chatbot's reply streamed token by token; the whole reply (with its attention
        rows stacked [L, S]) as the result."""
        import numpy as np

        previous = p.get("previous", "")
        source = inference.chat_source(s, p["text"], previous)
        pending, steps = [], []
        last = time.perf_counter()
        for step in inference.chat_stream(s, p["text"], previous=previous, temperature=p.get("temperature", 0.0),
                                          stop=self._stop.is_set):
            steps.append(step)
            pending.append({k: v for k, v in step.items() if k != "attention"})
            now = time.perf_counter()
            if now - last >= EMIT_INTERVAL_S:
                self.tokens.emit(job_id, pending)
                pending, last = [], now
        if pending:
            self.tokens.emit(job_id, pending)
        rows = [st["attention"] for st in steps if st["attention"] is not None]
        tokens = [st["token"] for st in steps]
        return {"message": p["text"], "source": source, "source_tokens": s.task.tokenize(source),
                "reply": "".join(st["text"] for st in steps), "reply_tokens": tokens,
                "ids": [st["id"] for st in steps], "attention": np.stack(rows) if rows else None,
                "stopped": self._stop.is_set()}


def _describe(exc: BaseException) -> str:
    """One line: a user's error (workbench.errors.UserError, or the try-out's InputError)
    as its message; anything else with its class name."""
    from workbench.errors import describe, one_line
    try:
        from workbench.inference import InputError  # (loaded already: this runs in the worker thread)
    except ImportError:  # the failure may be that very import
        return describe(exc)
    return one_line(exc) if isinstance(exc, InputError) else describe(exc)


class InferenceClient(QObject):
    """Owns the worker and its thread; hands out job ids. ``shutdown()`` before exit."""

    result = Signal(int, str, object)
    failed = Signal(int, str, str)
    tokens = Signal(int, list)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: InferenceWorker | None = None
        self._next_id = 0
        self.in_flight: dict[int, str] = {}  # job id -> kind, until its result or failure

    def _ensure(self) -> InferenceWorker:
        if self._worker is None:
            self._thread = QThread()
            self._thread.setObjectName("tryout-inference")
            self._worker = InferenceWorker()
            self._worker.moveToThread(self._thread)
            self._worker.result.connect(self._on_result)
            self._worker.failed.connect(self._on_failed)
            self._worker.tokens.connect(self.tokens)
            self._thread.finished.connect(self._worker.deleteLater)  # deleted in its own thread, at its end
            self._thread.start()
        return self._worker

    def submit(self, kind: str, **params) -> int:
        worker = self._ensure()
        self._next_id += 1
        self.in_flight[self._next_id] = kind
        worker.submit(self._next_id, kind, params)
        return self._next_id

    def stop_stream(self) -> None:
        if self._worker is not None:
            self._worker.stop_stream()

    @property
    def busy(self) -> bool:
        return bool(self.in_flight)

    def _on_result(self, job_id: int, kind: str, data) -> None:
        self.in_flight.pop(job_id, None)
        self.result.emit(job_id, kind, data)

    def _on_failed(self, job_id: int, kind: str, message: str) -> None:
        self.in_flight.pop(job_id, None)
        self.failed.emit(job_id, kind, message)

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop a generation, let the running job end, stop the thread."""
        if self._thread is None:
            return
        self.stop_stream()
        self._thread.quit()
        self._thread.wait(timeout_ms)
        self._thread = None
        self._worker = None
        self.in_flight.clear()
