"""The frame pacer (workbench/gui/pacing.py) and the window's frame tick that follows it:
nothing is redrawn without news, frames space out with their cost while a model trains,
news is drawn within one longest interval, and the user's input brings the full rate back."""
from __future__ import annotations

from workbench.gui import pacing
from workbench.gui.pacing import FramePacer


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def settled_pacer(clock, training=True) -> FramePacer:
    pacer = FramePacer(clock=clock)
    pacer.training = training
    pacer.settled()
    return pacer


def test_nothing_new_nothing_pending():
    clock = FakeClock()
    pacer = settled_pacer(clock)
    for _ in range(5):
        clock.t += 1.0
        assert not pacer.pending
        assert pacer.interval() == pacing.IDLE_TICK_S


def test_interval_grows_with_the_frame_cost_while_training():
    clock = FakeClock()
    pacer = settled_pacer(clock)
    intervals = []
    for cost in (0.001, 0.004, 0.016):
        pacer = settled_pacer(clock)
        pacer.mark_data()
        pacer.drew(cost / 2)
        pacer.painted(cost / 2)
        intervals.append(pacer.interval())
    assert intervals[0] == pacing.MIN_S  # a cheap frame: the full rate
    assert intervals[0] < intervals[1] < intervals[2] <= pacing.MAX_S
    assert abs(intervals[2] - 0.016 / pacing.TRAINING_SHARE) < 1e-9  # the cost over the allowed share
    pacer.drew(10.0)
    pacer.painted(10.0)
    assert pacer.interval() == pacing.MAX_S  # never slower than this while news waits


def test_not_training_gets_a_larger_share():
    clock = FakeClock()
    busy, idle = settled_pacer(clock, training=True), settled_pacer(clock, training=False)
    for pacer in (busy, idle):
        pacer.mark_data()
        pacer.drew(0.005)
        pacer.painted(0.005)
    assert idle.interval() < busy.interval()


def test_news_is_drawn_within_one_longest_interval():
    clock = FakeClock()
    pacer = settled_pacer(clock)
    pacer.mark_data()
    pacer.drew(5.0)  # a very slow frame just now
    pacer.painted(5.0)
    pacer.settled()
    clock.t += 0.01
    pacer.mark_data()  # a record arrives
    assert pacer.pending
    assert 0 < pacer.data_wake() <= pacing.MAX_S
    clock.t += 100.0  # long after the last frame: at once
    assert pacer.data_wake() == 0.0


def test_input_brings_the_full_rate_back_for_a_moment():
    clock = FakeClock()
    pacer = settled_pacer(clock)
    pacer.mark_data()
    pacer.drew(0.05)
    pacer.painted(0.05)
    assert pacer.interval() > pacing.MIN_S
    pacer.mark_input()
    assert pacer.pending and pacer.interval() == pacing.MIN_S
    clock.t += pacing.INPUT_HOLD_S + 0.01
    assert pacer.interval() > pacing.MIN_S


# ---- the window's tick


def _count_refreshes(window, monkeypatch) -> dict:
    calls = {}
    for panel in window.plot_panels:
        original = panel.refresh

        def counted(runs, current, panel=panel, original=original):
            calls[type(panel).__name__] = calls.get(type(panel).__name__, 0) + 1
            return original(runs, current)

        monkeypatch.setattr(panel, "refresh", counted)
    return calls


def test_the_window_asks_no_panel_without_news(window, monkeypatch):
    for _ in range(8):  # until a pass over the panels drew nothing
        window._on_frame()
    assert not window.pacer.pending
    calls = _count_refreshes(window, monkeypatch)
    for _ in range(5):
        window._on_frame()
    assert calls == {}
    window.pacer.mark_data()  # records arrived
    window._on_frame()
    assert sum(calls.values()) >= 1


def test_a_panel_behind_another_tab_is_drawn_when_its_tab_is_chosen(qtbot, window, monkeypatch):
    window.grad_dock.raise_()  # the Dynamics panel is the tab behind it
    qtbot.waitUntil(lambda: window.grad_panel.on_screen())
    assert not window.dynamics_panel.on_screen()
    calls = _count_refreshes(window, monkeypatch)
    window._plots_changed()  # a forced frame (a run started or ended)
    for _ in range(8):
        window.pacer.mark_data()
        window._on_frame()
    assert "DynamicsPanel" not in calls and calls.get("GradientPanel", 0) >= 1
    for _ in range(8):
        window._on_frame()
    assert not window.pacer.pending
    window.dynamics_dock.raise_()  # the user picks its tab: its dock says so, the plots wake
    qtbot.waitUntil(lambda: window.dynamics_panel.on_screen())
    assert window.pacer.pending
    for _ in range(8):
        window._on_frame()
    assert calls.get("DynamicsPanel", 0) >= 1
