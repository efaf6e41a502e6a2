"""Presets: validation messages name the field; overrides; files; sizes."""
from __future__ import annotations

import json

import pytest

from workbench import presets, spec
from workbench.spec import ModelIO, Preset, SpecError


def _raw() -> dict:
    return presets.load_builtin("adding_lstm").to_dict()


def _error(raw) -> SpecError:
    with pytest.raises(SpecError) as info:
        Preset.from_dict(raw)
    return info.value


def test_builtin_presets_all_load_and_round_trip():
    names = presets.builtin_names()
    assert len(names) >= 6
    for name in names:
        p = presets.load_builtin(name)
        assert Preset.from_dict(json.loads(p.to_json())) == p


@pytest.mark.parametrize("mutate,field,words", [
    (lambda r: r["model"]["layers"][0].update(hidden_size=0), "model.layers.0.hidden_size", "between"),
    (lambda r: r["model"]["layers"][0].update(hidden_size="big"), "model.layers.0.hidden_size", "whole number"),
    (lambda r: r["model"]["layers"][0].update(cell="transformer"), "model.layers.0.cell", "not one of"),
    (lambda r: r["model"]["layers"][0].update(colour="red"), "model.layers.0.colour", "unknown field"),
    (lambda r: r["model"].update(layers=[]), "model.layers", "at least one"),
    (lambda r: r["train"].update(lr=-1), "train.lr", "must be in"),
    (lambda r: r["train"].update(lr="fast"), "train.lr", "expected a number"),
    (lambda r: r["train"].update(batch_size=10**9), "train.batch_size", "between"),
    (lambda r: r["train"].pop("steps") and r.update(surprise=1), "surprise", "unknown field"),
    (lambda r: r.update(schema_version=99), "schema_version", "not supported"),
    (lambda r: r.pop("schema_version"), "schema_version", "missing"),
    (lambda r: r["model"].update(attention=True), "model.attention", "encoder-decoder"),
    (lambda r: r["model"].update(topology="one_to_many") or r["model"]["layers"][0].update(bidirectional=True),
     "model.layers.0.bidirectional", "cannot read the future"),
    (lambda r: r["model"].update(topology="encoder_decoder", decoder_layers=[]), "model.decoder_layers", "at least one"),
    (lambda r: r["model"].update(decoder_layers=[{"cell": "gru"}]), "model.decoder_layers", "only an encoder-decoder"),
    (lambda r: r["model"]["init"].update(recurrent="identity"), "model.init.recurrent", "vanilla RNN"),
    (lambda r: r["model"]["layers"][0].update(dropout=1.5), "model.layers.0.dropout", "must be in"),
    (lambda r: r["model"]["init"].update(spectral_radius=float("nan")), "model.init.spectral_radius", "finite"),
])
def test_bad_fields_are_named(mutate, field, words):
    raw = _raw()
    mutate(raw)
    err = _error(raw)
    assert err.field == field
    assert words in str(err)


def test_not_an_object():
    assert "JSON object" in str(_error([1, 2]))


def test_load_reports_bad_json_with_position(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"schema_version": 1,,}')
    with pytest.raises(SpecError, match="not valid JSON: .* line 1"):
        spec.load(f)
    f.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SpecError, match="not a UTF-8"):
        spec.load(f)
    with pytest.raises(SpecError, match="does not exist"):
        spec.load(tmp_path / "missing.json")


def test_overrides_by_dotted_path():
    p = presets.load_builtin("adding_lstm")
    q = spec.with_overrides(p, ["model.layers.0.hidden_size=256", "train.lr=3e-4", "data.path=x.txt",
                                "data.options.seq_len=50", "model.layers.0.bidirectional=true"])
    assert q.model.layers[0].hidden_size == 256 and q.train.lr == 3e-4 and q.data.path == "x.txt"
    assert q.data.options["seq_len"] == 50 and q.model.layers[0].bidirectional is True
    assert p.model.layers[0].hidden_size != 256  # the original is untouched
    with pytest.raises(SpecError) as info:
        spec.with_overrides(p, ["model.layers.3.hidden_size=2"])
    assert info.value.field == "model.layers.3"
    with pytest.raises(SpecError) as info:
        spec.with_overrides(p, ["train.nope=2"])
    assert info.value.field == "train.nope"
    with pytest.raises(SpecError):
        spec.with_overrides(p, ["train.lr"])


def test_save_is_atomic_and_validates(tmp_path):
    p = presets.load_builtin("adding_lstm")
    target = tmp_path / "mine.json"
    spec.save(p, target)
    assert spec.load(target) == p
    bad = p.copy()
    bad.model.layers[0].hidden_size = -1
    with pytest.raises(SpecError):
        spec.save(bad, target)
    assert spec.load(target) == p  # the previous file is unchanged
    assert [f.name for f in tmp_path.iterdir()] == ["mine.json"]  # no temp files left


def test_memory_estimate_grows_with_batch_and_length():
    p = presets.load_builtin("adding_lstm")
    io = ModelIO(input_kind="features", feature_size=2, output_size=1)
    small = spec.memory_estimate(p.model, io, batch_size=8, seq_len=10)
    big = spec.memory_estimate(p.model, io, batch_size=16, seq_len=100)
    assert big["activations"] > 10 * small["activations"]
    assert small["weights"] == spec.parameter_report(p.model, io).total * 4
    assert spec.format_bytes(3 * 1024**2) == "3.0 MiB"
