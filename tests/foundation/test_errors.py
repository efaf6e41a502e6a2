"""Errors a user can fix share one base class, and callers sort them by that type."""
from __future__ import annotations

from pathlib import Path

from workbench import cli
from workbench.errors import TrainingError, UsageError, UserError, describe, is_user_error

PROJECT = Path(__file__).resolve().parents[2]


def test_every_error_a_user_can_fix_is_a_user_error():
    from workbench.engine.checkpoint import WeightsError
    from workbench.export.script import ScriptExportError
    from workbench.fileio import SaveError
    from workbench.io.errors import DataError
    from workbench.spec import SpecError

    for cls in (SpecError, DataError, WeightsError, TrainingError, SaveError, UsageError, ScriptExportError):
        assert issubclass(cls, UserError), cls
    # and each keeps the built-in base callers caught before
    assert issubclass(SpecError, ValueError) and issubclass(SaveError, OSError) and issubclass(TrainingError,
                                                                                               RuntimeError)


def test_the_cli_sorts_errors_by_type_not_by_name(monkeypatch, capsys):
    class ANewKindOfMistake(UserError):  # no list of names to add it to
        pass

    def fail(_args):
        raise ANewKindOfMistake("train.lr: must be positive")

    monkeypatch.setattr(cli, "cmd_presets", fail)
    assert cli.main(["presets"]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.strip() == "workbench: error: train.lr: must be positive"

    class DataError(RuntimeError):  # a defect that happens to carry a user error's name
        pass

    def crash(_args):
        raise DataError("boom")

    monkeypatch.setattr(cli, "cmd_presets", crash)
    monkeypatch.delenv("WORKBENCH_DEBUG", raising=False)
    assert cli.main(["presets"]) == cli.EXIT_FAILED
    assert "internal error: DataError: boom" in capsys.readouterr().err


def test_the_window_describes_a_user_error_by_its_message_alone():
    assert describe(TrainingError("out of memory: use a smaller train.batch_size")) == \
        "out of memory: use a smaller train.batch_size"
    assert describe(FileNotFoundError("no such file: x.txt")) == "no such file: x.txt"
    assert describe(KeyError("x")) == "KeyError: 'x'" and not is_user_error(KeyError("x"))


def test_resources_does_not_import_the_trainer():
    """No import cycle (the trainer imports resources): the memory check raises the
    TrainingError of workbench.errors, not one imported back from the trainer."""
    import ast

    tree = ast.parse((PROJECT / "workbench" / "engine" / "resources.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "workbench.engine.trainer" not in imported and "workbench.errors" in imported
