"""The step plots map pointer positions to time steps the same way (one StepPlot base)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF

from workbench.gui.tryout.widgets import Heatmap, StepBars


def _scene_point(plot, x: float, y: float) -> QPointF:
    return plot.getViewBox().mapViewToScene(QPointF(x, y))


def test_heatmap_and_bars_report_the_hovered_and_clicked_step(qtbot):
    heat, bars = Heatmap(), StepBars()
    for widget in (heat, bars):
        qtbot.addWidget(widget)
        widget.resize(400, 200)
        widget.show()
    heat.set_matrix(np.arange(15, dtype=np.float32).reshape(3, 5))
    bars.set_values([0.1, 0.5, 0.2, 0.9])
    qtbot.waitExposed(heat)
    qtbot.waitExposed(bars)
    for plot, n in ((heat, 5), (bars, 4)):
        assert plot.n_steps() == n
        assert plot.column_at(_scene_point(plot, 2.5, 0.5)) == 2
        assert plot.column_at(_scene_point(plot, n + 3.0, 0.5)) == -1
        seen = []
        plot.hovered.connect(seen.append)
        plot._on_move(_scene_point(plot, 1.5, 0.5))
        plot._on_move(_scene_point(plot, 1.6, 0.5))  # same step: no second signal
        plot.leaveEvent(QEvent(QEvent.Type.Leave))
        assert seen == [1, -1]
        plot.set_cursor(n)  # out of range hides it
        assert not plot.cursor.isVisible()
        plot.set_cursor(0)
        assert plot.cursor.isVisible()
