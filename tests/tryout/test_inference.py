"""workbench.inference: every mode on a model trained for a few steps, the look inside
(hidden states and gates against the real layers, saliency against causality and
autograd), and the lazy video decoding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA
from workbench import inference
from workbench.inference import InputError

# ----------------------------------------------------------------------------- modes


def test_modes_follow_the_task(sessions):
    modes = {name: s.mode for name, s in sessions.items()}
    assert modes == {"charlm": "generate", "tagger": "tag", "textclass": "classify", "brackets": "classify",
                     "dates": "transduce", "captions": "caption", "vclass": "video_classify",
                     "vnext": "next_frame", "adding": "adding", "forecast": "forecast"}
    info = sessions["tagger"].describe()
    assert info["input"] == "text" and info["layers"][0]["bidirectional"]
    assert info["layers"][0]["series"] == ["hidden", "cell_state", "input", "forget", "cell", "output"]
    assert sessions["dates"].describe()["attention"] is True
    assert sessions["vclass"].describe()["input"] == "video"


def test_generate_honours_length_seed_and_stop(sessions):
    s = sessions["charlm"]
    out = inference.generate_text(s, "the quick", length=37, temperature=0.9, top_k=5, seed=3)
    assert len(out["tokens"]) == 37 and len(out["probabilities"]) == 37
    assert out == inference.generate_text(s, "the quick", length=37, temperature=0.9, top_k=5, seed=3)
    assert all(0.0 <= p <= 1.0 for p in out["probabilities"])
    # top-k = 1 is greedy whatever the temperature
    assert (inference.generate_text(s, "the", length=12, temperature=5.0, top_k=1, seed=1)["tokens"]
            == inference.generate_text(s, "the", length=12, temperature=0.0, seed=2)["tokens"])
    calls = []
    steps = list(inference.generate(s, "", length=1000, seed=0, stop=lambda: len(calls.append(1) or calls) > 5))
    assert len(steps) == 5
    with pytest.raises(InputError):
        next(inference.generate(s, "x", length=0))


def test_generated_tokens_carry_the_state_like_one_pass(sessions):
    """Token by token with the carried state must equal the model reading the whole text."""
    s = sessions["charlm"]
    steps = list(inference.generate(s, "the lazy", length=8, temperature=0.0))
    ids = s.task.encode_text("the lazy")[0].tolist() + [st["id"] for st in steps]
    with torch.no_grad():
        logits = s.model(torch.tensor([ids[:-1]]))[0]  # [T, V]
    greedy = logits.argmax(-1).tolist()[len(ids) - 1 - 8:]
    assert greedy == [st["id"] for st in steps]


def test_tag_gives_one_tag_per_word(sessions):
    out = inference.tag(sessions["tagger"], "The dog saw the saw .")
    assert out["words"] == ["The", "dog", "saw", "the", "saw", "."]
    assert len(out["tags"]) == len(out["confidences"]) == 6
    assert out["probabilities"].shape == (6, len(out["tag_names"]))
    assert np.allclose(out["probabilities"].max(-1), out["confidences"])
    assert set(out["tags"]) <= set(out["tag_names"])
    with pytest.raises(InputError):
        inference.tag(sessions["tagger"], "   ")


def test_classify_probabilities_and_prefix_answers(sessions):
    out = inference.classify(sessions["textclass"], "the film was not good")
    assert out["classes"] == ["negative", "positive"]
    assert abs(sum(out["probabilities"]) - 1) < 1e-5
    assert out["tokens"] == ["the", "film", "was", "not", "good"]
    # the answer after the last token is the classifier's answer
    assert out["over_time"].shape == (5, 2)
    assert np.allclose(out["over_time"][-1], out["probabilities"], atol=1e-5)
    b = inference.classify(sessions["brackets"], "([])")
    assert b["truth"] == "well nested" and len(b["probabilities"]) == 2
    with pytest.raises(InputError, match="brackets"):
        inference.classify(sessions["brackets"], "(x)")


def test_transduce_greedy_sampled_attention(sessions):
    out = inference.transduce(sessions["dates"], "march 5, 2024", temperature=1.0, seed=0, max_len=7)
    greedy = out["greedy"]
    assert 1 <= len(greedy["ids"]) <= 7
    assert greedy["ids"][-1] == 2 or len(greedy["ids"]) == 7  # stops at <eos> or at the length
    att = out["attention"]
    assert att.shape == (len(greedy["ids"]), len("march 5, 2024"))
    assert np.allclose(att.sum(-1), 1.0, atol=1e-5)
    assert out["source_tokens"] == list("march 5, 2024")
    assert isinstance(out["sampled"]["text"], str)


def test_caption_new_and_given_image(sessions, tmp_path):
    s = sessions["captions"]
    out = inference.caption(s, seed=5, max_len=9)
    assert out["image"].shape == (12, 12, 3) and out["image"].dtype == np.uint8
    assert len(out["truth"].split()) in (5, 6)
    assert 1 <= len(out["greedy"]["ids"]) <= 9
    again = inference.caption(s, image=out["image"], max_len=9)
    assert again["greedy"]["ids"] == inference.caption(s, image=out["image"], max_len=9)["greedy"]["ids"]
    from PySide6.QtGui import QImage  # an image file of another size is resized

    img = QImage(40, 30, QImage.Format.Format_RGB888)
    img.fill(0x3366CC)
    path = tmp_path / "blue.png"
    img.save(str(path))
    from_file = inference.caption(s, path=path, max_len=4)
    assert from_file["image"].shape == (12, 12, 3) and from_file["truth"] is None
    assert abs(int(from_file["image"][5, 5, 2]) - 0xCC) <= 2


def test_adding_numbers(sessions):
    out = inference.numbers(sessions["adding"], "0.2 0.7* 0.1 0.4* 0.9")
    assert out["target"] == pytest.approx(1.1)
    assert out["marked"] == [False, True, False, True, False]
    assert isinstance(out["prediction"], float)
    with pytest.raises(InputError, match="exactly two"):
        inference.numbers(sessions["adding"], "0.2 0.7* 0.1")
    with pytest.raises(InputError, match="not a number"):
        inference.numbers(sessions["adding"], "0.2* x 0.1*")


def test_forecast_numbers(sessions):
    s = sessions["forecast"]
    tail = inference.numbers(s, "")  # the end of the training series, kept in task.json
    assert len(tail["history"]) == 12 and np.asarray(tail["forecast"]).shape == (1, 1)
    typed = inference.numbers(s, "10, 11.5, 12, 11; 10.5")
    assert typed["history"] == [[10.0], [11.5], [12.0], [11.0], [10.5]]
    assert np.allclose(typed["forecast"], s.task.forecast(s.model, [10, 11.5, 12, 11, 10.5]))
    inside = inference.inside(s, {"text": "10, 11.5, 12, 11; 10.5"}, target={"step": 2})
    assert inside["in_steps"] == ["10", "11.5", "12", "11", "10.5"]
    values = np.asarray(inside["saliency"]["values"])
    assert values.shape == (5,) and np.all(values[3:] == 0) and values[2] > 0  # one step ahead, causal


def test_wrong_mode_is_refused(sessions):
    with pytest.raises(InputError, match="does not do that"):
        inference.tag(sessions["charlm"], "hello")
    with pytest.raises(InputError):
        inference.video_outputs(sessions["tagger"], "x.mp4")


# ----------------------------------------------------------------------------- inside


def _real_layer_outputs(session, request):
    """What each recurrent module really returns in the model's forward pass."""
    p = inference._prepare(session, request)
    seen = {}
    def keep(name):
        def hook(module, args, output):
            seen[name] = output[0].detach()  # returns None: the output stays as it is
        return hook

    hooks = [rnn.register_forward_hook(keep(name)) for name, _l, rnn in session.model.recurrent_layers()]
    with torch.no_grad():
        inference._forward(session.model, p, session.device)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name,request_", [
    ("tagger", {"text": "The dog saw the saw ."}),  # bidirectional LSTM
    ("charlm", {"text": "the quick brown"}),  # GRU
    ("captions", {"image": None, "output_ids": [4, 8, 5, 2]}),  # LSTM whose state the image sets
    ("dates", {"text": "5 march 2024", "output_ids": [5, 6, 7, 2]}),  # GRU encoder, bridged GRU decoder
    ("textclass", {"text": "the film was not good"}),  # tanh RNN
    ("vnext", {"video": "cockatoo.mp4", "start": 3, "count": 5}),  # LSTM over encoded frames
])
def test_inside_hidden_states_are_the_layers_own(sessions, name, request_):
    s = sessions[name]
    if "video" in request_:
        if not SHARED_DATA.is_dir():
            pytest.skip(f"shared data folder {SHARED_DATA} is not present")
        request_ = {**request_, "video": str(SHARED_DATA / "video" / request_["video"])}
    if name == "captions":
        request_ = {**request_, "image": inference.caption(s, seed=1)["image"]}
    out = inference.inside(s, request_, saliency=False)
    real = _real_layer_outputs(s, request_)
    assert [l["name"] for l in out["layers"]] == list(real)
    for layer in out["layers"]:
        hidden = layer["series"]["hidden"]  # [D*H, T]
        want = real[layer["name"]][0].T.numpy()
        assert hidden.shape == want.shape
        assert np.allclose(hidden, want, atol=1e-5), layer["name"]
        steps = out["in_steps"] if layer["axis"] == "in" else out["out_steps"]
        assert hidden.shape[1] == len(steps)


