"""The live diagram: the designed network unrolled in time, drawn from the spec.

Inputs x_1..x_T at the bottom, the input side, the stack of recurrent layers with
forward arrows (W_f) between layers and recurrent arrows (W_r) from each step to the
next, the head and outputs at the top, in the shape of the topology: one output at the
end (many-to-one), one per step (many-to-many), an encoder feeding a decoder of another
length (encoder-decoder, with attention drawn when on), or one input unrolled into many
outputs (one-to-many). Row labels give sizes and parameter counts per layer (from
workbench.spec.parameter_report), and the footer the memory estimate for the chosen
batch and length. Export: PNG and SVG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QSizePolicy

from workbench import cells, spec
from workbench.spec import LayerParams, ModelIO, ParamReport, Preset

INPUT_COLOUR = "#b8b8d1"
HEAD_COLOUR = "#c9a7eb"
TEXT = QColor("#222222")
MUTED = QColor("#666666")

NODE_W, NODE_H = 48, 26
COL_GAP = 74  # centre to centre
ROW_GAP = 54
LABEL_W = 250  # the row labels on the left
MAX_SHOWN = 5  # time steps drawn before eliding the middle with "..."


def fmt_count(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def time_labels(n: int | None, symbol: str) -> list[str]:
    """Column labels for an unrolled sequence: 1, 2, 3, ..., n (elided in the middle)."""
    if n is not None and n <= MAX_SHOWN:
        return [str(i) for i in range(1, n + 1)]
    last = str(n) if n is not None else symbol
    return ["1", "2", "3", "…", last]


@dataclass
class DiagramModel:
    """What the diagram shows, computed without Qt so tests can read it."""

    topology: str
    title: str = ""
    rows: list[str] = field(default_factory=list)  # row labels, bottom to top, per stack
    columns: list[str] = field(default_factory=list)
    decoder_columns: list[str] = field(default_factory=list)
    total_params: int = 0
    memory: dict = field(default_factory=dict)
    footer: str = ""


class DiagramScene(QGraphicsScene):
    """Rebuilt in full on every edit (a few hundred items: well under a millisecond)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model: DiagramModel | None = None
        self._font = QFont()
        self._font.setPointSizeF(9)
        self._small = QFont()
        self._small.setPointSizeF(7.5)
        self._bold = QFont()
        self._bold.setPointSizeF(9)
        self._bold.setBold(True)

    # ------------------------------------------------------------------ primitives
    def _text(self, text: str, x: float, y: float, font: QFont | None = None, colour: QColor = TEXT,
              align: str = "center", italic: bool = False):
        item = self.addSimpleText(text, font or self._font)
        if italic:
            f = QFont(item.font())
            f.setItalic(True)
            item.setFont(f)
        item.setBrush(QBrush(colour))
        r = item.boundingRect()
        dx = {"center": -r.width() / 2, "left": 0.0, "right": -r.width()}[align]
        item.setPos(x + dx, y - r.height() / 2)
        return item

    def _node(self, cx: float, cy: float, colour: str, label: str = "", w: float = NODE_W, h: float = NODE_H,
              round_: bool = True):
        rect = QRectF(cx - w / 2, cy - h / 2, w, h)
        pen = QPen(QColor(colour).darker(150), 1.2)
        brush = QBrush(QColor(colour).lighter(125))
        if round_:
            path = QPainterPath()
            path.addRoundedRect(rect, 6, 6)
            self.addPath(path, pen, brush)
        else:
            self.addEllipse(rect, pen, brush)
        if label:
            self._text(label, cx, cy, self._small)

    def _arrow(self, a: QPointF, b: QPointF, colour: QColor = QColor("#555555"), dashed: bool = False,
               width: float = 1.3, curve: float = 0.0):
        pen = QPen(colour, width)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        path = QPainterPath(a)
        if curve:
            mid = (a + b) / 2
            dx, dy = b.x() - a.x(), b.y() - a.y()
            norm = math.hypot(dx, dy) or 1.0
            ctrl = QPointF(mid.x() - dy / norm * curve, mid.y() + dx / norm * curve)
            path.quadTo(ctrl, b)
            tangent = b - ctrl
        else:
            path.lineTo(b)
            tangent = b - a
        self.addPath(path, pen)
        length = math.hypot(tangent.x(), tangent.y()) or 1.0
        ux, uy = tangent.x() / length, tangent.y() / length
        size = 6.0
        head = QPolygonF([b, QPointF(b.x() - ux * size - uy * size * 0.5, b.y() - uy * size + ux * size * 0.5),
                          QPointF(b.x() - ux * size + uy * size * 0.5, b.y() - uy * size - ux * size * 0.5)])
        self.addPolygon(head, QPen(colour, 1), QBrush(colour))

    # ------------------------------------------------------------------ the network
    def rebuild(self, preset: Preset, report: ParamReport, io: ModelIO, seq_len: int | None,
                out_len: int | None, note: str = "") -> DiagramModel:
        self.clear()
        m = preset.model
        model = DiagramModel(topology=m.topology, total_params=report.total)
        mem_len = seq_len or 100
        memory = spec.memory_estimate(m, io, preset.train.batch_size, mem_len, out_len or None)
        model.memory = memory
        enc_layers = [l for l in report.layers if l.name.startswith("layers")]
        dec_layers = [l for l in report.layers if l.name.startswith("decoder_layers")]
        inp_label = self._input_label(preset, io, report)

        from workbench.tasks import topology_label  # the registry only: no task module, no torch

        title = model.title = f"{preset.name} — {topology_label(m.topology, preset.data.task)}"
        self._text(title, 0, -18, self._bold, align="left")

        x0 = LABEL_W  # x of the first column's centre minus half a gap
        if m.topology in ("many_to_one", "many_to_many"):
            cols = time_labels(seq_len, "T")
            model.columns = cols
            rows = self._stack_rows("x", inp_label, enc_layers)
            self._draw_segment(x0, cols, rows, "x", outputs="last" if m.topology == "many_to_one" else "all",
                               head_label=self._head_label(preset, io, report), label_rows=True)
            model.rows = [r[1] for r in rows]
        elif m.topology == "encoder_decoder":
            cols = time_labels(seq_len, "S")
            dcols = time_labels(out_len, "L")
            model.columns, model.decoder_columns = cols, dcols
            rows = self._stack_rows("x", inp_label, enc_layers)
            emb = f"target embedding · {fmt_count(io.output_vocab_size * m.input.embedding_dim)}"
            drows = self._stack_rows("y", emb, dec_layers, previous_token=True)
            base = (max(len(rows), len(drows)) + 1) * ROW_GAP  # both stacks stand on one baseline
            enc = self._draw_segment(x0, cols, rows, "x", outputs="none", label_rows=True, caption="encoder",
                                     base_y=base)
            dx0 = x0 + len(cols) * COL_GAP + 60
            dec = self._draw_segment(dx0, dcols, drows, "y", outputs="all", label_rows=False, caption="decoder",
                                     head_label=self._head_label(preset, io, report), right_labels=True,
                                     base_y=base)
            # bridge: the encoder's final top state sets each decoder layer's initial state
            src = enc["last_top"]
            for i, (lx, ly) in enumerate(dec["first_layer_left"]):
                self._arrow(src, QPointF(lx, ly), QColor("#8a5a00"), curve=12.0 if i else 0.0)
            bx = (src.x() + dec["first_layer_left"][0][0]) / 2
            bridge = "layer norm → bridge" if m.bridge_norm else "bridge"
            self._text(f"{bridge} · {fmt_count(report.bridge)}", bx, dec["first_layer_left"][0][1] + 22, self._small,
                       QColor("#8a5a00"))
            if m.attention:
                # Luong attention: every decoder step reads all encoder top states
                a = enc["top_span"]
                b = dec["top_nodes"]
                mid_enc = QPointF((a[0] + a[1]) / 2, a[2] - NODE_H / 2)
                top_y = min(a[2], b[0][1]) - NODE_H / 2
                for bx_, by_ in b[:1] + b[-1:]:
                    self._arrow(mid_enc, QPointF(bx_ - 6, by_ - NODE_H / 2), QColor("#b03a2e"), dashed=True,
                                curve=-40.0)
                label = "attention over encoder states" + (" · copies input words" if m.copy else "")
                self._text(label, (mid_enc.x() + b[0][0]) / 2, top_y - 34, self._small,
                           QColor("#b03a2e"))
            model.rows = [r[1] for r in rows] + [r[1] for r in drows]
        else:  # one_to_many
            cols = time_labels(out_len or seq_len, "L")
            model.columns = cols
            # the single input, encoded into the initial state of every layer
            emb = f"target embedding · {fmt_count(io.output_vocab_size * m.input.embedding_dim)}"
            rows = self._stack_rows("y", emb, enc_layers, previous_token=True)
            sx0 = x0 + 90
            seg = self._draw_segment(sx0, cols, rows, "y", outputs="all", label_rows=True,
                                     head_label=self._head_label(preset, io, report), label_x=x0 - 8)
            ix = x0 + 30
            base = seg["row_y"][0]
            self._node(ix, base, INPUT_COLOUR, "x", round_=False, w=30, h=24)
            self._node(ix, base - ROW_GAP, INPUT_COLOUR, "encode")
            self._arrow(QPointF(ix, base - 12), QPointF(ix, base - ROW_GAP + NODE_H / 2))
            self._text(f"x: {inp_label}", ix - 20, base + 28, self._small, MUTED, align="left")
            for i, (lx, ly) in enumerate(seg["first_layer_left"]):
                self._arrow(QPointF(ix + NODE_W / 2, base - ROW_GAP), QPointF(lx, ly), QColor("#8a5a00"),
                            curve=-10.0 * i)
            via = "→ layer norm " if m.bridge_norm else ""
            self._text(f"{via}→ initial state of each layer · {fmt_count(report.bridge)}", ix - 20, base + 44,
                       self._small, QColor("#8a5a00"), align="left")
            model.rows = [r[1] for r in rows]

        rect = self.itemsBoundingRect()
        mem = memory
        parts = (f"weights {spec.format_bytes(mem['weights'])}, optimizer {spec.format_bytes(mem['optimizer'])}, "
                 f"activations {spec.format_bytes(mem['activations'])}")
        length = f"T={mem_len}" + ("" if seq_len else " assumed") + (
            f", L={out_len}" if out_len and m.topology in ("encoder_decoder", "one_to_many") else "")
        footer = (f"{report.total:,} parameters · training memory ≈ {spec.format_bytes(mem['total'])} "
                  f"for batch {preset.train.batch_size}, {length} ({parts})")
        model.footer = footer
        self._text(footer, 0, rect.bottom() + 18, self._font, align="left")
        if note:
            self._text(note, 0, rect.bottom() + 36, self._small, MUTED, align="left")
        self.setSceneRect(self.itemsBoundingRect().adjusted(-12, -12, 12, 12))
        self.model = model
        return model

    # ------------------------------------------------------------------ helpers
    def _input_label(self, preset: Preset, io: ModelIO, report: ParamReport) -> str:
        inp = preset.model.input
        if inp.kind == "embedding":
            return f"embedding {io.vocab_size}→{inp.embedding_dim} · {fmt_count(report.input_side)}"
        if inp.kind == "embedding_chars":  # word vector next to a char-CNN of the word's spelling
            return (f"words {io.vocab_size}→{inp.embedding_dim} + char-CNN {inp.char_embedding_dim}→"
                    f"{inp.projection_size} · {fmt_count(report.input_side)}")
        if inp.kind == "linear":
            return f"linear {io.feature_size}→{inp.projection_size} · {fmt_count(report.input_side)}"
        c, h, w = io.frame_shape
        if inp.kind == "frames_linear":
            return f"frames {c}×{h}×{w}→{inp.projection_size} · {fmt_count(report.input_side)}"
        if inp.kind == "frames_grid":  # the frames themselves, for convolutional cells
            return f"frames {c}×{h}×{w} as they are"
        return (f"conv {'-'.join(map(str, inp.conv_channels))}→{inp.projection_size} · "
                f"{fmt_count(report.input_side)}")

    def _head_label(self, preset: Preset, io: ModelIO, report: ParamReport) -> str:
        h = preset.model.head
        hidden = f"{h.hidden_size}→" if h.hidden_size else ""
        return f"{h.kind} head {hidden}{io.output_size} · {fmt_count(report.head)}"

    def _stack_rows(self, sym: str, inp_label: str, layers: list[LayerParams], previous_token: bool = False):
        """(kind, label, colour, layer) bottom to top, above the raw-input row."""
        rows = [("input", inp_label, INPUT_COLOUR, None)]
        for lp in layers:
            idx = int(lp.name.rsplit(".", 1)[1]) + 1
            prefix = "D" if lp.name.startswith("decoder") else "L"
            bi = " · bidirectional" if lp.directions == 2 else ""
            label = (f"{prefix}{idx} {cells.get(lp.cell).label} {lp.input_size}→{lp.hidden_size}{bi} · "
                     f"{fmt_count(lp.total)}")
            rows.append(("layer", label, cells.get(lp.cell).colour, lp))
        return rows

    def _draw_segment(self, x0: float, cols: list[str], rows: list, sym: str, outputs: str, head_label: str = "",
                      label_rows: bool = True, caption: str = "", right_labels: bool = False,
                      label_x: float | None = None, base_y: float | None = None) -> dict:
        """One unrolled stack. Returns anchor points for bridges and attention."""
        n_rows = len(rows) + 2  # raw input row + rows + output row
        if base_y is None:
            base_y = (n_rows - 1) * ROW_GAP  # y of the raw inputs (row 0); rows go up from there
        row_y = [base_y - i * ROW_GAP for i in range(n_rows)]
        xs = [x0 + COL_GAP / 2 + i * COL_GAP for i in range(len(cols))]
        if label_x is None:
            label_x = x0 - (30 if sym == "x" else 8)  # room for the "h0" of a zero initial state
        elided = [c == "…" for c in cols]
        out_cols = {"all": range(len(cols)), "last": [len(cols) - 1], "none": []}[outputs]
        if caption:
            self._text(caption, (xs[0] + xs[-1]) / 2, row_y[0] + 28, self._bold, MUTED)
        grey = QColor("#555555")
        first_layer_left: list[tuple[float, float]] = []
        # raw inputs / previous tokens
        for i, (x, c) in enumerate(zip(xs, cols)):
            if elided[i]:
                self._text("⋯", x, row_y[0], self._bold, MUTED)
                continue
            if sym == "y":
                label = "<bos>" if c == "1" else (f"y{int(c) - 1}" if c.isdigit() else f"y{c}-1")
            else:
                label = f"x{c}"
            self._node(x, row_y[0], INPUT_COLOUR, label, round_=False, w=40, h=24)
        # input side and recurrent rows
        for r, (kind, label, colour, lp) in enumerate(rows, start=1):
            y = row_y[r]
            for i, x in enumerate(xs):
                if elided[i]:
                    self._text("⋯", x, y, self._bold, MUTED)
                    continue
                text = cells.get(lp.cell).short if lp is not None else ""
                self._node(x, y, colour, text)
                # forward arrow from the row below (W_f between layers)
                self._arrow(QPointF(x, row_y[r - 1] - 12), QPointF(x, y + NODE_H / 2), grey)
                if i == 0 and kind == "layer":
                    self._text("W_f", x + 14, (y + row_y[r - 1]) / 2, self._small, MUTED, align="left", italic=True)
            if kind == "layer":
                # recurrent arrows between steps (W_r); two directions when bidirectional
                bi = lp.directions == 2
                for i in range(len(xs) - 1):
                    a = xs[i] + NODE_W / 2
                    b = xs[i + 1] - NODE_W / 2
                    if elided[i] or elided[i + 1]:
                        a = xs[i] + (12 if elided[i] else NODE_W / 2)
                        b = xs[i + 1] - (12 if elided[i + 1] else NODE_W / 2)
                    dash = elided[i] or elided[i + 1]
                    dy = -5 if bi else 0
                    self._arrow(QPointF(a, y + dy), QPointF(b, y + dy), QColor(colour).darker(160), dashed=dash)
                    if bi:
                        self._arrow(QPointF(b, y + 5), QPointF(a, y + 5), QColor(colour).darker(190), dashed=dash)
                    if i == 0:
                        self._text("W_r", (a + b) / 2, y - 12, self._small, MUTED, italic=True)
                # the initial state arrives from the left
                left = QPointF(xs[0] - NODE_W / 2, y)
                first_layer_left.append((left.x(), left.y()))
                if sym == "x":  # a zero initial state; bridged stacks get theirs drawn by the caller
                    self._text("h0", xs[0] - NODE_W / 2 - 16, y, self._small, MUTED)
            if label_rows:
                self._text(label, label_x, y, self._font, align="right")
            elif right_labels:
                self._text(label, xs[-1] + NODE_W / 2 + 14, y, self._font, align="left")
        # head and outputs
        y_out = row_y[-1]
        top_nodes = []
        for i in out_cols:
            x = xs[i]
            if elided[i]:
                self._text("⋯", x, y_out, self._bold, MUTED)
                continue
            self._node(x, y_out, HEAD_COLOUR, "y" if outputs == "last" else f"y{cols[i]}", round_=False, w=40, h=24)
            self._arrow(QPointF(x, row_y[-2] - NODE_H / 2), QPointF(x, y_out + 12), grey)
            top_nodes.append((x, row_y[-2]))
        if out_cols and head_label:
            if label_rows:
                self._text(head_label, label_x, y_out, self._font, align="right")
            else:
                self._text(head_label, xs[-1] + NODE_W / 2 + 14, y_out, self._font, align="left")
        if label_rows:
            raw = "previous token" if sym == "y" else "inputs"
            self._text(raw, label_x, row_y[0], self._font, MUTED, align="right")
        visible = [x for x, e in zip(xs, elided) if not e]
        return {
            "row_y": row_y,
            "first_layer_left": first_layer_left,
            "last_top": QPointF(xs[-1] + NODE_W / 2, row_y[len(rows)]),
            "top_span": (visible[0], visible[-1], row_y[len(rows)]),
            "top_nodes": [(x, row_y[len(rows)]) for x in visible],
        }


