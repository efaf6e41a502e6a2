"""The try-out mode registry (workbench.tryout_modes): one description per mode, and
everything it names exists where the CLI, the engine and the panel look it up."""
from __future__ import annotations

import subprocess
import sys

from workbench import inference, tryout_modes
from workbench.tasks import TASKS


def test_every_task_has_exactly_one_mode_and_every_name_resolves():
    for task in TASKS:
        owners = [m.name for m in tryout_modes.MODES if task in m.tasks]
        assert len(owners) == 1, (task, owners)
        assert inference.mode_for(task) == owners[0]
    for mode in tryout_modes.MODES:
        assert set(mode.tasks) <= set(TASKS), mode.name
        assert callable(getattr(inference, mode.answer)) and callable(getattr(inference, mode.prepare)), mode.name
        assert mode.input in ("text", "image", "video", "audio") and mode.flag == f"--{mode.input}"
        assert mode.outputs in ("classes", "vocab", "target_vocab")
    assert inference.VIDEO_MODES == ("video_classify", "next_frame")
    assert inference.MODE_TITLES["caption"] == "Caption an image"


def test_the_cli_offers_each_modes_flag_and_the_panel_each_modes_view(qtbot):
    import argparse

    from workbench.commands import tryout
    from workbench.gui.tryout.views import VIEWS

    parser = argparse.ArgumentParser()
    tryout.register(parser.add_subparsers())
    flags = parser._subparsers._group_actions[0].choices["try"]._option_string_actions
    for mode in tryout_modes.MODES:
        assert mode.flag in flags, mode.name
        assert VIEWS[mode.name].__name__ == mode.view


def test_the_registry_needs_neither_torch_nor_qt():
    code = ("import sys; from workbench import tryout_modes; tryout_modes.get('tag'); "
            "assert 'torch' not in sys.modules and 'PySide6' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