def test_lstm_gates_obey_the_cell_equations(sessions):
    out = inference.inside(sessions["tagger"], {"text": "They saw the light ."}, saliency=False)
    s = out["layers"][0]["series"]
    H = 8
    i, f, g, o, c, h = (s[k][:H] for k in ("input", "forget", "cell", "output", "cell_state", "hidden"))  # forward
    assert ((0 <= i) & (i <= 1)).all() and ((0 <= f) & (f <= 1)).all() and ((-1 <= g) & (g <= 1)).all()
    c_prev = np.concatenate([np.zeros((H, 1)), c[:, :-1]], axis=1)
    assert np.allclose(c, f * c_prev + i * g, atol=1e-5)
    assert np.allclose(h, o * np.tanh(c), atol=1e-5)


def test_gru_gates(sessions):
    out = inference.inside(sessions["charlm"], {"text": "abc"}, saliency=False)
    s = out["layers"][0]["series"]
    assert set(s) == {"hidden", "reset", "update", "new"}
    z, n, h = s["update"], s["new"], s["hidden"]
    h_prev = np.concatenate([np.zeros((h.shape[0], 1)), h[:, :-1]], axis=1)
    assert np.allclose(h, (1 - z) * n + z * h_prev, atol=1e-5)


def test_saliency_respects_causality(sessions):
    """A left-to-right model's output at step t cannot depend on later inputs; a
    bidirectional tagger's can."""
    lm = inference.inside(sessions["charlm"], {"text": "the quick brown"}, target={"step": 5})["saliency"]
    values = np.asarray(lm["values"])
    assert values.shape == (15,) and lm["target_step"] == 5
    assert np.all(values[6:] == 0) and values[5] > 0
    tagger = inference.inside(sessions["tagger"], {"text": "The dog saw the saw ."}, target={"step": 1})["saliency"]
    assert np.asarray(tagger["values"])[2:].max() > 0


