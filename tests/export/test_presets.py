"""User presets: saved in the user's data folder (or any file), listed marked [user],
found by name; the built-ins stay read-only."""
from __future__ import annotations

import json

import pytest

from workbench import cli, presets
from workbench.spec import SpecError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_save_list_use_and_delete_a_user_preset(home, tmp_path, capsys):
    assert cli.main(["presets", "save", "adding_gru", "--name", "my_gru", "--set", "model.layers.0.hidden_size=4",
                     "--set", "data.options.seq_len=5"]) == 0
    saved = home / "presets" / "my_gru.json"
    assert capsys.readouterr().out.strip() == str(saved)
    assert json.loads(saved.read_text())["name"] == "my_gru"
    assert cli.main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    builtin = [l for l in lines if l.startswith("adding_gru\t")]
    mine = [l for l in lines if l.startswith("my_gru\t")]
    assert len(builtin) == 1 and "[user]" not in builtin[0]
    assert len(mine) == 1 and mine[0].split("\t")[1:3] == ["adding", "many_to_one"] and "[user]" in mine[0]
    assert presets.resolve("my_gru").model.layers[0].hidden_size == 4
    assert cli.main(["train", "my_gru", "--steps", "1", "--quiet", "--run-dir", str(tmp_path / "r"),
                     "--set", "train.probe_every=0", "--set", "data.options.val_size=8"]) == 0
    assert json.loads((tmp_path / "r" / "preset.json").read_text())["name"] == "my_gru"
    capsys.readouterr()
    assert cli.main(["presets", "save", "adding_gru", "--name", "my_gru"]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert cli.main(["presets", "save", "adding_gru", "--name", "my_gru", "--force"]) == 0
    builtin_size = presets.load_builtin("adding_gru").model.layers[0].hidden_size
    assert builtin_size != 4
    assert presets.resolve("my_gru").model.layers[0].hidden_size == builtin_size
    assert cli.main(["presets", "delete", "my_gru"]) == 0 and not saved.exists()
    capsys.readouterr()
    assert cli.main(["presets", "folder"]) == 0 and capsys.readouterr().out.strip() == str(home / "presets")


def test_builtins_stay_read_only_and_names_are_checked(home, tmp_path, capsys):
    before = (presets.BUILTIN_DIR / "adding_gru.json").read_bytes()
    assert cli.main(["presets", "save", "adding_lstm", "--name", "adding_gru"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert cli.main(["presets", "delete", "adding_gru"]) == 2
    assert (presets.BUILTIN_DIR / "adding_gru.json").read_bytes() == before
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(SpecError):
            presets.save_user(presets.load_builtin("adding_gru"), bad)
    assert cli.main(["presets", "save", "adding_gru", "--set", "model.layers.0.hidden_size=-1"]) == 2
    assert "model.layers.0.hidden_size" in capsys.readouterr().err
    # any folder the user picks
    target = tmp_path / "elsewhere" / "mine.json"
    assert cli.main(["presets", "save", "adding_gru", "--to", str(target), "--name", "mine"]) == 0
    assert presets.resolve(str(target)).name == "mine"
    assert cli.main(["presets", "save", "adding_gru", "--to", str(target)]) == 2
    # a broken user preset is listed as invalid, and the rest still list
    (home / "presets").mkdir(parents=True, exist_ok=True)
    (home / "presets" / "broken.json").write_text("{not json")
    capsys.readouterr()
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "broken\t(invalid user preset:" in out and "adding_gru\t" in out
