"""The user's own folders (data, config, cache), found without importing Qt.

They are the folders Qt's QStandardPaths gives for an application named
``rnn-workbench`` with no organisation name, so the window (which may ask Qt) and the
headless commands (which ask this module) agree:

=========  ==================================  ========================================  =====================================
 kind       Linux (XDG)                         macOS                                     Windows
=========  ==================================  ========================================  =====================================
 data       $XDG_DATA_HOME/rnn-workbench        ~/Library/Application Support/             %APPDATA%/rnn-workbench
            (~/.local/share/rnn-workbench)      rnn-workbench
 config     $XDG_CONFIG_HOME/rnn-workbench      ~/Library/Preferences/rnn-workbench       %LOCALAPPDATA%/rnn-workbench
            (~/.config/rnn-workbench)
 cache      $XDG_CACHE_HOME/rnn-workbench       ~/Library/Caches/rnn-workbench            %LOCALAPPDATA%/rnn-workbench/cache
            (~/.cache/rnn-workbench)
=========  ==================================  ========================================  =====================================

(QStandardPaths.AppDataLocation, AppConfigLocation and CacheLocation respectively.)
For the GUI to match: ``QCoreApplication.setApplicationName(APP_NAME)`` and leave the
organisation name empty; the window title uses ``APP_DISPLAY_NAME``. Simpler still, the
GUI calls the functions here, which also honour ``WORKBENCH_HOME``.

``WORKBENCH_HOME`` (environment) overrides everything: data is that folder itself,
config and cache are its ``config/`` and ``cache/`` sub-folders. Tests set it to a
temporary folder so they never touch the real user's history.

What lives where:
  data_dir()/history.sqlite3   the run history (workbench.runs)
  data_dir()/presets/*.json    the user's own presets (``workbench presets``)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "rnn-workbench"  # QCoreApplication.applicationName(); the folder name everywhere
APP_DISPLAY_NAME = "RNN Workbench"
ENV_HOME = "WORKBENCH_HOME"


def _override() -> Path | None:
    value = os.environ.get(ENV_HOME, "").strip()
    return Path(value).expanduser() if value else None


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "").strip()
    # The XDG spec: a relative path in these variables is invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def _windows_folder(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value) if value else Path.home() / fallback


def data_dir() -> Path:
    """The user's data folder (QStandardPaths.AppDataLocation). Not created here."""
    home = _override()
    if home is not None:
        return home
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    if sys.platform.startswith("win"):
        return _windows_folder("APPDATA", "AppData/Roaming") / APP_NAME
    return _xdg("XDG_DATA_HOME", ".local/share") / APP_NAME


def config_dir() -> Path:
    """The user's config folder (QStandardPaths.AppConfigLocation). Not created here."""
    home = _override()
    if home is not None:
        return home / "config"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / APP_NAME
    if sys.platform.startswith("win"):
        return _windows_folder("LOCALAPPDATA", "AppData/Local") / APP_NAME
    return _xdg("XDG_CONFIG_HOME", ".config") / APP_NAME


def cache_dir() -> Path:
    """The user's cache folder (QStandardPaths.CacheLocation). Not created here."""
    home = _override()
    if home is not None:
        return home / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    if sys.platform.startswith("win"):
        return _windows_folder("LOCALAPPDATA", "AppData/Local") / APP_NAME / "cache"
    return _xdg("XDG_CACHE_HOME", ".cache") / APP_NAME


def history_path() -> Path:
    """The SQLite run history."""
    return data_dir() / "history.sqlite3"


def user_presets_dir() -> Path:
    """Where the user's own presets live (built-ins stay in the project, read-only)."""
    return data_dir() / "presets"