class DiagramView(QGraphicsView):
    """Shows the scene scaled to fit (never above 1:1, so text stays crisp)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.diagram = DiagramScene(self)
        self.setScene(self.diagram)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setBackgroundBrush(QBrush(QColor("white")))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 120)

    def fit(self) -> None:
        rect = self.diagram.sceneRect()
        if rect.isEmpty():
            return
        view = self.viewport().rect()
        scale = min(view.width() / rect.width(), view.height() / rect.height(), 1.25)
        self.resetTransform()
        self.scale(scale, scale)
        self.centerOn(rect.center())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()

    def sizeHint(self) -> QSize:
        return QSize(800, 300)

    # ------------------------------------------------------------------ export
    def export(self, path: str | Path) -> Path:
        """PNG (2x for sharp text) or SVG by the file's suffix."""
        path = Path(path)
        rect = self.diagram.sceneRect()
        if path.suffix.lower() == ".svg":
            from PySide6.QtSvg import QSvgGenerator

            gen = QSvgGenerator()
            gen.setFileName(str(path))
            gen.setSize(QSize(int(rect.width()), int(rect.height())))
            gen.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
            gen.setTitle("RNN Workbench network diagram")
            painter = QPainter(gen)
            self.diagram.render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
            painter.end()
        else:
            image = QImage(int(rect.width() * 2), int(rect.height() * 2), QImage.Format.Format_ARGB32)
            image.fill(QColor("white"))
            painter = QPainter(image)
            painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
            self.diagram.render(painter, QRectF(image.rect()), rect)
            painter.end()
            if not image.save(str(path)):
                from workbench.fileio import SaveError

                raise SaveError(f"cannot write {path}")
        return path
