"""The live plots (pyqtgraph). They draw from RunData buffers when the window's frame
timer asks (<= 30 Hz), never per training step, and skip the work when nothing they
show has changed. Long series stay smooth through pyqtgraph's peak downsampling and
clip-to-view; setData skips the finite check (the buffers hold plain floats).

Panels: LossPanel (train/val loss, log option, smoothing, hover read-out),
GradientPanel (heatmap per layer of log10 ||dL/dh_t||, latest profile over t on a log
axis with the fitted decay per step), NormPanel (global grad norm before/after
clipping with the threshold and clip events; learning rate), DynamicsPanel (why: the
one-step Jacobian norms as a heatmap with their product bound beside dL/dh_t, W_hh's
spectra and eigenvalues, gate means and saturation, Lyapunov exponents, the hidden
state's trajectory in its leading principal components (2-D, or 3-D as a turnable
orthographic view), in tabs; the shown runs side by side). Non-finite events are
marked in red. Every panel saves its picture (PNG/SVG) and its data (CSV).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QSlider,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workbench.fileio import atomic_write_text
from workbench.gui.rundata import SOURCE_LABELS, SOURCES, RunData, Series

pg.setConfigOptions(imageAxisOrder="row-major", background="w", foreground="#333333", antialias=False)

NON_FINITE = QColor("#d62728")


def _pen(colour: str, width: float = 1.0, alpha: int = 255, style=Qt.PenStyle.SolidLine):
    c = QColor(colour)
    c.setAlpha(alpha)
    pen = pg.mkPen(c, width=width)
    pen.setStyle(style)
    return pen


def _aligned(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Series appended in lockstep may briefly differ in length after a compaction."""
    n = min(x.size, y.size)
    return x[x.size - n:], y[y.size - n:]


# Series longer than this are reduced to a min/max envelope before setData: pyqtgraph's
# own per-frame work (bounds, log mapping, clipping, downsampling) is O(n) over what it
# is given, and at 10^6 points that alone would take most of a frame.
MAX_POINTS = 1000


def visible_x(item: pg.PlotItem) -> tuple[float, float] | None:
    """The x range the user zoomed to, or None while x follows the data (auto-range)."""
    vb = item.getViewBox()
    if vb.state["autoRange"][0]:
        return None
    lo, hi = vb.viewRange()[0]
    return float(lo), float(hi)


def _window(x: np.ndarray, view: tuple[float, float] | None) -> tuple[int, int]:
    if view is None or x.size == 0:
        return 0, x.size
    lo = max(int(np.searchsorted(x, view[0], side="left")) - 1, 0)
    hi = min(int(np.searchsorted(x, view[1], side="right")) + 1, x.size)
    return lo, max(hi, lo)


