"""`workbench install-desktop`: the application in the desktop's menu (Linux and BSD
desktops that follow freedesktop.org), for the current user only.

    workbench install-desktop              write the menu entry and the icon
    workbench install-desktop --uninstall  remove them

The entry is $XDG_DATA_HOME/applications/rnn-workbench.desktop (XDG_DATA_HOME defaults to
~/.local/share) and the icon $XDG_DATA_HOME/icons/hicolor/scalable/apps/rnn-workbench.svg.
The entry starts this Python interpreter with ``-m workbench``, so it opens the
installation that wrote it (a venv or pipx install need not be on PATH)."""
from __future__ import annotations

import sys
from pathlib import Path

from workbench import builtin
from workbench.fileio import SaveError, atomic_write_bytes, atomic_write_text

EXIT_OK, EXIT_INVALID = 0, 2
APP_ID = "rnn-workbench"  # the .desktop file's and the icon's name (Qt's desktopFileName)

# Characters that make an Exec argument need double quotes (freedesktop Desktop Entry
# Specification, "The Exec key").
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def register(subparsers) -> None:
    p = subparsers.add_parser("install-desktop", help="add the window to the desktop's applications menu "
                              "(freedesktop .desktop file and icon, for this user); --uninstall removes them",
                              description="Write a freedesktop.org menu entry and icon for the current user.")
    p.add_argument("--uninstall", action="store_true", help="remove the menu entry and the icon")
    p.set_defaults(func=cmd_install_desktop)


def entry_path() -> Path:
    from workbench.userdirs import xdg_data_home

    return xdg_data_home() / "applications" / f"{APP_ID}.desktop"


def icon_path() -> Path:
    from workbench.userdirs import xdg_data_home

    return xdg_data_home() / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


def exec_arg(arg: str) -> str:
    """One argument of the Exec key, quoted as the specification asks. Its string-value
    escape (a backslash written as two) applies before the quoting, so a backslash inside
    quotes is four in the file."""
    arg = arg.replace("%", "%%")
    if not any(c in _RESERVED for c in arg):
        return arg
    quoted = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return '"' + quoted.replace("\\", "\\\\") + '"'


def desktop_entry(python: str | None = None) -> str:
    python = python or sys.executable
    command = " ".join(exec_arg(a) for a in (python, "-m", "workbench", "gui")) + " %f"
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        "Name=RNN Workbench",
        "GenericName=Recurrent network workbench",
        "Comment=Design, train and inspect recurrent neural networks",
        f"Exec={command}",
        "TryExec=" + python.replace("\\", "\\\\"),  # a string value: a backslash is written twice
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Development;Science;Education;",
        "Keywords=RNN;LSTM;GRU;neural;network;training;",
        "StartupNotify=true",
        "",
    ])


def install() -> list[Path]:
    entry, icon = entry_path(), icon_path()
    atomic_write_bytes(icon, builtin.icon_path("app").read_bytes())
    atomic_write_text(entry, desktop_entry())
    return [entry, icon]


def uninstall() -> list[Path]:
    removed = []
    for path in (entry_path(), icon_path()):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def cmd_install_desktop(args) -> int:
    if sys.platform.startswith("win") or sys.platform == "darwin":
        print("workbench install-desktop: menu entries are written for freedesktop.org desktops "
              "(Linux, BSD); on this system start the window with `workbench`", file=sys.stderr)
        return EXIT_INVALID
    try:
        if args.uninstall:
            removed = uninstall()
            for path in removed:
                print(f"removed {path}")
            if not removed:
                print(f"nothing to remove: {entry_path()} is not there")
            return EXIT_OK
        for path in install():
            print(f"wrote {path}")
    except (SaveError, OSError) as exc:
        print(f"workbench install-desktop: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK
