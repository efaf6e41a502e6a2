"""The preset document (Qt-free): edits, undo/redo, merging, dirty flag, files."""
from __future__ import annotations

import pytest

from workbench import presets, spec
from workbench.gui.document import PresetDocument, get_field, set_field
from workbench.spec import SpecError


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def base_preset():
    # Known values, whatever the built-in preset holds today.
    return spec.with_overrides(presets.load_builtin("adding_lstm"),
                               ["model.layers.0.hidden_size=128", "train.lr=0.002", "model.layers.0.cell=lstm",
                                "model.init.recurrent=default"])


@pytest.fixture
def doc():
    clock = Clock()
    d = PresetDocument(base_preset(), clock=clock)
    d.clock = clock
    return d


def test_set_undo_redo_and_notifications(doc):
    seen = []
    doc.subscribe(lambda ch: seen.append(ch.kind))
    assert not doc.dirty and not doc.can_undo
    assert doc.set("model.layers.0.hidden_size", 64)
    assert doc.preset.model.layers[0].hidden_size == 64
    assert doc.dirty and doc.can_undo and doc.undo_text
    assert doc.undo()
    assert doc.preset.model.layers[0].hidden_size == 128
    assert not doc.dirty
    assert doc.redo()
    assert doc.preset.model.layers[0].hidden_size == 64
    assert seen == ["edit", "edit", "edit"]
    assert not doc.set("model.layers.0.hidden_size", 64)  # no change, no step


def test_merging_within_window_only(doc):
    doc.set("train.lr", 0.01)
    doc.clock.t += 0.5
    doc.set("train.lr", 0.02)  # same field, soon after: merged
    assert len(doc._undo) == 1
    doc.clock.t += 5
    doc.set("train.lr", 0.03)  # later: its own step
    assert len(doc._undo) == 2
    doc.undo()
    assert doc.preset.train.lr == 0.02
    doc.undo()
    assert doc.preset.train.lr == 0.002


def test_layer_operations_and_topology(doc):
    doc.add_layer("layers")
    doc.set("model.layers.1.cell", "gru")
    assert [l.cell for l in doc.preset.model.layers] == ["lstm", "gru"]
    doc.move_layer("layers", 1, -1)
    assert [l.cell for l in doc.preset.model.layers] == ["gru", "lstm"]
    doc.remove_layer("layers", 0)
    assert [l.cell for l in doc.preset.model.layers] == ["lstm"]
    doc.set("model.layers.0.bidirectional", True)
    doc.set_topology("encoder_decoder")
    m = doc.preset.model
    assert m.topology == "encoder_decoder" and len(m.decoder_layers) == 1 and not m.decoder_layers[0].bidirectional
    doc.set("model.attention", True)
    doc.set_topology("one_to_many")
    m = doc.preset.model
    assert m.decoder_layers == [] and not m.attention and not m.layers[0].bidirectional
    # one undo step per operation, back to the start
    while doc.undo():
        pass
    assert doc.preset == base_preset()


def test_validation_error_names_field(doc):
    doc.set("model.init.recurrent", "identity")  # IRNN with an LSTM: not allowed
    err = doc.validation_error()
    assert isinstance(err, SpecError) and err.field == "model.init.recurrent"
    doc.undo()
    assert doc.validation_error() is None


def test_save_and_dirty(doc, tmp_path):
    with pytest.raises(SpecError):
        doc.save()  # no path yet
    doc.set("name", "mine")
    target = doc.save(tmp_path / "mine.json")
    assert not doc.dirty and doc.path == target
    assert spec.load(target).name == "mine"
    doc.set("train.steps", 10)
    assert doc.dirty
    doc.undo()
    assert not doc.dirty
    doc.set("model.init.recurrent", "identity")
    with pytest.raises(SpecError):
        doc.save()  # an invalid preset is not written
    assert spec.load(target).model.init.recurrent == "default"


def test_field_paths():
    p = base_preset()
    assert get_field(p, "data.options.seq_len") == p.data.options["seq_len"]
    set_field(p, "data.options.seq_len", 7)
    set_field(p, "model.layers.0.cell", "gru")
    assert p.data.options["seq_len"] == 7 and p.model.layers[0].cell == "gru"
    with pytest.raises(SpecError):
        set_field(p, "train.no_such_field", 1)