def decimate(x: np.ndarray, y: np.ndarray, view: tuple[float, float] | None = None,
             max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """What a curve needs to look exact at screen resolution: the points in view (x sorted)
    reduced to the min and max of each of ``max_points`` buckets (NaNs skipped), plus the
    raw tail. O(points in view) in numpy; short series pass through untouched."""
    x, y = _aligned(x, y)
    lo, hi = _window(x, view)
    m = hi - lo
    if m <= 2 * max_points:
        return x[lo:hi], y[lo:hi]
    b = -(-m // max_points)  # bucket size
    nb = m // b
    end = lo + nb * b
    ys = y[lo:end].reshape(nb, b)
    with np.errstate(invalid="ignore"):
        mn = np.fmin.reduce(ys, axis=1)
        mx = np.fmax.reduce(ys, axis=1)
    xs = x[lo:end:b]
    out_x = np.concatenate([np.repeat(xs, 2), x[end:hi]])
    out_y = np.concatenate([np.column_stack([mn, mx]).ravel(), y[end:hi]])
    return out_x, out_y


class Envelope:
    """The min/max envelope of a growing series for the whole-run view, kept up to date
    in O(new points) per frame: buckets have power-of-two sizes, so complete buckets stay
    valid until the series doubles (then it is rebuilt once)."""

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max_points
        self.token = None
        self.b = 0
        self.nb = 0
        self.bx = np.zeros(0)
        self.mn = np.zeros(0)
        self.mx = np.zeros(0)

    def get(self, xs: Series, ys: Series, view: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
        x, y = xs.view(), ys.view()
        if view is not None or x.size != y.size:
            return decimate(x, y, view, self.max_points)  # zoomed in: only what is in view
        n = x.size
        if n <= 2 * self.max_points:
            return x, y
        b = 1 << math.ceil(math.log2(n / self.max_points))
        token = (id(xs), xs.dropped, id(ys), ys.dropped, b)
        if token != self.token:
            self.token, self.b, self.nb = token, b, 0
            self.bx, self.mn, self.mx = np.zeros(0), np.zeros(0), np.zeros(0)
        nb = n // b
        if nb > self.nb:  # reduce only the buckets completed since the last frame
            seg = y[self.nb * b:nb * b].reshape(nb - self.nb, b)
            with np.errstate(invalid="ignore"):
                self.mn = np.concatenate([self.mn, np.fmin.reduce(seg, axis=1)])
                self.mx = np.concatenate([self.mx, np.fmax.reduce(seg, axis=1)])
            self.bx = np.concatenate([self.bx, x[self.nb * b:nb * b:b]])
            self.nb = nb
        end = nb * b
        out_x = np.concatenate([np.repeat(self.bx, 2), x[end:]])
        out_y = np.concatenate([np.column_stack([self.mn, self.mx]).ravel(), y[end:]])
        return out_x, out_y


def thin(x: np.ndarray, y: np.ndarray, view: tuple[float, float] | None = None,
         max_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Markers (clip events): every k-th in view, at most ``max_points`` (symbols cost
    far more to lay out and paint than line vertices)."""
    x, y = _aligned(x, y)
    lo, hi = _window(x, view)
    k = max(1, -(-(hi - lo) // max_points))
    return x[lo:hi:k], y[lo:hi:k]


def _positive_range(*arrays: np.ndarray) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for a in arrays:
        if a.size:
            finite = a[np.isfinite(a) & (a > 0)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not math.isfinite(lo):
        return 1e-3, 1.0
    return lo, hi


class PaintClock:
    """Seconds the plot widgets spent painting, so the window can pace its frames by
    what they really cost (setData is only half of it) and the benchmark can report it:
    wall time (``total``) and the interface thread's CPU time (``cpu``, what the pacer
    uses: on a loaded machine wall time also counts the waits for a core)."""

    total = 0.0
    cpu = 0.0
    samples: list[tuple[str, float]] = []  # (widget class, seconds) per paint, while ``record`` is set
    record = False

    @classmethod
    def take(cls) -> tuple[float, float]:
        """(wall, CPU) seconds painted since the last take."""
        t, c = cls.total, cls.cpu
        cls.total = cls.cpu = 0.0
        return t, c


class _TimedPaint:
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        t, c = time.perf_counter(), time.thread_time()
        super().paintEvent(event)
        dt = time.perf_counter() - t
        PaintClock.cpu += time.thread_time() - c
        PaintClock.total += dt
        if PaintClock.record:
            PaintClock.samples.append((getattr(self, "paint_name", type(self).__name__), dt))


class PlotWidget(_TimedPaint, pg.PlotWidget):
    pass


class GraphicsLayoutWidget(_TimedPaint, pg.GraphicsLayoutWidget):
    pass


def _html(text: str) -> str:
    """Text for a rich-text label (a run's name may hold < or &)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _legend(item: pg.PlotItem, offset=(-8, 8)) -> pg.LegendItem:
    legend = item.addLegend(offset=offset, labelTextSize="8pt", verSpacing=-6)
    legend.setBrush(pg.mkBrush(255, 255, 255, 190))
    legend.setPen(pg.mkPen(200, 200, 200))
    return legend


def _plot_widget(title: str = "", left: str = "", bottom: str = "step") -> pg.PlotWidget:
    w = PlotWidget()
    item = w.getPlotItem()
    item.showGrid(x=False, y=False)
    item.setDownsampling(auto=True, mode="peak")
    item.setClipToView(True)
    if left:
        item.setLabel("left", left)
    if bottom:
        item.setLabel("bottom", bottom)
    if title:
        item.setTitle(title, size="9pt")
    for axis in ("left", "bottom"):
        item.getAxis(axis).enableAutoSIPrefix(False)  # "(x0.001)" on a log axis only confuses
    item.getViewBox().setMouseMode(pg.ViewBox.RectMode)
    w.setMinimumSize(160, 120)
    return w


class PlotPanel(QWidget):
    """A titled panel: a header row of controls, the plot area, and an export menu."""

    export_requested = Signal(str)  # "image" or "csv"; the window asks for the file name

    title = ""
    csv_name = "data.csv"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(2, 2, 2, 2)
        self.layout_.setSpacing(2)
        self.header = QHBoxLayout()
        self.header.setSpacing(6)
        self.layout_.addLayout(self.header)
        self.readout = QLabel("")
        self.readout.setObjectName("readout")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._export_btn = QToolButton()
        self._export_btn.setText("Save")
        self._export_btn.setToolTip("Save this plot as PNG/SVG or its data as CSV")
        self._export_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self._export_btn)
        menu.addAction("Save image (PNG/SVG)…", lambda: self.export_requested.emit("image"))
        menu.addAction("Save data (CSV)…", lambda: self.export_requested.emit("csv"))
        self._export_btn.setMenu(menu)
        self._drawn: dict = {}  # what was drawn last: skip identical redraws
        self.frames = 0

    def finish_header(self, readout_below: bool = False) -> None:
        """Close the header row; the read-out goes on its own line below it when the row
        has no room left (the loss and norm panels)."""
        if readout_below:
            self.header.addStretch(1)
            self.header.addWidget(self._export_btn)
            self.layout_.addWidget(self.readout)
        else:
            self.header.addWidget(self.readout, 1)
            self.header.addWidget(self._export_btn)

    def on_screen(self) -> bool:
        """Shown, and not behind another tab of its dock area nor in a minimised window
        (Qt counts the widget of a dock tabbed away as visible: drawing it cost the
        interface thread a frame for nothing)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def plot_area(self) -> QWidget:
        """The widget that an image export renders."""
        raise NotImplementedError

    def refresh(self, runs: list[RunData], current: RunData | None) -> bool:
        """Redraw from the buffers if anything shown changed; True when it redrew."""
        raise NotImplementedError

    def plot_items(self) -> list[pg.PlotItem]:
        return []

    def settle(self) -> None:
        """Apply auto-range now, not during the next paint: pyqtgraph otherwise paints
        once with the old range, changes it while painting, and paints again."""
        for item in self.plot_items():
            item.getViewBox().prepareForPaint()

    def csv(self, runs: list[RunData], current: RunData | None) -> str:
        raise NotImplementedError

    def save_image(self, path: str | Path) -> Path:
        path = Path(path)
        area = self.plot_area()
        if path.suffix.lower() == ".svg":
            from PySide6.QtSvg import QSvgGenerator

            gen = QSvgGenerator()
            gen.setFileName(str(path))
            size = area.size() if area.width() > 10 else QSize(800, 500)
            gen.setSize(size)
            gen.setViewBox(QRectF(0, 0, size.width(), size.height()))
            gen.setTitle(self.title)
            painter = QPainter(gen)
            QWidget.render(area, painter, QPoint(0, 0))  # the widget's own paint, children included
            painter.end()
        else:
            if area.width() < 10:
                area.resize(800, 500)
            if not area.grab().save(str(path)):
                from workbench.fileio import SaveError

                raise SaveError(f"cannot write {path}")
        return path

    def save_csv(self, path: str | Path, runs: list[RunData], current: RunData | None) -> Path:
        atomic_write_text(Path(path), self.csv(runs, current))
        return Path(path)

    @staticmethod
    def shown(runs: list[RunData]) -> list[RunData]:
        return [r for r in runs if r.visible]


# ----------------------------------------------------------------------------- loss

# How the loss panel lays out runs of different tasks: (key, label, tooltip).
AXES_MODES = (
    ("task", "axis per task", "Each task's runs on their own loss axis (x linked): scales never squash each other"),
    ("normalised", "normalised", "Every loss divided by its run's first loss: all runs start at 1"),
    ("shared", "one axis", "All runs on one loss axis"),
)


class LossPanel(PlotPanel):
    title = "Loss"
    csv_name = "loss.csv"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.log_box = QCheckBox("log")
        self.log_box.setToolTip("Show the loss on a logarithmic axis")
        self.smooth = QSlider(Qt.Orientation.Horizontal)
        self.smooth.setRange(0, 99)
        self.smooth.setValue(60)
        self.smooth.setFixedWidth(90)
        self.smooth.setToolTip("Smoothing of the train loss: an exponential moving average with this weight "
                               "on the past (0 = raw)")
        self.smooth_label = QLabel("0.60")
        self.axes_box = QComboBox()
        for key, text, tip in AXES_MODES:
            self.axes_box.addItem(text, key)
            self.axes_box.setItemData(self.axes_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.axes_box.setToolTip("Runs of different tasks have losses of different scales (a character model's "
                                 "cross-entropy near 4, an adding MSE near 0.2): one axis each, or each loss "
                                 "divided by its first value, or one shared axis")
        self.header.addWidget(self.axes_box)
        self.header.addWidget(self.log_box)
        self.header.addWidget(QLabel("smooth"))
        self.header.addWidget(self.smooth)
        self.header.addWidget(self.smooth_label)
        self.finish_header(readout_below=True)
        self.plot = _plot_widget(left="loss")
        self.item = self.plot.getPlotItem()
        self.legend = _legend(self.item)
        self.plots = QSplitter(Qt.Orientation.Vertical)  # the first task's axis, then one per other task
        self.plots.addWidget(self.plot)
        self.layout_.addWidget(self.plots, 1)
        self._task_plots: dict[str, tuple[pg.PlotWidget, pg.PlotItem, pg.LegendItem]] = {}
        self._assignment: tuple = ()
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=_pen("#888888", 1, 120))
        self.item.addItem(self.cursor, ignoreBounds=True)
        self.cursor.hide()
        self._items: dict[int, dict] = {}
        self.log_box.toggled.connect(self._on_log)
        self.smooth.valueChanged.connect(self._on_smooth)
        self.axes_box.currentIndexChanged.connect(lambda _i: self._on_smooth(self.smooth.value()))
        self._proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)
        self._proxies: list = []
        self._runs: list[RunData] = []
        self._current: RunData | None = None
        self.hint = "— train (smoothed)  ‑●‑ val  red: non-finite · hover: values"
        self.readout.setText(self.hint)
        self.plot.setToolTip("Solid: the train loss smoothed (the faint line is raw); dashed with dots: the "
                             "validation loss; red lines: non-finite steps. Hover for values; drag a box to zoom, "
                             "right-click for more.")
        self.empty = pg.TextItem("no run yet: press Train (F5)", color="#999999", anchor=(0.5, 0.5))
        self.item.addItem(self.empty, ignoreBounds=True)
        self.empty.setPos(0.5, 0.5)

    @property
    def alpha(self) -> float:
        return self.smooth.value() / 100.0

    def plot_area(self) -> QWidget:
        return self.plots

    @property
    def axes_mode(self) -> str:
        return self.axes_box.currentData() or "task"

    def _on_log(self, on: bool) -> None:
        for item in self.plot_items():
            item.setLogMode(y=on)
        self._drawn.clear()
        self.refresh(self._runs, self._current)

    def _assign(self, shown: list[RunData]) -> dict[int, pg.PlotItem]:
        """Which axis each run is drawn on: per task (the first task's on the main axis,
        each other task's on its own, x-linked below), or all on one. Rebuilt when the
        tasks shown or the mode change."""
        mode = self.axes_mode
        tasks = list(dict.fromkeys(r.task for r in shown)) if mode == "task" else [""]
        assignment = (mode, tuple(tasks))
        if assignment != self._assignment:
            self._assignment = assignment
            self._prune([])
            self._drawn.clear()
            for widget, _item, _legend_item in self._task_plots.values():
                widget.setParent(None)
                widget.deleteLater()
            self._task_plots.clear()
            self._proxies = []
            for task in tasks[1:]:
                widget = _plot_widget(left=f"loss · {task}")
                item = widget.getPlotItem()
                item.setXLink(self.item)
                item.setLogMode(y=self.log_box.isChecked())
                self.plots.addWidget(widget)
                self._task_plots[task] = (widget, item, _legend(item))
                self._proxies.append(pg.SignalProxy(widget.scene().sigMouseMoved, rateLimit=30,
                                                    slot=lambda ev, it=item: self._on_mouse(ev, it)))
            first = tasks[0] if tasks else ""
            self.item.setLabel("left", "loss / first loss" if mode == "normalised"
                               else (f"loss · {first}" if mode == "task" and len(tasks) > 1 and first else "loss"))
        if self.axes_mode != "task":
            return {id(r): self.item for r in shown}
        return {id(r): (self._task_plots[r.task][1] if r.task in self._task_plots else self.item) for r in shown}

    def _scale(self, run: RunData) -> float:
        """What a run's losses are divided by in the normalised view: its first finite loss."""
        if self.axes_mode != "normalised":
            return 1.0
        head = run.loss.view()[:50]
        finite = head[np.isfinite(head) & (head > 0)]
        return float(finite[0]) if finite.size else 1.0

    def _on_smooth(self, value: int) -> None:
        self.smooth_label.setText(f"{value / 100:.2f}")
        self._drawn.clear()
        self.refresh(self._runs, self._current)

    def _ensure(self, run: RunData, plot: pg.PlotItem | None = None) -> dict:
        items = self._items.get(id(run))
        plot = plot if plot is not None else self.item
        if items is not None and items["plot"] is not plot:
            self._remove(id(run))
            items = None
        if items is None:
            raw = pg.PlotDataItem(pen=_pen(run.colour, 1, 70))
            smooth = pg.PlotDataItem(pen=_pen(run.colour, 2), name=run.name)
            val = pg.PlotDataItem(pen=_pen(run.colour, 1.5, style=Qt.PenStyle.DashLine), symbol="o", symbolSize=5,
                                  symbolBrush=run.colour, symbolPen=None)
            bad = pg.PlotDataItem(pen=_pen(NON_FINITE.name(), 1.2), connect="pairs")
            for it in (raw, smooth, val, bad):
                plot.addItem(it)
            items = {"raw": raw, "smooth": smooth, "val": val, "bad": bad, "run": run, "plot": plot,
                     "env": {"raw": Envelope(), "smooth": Envelope()}}
            self._items[id(run)] = items
        return items

    def _remove(self, key: int) -> None:
        items = self._items.pop(key)
        self._drawn.pop(key, None)
        for name, it in items.items():
            if name not in ("run", "env", "plot"):
                items["plot"].removeItem(it)

    def _prune(self, runs: list[RunData]) -> None:
        keep = {id(r) for r in runs}
        for key in [k for k in self._items if k not in keep]:
            self._remove(key)

    def refresh(self, runs: list[RunData], current: RunData | None) -> bool:
        self._runs, self._current = runs, current
        shown = self.shown(runs)
        self._prune(shown)
        plots = self._assign(shown)
        has_data = any(len(r.steps) for r in shown)
        self.empty.setVisible(not has_data)
        for axis in ("left", "bottom"):  # no axes (0..1, meaningless) before there is a loss to show
            self.item.showAxis(axis, has_data)
        self.legend.setVisible(bool(shown))
        changed = False
        for run in shown:
            scale = self._scale(run)
            key = (run.version, self.alpha, self.log_box.isChecked(), run.colour, run.name, visible_x(self.item),
                   scale, id(plots[id(run)]))
            if self._drawn.get(id(run)) == key:
                continue
            self._drawn[id(run)] = key
            changed = True
            items = self._ensure(run, plots[id(run)])
            view = visible_x(self.item)
            x, y = items["env"]["raw"].get(run.steps, run.loss, view)
            y = y / scale if scale != 1.0 else y
            items["raw"].setData(x, y, skipFiniteCheck=True)
            run.smoothed(self.alpha)
            xs, ys = items["env"]["smooth"].get(run.steps, run._smooth, view)
            items["smooth"].setData(xs, ys / scale if scale != 1.0 else ys, skipFiniteCheck=True)
            vx, vy = decimate(run.val_steps.view(), run.val_loss.view(), view)
            items["val"].setData(vx, vy / scale if scale != 1.0 else vy)
            if run.non_finite:
                lo, hi = _positive_range(y, vy)
                bx = np.repeat([float(e.step) for e in run.non_finite], 2)
                by = np.tile([lo, hi], len(run.non_finite))
                items["bad"].setData(bx, by)
            else:
                items["bad"].setData([], [])
        if changed:
            self.frames += 1
            self.settle()
        return changed

    def plot_items(self) -> list[pg.PlotItem]:
        return [self.item] + [item for _w, item, _l in self._task_plots.values()]

    def _on_mouse(self, event, under: pg.PlotItem | None = None) -> None:
        pos = event[0]
        under = under if under is not None else self.item  # the plot whose scene ``pos`` is in
        if not under.sceneBoundingRect().contains(pos):
            self.cursor.hide()
            self.readout.setText(self.hint)
            return
        point = under.getViewBox().mapSceneToView(pos)
        step = point.x()
        parts = []
        for run in self.shown(self._runs):
            steps = run.steps.view()
            if not steps.size:
                continue
            i = int(np.clip(np.searchsorted(steps, step), 0, steps.size - 1))
            if i > 0 and abs(steps[i - 1] - step) < abs(steps[i] - step):
                i -= 1
            loss = run.loss.view()
            sm = run.smoothed(self.alpha)
            text = f"<span style='color:{run.colour}'>■</span> {run.name}: step {int(steps[i])} loss {loss[i]:.4g}"
            if i < sm.size and self.alpha > 0:
                text += f" (smoothed {sm[i]:.4g})"
            vs = run.val_steps.view()
            if vs.size:
                j = int(np.clip(np.searchsorted(vs, steps[i], side="right") - 1, 0, vs.size - 1))
                text += f", val {run.val_loss.view()[j]:.4g} @{int(vs[j])}"
            parts.append(text)
            self.cursor.setPos(float(steps[i]))
        self.cursor.setVisible(bool(parts))
        self.readout.setText(" · ".join(parts[:3]) if parts else self.hint)

    def csv(self, runs: list[RunData], current: RunData | None) -> str:
        lines = ["run,series,step,value"]
        for run in self.shown(runs):
            for series, xs, ys in (("train", run.steps.view(), run.loss.view()),
                                   ("train_smoothed", run.steps.view(), run.smoothed(self.alpha)),
                                   ("val", run.val_steps.view(), run.val_loss.view())):
                xs, ys = _aligned(xs, ys)
                lines.extend(f"{run.name},{series},{int(s)},{v:.8g}" for s, v in zip(xs, ys))
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- gradients through time


class _ChosenRun:
    """A panel whose run combo (``run_box``) picks the one run a heatmap shows: the run
    chosen there if it is shown, else the current run, else the first shown."""

    def _force(self, *_):
        self._drawn.clear()
        self.refresh(self._runs, self._current)

    def chosen_run(self) -> RunData | None:
        shown = self.shown(self._runs)
        rid = self.run_box.currentData()
        for r in shown:
            if id(r) == rid:
                return r
        return self._current if self._current in shown else (shown[0] if shown else None)


class GradientPanel(_ChosenRun, PlotPanel):
    """Left: one heatmap per layer, log10 gradient norm over (timestep t, training step);
    the newest step is at the top and it scrolls. Right: the latest profile over t for
    every layer of every shown run on a log axis, and below it the fitted decay."""

    title = "Gradient through time"
    csv_name = "gradient_through_time.csv"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = QComboBox()
        for s in SOURCES:
            self.source.addItem({"inputs": "dL/dx_t every step", "exact": "exact dL/dh_t (probe)"}[s], s)
            self.source.setItemData(self.source.count() - 1, SOURCE_LABELS[s], Qt.ItemDataRole.ToolTipRole)
        self.source.setToolTip("Which gradient norms to show: the layer-input gradients logged every step, "
                               "or the exact hidden-state gradients of the sampled probe")
        self.run_box = QComboBox()
        self.run_box.setToolTip("Whose heatmap to show")
        self.run_box.setMinimumContentsLength(8)
        self.whole_box = QCheckBox("whole run")
        self.whole_box.setToolTip("Show the whole run, downsampled (each row the mean of a block of steps), not "
                                  "only the newest steps: the moment a gated cell's gradient path opens stays in view")
        self.header.addWidget(self.source)
        self.header.addWidget(self.run_box)
        self.header.addWidget(self.whole_box)
        self.finish_header()
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.heat = GraphicsLayoutWidget()
        self.heat.setMinimumSize(160, 120)
        self.split.addWidget(self.heat)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(1)
        self.profile = _plot_widget(left="||g_t||", bottom="timestep t")
        self.profile_item = self.profile.getPlotItem()
        self.profile_item.setLogMode(y=True)
        self.profile_item.setTitle("latest profile", size="8pt")
        rl.addWidget(self.profile, 1)
        self.decay_label = QLabel("")
        self.decay_label.setObjectName("decay")
        self.decay_label.setWordWrap(True)
        self.decay_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rl.addWidget(self.decay_label)
        self.split.addWidget(right)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.layout_.addWidget(self.split, 1)
        self.cmap = pg.colormap.get("viridis")
        self._heat_plots: dict[str, tuple[pg.PlotItem, pg.ImageItem]] = {}
        self._heat_layers: tuple = ()
        self._bar: pg.ColorBarItem | None = None
        self._profile_items: dict[tuple, pg.PlotDataItem] = {}
        self._runs: list[RunData] = []
        self._current: RunData | None = None
        self._run_ids: list[int] = []
        self._last_current: int | None = None  # id of the live run last seen: a new one takes the heatmap
        self.source.currentIndexChanged.connect(self._force)
        self.run_box.currentIndexChanged.connect(self._force)
        self.whole_box.toggled.connect(self._force)

    def plot_area(self) -> QWidget:
        return self.split

    @property
    def source_key(self) -> str:
        return self.source.currentData() or "inputs"


    def _sync_run_box(self, shown: list[RunData]) -> None:
        ids = [id(r) for r in shown]
        names = [r.name for r in shown]
        self.run_box.setVisible(bool(shown))
        current_moved = self._current is not None and id(self._current) != self._last_current
        if (ids == self._run_ids and not current_moved
                and [self.run_box.itemText(i) for i in range(self.run_box.count())] == names):
            return
        keep = self.run_box.currentData()
        if self._current is not None and id(self._current) != self._last_current:
            keep = id(self._current)  # a new run started: show its heatmap
        self._last_current = id(self._current) if self._current is not None else None
        self.run_box.blockSignals(True)
        self.run_box.clear()
        for r in shown:
            self.run_box.addItem(r.name, id(r))
        index = ids.index(keep) if keep in ids else (ids.index(id(self._current)) if self._current in shown else 0)
        self.run_box.setCurrentIndex(max(index, 0))
        self.run_box.blockSignals(False)
        self._run_ids = ids

    def _layout_heatmaps(self, layers: list[str]) -> None:
        key = tuple(layers) or ("",)  # ("",): the placeholder text
        if key == self._heat_layers:
            return
        self.heat.clear()
        self._heat_plots.clear()
        self._bar = None
        if not layers:
            self.heat.addLabel("The heatmap fills while training:<br>log10 ||dL/dh_t|| per layer, over timestep t "
                               "(x)<br>and training step (y, newest on top).<br>Darker toward small t: vanishing; "
                               "brighter: exploding.", color="#888888", size="9pt")
            self._heat_layers = key
            return
        images = []
        for col, layer in enumerate(layers):
            plot = self.heat.addPlot(row=0, col=col)
            plot.setTitle(layer, size="8pt")
            plot.setLabel("bottom", "timestep t")
            if col == 0:
                plot.setLabel("left", "training step")
            else:
                plot.getAxis("left").setStyle(showValues=True)
            img = pg.ImageItem()
            img.setColorMap(self.cmap)
            plot.addItem(img)
            plot.getViewBox().setMouseEnabled(x=True, y=True)
            self._heat_plots[layer] = (plot, img)
            images.append(img)
        if images:
            self._bar = pg.ColorBarItem(values=(-6, 0), colorMap=self.cmap, interactive=False, width=12,
                                        label="log10 ||g||", pen="#333333")
            self._bar.setImageItem(images, insert_in=self._heat_plots[layers[-1]][0])
        self._heat_layers = key

    def refresh(self, runs: list[RunData], current: RunData | None) -> bool:
        self._runs, self._current = runs, current
        shown = self.shown(runs)
        self._sync_run_box(shown)
        src = self.source_key
        hrun = self.chosen_run()
        whole = self.whole_box.isChecked()
        key = (src, tuple((id(r), r.version, r.colour, r.name) for r in shown), id(hrun) if hrun else 0, whole)
        if self._drawn.get("all") == key:
            return False
        self._drawn["all"] = key
        # heatmaps of one run
        layers = list(hrun.heatmaps[src]) if hrun else []
        self._layout_heatmaps(layers)
        lo, hi = math.inf, -math.inf
        shown_image = []
        for layer in layers:
            image, steps = hrun.heatmaps[src][layer].image(whole=whole)  # [rows, T] log10
            plot, img = self._heat_plots[layer]
            if image.size == 0:
                img.clear()
                continue
            finite = image[np.isfinite(image)]
            if finite.size:
                lo, hi = min(lo, float(np.percentile(finite, 1))), max(hi, float(finite.max()))
            shown_image.append((img, image, steps))
        if math.isfinite(lo) and hi - lo < 1e-6:
            hi = lo + 1.0
        for img, image, steps in shown_image:
            # A norm of exactly zero (underflow: nothing reached that step) shows as the
            # lowest colour; NaN (no such step in a shorter sequence) stays blank.
            if math.isfinite(lo):
                image = np.where(np.isneginf(image), lo, image)
            img.setImage(image, autoLevels=False)
            first, last = float(steps[0]), float(steps[-1])
            height = max(last - first, 1.0)
            # rows span [first step, last step]: one row is height/(rows-1) steps tall
            row_h = height / max(image.shape[0] - 1, 1)
            img.setRect(QRectF(0.5, first - row_h / 2, image.shape[1], height + row_h))
        if self._bar is not None and math.isfinite(lo):
            self._bar.setLevels((lo, hi))
        # latest profiles of all shown runs
        wanted = set()
        styles = [Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine]
        decay_lines = []
        for run in shown:
            profiles = run.profiles[src]
            for li, (layer, prof) in enumerate(profiles.items()):
                k = (id(run), layer)
                wanted.add(k)
                item = self._profile_items.get(k)
                if item is None:
                    item = pg.PlotDataItem(pen=_pen(run.colour, 1.6, style=styles[li % len(styles)]))
                    self.profile_item.addItem(item)
                    self._profile_items[k] = item
                t = np.arange(1, prof.size + 1, dtype=np.float64)
                y = np.where(prof > 0, prof, np.nan)
                item.setData(t, y, connect="finite")
            dash = ["—", "- -", "···", "-·-"]
            for li, (layer, d) in enumerate(run.decay(src).items()):
                f = d.factor_per_step
                num = f"×{f:.3g}/step" if math.isfinite(f) else "—"
                style = f" ({dash[li % 4]})" if len(profiles) > 1 else ""
                decay_lines.append(f"<span style='color:{run.colour}'>■</span> {run.name} {layer}{style}: "
                                   f"<b>{num}</b> back in time; {d.describe()}")
        for k in [k for k in self._profile_items if k not in wanted]:
            self.profile_item.removeItem(self._profile_items.pop(k))
        for axis in ("left", "bottom"):  # an empty log axis (2..9) means nothing
            self.profile_item.showAxis(axis, bool(self._profile_items))
        step = hrun.profile_steps[src] if hrun else 0
        if decay_lines:
            self.decay_label.setText(f"fitted decay per step (step {step}):<br>" + "<br>".join(decay_lines[:6]))
        else:
            self.decay_label.setText("no gradient profiles yet" + (
                " (the exact probe runs every train.probe_every steps)" if src == "exact" else ""))
        self.frames += 1
        self.settle()
        return True

    def plot_items(self) -> list[pg.PlotItem]:
        return [p for p, _img in self._heat_plots.values()] + [self.profile_item]

    def save_csv(self, path: str | Path, runs: list[RunData], current: RunData | None) -> Path:
        """The heatmap's rows to ``path``; the latest profiles of every shown run beside
        it, to NAME-profiles.csv (one column per run and layer)."""
        path = Path(path)
        atomic_write_text(path, self.csv(runs, current))
        src = self.source_key
        columns: dict[str, np.ndarray] = {}
        for run in self.shown(runs):
            for layer, prof in run.profiles[src].items():
                columns[f"{run.name}:{layer}"] = prof
        T = max((p.size for p in columns.values()), default=0)
        lines = ["t," + ",".join(columns)]
        for t in range(T):
            lines.append(f"{t + 1}," + ",".join(f"{p[t]:.8g}" if t < p.size else "" for p in columns.values()))
        atomic_write_text(path.with_name(f"{path.stem}-profiles.csv"), "\n".join(lines) + "\n")
        return path

    def csv(self, runs: list[RunData], current: RunData | None) -> str:
        run = self.chosen_run()
        src = self.source_key
        if run is None:
            return "layer,step\n"
        out = []
        for layer in run.heatmaps[src]:
            body = run.heatmap_csv(src, layer).splitlines()
            if not out:
                out.append("layer," + body[0])
            out.extend(f"{layer},{line}" for line in body[1:])
        return "\n".join(out or ["layer,step"]) + "\n"


# ----------------------------------------------------------------------------- norms and learning rate


class NormPanel(PlotPanel):
    title = "Gradient norm and learning rate"
    csv_name = "grad_norm_lr.csv"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.log_box = QCheckBox("log ||g||")
        self.log_box.setChecked(True)
        self.log_box.setToolTip("Show the gradient norm on a logarithmic axis")
        self.header.addWidget(self.log_box)
        self.finish_header(readout_below=True)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.norm = _plot_widget(left="||g||")
        self.norm_item = self.norm.getPlotItem()
        self.norm_item.setLogMode(y=True)
        # No legend here: runs keep their colours in every panel, and the loss panel names them.
        self.lr = _plot_widget(left="lr")
        self.lr_item = self.lr.getPlotItem()
        self.lr_item.setXLink(self.norm_item)
        self.lr_item.enableAutoRange(y=False)  # set from the data: 0 .. max, so a constant lr is a flat line
        self.split.addWidget(self.norm)
        self.split.addWidget(self.lr)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 1)
        self.layout_.addWidget(self.split, 1)
        self.threshold = pg.InfiniteLine(angle=0, movable=False, pen=_pen("#d62728", 1, 200, Qt.PenStyle.DashLine),
                                         label="clip threshold", labelOpts={"position": 0.04, "color": "#d62728",
                                                                          "anchors": [(0, 1), (0, 1)],
                                                                          "fill": (255, 255, 255, 200)})
        self.threshold.setZValue(50)  # above the curves, so its label stays readable
        self.norm_item.addItem(self.threshold, ignoreBounds=True)
        self.threshold.hide()
        self._threshold_drawn: tuple | None = None  # (position, clip value) shown; None: hidden
        self._items: dict[int, dict] = {}
        self._runs: list[RunData] = []
        self._current: RunData | None = None
        self.readout.setText("— before clip  - - after  ▲ clipped  red: non-finite")
        self.norm.setToolTip("Global gradient norm before clipping (solid) and after (dashed), the clipping threshold "
                             "(red dashed line), clipped steps (▲) and non-finite steps (red lines); below, the "
                             "learning rate.")
        self.log_box.toggled.connect(self._on_log)

    def plot_area(self) -> QWidget:
        return self.split

    def _on_log(self, on: bool) -> None:
        self.norm_item.setLogMode(y=on)
        self._drawn.clear()
        self.refresh(self._runs, self._current)

    def _ensure(self, run: RunData) -> dict:
        items = self._items.get(id(run))
        if items is None:
            before = pg.PlotDataItem(pen=_pen(run.colour, 1.4))
            after = pg.PlotDataItem(pen=_pen(run.colour, 1, 150, Qt.PenStyle.DashLine))
            clips = pg.PlotDataItem(pen=None, symbol="t", symbolSize=6, symbolBrush=run.colour,
                                    symbolPen=pg.mkPen("#222222", width=0.8))  # outlined: visible on its curve
            bad = pg.PlotDataItem(pen=_pen(NON_FINITE.name(), 1.2), connect="pairs")
            lr = pg.PlotDataItem(pen=_pen(run.colour, 1.4))
            for it in (before, after, clips, bad):
                self.norm_item.addItem(it)
            self.lr_item.addItem(lr)
            items = {"before": before, "after": after, "clips": clips, "bad": bad, "lr": lr,
                     "env": {"before": Envelope(), "after": Envelope(), "lr": Envelope()}}
            self._items[id(run)] = items
        return items

    def refresh(self, runs: list[RunData], current: RunData | None) -> bool:
        self._runs, self._current = runs, current
        shown = self.shown(runs)
        keep = {id(r) for r in shown}
        for k in [k for k in self._items if k not in keep]:
            for name, it in self._items.pop(k).items():
                if name != "env":
                    (self.lr_item if name == "lr" else self.norm_item).removeItem(it)
        changed = False
        for run in shown:
            view = visible_x(self.norm_item)
            key = (run.version, self.log_box.isChecked(), run.colour, run.name, view)
            if self._drawn.get(id(run)) == key:
                continue
            self._drawn[id(run)] = key
            changed = True
            items = self._ensure(run)
            env = items["env"]
            x, g = env["before"].get(run.steps, run.grad_norm, view)
            items["before"].setData(x, g, skipFiniteCheck=True)
            clipped_any = len(run.clip_steps) > 0
            x2, gc = env["after"].get(run.steps, run.grad_norm_clipped, view) if clipped_any else ([], [])
            items["after"].setData(x2, gc, skipFiniteCheck=True)
            items["clips"].setData(*thin(run.clip_steps.view(), run.clip_norms.view(), view))
            if run.non_finite:
                lo, hi = _positive_range(np.asarray(g))
                bx = np.repeat([float(e.step) for e in run.non_finite], 2)
                items["bad"].setData(bx, np.tile([lo, hi], len(run.non_finite)))
            else:
                items["bad"].setData([], [])
            items["lr"].setData(*env["lr"].get(run.steps, run.lr, view), skipFiniteCheck=True)
        lr_max = 0.0
        for r in shown:  # from what was drawn (the envelope keeps the maxima), not 10^6 raw values
            item = self._items.get(id(r), {}).get("lr")
            _x, ly = item.getData() if item is not None else (None, None)
            if ly is not None and len(ly) and np.isfinite(ly).any():
                lr_max = max(lr_max, float(np.nanmax(ly)))
        if changed and lr_max > 0:
            self.lr_item.setYRange(0.0, lr_max * 1.15, padding=0)
        has_data = any(len(r.steps) for r in shown)
        for item in (self.norm_item, self.lr_item):  # no 0..1 axes before there is a norm to show
            for axis in ("left", "bottom"):
                item.showAxis(axis, has_data)
        ref = current if current in shown else (shown[0] if shown else None)
        threshold = None
        if ref is not None and ref.clip == "norm":
            threshold = (math.log10(ref.clip_value) if self.log_box.isChecked() else ref.clip_value, ref.clip_value)
        if threshold != self._threshold_drawn:  # (setPos repaints the plot, even to the same place)
            self._threshold_drawn = threshold
            if threshold is not None:
                self.threshold.setPos(threshold[0])
                self.threshold.label.setFormat(f"clip threshold {threshold[1]:g}")
                self.threshold.show()
            else:
                self.threshold.hide()
        if changed:
            self.frames += 1
            self.settle()
        return changed

    def plot_items(self) -> list[pg.PlotItem]:
        return [self.norm_item, self.lr_item]

    def csv(self, runs: list[RunData], current: RunData | None) -> str:
        lines = ["run,step,grad_norm,grad_norm_clipped,lr"]
        for run in self.shown(runs):
            steps = run.steps.view()
            g, gc, lr = run.grad_norm.view(), run.grad_norm_clipped.view(), run.lr.view()
            n = min(steps.size, g.size, gc.size, lr.size)
            for i in range(n):
                lines.append(f"{run.name},{int(steps[i])},{g[i]:.8g},{gc[i]:.8g},{lr[i]:.8g}")
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- dynamics

_STYLES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)
_SYMBOLS = ("o", "s", "t", "d", "+", "x")
_SYMBOL_MARKS = ("●", "■", "▼", "◆", "+", "×")  # the same, in text (the plots' titles)
_STYLE_MARKS = ("—", "- -", "···", "-·-")  # _STYLES in text

# One sentence per quantity: what it is and how it was computed (engine/dynamics.py).
DYNAMICS_TIPS = {
    "jacobian": "Heatmap of log10 ||ds_t/ds_(t-1)||_2, the spectral norm of the one-step Jacobian of the carried "
                "state (h; for an LSTM [h; c]) at each timestep t (x) and training step (y, newest on top), mean "
                "over the first rows of the probe batch, by 8 Lanczos iterations on J^T J (Jacobian-vector "
                "products through the cell's own step). Blue (< 0): the step shrinks what passes back through it.",
    "product": "Solid: log10 of the product of the one-step Jacobian norms after t, the bound on how much "
               "||ds_T/ds_t|| can have shrunk or grown by step t (newest Dynamics record). Dashed: log10 "
               "||dL/dh_t|| / ||dL/dh_T|| of the newest exact probe, which stays under the bound.",
    "spectrum": "Per gate block of the recurrent weights W_hh: solid, the spectral radius (largest |eigenvalue|); "
                "faint, the largest singular value ||W||_2; computed exactly (LAPACK, float64) at each probe. "
                "Above 1 the linear part alone would amplify, below 1 it contracts.",
    "eigen": "The eigenvalues of each W_hh gate block on the complex plane (newest probe; the largest 64 in modulus "
             "per block) with the unit circle: outside it, the linear recurrence grows along that direction.",
    "gates": "Per gate: solid, its mean over units, timesteps and rows of the probe batch; dashed, its saturation, "
             "the fraction of values within 5% of the range's ends (a sigmoid gate < 0.05 or > 0.95). An LSTM "
             "forget gate near 1 keeps the cell state's gradient path open.",
    "trajectory": "The hidden state's path h_1..h_T of the first 16 rows of the newest probe batch, projected on "
                  "the two (2-D) or three (3-D, drawn as a turnable orthographic view) leading principal "
                  "components of all their states (PCA by SVD); dots coloured by timestep (dark: early, yellow: "
                  "late) or by the input's class, the first step ringed. A path that settles on a point has "
                  "forgotten its input; one that keeps moving still carries it.",
    "lyapunov": "The leading finite-time Lyapunov exponents of the hidden-state dynamics on the probe batch: k "
                "vectors carried back through each step's transposed Jacobian (as backpropagation does), "
                "re-orthonormalised by QR; (1/T) sum log |R_ii|. Below 0: forgetting (vanishing), above 0: "
                "chaotic (exploding).",
}


# a class per row (classification batches): the trajectory's colours by class
_CLASS_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                  "#17becf", "#ff7f0e")


def project_3d(points: np.ndarray, azimuth: float, elevation: float) -> np.ndarray:
    """[..., 3] coordinates (PC1, PC2, PC3) -> [..., 2] their orthographic view from a
    camera at ``azimuth`` degrees around the PC3 axis and ``elevation`` degrees above the
    PC1-PC2 plane: at elevation 90 the PC1-PC2 plane seen from above (turned by the
    azimuth), at elevation 0 from its edge with PC3 up."""
    az, el = math.radians(azimuth), math.radians(elevation)
    p1, p2, p3 = points[..., 0], points[..., 1], points[..., 2]
    across = p1 * math.cos(az) - p2 * math.sin(az)  # the horizontal screen axis
    depth = p1 * math.sin(az) + p2 * math.cos(az)  # toward the camera's horizon
    return np.stack([across, depth * math.sin(el) + p3 * math.cos(el)], axis=-1)


class DynamicsPanel(_ChosenRun, PlotPanel):
    """Why the gradient vanishes: the Dynamics records (workbench/engine/dynamics.py) in
    five tabs, each drawn from the runs' buffers on the frame timer, every view of the
    layer chosen in the header. The shown runs side by side: one Jacobian heatmap per run
    (on one colour scale), every curve and the eigenvalues overlaid in the runs' colours
    (named in the header's legend); the trajectory is of the run chosen there, in 2-D
    (PC1, PC2) or 3-D (PC1..PC3 turned by two sliders), coloured by timestep or class."""

    title = "Dynamics"
    csv_name = "dynamics.csv"
    MAX_HEATMAPS = 4  # side by side, the first shown runs

    def __init__(self, parent=None):
        super().__init__(parent)
        from PySide6.QtWidgets import QTabWidget

        self.run_box = QComboBox()
        self.run_box.setToolTip("Whose hidden-state trajectory to show (every other view shows all the shown "
                                "runs: the Jacobian heatmaps side by side, the curves and eigenvalues overlaid)")
        self.run_box.setMinimumContentsLength(8)
        self.layer_box = QComboBox()
        self.layer_box.setToolTip("Which layer (a bidirectional layer's reverse direction is NAME.reverse)")
        self.run_legend = QLabel("")
        self.run_legend.setObjectName("runLegend")
        self.run_legend.setToolTip("The shown runs' colours: their curves and eigenvalues are drawn in them")
        self.run_legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.header.addWidget(self.layer_box)
        self.header.addWidget(self.run_legend, 1)
        self.finish_header(readout_below=True)
        self.readout.setWordWrap(True)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.layout_.addWidget(self.tabs, 1)
        self.cmap = pg.colormap.get("CET-D1")  # diverging: blue shrinks, red grows, white at norm 1

        def tab(name: str, *widgets) -> None:
            page = QSplitter(Qt.Orientation.Horizontal)
            for w in widgets:
                page.addWidget(w)
            self.tabs.addTab(page, name)

        self.heat = GraphicsLayoutWidget()
        self.heat.setMinimumSize(160, 120)
        self.heat.setToolTip(DYNAMICS_TIPS["jacobian"])
        self._heats: dict[int, tuple[pg.PlotItem, pg.ImageItem]] = {}  # run id -> its heatmap
        self._heat_key: tuple = ()
        self._heat_bar: pg.ColorBarItem | None = None
        self.product = _plot_widget(left="log10", bottom="timestep t")
        self.product.setToolTip(DYNAMICS_TIPS["product"])
        self.product_item = self.product.getPlotItem()
        self.product_item.setTitle("Jacobian product bound (—) and dL/dh_t (- -)", size="8pt")
        tab("Jacobian", self.heat, self.product)
        self.tabs.widget(0).setStretchFactor(0, 3)
        self.tabs.widget(0).setStretchFactor(1, 2)
        self.spectrum = _plot_widget(left="radius, ||W||")
        self.spectrum.setToolTip(DYNAMICS_TIPS["spectrum"])
        self.spectrum_item = self.spectrum.getPlotItem()
        self.spectrum_item.setTitle("spectral radius (bold), ||W||₂ (faint)", size="8pt")
        self.spectrum_item.addItem(pg.InfiniteLine(pos=1.0, angle=0, pen=_pen("#888888", 1, 160, Qt.PenStyle.DotLine)))
        self.eigen = _plot_widget(left="Im λ", bottom="Re λ")
        self.eigen.setToolTip(DYNAMICS_TIPS["eigen"])
        self.eigen_item = self.eigen.getPlotItem()
        self.eigen_item.setAspectLocked(True)
        self.eigen_item.setTitle("eigenvalues of W_hh, newest probe", size="8pt")
        theta = np.linspace(0, 2 * np.pi, 181)
        self.eigen_item.addItem(pg.PlotDataItem(np.cos(theta), np.sin(theta), pen=_pen("#888888", 1)))
        tab("Spectrum", self.spectrum, self.eigen)
        self.gates = _plot_widget(left="gate value")
        self.gates.setToolTip(DYNAMICS_TIPS["gates"])
        self.gates_item = self.gates.getPlotItem()
        tab("Gates", self.gates)
        self.lyap = _plot_widget(left="exponent per step")
        self.lyap.setToolTip(DYNAMICS_TIPS["lyapunov"])
        self.lyap_item = self.lyap.getPlotItem()
        self.lyap_item.addItem(pg.InfiniteLine(pos=0.0, angle=0, pen=_pen("#888888", 1, 160, Qt.PenStyle.DotLine)))
        tab("Lyapunov", self.lyap)
        self._build_trajectory_tab()
        # the keys (W_hh block line styles, gate and block symbols) in the titles, never over the data
        self._key_titles = {"spectrum": (self.spectrum_item, "spectral radius (bold), ||W||₂ (faint)"),
                            "gates": (self.gates_item, "mean (—), saturated (- -)"),
                            "eigen": (self.eigen_item, "eigenvalues of W_hh, newest probe")}
        self._key_entries: dict[str, list] = {}
        self._items: dict[tuple, pg.PlotDataItem] = {}  # (plot name, run id, key...) -> curve
        self._runs: list[RunData] = []
        self._current: RunData | None = None
        self._run_ids: list[int] = []
        self._layers: list[str] = []
        self.readout.setText("no Dynamics records yet (they follow each exact probe)")
        self.run_box.currentIndexChanged.connect(self._force)
        self.layer_box.currentIndexChanged.connect(self._force)

    def _build_trajectory_tab(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(QLabel("run"))
        row.addWidget(self.run_box)
        self.traj_view = QComboBox()
        self.traj_view.addItem("2-D: PC1, PC2", "2d")
        self.traj_view.addItem("3-D: PC1–PC3", "3d")
        self.traj_view.setToolTip("2-D: the path in the plane of the two leading principal components. 3-D: in "
                                  "the three leading ones, drawn as their orthographic view, turned by the "
                                  "azimuth and elevation sliders")
        self.traj_colour = QComboBox()
        self.traj_colour.addItem("colour by timestep", "time")
        self.traj_colour.addItem("colour by class", "class")
        self.traj_colour.setToolTip("Dots coloured by timestep (dark: early, yellow: late), or by each input's "
                                    "class (a classification task's batch)")
        self.azimuth = QSlider(Qt.Orientation.Horizontal)
        self.azimuth.setRange(-180, 180)
        self.azimuth.setValue(35)
        self.azimuth.setToolTip("3-D view: azimuth, the turn around the PC3 axis (degrees)")
        self.elevation = QSlider(Qt.Orientation.Horizontal)
        self.elevation.setRange(0, 90)
        self.elevation.setValue(30)
        self.elevation.setToolTip("3-D view: elevation above the PC1-PC2 plane (degrees; 90: seen from above)")
        self._angle_labels = (QLabel("azimuth"), QLabel("elevation"))
        for w in (self.traj_view, self.traj_colour, self._angle_labels[0], self.azimuth, self._angle_labels[1],
                  self.elevation):
            row.addWidget(w)
        row.addStretch(1)
        lay.addLayout(row)
        self.traj = _plot_widget(left="PC2", bottom="PC1")
        self.traj.setToolTip(DYNAMICS_TIPS["trajectory"])
        self.traj_item = self.traj.getPlotItem()
        # every dot drawn: a brush per dot must meet as many points (no clipping, no downsampling)
        self.traj_item.setClipToView(False)
        self.traj_item.setDownsampling(auto=False, ds=1)
        self.traj_legend = _legend(self.traj_item)
        self._traj_extras: list = []  # the 3-D axes and their labels, redrawn each time
        self.time_cmap = pg.colormap.get("viridis")
        self._time_palette: list = []  # _time_brushes, made on first use
        self._class_brushes: dict[str, object] = {}  # colour -> brush
        lay.addWidget(self.traj, 1)
        self.tabs.addTab(page, "Trajectory")
        for w in (self.traj_view, self.traj_colour):
            w.currentIndexChanged.connect(self._on_traj_controls)
        for w in (self.azimuth, self.elevation):
            w.valueChanged.connect(self._force)
        self._on_traj_controls()

    def _on_traj_controls(self, *_):
        three = self.traj_view.currentData() == "3d"
        for w in (*self._angle_labels, self.azimuth, self.elevation):
            w.setVisible(three)
        if hasattr(self, "_items"):
            self._force()

    def plot_area(self) -> QWidget:
        return self.tabs.currentWidget()

    @property
    def layer(self) -> str:
        return self.layer_box.currentText()

    def heat_image(self, run: RunData) -> pg.ImageItem | None:
        """The run's Jacobian heatmap (None when it is not among those shown)."""
        found = self._heats.get(id(run))
        return found[1] if found else None

    def _sync_boxes(self, shown: list[RunData]) -> None:
        ids = [id(r) for r in shown]
        if ids != self._run_ids:
            keep = self.run_box.currentData()
            self.run_box.blockSignals(True)
            self.run_box.clear()
            for r in shown:
                self.run_box.addItem(r.name, id(r))
            if keep in ids:
                self.run_box.setCurrentIndex(ids.index(keep))
            elif self._current in shown:
                self.run_box.setCurrentIndex(ids.index(id(self._current)))
            self.run_box.blockSignals(False)
            self._run_ids = ids
        layers = list(dict.fromkeys(l for r in shown for l in r.dynamics.layers))
        if layers != self._layers:
            keep = self.layer_box.currentText()
            self.layer_box.blockSignals(True)
            self.layer_box.clear()
            self.layer_box.addItems(layers)
            if keep in layers:
                self.layer_box.setCurrentIndex(layers.index(keep))
            self.layer_box.blockSignals(False)
            self._layers = layers
        self.run_legend.setText("  ".join(f'<span style="color:{r.colour}; font-weight:bold">━━</span> '
                                          f"{_html(r.name)}" for r in shown))

    def _layout_heats(self, runs: list[RunData]) -> None:
        """One heatmap per run, side by side, one colour bar (log10 norm; white at 1)."""
        key = tuple((id(r), r.name, r.colour) for r in runs)
        if key == self._heat_key:
            return
        self.heat.clear()
        self._heats.clear()
        self._heat_bar = None
        self._heat_key = key
        if not runs:
            self.heat.addLabel("One heatmap per shown run: log10 ||ds_t/ds_(t-1)||<br>over timestep t (x) and "
                               "training step (y, newest on top).<br>Blue: the step shrinks the gradient "
                               "(vanishing); red: it grows it.", color="#888888", size="9pt")
            return
        for col, run in enumerate(runs):
            plot = self.heat.addPlot(row=0, col=col)
            plot.setTitle(f'<span style="color:{run.colour}">{_html(run.name)}</span>', size="8pt")
            plot.setLabel("bottom", "timestep t")
            if col == 0:
                plot.setLabel("left", "training step")
            for axis in ("left", "bottom"):
                plot.getAxis(axis).enableAutoSIPrefix(False)
            img = pg.ImageItem()
            img.setColorMap(self.cmap)
            plot.addItem(img)
            self._heats[id(run)] = (plot, img)
        images = [img for _p, img in self._heats.values()]
        self._heat_bar = pg.ColorBarItem(values=(-1, 1), colorMap=self.cmap, interactive=False, width=10,
                                         label="log10 norm", pen="#333333")
        self._heat_bar.setImageItem(images, insert_in=self._heats[id(runs[-1])][0])

    def _draw_heats(self, runs: list[RunData], layer: str) -> None:
        images = {}
        for run in runs:
            ring = run.dynamics.jacobian.get(layer)
            image, steps = ring.image() if ring is not None else (np.zeros((0, 0)), np.zeros(0))
            images[id(run)] = (image, steps)
        finite = [np.abs(im[np.isfinite(im)]).max() for im, _s in images.values() if np.isfinite(im).any()]
        m = max(max(finite) if finite else 1.0, 1e-3)  # one symmetric scale for all: comparable colours
        for rid, (image, steps) in images.items():
            img = self._heats[rid][1]
            if image.size:
                img.setImage(np.where(np.isfinite(image), image, np.nan), levels=(-m, m))
                first, last = float(steps[0]), float(steps[-1])
                height = max(last - first, 1.0)
                row_h = height / max(image.shape[0] - 1, 1)
                img.setRect(QRectF(0.5, first - row_h / 2, image.shape[1], height + row_h))
            else:
                img.clear()
        if self._heat_bar is not None:
            self._heat_bar.setLevels((-m, m))

    def _curve(self, plot: pg.PlotItem, key: tuple, pen=None, **kwargs) -> pg.PlotDataItem:
        item = self._items.get(key)
        if item is None:
            item = pg.PlotDataItem(pen=pen, **kwargs)
            plot.addItem(item)
            self._items[key] = item
        return item

    def _traj_state(self) -> tuple:
        return (self.traj_view.currentData(), self.traj_colour.currentData(), self.azimuth.value(),
                self.elevation.value())

    def refresh(self, runs: list[RunData], current: RunData | None) -> bool:
        self._runs, self._current = runs, current
        shown = self.shown(runs)
        self._sync_boxes(shown)
        chosen, layer = self.chosen_run(), self.layer
        key = (tuple((id(r), r.dynamics.count, r.colour, r.name) for r in shown), id(chosen) if chosen else 0, layer,
               self._traj_state())
        if self._drawn.get("all") == key:
            return False
        self._drawn["all"] = key
        wanted: set = set()
        plots = {"product": self.product_item, "spectrum": self.spectrum_item, "eigen": self.eigen_item,
                 "gates": self.gates_item, "lyap": self.lyap_item, "traj": self.traj_item}
        legend: dict[str, list[str]] = {}
        for run in shown:
            dyn, rid = run.dynamics, id(run)
            # the bound from the newest record, beside the newest exact dL/dh_t, both 0 at t = T
            if dyn.latest is not None and layer in dyn.latest.jacobian_norms:
                bound = dyn.latest.jacobian_log_product(layer)
                k = ("product", rid, "bound")
                wanted.add(k)
                self._curve(self.product_item, k, _pen(run.colour, 1.6)).setData(
                    np.arange(1, bound.size + 1, dtype=np.float64), bound)
                grad = run.profiles["exact"].get(layer)
                if grad is not None and grad.size and grad[-1] > 0:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        rel = np.log10(np.where(grad > 0, grad, np.nan) / grad[-1])
                    k = ("product", rid, "grad")
                    wanted.add(k)
                    self._curve(self.product_item, k, _pen(run.colour, 1.2, 200, Qt.PenStyle.DashLine)).setData(
                        np.arange(1, rel.size + 1, dtype=np.float64), rel, connect="finite")
            blocks = [b for (l, b) in dyn.radius if l == layer]
            for bi, block in enumerate(blocks):
                style = _STYLES[bi % len(_STYLES)]
                legend.setdefault("spectrum", []).append((block, bi))
                for name, series, width, alpha in (("radius", dyn.radius, 1.8, 255),
                                                   ("sigma", dyn.sigma_max, 1.0, 110)):
                    c = series[(layer, block)]
                    k = ("spectrum", rid, name, block)
                    wanted.add(k)
                    dots = {"symbol": "o", "symbolSize": 4, "symbolBrush": run.colour, "symbolPen": None} \
                        if name == "radius" else {}  # (a run of one record is a point)
                    self._curve(self.spectrum_item, k, _pen(run.colour, width, alpha, style), **dots).setData(
                        c.x.view(), c.y.view(), skipFiniteCheck=True)
            gates = [g for (l, g) in dyn.gate_mean if l == layer]
            for gi, gate in enumerate(gates):
                legend.setdefault("gates", []).append((gate, gi))
                for name, series, style in (("mean", dyn.gate_mean, Qt.PenStyle.SolidLine),
                                            ("sat", dyn.gate_saturation, Qt.PenStyle.DashLine)):
                    c = series[(layer, gate)]
                    k = ("gates", rid, name, gate)
                    wanted.add(k)
                    self._curve(self.gates_item, k, _pen(run.colour, 1.3, 255 if name == "mean" else 170, style),
                                symbol=_SYMBOLS[gi % len(_SYMBOLS)], symbolSize=5, symbolBrush=run.colour,
                                symbolPen=None).setData(c.x.view(), c.y.view(), skipFiniteCheck=True)
            indices = sorted(i for (l, i) in dyn.lyapunov if l == layer)
            for i in indices:
                c = dyn.lyapunov[(layer, i)]
                k = ("lyap", rid, i)
                wanted.add(k)
                dots = {"symbol": "o", "symbolSize": 5, "symbolBrush": run.colour, "symbolPen": None} if i == 0 else {}
                self._curve(self.lyap_item, k, _pen(run.colour, 1.6 if i == 0 else 1.0, 255 if i == 0 else 150,
                                                    _STYLES[i % len(_STYLES)]), **dots).setData(
                    c.x.view(), c.y.view(), skipFiniteCheck=True)
            # the eigenvalues of every shown run, overlaid in its colour (a symbol per block)
            if dyn.latest is not None:
                for bi, (block, stats) in enumerate(dyn.latest.spectra.get(layer, {}).items()):
                    re, im = (np.asarray(v, dtype=np.float64) for v in stats.get("eigenvalues", ([], [])))
                    legend.setdefault("eigen", []).append((block, bi))
                    k = ("eigen", rid, block)
                    wanted.add(k)
                    self._curve(self.eigen_item, k, None, symbol=_SYMBOLS[bi % len(_SYMBOLS)], symbolSize=6,
                                symbolBrush=pg.mkBrush(run.colour),
                                symbolPen=pg.mkPen("#222222", width=0.5)).setData(re, im)
        if chosen is not None and chosen.dynamics.latest is not None:
            self._draw_trajectory(chosen, layer, wanted)
        else:
            self._clear_traj_extras()
        side = shown[:self.MAX_HEATMAPS]
        self._layout_heats(side)
        self._draw_heats(side, layer)
        for k in [k for k in self._items if k not in wanted]:
            plots[k[0]].removeItem(self._items.pop(k))
        parts = []
        for run in shown:
            latest = run.dynamics.latest
            if latest is None or layer not in latest.jacobian_norms:
                continue
            lyap = latest.lyapunov.get(layer)
            lead = f"{float(lyap[0]):.3g}" if lyap is not None and len(lyap) else "—"
            parts.append(f'<span style="color:{run.colour}">{_html(run.name)}</span> at step {latest.step}: '
                         f"spectral radius {latest.radius(layer):.3g}, leading Lyapunov exponent {lead}")
        self._fill_key_legends(legend)
        self.readout.setText(" · ".join(parts) if parts else "no Dynamics records yet (they follow each exact probe)")
        self.frames += 1
        self.settle()
        return True

    def key_text(self, name: str) -> str:
        """The key of plot ``name`` (spectrum, gates, eigen) as its title shows it."""
        keys = self._key_entries.get(name, [])
        marks = _STYLE_MARKS if name == "spectrum" else _SYMBOL_MARKS
        return "  ".join(f"{marks[i % len(marks)]} {_html(label)}" for label, i in keys)

    def _fill_key_legends(self, entries: dict[str, list[tuple[str, int]]]) -> None:
        """The keys in the plots' titles (the runs' colours are the header's): a line
        style per W_hh block, a symbol per gate and per block of the eigenvalues."""
        for name, (item, title) in self._key_titles.items():
            keys = list(dict.fromkeys(entries.get(name, [])))
            if self._key_entries.get(name) == keys:
                continue
            self._key_entries[name] = keys
            key = self.key_text(name)
            item.setTitle(f"{title}{'<br>' + key if key else ''}", size="8pt")  # the key on its own line

    def _clear_traj_extras(self) -> None:
        for item in self._traj_extras:
            self.traj_item.removeItem(item)
        self._traj_extras.clear()
        self.traj_legend.clear()

    TIME_LEVELS = 64  # timestep colours: enough to read the order, few enough to render once each

    def _time_brushes(self) -> list:
        """TIME_LEVELS brushes along the timestep colour map (dark: early, yellow: late), made once."""
        if not self._time_palette:
            levels = np.linspace(0.0, 1.0, self.TIME_LEVELS)
            self._time_palette = [pg.mkBrush(c) for c in self.time_cmap.map(levels, mode="qcolor")]
        return self._time_palette

    def _class_brush(self, colour: str):
        if colour not in self._class_brushes:
            self._class_brushes[colour] = pg.mkBrush(colour)
        return self._class_brushes[colour]

    def _draw_trajectory(self, run: RunData, layer: str, wanted: set) -> None:
        """The chosen run's newest paths: a faint line per row, dots coloured by timestep
        or by the row's class, the first step ringed; in 3-D the PC1..PC3 axes drawn from
        the origin (the states' mean) and labelled."""
        self._clear_traj_extras()
        found = run.dynamics.latest.trajectories.get(layer) if run.dynamics.latest is not None else None
        labels = found.get("labels") if found else None
        item = self.traj_colour.model().item(1)
        if item is not None:
            item.setEnabled(labels is not None)
            item.setToolTip("" if labels is not None else "this run's batch has no class per input")
        if not found:
            return
        rows = [np.asarray(r, dtype=np.float64) for r in found.get("rows", [])]  # each [C, T]
        comps = min((r.shape[0] for r in rows), default=0)
        explained = list(found.get("explained", [])) + [math.nan] * 3
        three = self.traj_view.currentData() == "3d" and comps >= 3
        by_class = self.traj_colour.currentData() == "class" and labels is not None
        az, el = self.azimuth.value(), self.elevation.value()
        if three:
            self.traj_item.setLabel("bottom", f"PC1–PC3 seen from azimuth {az}°, elevation {el}° "
                                              f"({100 * sum(explained[:3]):.0f}% of the variance)")
            self.traj_item.setLabel("left", "")
            paths = [project_3d(r[:3].T, az, el) for r in rows]  # each [T, 2]
        else:
            self.traj_item.setLabel("bottom", f"PC1 ({100 * explained[0]:.0f}% of the variance)")
            self.traj_item.setLabel("left", f"PC2 ({100 * explained[1]:.0f}%)")
            paths = [r[:2].T for r in rows]
        classes = sorted(set(labels)) if by_class else []
        colour_of = {c: _CLASS_COLOURS[i % len(_CLASS_COLOURS)] for i, c in enumerate(classes)}
        brushes: list = []  # one per dot, over every row's dots in row order
        for i, xy in enumerate(paths):
            x, y = xy[:, 0], xy[:, 1]
            line = colour_of[labels[i]] if by_class and i < len(labels) else run.colour
            k = ("traj", id(run), i, "line")
            wanted.add(k)
            self._curve(self.traj_item, k, None).setData(x, y, connect="finite", pen=_pen(line, 1.0, 140))
            if by_class:
                brushes += [self._class_brush(line)] * x.size
            else:
                t = np.linspace(0.0, 1.0, x.size) if x.size > 1 else np.zeros(x.size)
                palette = self._time_brushes()
                brushes += [palette[j] for j in np.rint(t * (len(palette) - 1)).astype(int)]
        # Every row's dots in one scatter item, their brushes from a fixed palette: pyqtgraph
        # renders a symbol per distinct brush and item, and a brush per dot per row made a
        # 2x384 char-LM's 16 rows x 128 steps cost 0.25 s a draw (now a few ms).
        xs = np.concatenate([xy[:, 0] for xy in paths]) if paths else np.zeros(0)
        ys = np.concatenate([xy[:, 1] for xy in paths]) if paths else np.zeros(0)
        k = ("traj", id(run), "every row", "dots")
        wanted.add(k)
        self._curve(self.traj_item, k, None, symbol="o", symbolSize=5, symbolPen=None).setData(
            xs, ys, symbolBrush=brushes)
        k = ("traj", id(run), "every row", "start")
        wanted.add(k)
        firsts = np.array([xy[0] for xy in paths if len(xy)]).reshape(-1, 2)  # [rows, 2]
        self._curve(self.traj_item, k, None, symbol="o", symbolSize=11, symbolBrush=None,
                    symbolPen=pg.mkPen(run.colour, width=1.5)).setData(firsts[:, 0], firsts[:, 1])
        self.traj_legend.setVisible(bool(classes))
        for c in classes:
            self.traj_legend.addItem(pg.PlotDataItem(pen=_pen(colour_of[c], 4)), f"class {c}")
        if three:
            pts = np.concatenate([r[:3].T for r in rows]) if rows else np.zeros((0, 3))
            pts = pts[np.isfinite(pts).all(axis=1)]
            reach = 0.6 * float(np.abs(pts).max()) if pts.size else 1.0
            for axis in range(3):
                end = np.zeros((2, 3))
                end[1, axis] = reach
                xy = project_3d(end, az, el)
                line = pg.PlotDataItem(xy[:, 0], xy[:, 1], pen=_pen("#555555", 1.2, 200, Qt.PenStyle.DashLine))
                text = pg.TextItem(f"PC{axis + 1} ({100 * explained[axis]:.0f}%)", color="#333333",
                                   anchor=(0.5, 0.5))
                text.setPos(float(xy[1, 0]), float(xy[1, 1]))
                for extra in (line, text):
                    self.traj_item.addItem(extra, ignoreBounds=extra is text)
                    self._traj_extras.append(extra)

    def plot_items(self) -> list[pg.PlotItem]:
        return [p for p, _img in self._heats.values()] + [self.product_item, self.spectrum_item, self.eigen_item,
                                                          self.gates_item, self.lyap_item, self.traj_item]

    def csv(self, runs: list[RunData], current: RunData | None) -> str:
        """Every curve of every shown run: run, quantity, layer, key, step, value."""
        lines = ["run,quantity,layer,key,step,value"]
        for run in self.shown(runs):
            d = run.dynamics
            for quantity, table in (("spectral_radius", d.radius), ("sigma_max", d.sigma_max),
                                    ("lyapunov", d.lyapunov), ("gate_mean", d.gate_mean),
                                    ("gate_saturation", d.gate_saturation)):
                for (layer, key), c in table.items():
                    for x, y in zip(c.x.view(), c.y.view()):
                        lines.append(f"{run.name},{quantity},{layer},{key},{int(x)},{y:.8g}")
        return "\n".join(lines) + "\n"
