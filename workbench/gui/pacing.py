"""When the window redraws its plots: the frame pacer. Qt-free (the window's frame timer
asks it, tests drive it with a fake clock).

The window draws its plots from numpy buffers on one frame timer (<= 30 Hz). While a model
trains in this process, the interface thread's drawing costs training twice: its Python
holds the GIL that the trainer thread needs between torch ops, and each wake-up takes a
core from torch's thread team, which waits for its slowest member at every parallel op
(issue 22). Measured before the pacer (bench/gui_cpu.py, BENCHMARKS.md): the interface
thread used 0.15-0.35 s of CPU per second of training, most of it redrawing and repainting
plots that had not changed or were hidden behind a tab. So the pacer

- draws only when something changed: records arrived (``mark_data``), the user did
  something or a panel came on screen (``mark_input``); a tick with nothing new asks no
  panel, and once a pass over the panels drew nothing, the tick slows to IDLE_TICK_S;
- keeps drawing to a share of one core: the next frame comes no sooner than a frame's
  measured CPU cost (update + paint) / share: TRAINING_SHARE while a model trains in this
  process, IDLE_SHARE otherwise, between MIN_S and MAX_S;
- answers the user at once: for INPUT_HOLD_S after an input the interval is MIN_S.

A new record is therefore drawn within MAX_S (plus the frame's own cost) of its arrival.
"""
from __future__ import annotations

import math
import time

MIN_S = 1 / 30  # the fastest frame rate: 30 Hz
MAX_S = 1.0  # the slowest while something waits to be drawn (a record is drawn within it)
IDLE_TICK_S = 1.0  # the tick when nothing waits: the status line's clock (elapsed, ETA) still moves
TRAINING_SHARE = 0.05  # drawing's CPU share of one core while a model trains in this process
IDLE_SHARE = 0.5  # ... and otherwise (a loaded run, a replay): smooth, but never the whole core
INPUT_HOLD_S = 0.5  # after a user's input, frames at MIN_S for this long
COST_WEIGHT = 0.3  # the newest frame's weight in the cost's moving average


class FramePacer:
    """Whether the window's frame tick draws, and when it ticks next.

    The window calls, per tick: ``pending`` (anything to draw?), then after drawing at most
    one panel ``drew(update_cpu_s)`` or ``settled()`` (a pass over the panels drew nothing),
    ``painted(cpu_s)`` when the previous frame's paint cost is known, and ``interval()`` for
    the next tick. ``data_wake()`` says how soon to tick once records arrive."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.training = False  # a model trains in this process (the window sets it)
        self.cost_s = 0.0  # a frame's CPU seconds, update + paint (moving average)
        self._pending = True  # something changed since the panels were last all current
        self._input_at = -math.inf
        self._last_frame_at = -math.inf
        self._update_s: float | None = None  # the last frame's update, waiting for its paint
        self.frames = 0  # ticks that drew a panel
        self.idle_ticks = 0  # ticks with nothing new: nothing drawn, no panel asked

    # -- what happened --------------------------------------------------------------------
    def mark_data(self) -> None:
        """Records arrived for a shown run."""
        self._pending = True

    def mark_input(self) -> None:
        """The user acted (mouse, wheel, key) or a panel's option changed: draw soon and fast."""
        self._pending = True
        self._input_at = self.clock()

    @property
    def pending(self) -> bool:
        return self._pending

    @property
    def interacting(self) -> bool:
        return self.clock() - self._input_at < INPUT_HOLD_S

    def drew(self, update_cpu_s: float) -> None:
        """A panel redrew this tick (others may still be stale: stay pending)."""
        self.frames += 1
        self._last_frame_at = self.clock()
        self._update_s = update_cpu_s

    def painted(self, paint_cpu_s: float) -> None:
        """The paint of the plots since the last tick (the previous frame's, mostly)."""
        if self._update_s is None:
            return
        cost = self._update_s + paint_cpu_s
        self.cost_s = cost if self.frames <= 1 else (1 - COST_WEIGHT) * self.cost_s + COST_WEIGHT * cost
        self._update_s = None

    def settled(self) -> None:
        """A pass over the panels drew nothing: every panel is current."""
        self._pending = False

    def idle_tick(self) -> None:
        self.idle_ticks += 1

    # -- when next ----------------------------------------------------------------------------
    def paced_s(self) -> float:
        """The interval between frames: a frame's CPU cost over the allowed share of one core."""
        if self.interacting:
            return MIN_S
        share = TRAINING_SHARE if self.training else IDLE_SHARE
        return min(MAX_S, max(MIN_S, self.cost_s / share))

    def interval(self) -> float:
        """Seconds to the next tick."""
        return self.paced_s() if self._pending else IDLE_TICK_S

    def data_wake(self) -> float:
        """Seconds from now to the next tick once records arrived: one paced interval after
        the last frame (at once if that has passed)."""
        return min(MAX_S, max(0.0, self._last_frame_at + self.paced_s() - self.clock()))
