"""Small widgets of the try-out panel: token chips (tags coloured by tag, with their
confidence), probability bars, a heatmap with a hover read-out (hidden states, gates,
attention), a saliency bar plot and an image view. They show plain data (lists, numpy
arrays); none of them imports the engine."""
from __future__ import annotations

import hashlib

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QPainter
from PySide6.QtWidgets import QLabel, QLayout, QSizePolicy, QVBoxLayout, QWidget

# Tag / class colours: a qualitative palette (Tableau 20, light and dark alternated).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
HIGHLIGHT = "#e6007e"


def colour_for(name: str, names: list[str] | None = None) -> str:
    """A stable colour per tag/class: by its index among ``names``, else by a hash."""
    if names and name in names:
        return PALETTE[names.index(name) % len(PALETTE)]
    digest = hashlib.md5(name.encode("utf-8")).digest()
    return PALETTE[digest[0] % len(PALETTE)]


def shown_token(token: str) -> str:
    """A whitespace token made visible: a space as ␣, a line break as ↵, a tab as →."""
    if token.strip():
        return token.replace("\n", "↵")
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "→")


class FlowLayout(QLayout):
    """Lays widgets out left to right, wrapping onto new lines (the Qt flow-layout example)."""

    def __init__(self, parent=None, spacing: int = 4):
        super().__init__(parent)
        self._items: list = []
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item) -> None:  # noqa: N802 - Qt override
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int):  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int):  # noqa: N802
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self):  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, apply=True)

    def sizeHint(self) -> QSize:  # noqa: N802
        return self.minimumSize()

    def minimumSize(self) -> QSize:  # noqa: N802
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _arrange(self, rect: QRect, apply: bool) -> int:
        x, y, line = rect.x(), rect.y(), 0
        gap = self.spacing()
        for item in self._items:
            hint = item.sizeHint()
            if x + hint.width() > rect.right() and line > 0:
                x, y, line = rect.x(), y + line + gap, 0
            if apply:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + gap
            line = max(line, hint.height())
        return y + line - rect.y()


class Chip(QLabel):
    """One token: the word, and under it an optional tag with its confidence."""

    def __init__(self, word: str, tag: str = "", confidence: float | None = None, colour: str = "", parent=None):
        super().__init__(parent)
        self.word, self.tag, self.confidence, self.colour = word, tag, confidence, colour
        self.highlighted = False
        text = f"<b>{_escape(shown_token(word))}</b>"
        if tag:
            conf = f" {confidence:.0%}" if confidence is not None else ""
            text += f"<br/><span style='font-size:small'>{_escape(tag)}{conf}</span>"
        self.setText(text)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setToolTip(f"{word} → {tag} ({confidence:.1%})" if tag and confidence is not None else word)
        self._style()

    def set_highlighted(self, on: bool) -> None:
        if on != self.highlighted:
            self.highlighted = on
            self._style()

    def _style(self) -> None:
        base = QColor(self.colour or "#dddddd")
        # Confidence shows as the chip's strength: a sure tag is a solid colour.
        alpha = 60 + int(170 * (self.confidence if self.confidence is not None else 0.6))
        border = HIGHLIGHT if self.highlighted else base.darker(130).name()
        width = 3 if self.highlighted else 1
        self.setStyleSheet(f"QLabel {{ background: rgba({base.red()},{base.green()},{base.blue()},{alpha});"
                           f" border: {width}px solid {border}; border-radius: 5px; padding: 2px 5px; }}")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class TokenChips(QWidget):
    """A wrapping row of chips: tokens alone, or words with their tags coloured by tag."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.flow = FlowLayout(self)
        self.chips: list[Chip] = []
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

    def set_tokens(self, words: list[str], tags: list[str] | None = None, confidences: list[float] | None = None,
                   tag_names: list[str] | None = None) -> None:
        for chip in self.chips:
            self.flow.removeWidget(chip)
            chip.deleteLater()
        self.chips = []
        for i, word in enumerate(words):
            tag = tags[i] if tags else ""
            conf = confidences[i] if confidences else None
            chip = Chip(word, tag, conf, colour_for(tag, tag_names) if tag else "#e8e8e8", self)
            self.flow.addWidget(chip)
            self.chips.append(chip)
        self.updateGeometry()

    def highlight(self, index: int | None) -> None:
        for i, chip in enumerate(self.chips):
            chip.set_highlighted(i == index)

    @property
    def highlighted(self) -> int | None:
        for i, chip in enumerate(self.chips):
            if chip.highlighted:
                return i
        return None


class ProbabilityBars(QWidget):
    """Horizontal bars, one per class, the likeliest marked."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.names: list[str] = []
        self.values: list[float] = []
        self.setMinimumHeight(24)

    def set_values(self, names: list[str], values) -> None:
        self.names = [str(n) for n in names]
        self.values = [float(v) for v in values]
        self.setMinimumHeight(max(24, 22 * len(self.names) + 4))
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(260, max(24, 22 * len(self.names) + 4))

    def paintEvent(self, event) -> None:  # noqa: N802
        if not self.names:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = p.fontMetrics()
        label_w = min(max(fm.horizontalAdvance(n) for n in self.names) + 10, self.width() // 2)
        bar_w = max(self.width() - label_w - 60, 10)
        best = int(np.argmax(self.values)) if self.values else -1
        for i, (name, v) in enumerate(zip(self.names, self.values)):
            y = 2 + 22 * i
            p.setPen(QColor("#222222"))
            p.drawText(QRect(0, y, label_w - 6, 20), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       fm.elidedText(name, Qt.TextElideMode.ElideRight, label_w - 6))
            colour = QColor(colour_for(name, self.names))
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor("#eeeeee"))
            p.drawRect(QRectF(label_w, y + 3, bar_w, 14))
            p.setBrush(colour if i == best else colour.lighter(140))
            p.drawRect(QRectF(label_w, y + 3, bar_w * max(0.0, min(v, 1.0)), 14))
            p.setPen(QColor("#222222"))
            p.drawText(QRect(label_w + bar_w + 4, y, 56, 20), Qt.AlignmentFlag.AlignVCenter, f"{v:.1%}")
        p.end()


