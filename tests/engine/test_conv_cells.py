"""The convolutional cells (workbench.cells.conv): ConvLSTM and ConvGRU on frames. They
validate where frames go in and name the field where not, count their parameters as the
built module holds them, train with the real Trainer on next-frame prediction, and the
exact dL/dh_t probe (norms over the whole spatial state) and the layer-input taps match
autograd through an independent float64 stand-in written here from the papers' equations.
The try-out's look inside records their gates; ONNX export is a one-frame step graph that
onnxruntime runs to PyTorch's outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tests.engine.reference as reference
from workbench import cells, presets
from workbench.cells import conv
from workbench.engine.model import ConvHead, build_model, unrolled_layer
from workbench.engine.trainer import Trainer
from workbench.spec import SpecError, parameter_report, validate, with_overrides
from workbench.tasks import make_task

H = W = 6


def _preset(cell: str, *overrides: str, channels: int = 3, layers: int = 1):
    base = ["train.device=cpu", "train.checkpoint_every=0", "train.eval_every=0", "train.probe_every=0",
            f"data.options.width={W}", f"data.options.height={H}", "data.options.window=5",
            "data.options.val_clips=4", "train.batch_size=3", "model.input.kind=frames_grid",
            f"model.layers.0.cell={cell}", f"model.layers.0.hidden_size={channels * H * W}"]
    preset = with_overrides(presets.load_builtin("video_nextframe_lstm"), base + list(overrides))
    if layers == 2:
        raw = preset.to_dict()
        raw["model"]["layers"].append({"cell": cell, "hidden_size": 2 * H * W, "bidirectional": False,
                                       "dropout": 0.0})
        preset = type(preset).from_dict(raw)
    return preset


class ConvStepped(torch.nn.Module):
    """An independent stand-in for a conv layer: the papers' equations step by step with
    copies of the weights (each step convolves its own input), keeping the layer's input
    and every h_t [B, c*H*W] as graph nodes."""

    def __init__(self, layer, cell: str):
        super().__init__()
        self.cell = cell
        self.c_in, self.c, self.h, self.w = layer.grid
        self.p = {n: getattr(layer, f"{n}_l0").detach().clone() for n in layer.names}
        self.inputs, self.states = [], []

    def forward(self, x, state=None, align=None):
        assert align is None and state is None
        self.inputs.append(x)
        B, T, _ = x.shape
        k = self.p["weight_ih"].shape[-1] // 2
        h = x.new_zeros(B, self.c, self.h, self.w)
        c = torch.zeros_like(h)
        hs = []
        for t in range(T):
            xt = x[:, t].reshape(B, self.c_in, self.h, self.w)
            a = F.conv2d(xt, self.p["weight_ih"], padding=k) + F.conv2d(h, self.p["weight_hh"], padding=k) \
                + self.p["bias"][None, :, None, None]
            if self.cell == "conv_lstm":
                ai, af, ag, ao = torch.split(a, self.c, dim=1)
                wc = self.p["peephole"]
                i = 1 / (1 + torch.exp(-(ai + wc[0] * c)))
                f = 1 / (1 + torch.exp(-(af + wc[1] * c)))
                c = f * c + i * torch.tanh(ag)
                o = 1 / (1 + torch.exp(-(ao + wc[2] * c)))
                h = o * torch.tanh(c)
            else:
                u = self.p["weight_hh"]
                ax = F.conv2d(xt, self.p["weight_ih"], padding=k) + self.p["bias"][None, :, None, None]
                r = torch.sigmoid(ax[:, :self.c] + F.conv2d(h, u[:self.c], padding=k))
                z = torch.sigmoid(ax[:, self.c:2 * self.c] + F.conv2d(h, u[self.c:2 * self.c], padding=k))
                n = torch.tanh(ax[:, 2 * self.c:] + F.conv2d(r * h, u[2 * self.c:], padding=k))
                h = (1 - z) * n + z * h
            hs.append(h.reshape(B, -1))  # the recorded node is the one the next step reads
            h = hs[-1].reshape(B, self.c, self.h, self.w)
        self.states.append([hs])
        final = torch.stack([hs[-1]])
        if self.cell == "conv_lstm":
            final = (final, torch.stack([c.reshape(B, -1)]))
        return torch.stack(hs, dim=1), final


@pytest.mark.parametrize("cell, kernel", [("conv_lstm", 5), ("conv_gru", 5), ("conv_lstm", 3), ("conv_gru", 1)])
def test_conv_cells_train_and_their_probe_and_taps_match_a_float64_reference(cell, kernel, monkeypatch):
    from workbench.tasks import video

    to_float = video._to_float
    monkeypatch.setattr(video, "_to_float", lambda frames: to_float(frames).double())  # frames in float64 too
    torch.set_default_dtype(torch.float64)
    stand_in = reference.CellStepped
    monkeypatch.setattr(reference, "CellStepped",
                        lambda rnn, name: ConvStepped(rnn, name) if conv.is_spatial(name) else stand_in(rnn, name))
    try:
        p = _preset(cell, "train.steps=3", "train.probe_every=1", "train.optimizer=sgd", "train.lr=0.5",
                    "model.head.residual=false", f"model.conv_kernel={kernel}", layers=2)
        trainer = Trainer(p, probe_budget=None)
        # the conv input as a fresh leaf, so dL/dx_t reaches the first layer's taps
        compared, losses, probes = reference.run_against_reference(
            trainer, monkeypatch, lambda m, b: m(b.x.clone().requires_grad_()))
        for record in probes:
            assert set(record["hidden_grad_norms"]) == {"layers.0", "layers.1"}
            assert all(got.shape == (5,) and (got > 0).all() for got in record["hidden_grad_norms"].values())
        assert compared == ["probe", "step", "probe", "step", "probe", "step", "probe"]
        assert all(np.isfinite(losses))
        report = parameter_report(p.model, trainer.task.model_io())
        assert report.total == sum(t.numel() for t in trainer.model.parameters())
        assert isinstance(trainer.model.head, ConvHead)
        kernels = {t.shape[-1] for n, t in trainer.model.named_parameters() if t.dim() == 4 and "peephole" not in n}
        assert kernels == {kernel}  # both layers' convolutions and the head's
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("cell", ["conv_lstm", "conv_gru"])
def test_forward_is_the_replica_and_the_look_inside_sees_feature_maps(cell):
    p = _preset(cell)
    task = make_task(p)
    model = build_model(p.model, task.model_io())
    layer = model.encoder.rnns[0]
    assert layer.grid == (1, 3, H, W)
    x = torch.rand(2, 4, H * W)
    gates: list[dict] = []
    out, final, states = unrolled_layer(layer, cell, x, gates=gates)
    torch.testing.assert_close(layer(x)[0], out)  # the ordinary forward (inputs convolved at once) = the step
    assert out.shape == (2, 4, 3 * H * W) and len(states[0]) == 4
    assert set(gates[0]) == set(cells.get(cell).series[1:])
    assert all(g.shape == (2, 4, 3 * H * W) for g in gates[0].values())
    # an untrained residual model copies the last frame here too (the conv head starts at zero)
    frames = torch.rand(2, 4, 1, H, W)
    assert torch.equal(model(frames), frames.flatten(2))


@pytest.mark.parametrize("kernel", [0, 2, 17, 4.0])
def test_a_conv_kernel_that_cannot_keep_the_frame_size_names_the_field(kernel):
    with pytest.raises(SpecError) as info:
        validate(_preset("conv_gru", f"model.conv_kernel={kernel}"))
    assert info.value.field == "model.conv_kernel"


def test_conv_cells_are_refused_where_frames_do_not_go_in():
    with pytest.raises(SpecError) as info:
        validate(with_overrides(_preset("conv_lstm"), ["model.input.kind=frames_linear"]))
    assert info.value.field == "model.layers.0.cell" and "frames_grid" in str(info.value)
    with pytest.raises(SpecError) as info:
        validate(with_overrides(presets.load_builtin("adding_lstm"), ["model.layers.0.cell=conv_gru"]))
    assert info.value.field == "model.layers.0.cell"
    # a state that is not whole feature maps of the frame
    p = with_overrides(_preset("conv_gru"), ["model.layers.0.hidden_size=100"])
    with pytest.raises(SpecError) as info:
        parameter_report(p.model, make_task(p).model_io())
    assert info.value.field == "model.layers.0.hidden_size" and "multiple of 36" in str(info.value)


@pytest.mark.parametrize("cell", ["conv_lstm", "conv_gru"])
def test_onnx_step_graph_matches_pytorch_frame_by_frame(tmp_path, cell):
    """The one-frame step graph in onnxruntime, fed its own states back frame by frame,
    gives the PyTorch model's outputs over a whole clip (to 1e-4 of their scale)."""
    ort = pytest.importorskip("onnxruntime")
    import json

    from workbench.export.onnx import export_model

    p = _preset(cell, "model.head.hidden_size=4", layers=2)
    torch.manual_seed(1)
    model = build_model(p.model, make_task(p).model_io()).eval()
    with torch.no_grad():
        for prm in model.parameters():  # away from the zero-initialised head and zero peepholes
            prm.add_(torch.randn_like(prm) * 0.2)
    export_model(model, tmp_path / "m.onnx", preset=p)
    manifest = json.loads((tmp_path / "m.onnx.json").read_text())
    assert manifest["frame_steps"] and [g["role"] for g in manifest["graphs"]] == ["model"]
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()][1:]
    assert model.extrapolate and names[-1] == "previous_frame"  # the preset's extrapolating head
    x = torch.rand(3, 7, 1, H, W, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x)  # [3, 7, H*W]
    sizes = {n: (2 if n.startswith("state_1") else 3) * H * W for n in names[:-1]}
    states = {n: np.zeros((1, 3, sizes[n]), np.float32) for n in names[:-1]}
    states["previous_frame"] = x[:, 0].numpy()  # the first frame is its own predecessor: no motion
    got = []
    for t in range(7):
        out = sess.run(None, {"x": x[:, t:t + 1].numpy(), **states})
        got.append(out[0])
        states = dict(zip(names, out[1:]))
    got = np.concatenate(got, axis=1)
    scale = float(np.abs(want.numpy()).max())
    assert np.abs(got - want.numpy()).max() <= 1e-4 * scale


