"""The command line's side of the contract, for what is not a file: no display, and
usage mistakes. Each in its own process: exit 2 and one line on stderr, no traceback.
(tests/foundation/test_cli.py checks bare `workbench` without a display; here also
`workbench gui` and `workbench gui FILE`.)"""
from __future__ import annotations

import pytest

from tests.reliability.helpers import run_batch

NO_DISPLAY = ["DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"]
CASES = {
    "no_display_bare": ([], NO_DISPLAY),
    "no_display_gui": (["gui"], NO_DISPLAY),
    "no_display_gui_file": (["gui", "workbench/builtin/presets/adding_lstm.json"], NO_DISPLAY),
    "missing_argument": (["train"], []),
    "not_a_number": (["train", "adding_lstm", "--steps", "abc"], []),
    "unknown_option": (["train", "adding_lstm", "--colour", "red"], []),
    "unknown_command": (["frobnicate"], []),
    "bad_choice": (["train", "adding_lstm", "--device", "tpu"], []),
    "eval_zero_batches": (["eval", "somewhere", "--batch-size", "0"], []),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_contract")
    cases = [{"name": name, "argv": argv, "unset_env": unset, "env": {"WORKBENCH_HOME": str(root / "home")}}
             for name, (argv, unset) in CASES.items()]
    return run_batch(cases, root, light=True)


@pytest.mark.parametrize("name", ["no_display_bare", "no_display_gui", "no_display_gui_file"])
def test_without_a_display_the_window_says_so_and_points_to_the_headless_commands(results, name):
    err = results[name]["stderr"]
    assert results[name]["rc"] == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "workbench train" in lines[0], err
    assert "qt.qpa" not in err and "Aborted" not in err  # not Qt's abort message


@pytest.mark.parametrize("name,needles", [
    ("missing_argument", ["required: preset", "workbench train --help"]),
    ("not_a_number", ["--steps", "invalid int value: 'abc'"]),
    ("unknown_option", ["unrecognized arguments: --colour red"]),
    ("unknown_command", ["invalid choice: 'frobnicate'"]),
    ("bad_choice", ["--device", "invalid choice: 'tpu'"]),
    ("eval_zero_batches", ["--batch-size", "must be 1 or more"]),
])
def test_a_usage_mistake_is_one_line(results, name, needles):
    result = results[name]
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert result["rc"] == 2 and len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    assert lines[0].startswith("workbench") and ": error: " in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