TICK_GAP_PX = 6  # at least this much room between two tick labels


def plain_axes(plot: pg.PlotItem) -> None:
    """No SI prefix on any axis: a "(x0.001)" beside a cut-off label hides the factor,
    and the numbers then read 40-80 where the value is 0.07."""
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        if axis is not None:
            axis.enableAutoSIPrefix(False)


class LabelAxis(pg.AxisItem):
    """An axis whose ticks are the labels of time steps (tokens, "frame 18"), at column
    centres i + 0.5. It labels as many columns as fit at the axis's current length, every
    k-th with k from 1, 2, 5, 10, 20..., so labels never overlap; without labels it is a
    plain number axis (no SI prefix)."""

    def __init__(self, orientation: str, **kwargs):
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)
        self.labels: list[str] = []

    def set_labels(self, labels: list[str] | None) -> None:
        self.labels = [shown_token(str(t))[:12] for t in labels] if labels else []
        self.picture = None
        self.update()

    def label_step(self, size: float, span: float) -> int:
        """Show every k-th label: the smallest nice k whose labels do not overlap."""
        if not self.labels or size <= 0 or span <= 0:
            return 1
        fm = QFontMetrics(self.style.get("tickFont") or self.font())
        if self.orientation in ("bottom", "top"):
            need = max(fm.horizontalAdvance(t) for t in self.labels) + TICK_GAP_PX
        else:
            need = fm.height() + 2
        per_column = size / span  # pixels per column
        k = 1
        for base in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000):
            k = base
            if base * per_column >= need:
                break
        return k

    def tickValues(self, minVal, maxVal, size):  # noqa: N802,N803 - pyqtgraph override
        if not self.labels:
            return super().tickValues(minVal, maxVal, size)
        k = self.label_step(size, maxVal - minVal)
        values = [i + 0.5 for i in range(0, len(self.labels), k) if minVal <= i + 0.5 <= maxVal]
        return [(float(k), values)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph override
        if not self.labels:
            return super().tickStrings(values, scale, spacing)
        return [self.labels[int(v)] if 0 <= int(v) < len(self.labels) else "" for v in values]


class StepPlot(pg.PlotWidget):
    """A plot whose columns are time steps [0, n_steps()): hovering a column emits
    ``hovered(t)`` (-1 when the pointer leaves it); clicking emits ``clicked(t)``; a
    cursor line marks a chosen step."""

    hovered = Signal(int)
    clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent, background="w",
                         axisItems={"bottom": LabelAxis("bottom"), "left": LabelAxis("left")})
        plain_axes(self.plotItem)
        self.hover_index = -1
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen(HIGHLIGHT, width=2))
        self.cursor.hide()
        self.scene().sigMouseMoved.connect(self._on_move)
        self.scene().sigMouseClicked.connect(self._on_click)

    def n_steps(self) -> int:
        raise NotImplementedError

    def set_cursor(self, t: int | None) -> None:
        if t is None or t < 0 or t >= self.n_steps():
            self.cursor.hide()
        else:
            self.cursor.setPos(t + 0.5)
            self.cursor.show()

    def column_at(self, scene_pos) -> int:
        vb = self.getViewBox()
        n = self.n_steps()
        if not vb.sceneBoundingRect().contains(scene_pos) or n == 0:
            return -1
        t = int(np.floor(vb.mapSceneToView(scene_pos).x()))
        return t if 0 <= t < n else -1

    def _on_move(self, pos) -> None:
        t = self.column_at(pos)
        if t != self.hover_index:
            self.hover_index = t
            self.hovered.emit(t)

    def _on_click(self, event) -> None:
        t = self.column_at(event.scenePos())
        if t >= 0:
            self.clicked.emit(t)

    def leaveEvent(self, event) -> None:  # noqa: N802
        if self.hover_index != -1:
            self.hover_index = -1
            self.hovered.emit(-1)
        super().leaveEvent(event)