def test_conv_cells_outside_a_many_to_many_model_are_refused_by_the_onnx_exporter_by_name():
    from workbench.export.onnx import ExportError, export_model

    p = with_overrides(_preset("conv_lstm"), ["data.task=video_classify", "model.topology=many_to_one",
                                              "model.head.kind=classification", "model.head.residual=false"])
    raw = p.to_dict()
    raw["data"]["options"] = {"width": W, "height": H, "clip_len": 4, "val_clips": 4}
    p = type(p).from_dict(raw)
    model = build_model(p.model, make_task(p).model_io())
    with pytest.raises(ExportError, match=r"model\.layers\.0\.cell: the 'conv_lstm' cell is exported as a one-frame"):
        export_model(model, "/nonexistent/model.onnx")


@pytest.mark.parametrize("name,overrides", [
    ("video_nextframe_convlstm", []),
    ("video_nextframe_convgru", ["data.options.width=32", "data.options.height=24", "data.options.grey=false",
                                 "model.layers.0.hidden_size=6144"]),
    ("video_nextframe_lstm", ["data.options.width=32", "data.options.height=24", "data.options.grey=false"]),
])
def test_the_memory_estimate_is_what_autograd_keeps(name, overrides):
    """spec.memory_estimate's activations against the bytes autograd saves for backward in
    a real forward (parameters excluded), counted with saved_tensors_hooks: within -20%/+60%."""
    from workbench.spec import memory_estimate

    p = with_overrides(presets.load_builtin(name), overrides)
    io = make_task(p).model_io()
    model = build_model(p.model, io)
    B, T = 4, 6
    seen = {q.data_ptr() for q in model.parameters()}
    total = [0]

    def pack(t):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.rand(B, T, *io.frame_shape))
    estimate = memory_estimate(p.model, io, B, T)["activations"]
    assert 0.8 * total[0] <= estimate <= 1.6 * total[0], (estimate, total[0])


@pytest.mark.slow
def test_a_conv_preset_beats_copying_the_last_frame_on_real_footage(shared_data):
    """bench/quality.py --only video in small: ConvGRU on cockatoo.mp4's held-out 20%."""
    p = with_overrides(presets.load_builtin("video_nextframe_convgru"), [
        f"data.path={shared_data / 'video' / 'cockatoo.mp4'}", "data.options.window=8",  # the preset's own budget
        "train.device=cpu", "train.eval_every=0", "train.probe_every=0", "train.checkpoint_every=0"])
    task = make_task(p)
    end = [r for r in Trainer(p, task=task).run() if r["kind"] == "end"][0]
    assert end["metrics"]["mse"] < 0.98 * task.baseline()["copy_last_mse"], end["metrics"]  # bench: 0.73
