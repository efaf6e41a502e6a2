"""The user's own folders (data, config, cache), found without importing Qt.

They are the folders Qt's QStandardPaths gives the window, whose QCoreApplication has
organisation name ``rnn-workbench`` and application name ``workbench`` (set in
workbench/gui/app.py; ORGANISATION/APPLICATION below must stay equal to those, a test
checks it), so the window (which may ask Qt) and the headless commands (which ask this
module) agree. Qt appends "<organisation>/<application>" to each base folder:

=========  ==========================================  ==============================================  ===========================================
 kind       Linux (XDG)                                 macOS                                           Windows
=========  ==========================================  ==============================================  ===========================================
 data       $XDG_DATA_HOME/rnn-workbench/workbench      ~/Library/Application Support/                  %APPDATA%/rnn-workbench/workbench
            (~/.local/share/rnn-workbench/workbench)    rnn-workbench/workbench
 config     $XDG_CONFIG_HOME/rnn-workbench/workbench    ~/Library/Preferences/rnn-workbench/workbench   %LOCALAPPDATA%/rnn-workbench/workbench
 cache      $XDG_CACHE_HOME/rnn-workbench/workbench     ~/Library/Caches/rnn-workbench/workbench        %LOCALAPPDATA%/rnn-workbench/workbench/cache
=========  ==========================================  ==============================================  ===========================================

(QStandardPaths.AppDataLocation, AppConfigLocation and CacheLocation respectively.)
The GUI may ask Qt, but should rather call the functions here, which also honour
``WORKBENCH_HOME``.

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

ORGANISATION = "rnn-workbench"  # QCoreApplication.organizationName() (workbench/gui/app.py)
APPLICATION = "workbench"  # QCoreApplication.applicationName()
APP_DISPLAY_NAME = "RNN Workbench"
APP_PATH = Path(ORGANISATION) / APPLICATION  # what Qt appends to each standard folder
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


def xdg_data_home() -> Path:
    """$XDG_DATA_HOME or ~/.local/share: where a desktop's menu entries and icons for this
    user live (applications/, icons/); WORKBENCH_HOME does not move them."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def _windows_folder(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value) if value else Path.home() / fallback


def data_dir() -> Path:
    """The user's data folder (QStandardPaths.AppDataLocation). Not created here."""
    home = _override()
    if home is not None:
        return home
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_PATH
    if sys.platform.startswith("win"):
        return _windows_folder("APPDATA", "AppData/Roaming") / APP_PATH
    return _xdg("XDG_DATA_HOME", ".local/share") / APP_PATH


def config_dir() -> Path:
    """The user's config folder (QStandardPaths.AppConfigLocation). Not created here."""
    home = _override()
    if home is not None:
        return home / "config"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / APP_PATH
    if sys.platform.startswith("win"):
        return _windows_folder("LOCALAPPDATA", "AppData/Local") / APP_PATH
    return _xdg("XDG_CONFIG_HOME", ".config") / APP_PATH


def cache_dir() -> Path:
    """The user's cache folder (QStandardPaths.CacheLocation). Not created here."""
    home = _override()
    if home is not None:
        return home / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_PATH
    if sys.platform.startswith("win"):
        return _windows_folder("LOCALAPPDATA", "AppData/Local") / APP_PATH / "cache"
    return _xdg("XDG_CACHE_HOME", ".cache") / APP_PATH


def history_path() -> Path:
    """The SQLite run history."""
    return data_dir() / "history.sqlite3"


def user_presets_dir() -> Path:
    """Where the user's own presets live (built-ins stay in the project, read-only)."""
    return data_dir() / "presets"
