"""The wheel carries everything the workbench needs: built from the package's files
alone, installed (not editable) into a new environment and run from an empty folder with
no checkout beside it, it lists the built-in presets, trains every one of them a step
(including the three on shipped CSV files) and opens its window with icons and style.

The new environment has only the wheel of its own; its dependencies (torch, PySide6, ...)
are the test interpreter's, reached by a .pth line naming that interpreter's
site-packages: such a line adds the folder to sys.path without running the .pth files in
it, so the checkout's editable install there stays out. Nothing is downloaded."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="venv layout and console script are POSIX here")

# The window, offscreen: every icon the package ships loads, the style sheet applies, and
# a built-in preset whose data is a shipped file (builtin:...) prepares without an error.
WINDOW_CHECK = r"""
import sys
from PySide6.QtCore import QSettings
from workbench import builtin
from workbench.gui.app import create_app
from workbench.gui.main_window import MainWindow, icon

app = create_app()
names = sorted(p.stem for p in (builtin.root() / "icons").glob("*.svg"))
assert "app" in names and all(not icon(n).isNull() for n in names), names
assert (builtin.root() / "style.qss").is_file() and app.styleSheet().strip(), "no style sheet"
w = MainWindow(settings=QSettings(sys.argv[1], QSettings.Format.IniFormat), data_dir=sys.argv[2])
w.dialog_answers = {"keep_run": "keep", "save_changes": "discard", "info": "ok"}
app.setWindowIcon(icon("app"))
w.show()
assert not w.windowIcon().isNull()
assert w.open_builtin("forecast_airline_gru", quiet=True)
result = None
for _ in range(600):  # the task prepares on the resolver's pool thread
    app.processEvents()
    result = w.resolver.model_io(w.doc.preset)
    if result is not None:
        break
    import time; time.sleep(0.05)
assert result is not None and result.error is None, result
print("window ok:", len(names), "icons;", w.doc.preset.data.path)
w.close()
"""

# Every built-in preset one step, through the CLI's own entry point in one process (one
# torch import, instead of one per preset).
TRAIN_ALL = r"""
import sys
from workbench import cli, presets
failed = [name for name in presets.builtin_names()
          if cli.main(["train", name, "--steps", "1", "--run-dir", f"runs/{name}", "--quiet", "--device", "cpu",
                       "--set", "train.num_threads=1", "--set", "train.probe_every=0"]) != 0]
print("trained:", len(presets.builtin_names()) - len(failed), "failed:", failed)
sys.exit(1 if failed else 0)
"""


def _run(argv, cwd, env, timeout=600):
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_wheel_installed_elsewhere_lists_trains_and_opens_the_window(tmp_path):
    # Only what the build reads: a stray file beside the package cannot make the test pass.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, src / name)
    shutil.copytree(PROJECT_ROOT / "workbench", src / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               WORKBENCH_HOME=str(tmp_path / "home"), HOME=str(tmp_path / "home"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "share"))
    wheels = tmp_path / "wheels"
    # --no-build-isolation: the build uses this environment's setuptools (the test extra), no download
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          str(src), "-w", str(wheels)], cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("rnn_workbench-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path, env=env).stdout.strip())
    ours = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (purelib / "_workbench_test_dependencies.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=tmp_path, env=env)

    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([str(python), "-c", "import workbench; print(workbench.__file__)"], cwd=empty, env=env).stdout
    assert Path(where.strip()).is_relative_to(purelib), where  # the installed copy, not the checkout

    listed = _run([str(venv / "bin" / "workbench"), "presets"], cwd=empty, env=env).stdout
    builtins = sorted(p.stem for p in (PROJECT_ROOT / "workbench" / "builtin" / "presets").glob("*.json"))
    assert len(builtins) >= 20 and [line.split("\t")[0] for line in listed.splitlines()] == builtins

    trained = _run([str(python), "-c", TRAIN_ALL], cwd=empty, env=env)
    assert f"trained: {len(builtins)} failed: []" in trained.stdout, trained.stdout + trained.stderr
    for name in ("forecast_airline_gru", "forecast_sunspots_gru", "forecast_temperature_lstm"):
        assert (empty / "runs" / name / "model.safetensors").is_file()

    window = _run([str(python), "-c", WINDOW_CHECK, str(tmp_path / "settings.ini"), str(tmp_path / "data")],
                  cwd=empty, env=env)
    assert f"window ok: {len(list((PROJECT_ROOT / 'workbench' / 'builtin' / 'icons').glob('*.svg')))} icons" \
        in window.stdout
    assert sorted(p.name for p in empty.iterdir()) == ["runs"]  # nothing else written beside the user