class Heatmap(StepPlot):
    """A matrix [rows, T] as an image; columns are time steps (hover/click: StepPlot).
    A colour bar beside it gives the scale and its units (``set_matrix(units=...)``)."""

    def __init__(self, parent=None, colormap: str = "CET-D1", units: str = ""):
        super().__init__(parent)
        self.setMinimumHeight(120)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.addItem(self.image)
        self.plotItem.invertY(True)
        self.plotItem.setMenuEnabled(False)
        self.plotItem.hideButtons()
        self.getViewBox().setMouseEnabled(x=False, y=False)
        self.addItem(self.cursor)
        self.colour_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=pg.colormap.get(colormap), interactive=False,
                                          width=10, label=units or None, pen="#333333")
        self.colour_bar.setImageItem(self.image, insert_in=self.plotItem)
        self.colour_bar.axis.enableAutoSIPrefix(False)
        self.units = units
        self.set_colormap(colormap)
        self.data = np.zeros((0, 0), dtype=np.float32)

    def n_steps(self) -> int:
        return int(self.data.shape[1]) if self.data.size else 0

    def set_colormap(self, name: str) -> None:
        cmap = pg.colormap.get(name)
        self.colour_bar.setColorMap(cmap)
        self.image.setColorMap(cmap)

    def set_units(self, units: str) -> None:
        """The colour bar's caption (pyqtgraph puts a vertical bar's label on its left)."""
        self.units = units
        self.colour_bar.getAxis("left").setLabel(units)

    def set_matrix(self, data, x_labels: list[str] | None = None, y_labels: list[str] | None = None,
                   levels: tuple[float, float] | None = None, colormap: str | None = None,
                   units: str | None = None) -> None:
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 2:
            raise ValueError(f"a heatmap needs a 2-d matrix, got shape {data.shape}")
        self.data = data
        if colormap:
            self.set_colormap(colormap)
        if units is not None:
            self.set_units(units)
        rows, cols = data.shape
        finite = data[np.isfinite(data)]
        if levels is None:
            levels = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            if levels[0] == levels[1]:
                levels = (levels[0] - 1, levels[1] + 1)
        self.image.setImage(data, levels=levels, autoLevels=False)
        self.colour_bar.setLevels(levels)
        self.image.setRect(QRectF(0, 0, max(cols, 1), max(rows, 1)))
        self.getAxis("bottom").set_labels(x_labels)
        self.getAxis("left").set_labels(y_labels)
        self.getViewBox().setRange(QRectF(0, 0, max(cols, 1), max(rows, 1)), padding=0)


class StepBars(StepPlot):
    """Bars over time steps (saliency ||dy/dx_t||); hover/click like the heatmap."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.plotItem.setMenuEnabled(False)
        self.plotItem.hideButtons()
        self.getViewBox().setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#4c72b0")
        self.setLabel("left", "‖∂y/∂x_t‖")
        self.addItem(self.bars)
        self.addItem(self.cursor)
        self.target = pg.InfiniteLine(angle=90, pen=pg.mkPen("#d62728", width=1, style=Qt.PenStyle.DashLine))
        self.target.hide()
        self.addItem(self.target)
        self.values = np.zeros(0)

    def n_steps(self) -> int:
        return int(self.values.size)

    def set_values(self, values, labels: list[str] | None = None, target: int | None = None) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        n = self.values.size
        self.bars.setOpts(x=np.arange(n) + 0.5, height=self.values, width=0.8)
        self.getAxis("bottom").set_labels(labels)
        top = float(self.values.max()) if n else 1.0
        self.getViewBox().setRange(xRange=(0, max(n, 1)), yRange=(0, top * 1.05 if top > 0 else 1.0), padding=0)
        if target is not None and 0 <= target < n:
            self.target.setPos(target + 0.5)
            self.target.show()
        else:
            self.target.hide()


class ImageView(pg.GraphicsLayoutWidget):
    """An image (uint8 [H, W, 3] / [H, W], or floats in [0, 1] [C, H, W]) with its aspect
    ratio kept, and a caption under it."""

    def __init__(self, title: str = "", parent=None):
        super().__init__(parent, border=None)
        self.setBackground("#202020")
        self.setMinimumSize(96, 96)
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.title = title
        self.shape: tuple[int, ...] = ()

    def set_image(self, image, levels: tuple[float, float] | None = None) -> None:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)  # [C, H, W] -> [H, W, C]
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if levels is None:
            levels = (0, 255) if arr.dtype == np.uint8 else (0.0, 1.0)
        self.shape = arr.shape
        self.image.setImage(arr, levels=levels, autoLevels=False)
        self.view.autoRange(padding=0)


class Titled(QWidget):
    """A widget with a small bold title above it."""

    def __init__(self, title: str, widget: QWidget, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.label = QLabel(f"<b>{title}</b>")
        self.label.setWordWrap(True)  # a long title must not make the panel wider than its dock
        lay.addWidget(self.label)
        lay.addWidget(widget, 1)
        self.widget = widget