def test_saliency_matches_autograd(sessions):
    s = sessions["textclass"]
    out = inference.inside(s, {"text": "the acting was great"}, target={"class": 1})["saliency"]
    batch = s.task.encode_text("the acting was great")
    emb = s.model.input_side(batch.x).detach().requires_grad_(True)
    h = s.model.input_side.register_forward_hook(lambda m, a, o: emb)  # feed the leaf through the model
    try:
        logp = torch.log_softmax(s.model(batch.x, lengths=batch.lengths), -1)[0, 1]
    finally:
        h.remove()
    (grad,) = torch.autograd.grad(logp, emb)
    assert np.allclose(out["values"], grad[0].norm(dim=-1).numpy(), rtol=1e-4, atol=1e-7)
    assert out["target_class"] == "positive"


def test_saliency_over_decoder_and_generator_steps(sessions):
    dates = inference.inside(sessions["dates"], {"text": "5 march 2024", "output_ids": [5, 6, 7, 2]},
                             target={"step": 2})
    assert len(dates["out_steps"]) == 4 and dates["out_produced"][2] == sessions["dates"].task.target_vocab.tokens[7]
    assert dates["saliency"]["axis"] == "in" and len(dates["saliency"]["values"]) == len("5 march 2024")
    cap = sessions["captions"]
    image = inference.caption(cap, seed=2)["image"]
    out = inference.inside(cap, {"image": image, "output_ids": [4, 8, 5, 9, 2]}, target={"step": 2})
    values = np.asarray(out["saliency"]["values"])
    assert out["saliency"]["axis"] == "out" and values.shape == (5,)
    assert np.all(values[3:] == 0)  # output 2 reads <bos>, w0, w1 only


