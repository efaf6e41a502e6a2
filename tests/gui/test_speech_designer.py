"""The connected-speech preset is shown as a many-to-many model read with CTC (no
alignment) in the diagram's title and the designer's topology hint; others are not."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_ctc_is_named_in_the_diagram_and_the_designer(window):
    assert window.open_builtin("speech_connected_ctc", quiet=True)
    model = window.diagram.diagram.model
    assert model.topology == "many_to_many" and model.title.endswith("Many-to-many (CTC)")
    assert "CTC" in window.editor.topology_hint.text() and "alignment" in window.editor.topology_hint.text()
    assert window.open_builtin("tagger_bilstm", quiet=True)
    assert window.diagram.diagram.model.title.endswith("Many-to-many")
    assert "CTC" not in window.editor.topology_hint.text()
