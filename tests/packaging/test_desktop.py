"""`workbench install-desktop`: a freedesktop menu entry and icon under $XDG_DATA_HOME."""
from __future__ import annotations

import configparser
import sys

import pytest

from workbench import builtin, cli
from workbench.commands import desktop

pytestmark = pytest.mark.skipif(sys.platform.startswith("win") or sys.platform == "darwin",
                                reason="freedesktop menu entries are for Linux and BSD desktops")


def _unquote_exec(value: str) -> list[str]:
    """An Exec value back to its arguments, the way a desktop reads it: the string escape
    (two backslashes -> one) first, then the quoting (inside double quotes a backslash
    takes the next character literally; outside, a space separates arguments)."""
    value = value.replace("\\\\", "\\")
    args, current, quoted, i = [], "", False, 0
    while i < len(value):
        c = value[i]
        if quoted and c == "\\":
            current, i = current + value[i + 1], i + 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == " " and not quoted:
            args.append(current)
            current = ""
        else:
            current += c
        i += 1
    return args + [current]


def test_install_writes_entry_and_icon_under_xdg_data_home_and_uninstall_removes_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # nothing may land in the real home
    assert cli.main(["install-desktop"]) == 0
    entry = tmp_path / "share" / "applications" / "rnn-workbench.desktop"
    icon = tmp_path / "share" / "icons" / "hicolor" / "scalable" / "apps" / "rnn-workbench.svg"
    assert f"wrote {entry}" in capsys.readouterr().out
    assert icon.read_bytes() == builtin.icon_path("app").read_bytes()
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(entry.read_text())
    section = parser["Desktop Entry"]
    assert section["Type"] == "Application" and section["Name"] == "RNN Workbench"
    assert section["Icon"] == "rnn-workbench" and section["Terminal"] == "false"
    assert _unquote_exec(section["Exec"]) == [sys.executable, "-m", "workbench", "gui", "%f"]
    assert not (tmp_path / "home").exists()

    assert cli.main(["install-desktop"]) == 0  # again: replaced, not duplicated
    assert len(list(entry.parent.iterdir())) == 1
    assert cli.main(["install-desktop", "--uninstall"]) == 0
    assert not entry.exists() and not icon.exists()
    capsys.readouterr()
    assert cli.main(["install-desktop", "--uninstall"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_without_xdg_data_home_it_goes_to_local_share(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert desktop.entry_path() == tmp_path / ".local" / "share" / "applications" / "rnn-workbench.desktop"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/share")  # invalid per the XDG spec: ignored
    assert desktop.icon_path().is_relative_to(tmp_path / ".local" / "share" / "icons")


@pytest.mark.parametrize("python", ["/opt/my apps/bin/python3", '/o"dd/$HOME/`x`/py', "/back\\slash/py", "/100%/py"])
def test_exec_line_quotes_an_interpreter_path_with_reserved_characters(python):
    exec_value = next(line for line in desktop.desktop_entry(python).splitlines() if line.startswith("Exec="))
    args = _unquote_exec(exec_value[len("Exec="):].replace("%%", "%"))
    assert args == [python, "-m", "workbench", "gui", "%f"]


def test_an_unwritable_data_folder_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "share"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    assert cli.main(["install-desktop"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "share" in err[0]