# ----------------------------------------------------------------------------- video


def test_video_classifier_one_probability_vector_per_frame(sessions, shared_data):
    s = sessions["vclass"]
    path = shared_data / "video" / "realshort.mp4"
    out = inference.video_outputs(s, path)
    T = out["frames"]
    assert T == 36
    assert out["probabilities"].shape == (T, 4)
    assert np.allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)
    L = out["clip_len"]
    assert [c["start"] for c in out["clips"]] == list(range(0, T, L))
    # each clip is read from a fresh state: frame 6 is the first of clip 2
    first = s.task.frame_probabilities(s.model, inference._model_frames(s, path, L, 1))[0]
    assert np.allclose(out["probabilities"][L], first.numpy(), atol=1e-5)
    inside = inference.inside(s, {"video": str(path), "start": L, "count": L})
    assert inside["in_steps"][0] == f"frame {L}" and len(inside["saliency"]["values"]) == L


def test_next_frame_on_a_real_clip(sessions, shared_data):
    s = sessions["vnext"]
    out = inference.video_outputs(s, shared_data / "video" / "cockatoo.mp4", max_frames=40)
    assert out["frames"] == 40
    assert out["predicted"].shape == (39, 1, 8, 8) == out["real"].shape
    assert out["mse"].shape == (39,)
    assert np.allclose(out["mse"], ((out["predicted"] - out["real"]) ** 2).reshape(39, -1).mean(-1), atol=1e-6)


def test_next_frame_rollout_beside_the_real_clip(sessions, shared_data):
    s = sessions["vnext"]
    path = shared_data / "video" / "cockatoo.mp4"
    out = inference.video_rollout(s, path, start=20, steps=10)
    assert out["predicted"].shape == out["real"].shape == (10, 1, 8, 8)
    assert out["mse"].shape == out["copy_last_mse"].shape == out["ssim"].shape == (10,)
    frames = inference._model_frames(s, path, 0, 31)
    assert np.allclose(out["real"], frames[21:31].numpy())
    copy = ((frames[20:21] - frames[21:31]) ** 2).reshape(10, -1).mean(-1).numpy()
    assert np.allclose(out["copy_last_mse"], copy, atol=1e-7)
    # horizon 1 is the one-step prediction of the same window (the training window's frames up to 20)
    W = s.task.window
    one, _ = s.task.predict_next_frames(s.model, frames[20 - W + 1:22])
    assert np.allclose(out["predicted"][0], one[-1].numpy(), atol=1e-6)
    # near the end of the video the rollout stops with it
    assert inference.video_rollout(s, path, start=276, steps=10)["mse"].shape == (3,)
    with pytest.raises(inference.InputError):
        inference.video_rollout(s, path, start=279)
    answer, _ = inference.answer(s, {"video": str(path), "max_frames": 40})
    assert len(answer["rollout"]["mse"]) == 10 and answer["rollout"]["start"] == W - 1


def test_video_frames_decode_on_demand(sessions, shared_data):
    from workbench.io.video import FrameSettings, iter_frames

    path = shared_data / "video" / "newtonscradle.gif"
    video = inference.open_video(sessions["vclass"], path, max_side=64)
    assert len(video) == 36 and max(video.width, video.height) <= 64
    f10 = video.frame(10)
    assert video.decoded == 1  # frames before it are skipped by the decoder, never converted or kept
    want = list(iter_frames(path, FrameSettings(width=video.width, height=video.height, start=10, max_frames=1)))[0]
    assert np.array_equal(f10, want.transpose(1, 2, 0))
    f13 = video.frame(13)
    assert video.decoded == 4  # the same decoder walks on: 11, 12, 13
    assert np.array_equal(video.frame(12), list(iter_frames(
        path, FrameSettings(width=video.width, height=video.height, start=12, max_frames=1)))[0].transpose(1, 2, 0))
    assert video.decoded == 4  # 12 was kept on the way
    video.frame(3)  # back: decoding restarts there
    assert video.decoded == 5
    assert not np.array_equal(f10, f13)
    with pytest.raises(InputError):
        video.frame(36)
