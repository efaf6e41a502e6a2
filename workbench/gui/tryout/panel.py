"""TryoutPanel: poke a trained model. It takes a run folder (``open_run``) or a session
made in memory by the engine (``set_session``), picks the view for the run's task and
topology (workbench.gui.tryout.views), and shows what the network is thinking under it
(workbench.gui.tryout.inside). All inference runs on the panel's inference thread
(workbench.gui.tryout.worker); this module never imports torch."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from workbench.gui.tryout.inside import InsideView
from workbench.gui.tryout.views import VIEWS, GenerateView, ModeView
from workbench.gui.tryout.worker import InferenceClient

# Jobs where only the newest answer matters (an older one arriving late is dropped).
LATEST_ONLY = {"tag", "classify", "transduce", "caption", "numbers", "inside", "video_outputs", "video_rollout"}


def _scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` in a scroll area: a long view scrolls inside the dock instead of
    raising the dock's (and so the main window's) minimum height past the screen."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(widget)
    return area


class TryoutPanel(QWidget):
    opened = Signal(dict)  # the run's description (workbench.inference.Session.describe)
    result_shown = Signal(str)  # the kind of each result shown (tests and the window wait on it)
    failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.client = InferenceClient(self)
        self.info: dict = {}
        self.view: ModeView | None = None
        self.inside_data: dict | None = None
        self.error = ""
        self._open_job = 0
        self._opening = False  # a run is being opened: the current view belongs to the one before
        self._latest: dict[str, int] = {}
        self._inside_request: dict | None = None

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        head = QHBoxLayout()
        self.title = QLabel("No run open: train one, or open a run folder.")
        self.title.setObjectName("tryoutTitle")
        self.title.setWordWrap(True)
        head.addWidget(self.title, 1)
        self.open_button = QPushButton("Open run…")
        self.open_button.setObjectName("openRunButton")
        self.open_button.setToolTip("A run folder written by training (preset.json, task.json, model.safetensors)")
        head.addWidget(self.open_button)
        lay.addLayout(head)
        self.status = QLabel("")
        self.status.setObjectName("tryoutStatus")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.stack = QStackedWidget()
        self.placeholder = QLabel("")
        self.stack.addWidget(self.placeholder)
        self.splitter.addWidget(_scrolling(self.stack))
        self.inside = InsideView()
        self.inside_box = QWidget()
        box = QVBoxLayout(self.inside_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("<b>Inside the network</b>"))
        box.addWidget(self.inside, 1)
        self.inside_scroll = _scrolling(self.inside_box)
        self.inside_scroll.hide()
        self.splitter.addWidget(self.inside_scroll)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        lay.addWidget(self.splitter, 1)

        self.open_button.clicked.connect(lambda: self.open_run())
        self.client.result.connect(self._on_result)
        self.client.failed.connect(self._on_failed)
        self.client.tokens.connect(self._on_tokens)
        self.inside.step_hovered.connect(self._on_step_hovered)
        self.inside.target_requested.connect(self._on_target)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # -- opening ---------------------------------------------------------------------------
    def open_run(self, path: str | Path | None = None) -> None:
        """Open a run folder (asks for one when ``path`` is None)."""
        if path is None:
            path = QFileDialog.getExistingDirectory(self, "Open a run folder")
            if not path:
                return
        self._begin_open(f"Opening {Path(path).name}…")
        self._open_job = self.client.submit("open", path=str(path))

    def set_session(self, session) -> None:
        """A run still in memory: an engine-side session (workbench.inference.Session),
        handed on to the inference thread as it is."""
        self._begin_open("Opening the finished run…")
        self._open_job = self.client.submit("session", session=session)

    def _begin_open(self, text: str) -> None:
        if getattr(self.view, "streaming", False):  # a language model's or a chatbot's stream
            self.client.stop_stream()
        # The open view's requests are for the run open now: its timers (a video view asks
        # for a look inside 250 ms after a frame) must not fire a request at the next run,
        # which would answer with that run's error (tests/tryout/test_window.py saw it).
        self._opening = True
        if self.view is not None:
            self.view.shutdown()
        self.status.setText(text)
        self.error = ""

    def _build_view(self, info: dict) -> None:
        if self.view is not None:
            self.view.shutdown()
            self.stack.removeWidget(self.view)
            self.view.deleteLater()
        cls = VIEWS.get(info["mode"])
        self.view = cls(info) if cls else None
        if self.view is None:
            return
        self.view.setObjectName(f"{info['mode']}View")
        self.view.request.connect(self._on_view_request)
        self.view.inside_request.connect(self._on_inside_request)
        self.stack.addWidget(self.view)
        self.stack.setCurrentWidget(self.view)
        self.inside.clear()
        self.inside_data = None
        self.inside_scroll.hide()

    # -- jobs --------------------------------------------------------------------------------
    def _submit(self, kind: str, **params) -> int:
        job = self.client.submit(kind, **params)
        if kind in LATEST_ONLY:
            self._latest[kind] = job
        return job

    def _from_open_view(self) -> bool:
        """A view's request counts only when it comes from the view of the run open now."""
        return not self._opening and self.sender() is self.view

    def _on_view_request(self, kind: str, params: dict) -> None:
        if kind == "stop":
            self.client.stop_stream()
            return
        if not self._from_open_view():
            return
        self.status.setText("working…" if kind not in ("frame",) else self.status.text())
        self._submit(kind, **params)

    def _on_inside_request(self, request: dict) -> None:
        if not self._from_open_view():
            return
        self._inside_request = request
        self._submit("inside", request=request)

    def _on_target(self, step: int) -> None:
        if self._inside_request is not None:
            self._submit("inside", request=self._inside_request, target={"step": int(step)})

    def _stale(self, job_id: int, kind: str) -> bool:
        if job_id < self._open_job:
            return True  # asked of the run that was open before
        return kind in LATEST_ONLY and job_id < self._latest.get(kind, 0)

    def _on_result(self, job_id: int, kind: str, data) -> None:
        if self._stale(job_id, kind):
            return
        if kind in ("open", "session"):
            self._opening = False
            self._inside_request = None
            self.info = data
            run = data.get("run_dir") or data.get("name", "")
            self.title.setText(f"<b>{data['name']}</b> · {data['task_title'] or data['task']} · "
                               f"{data['mode_title']}<br/><span style='color:#666'>{run}</span>")
            self.title.setToolTip(run)
            self._build_view(data)
            self.status.setText("")
            self.opened.emit(data)
        elif kind == "inside":
            self.inside_data = data
            self.inside.set_data(data)
            if self.inside_scroll.isHidden():
                self.inside_scroll.show()
                self._share_height()
            if isinstance(self.view, GenerateView):
                self.view.set_inside_steps(data.get("in_steps", []))
            self.status.setText("")
        else:
            if kind not in ("frame",):
                self.status.setText("")
            if self.view is not None:
                self.view.on_result(kind, data)
        self.result_shown.emit(kind)

    def _share_height(self) -> None:
        """When the look inside appears: the view keeps the height it asks for, up to
        three fifths of the panel; the rest goes to the look inside (both scroll)."""
        total = sum(self.splitter.sizes()) or self.splitter.height()
        view = self.stack.currentWidget()
        want = view.sizeHint().height() + 8 if view is not None else total // 2
        top = max(min(want, total * 3 // 5), min(total // 3, want))
        self.splitter.setSizes([top, max(total - top, 0)])

    def _on_failed(self, job_id: int, kind: str, message: str) -> None:
        if self._stale(job_id, kind):
            return
        if kind in ("open", "session"):
            self._opening = False  # the run before stays open
        self.error = message
        self.status.setText(f"<span style='color:#c0392b'>⚠ {message}</span>")
        if self.view is not None:
            self.view.on_failed(kind, message)
        self.failed.emit(message)

    def _on_tokens(self, job_id: int, tokens: list) -> None:
        if job_id >= self._open_job and self.view is not None:
            self.view.on_tokens(tokens)

    def _on_step_hovered(self, axis: str, t: int) -> None:
        if self.view is not None:
            self.view.highlight(axis, t)

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.info.get("mode", "")

    @property
    def busy(self) -> bool:
        return self.client.busy

    def shutdown(self) -> None:
        """Stop generating and end the inference thread (before the window goes)."""
        if self.view is not None:
            self.view.shutdown()
        self.client.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
