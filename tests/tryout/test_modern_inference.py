"""Try it with the scan cells (minGRU, minLSTM, LRU): generation through the sequential
form equals the scan over the whole text, the look inside shows the layers' own states
and the cells' gates, and saliency respects causality (inference.py, untrained models)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.tryout.conftest import TEXT
from workbench import cells, inference
from workbench.engine.model import build_model
from workbench.presets import load_builtin
from workbench.spec import with_overrides
from workbench.tasks import task_class

STACK = [{"cell": "mingru", "hidden_size": 12}, {"cell": "lru", "hidden_size": 10}, {"cell": "minlstm", "hidden_size": 8}]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("modern_lm") / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    preset = with_overrides(load_builtin("charlm_mingru"), [f"model.layers={json.dumps(STACK)}",
                                                            "model.input.embedding_dim=8", "data.options.seq_len=16",
                                                            f"data.path={json.dumps(str(corpus))}"])
    task = task_class("charlm")(preset.data.options, preset.data.path, 0).ensure_prepared()
    torch.manual_seed(0)
    model = build_model(preset.model, task.model_io()).eval()
    return inference.session_from_model(preset, task, model)


def test_generated_tokens_carry_the_state_like_one_pass(lm):
    """One token at a time (the layers' sequential step) = the scan over the whole text."""
    steps = list(inference.generate(lm, "the lazy", length=10, temperature=0.0))
    ids = lm.task.encode_text("the lazy")[0].tolist() + [st["id"] for st in steps]
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids[:-1]]))[0]  # [T, V]
    assert logits.argmax(-1).tolist()[len(ids) - 1 - 10:] == [st["id"] for st in steps]
    sampled = inference.generate_text(lm, "the", length=20, temperature=0.9, top_k=5, seed=3)
    assert sampled == inference.generate_text(lm, "the", length=20, temperature=0.9, top_k=5, seed=3)


def test_inside_shows_each_cells_states_and_gates(lm):
    info = lm.describe()
    assert [l["series"] for l in info["layers"]] == [cells.get(c["cell"]).series for c in STACK]
    assert info["layers"][1]["series"] == ["hidden", "modulus"]
    out = inference.inside(lm, {"text": "the quick brown"}, saliency=False)
    seen = {}
    hooks = [rnn.register_forward_hook(lambda m, a, o, name=name: seen.__setitem__(name, o[0].detach()))
             for name, _l, rnn in lm.model.recurrent_layers()]
    with torch.no_grad():
        lm.model(lm.task.encode_text("the quick brown")[0][None])
    for h in hooks:
        h.remove()
    for layer, spec in zip(out["layers"], STACK):
        series = layer["series"]
        assert set(series) == set(cells.get(spec["cell"]).series)
        want = seen[layer["name"]][0].T.numpy()  # [H, T]: the layer's own output (its scan)
        assert np.allclose(series["hidden"], want, atol=1e-5), layer["name"]
        for name in series:
            assert series[name].shape == (spec["hidden_size"], 15), (layer["name"], name)
    mingru, lru, minlstm = (l["series"] for l in out["layers"])
    assert ((0 <= mingru["update"]) & (mingru["update"] <= 1)).all() and (mingru["candidate"] > 0).all()
    assert np.allclose(minlstm["forget"] + minlstm["input"], 1.0, atol=1e-6)  # normalised gates
    assert (lru["modulus"] >= 0).all()


def test_saliency_respects_causality(lm):
    out = inference.inside(lm, {"text": "the quick brown"}, target={"step": 5})["saliency"]
    values = np.asarray(out["values"])
    assert values.shape == (15,) and np.all(values[6:] == 0) and values[5] > 0 and values[0] > 0
