"""Exported ONNX graphs run in onnxruntime and agree with PyTorch (fp32, 1e-4 relative),
for every cell x topology, at batch sizes and lengths other than the traced ones."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from tests.export.helpers import cases, tiny  # noqa: E402
from workbench.export import onnx as wx  # noqa: E402

B, T, L = 3, 7, 4  # not the traced sizes (2, 5, 3)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess, feeds: dict) -> dict:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {k: v.numpy() if isinstance(v, torch.Tensor) else v
                                          for k, v in feeds.items()})))


def close(got: np.ndarray, want: torch.Tensor, what: str) -> None:
    want = want.detach().numpy()
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(float(np.abs(want).max()), 1e-6)
    rel = float(np.abs(got - want).max()) / scale
    assert rel <= 1e-4, f"{what}: max error {rel:.2e} of the output's scale"
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * max(scale, 1.0), err_msg=what)


@pytest.mark.parametrize("cell,topology,kind", cases())
def test_onnxruntime_matches_pytorch(tmp_path, cell, topology, kind):
    torch.manual_seed(1)
    model = tiny(cell, topology, kind, head_hidden=4 if cell == "gru" else 0)
    files = wx.export_model(model, tmp_path / "m.onnx")
    manifest = json.loads((tmp_path / "m.onnx.json").read_text())
    assert manifest["topology"] == model.topology
    paths = wx.graph_paths(tmp_path / "m.onnx", model.topology)
    assert set(paths.values()) <= set(files)
    g = torch.Generator().manual_seed(2)
    x, _, _ = wx.example_input(model, B, T, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    with torch.no_grad():
        if model.topology == "many_to_one":
            out = run(session(paths["model"]), {"x": x, "lengths": lengths})
            close(out["output"], model(x, None, lengths), "output")
            return
        if model.topology == "many_to_many":
            sess = session(paths["model"])
            takes_lengths = "lengths" in [i.name for i in sess.get_inputs()]
            assert takes_lengths == model.encoder.bidirectional  # a bidirectional layer needs the rows' ends
            out = run(sess, {"x": x, "lengths": lengths} if takes_lengths else {"x": x})
            want = model(x, None, lengths)
            for b, n in enumerate(lengths.tolist()):  # the padding's outputs are no one's concern
                close(out["output"][b, :n], want[b, :n], f"output row {b}")
            return
        y_in = torch.randint(0, model.io.output_vocab_size, (B, L), generator=g)
        attention = model.attention_in is not None
        if model.topology == "encoder_decoder":
            first = run(session(paths["encoder"]), {"x": x, "lengths": lengths})
            want = model(x, y_in, lengths)
            step = session(paths["decoder"])
        else:
            first = run(session(paths["init"]), {"x": x})
            want = model(x, y_in)
            step = session(paths["step"])
        states = {k: v for k, v in first.items() if k.startswith("state_")}
        extra = {"memory": first["memory"], "lengths": lengths} if attention else {}
        # The whole teacher-forced target at once ...
        full = run(step, {"y_in": y_in, **states, **extra})
        close(full["logits"], want, "teacher-forced logits")
        if attention:
            close(full["attention"], model.last_attention, "attention weights")
        # ... and one step at a time, feeding the states back: the decoding loop.
        logits = []
        for t in range(L):
            out = run(step, {"y_in": y_in[:, t:t + 1], **states, **extra})
            logits.append(out["logits"])
            states = {k[len("next_"):]: v for k, v in out.items() if k.startswith("next_state_")}
        close(np.concatenate(logits, axis=1), want, "step-by-step logits")


def test_greedy_decoding_in_onnxruntime_matches_generate(tmp_path):
    torch.manual_seed(3)
    model = tiny("lstm", "encoder_decoder_attention", "embedding")
    wx.export_model(model, tmp_path / "s2s.onnx")
    paths = wx.graph_paths(tmp_path / "s2s.onnx", "encoder_decoder")
    g = torch.Generator().manual_seed(4)
    x, _, _ = wx.example_input(model, B, T, generator=g)
    lengths = torch.tensor([T, 4, 2])
    tokens, _ = model.generate(x, max_len=6, lengths=lengths)  # [B, <=6]
    enc = run(session(paths["encoder"]), {"x": x, "lengths": lengths})
    step = session(paths["decoder"])
    states = {k: v for k, v in enc.items() if k.startswith("state_")}
    token = np.full((B, 1), model.io.bos_id, dtype=np.int64)
    got = []
    for _ in range(tokens.shape[1]):
        out = run(step, {"y_in": token, **states, "memory": enc["memory"], "lengths": lengths})
        token = out["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
        got.append(token)
        states = {k[len("next_"):]: v for k, v in out.items() if k.startswith("next_state_")}
    got = np.concatenate(got, axis=1)
    # generate() pads a row after its EOS; compare up to each row's EOS.
    for row in range(B):
        want = tokens[row].tolist()
        n = want.index(model.io.eos_id) + 1 if model.io.eos_id in want else len(want)
        assert got[row, :n].tolist() == want[:n]


def test_graphs_carry_the_preset_and_role(tmp_path):
    import onnx

    from workbench.spec import Preset

    model = tiny("gru", "one_to_many", "linear")
    preset = Preset(name="captioner", model=model.spec)
    wx.export_model(model, tmp_path / "cap.onnx", preset=preset)
    proto = onnx.load(str(tmp_path / "cap.step.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["rnn_workbench.graph"] == "step"
    assert json.loads(meta["rnn_workbench.preset"])["name"] == "captioner"
    manifest = json.loads((tmp_path / "cap.onnx.json").read_text())
    assert [g["file"] for g in manifest["graphs"]] == ["cap.init.onnx", "cap.step.onnx"]
    assert manifest["decoding"]["bos_id"] == model.io.bos_id
