"""Files the workbench writes get the permissions any program's new file gets (0666 less
the umask), not the 0600 that tempfile.mkstemp would leave behind its atomic writes."""
from __future__ import annotations

import os
import stat
import sys

import pytest

from tests.reliability.helpers import TINY_ADDING
from workbench import cli
from workbench.fileio import atomic_write_text

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX permissions")


@pytest.fixture
def umask_027():
    """umask 027: new files 0640, a mode neither 0600 (mkstemp's) nor the common 0644."""
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_atomic_write_takes_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path, umask_027):
    new = tmp_path / "new.json"
    atomic_write_text(new, "{}")
    assert _mode(new) == umask_027
    os.umask(0o022)
    atomic_write_text(tmp_path / "other.json", "{}")
    assert _mode(tmp_path / "other.json") == 0o644
    new.chmod(0o604)  # the user's own choice survives a rewrite
    atomic_write_text(new, '{"x": 1}')
    assert _mode(new) == 0o604 and new.read_text() == '{"x": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "other.json"]  # no temp left


def test_run_folder_exported_preset_script_and_onnx_follow_the_umask(tmp_path, umask_027):
    run = tmp_path / "run"
    assert cli.main(["train", "adding_gru", "--run-dir", str(run), *TINY_ADDING]) == 0
    assert cli.main(["presets", "save", "adding_gru", "--to", str(tmp_path / "mine.json")]) == 0
    assert cli.main(["export", str(run), "--script", str(tmp_path / "script")]) == 0
    written = [p for p in [*run.rglob("*"), tmp_path / "mine.json", *(tmp_path / "script").rglob("*")] if p.is_file()]
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    else:
        assert cli.main(["export", str(run), "--onnx", str(tmp_path / "model.onnx")]) == 0
        written += [p for p in tmp_path.glob("model*") if p.is_file()]
        assert any(p.suffix == ".onnx" for p in written)
    names = {p.name for p in written}
    assert {"preset.json", "task.json", "metrics.jsonl", "model.safetensors", "mine.json", "train.py"} <= names
    assert any(p.suffix == ".safetensors" for p in (run / "checkpoints").iterdir())
    assert {p.relative_to(tmp_path).as_posix(): oct(_mode(p)) for p in written if _mode(p) != umask_027} == {}
