"""The copy model's extended vocabulary (See et al. 2017): a message word the vocabulary
lacks gets a per-message id beyond it, the encoder reads it as <unk>, the copy writes it, and
the text shows the word itself: in the training targets, greedy and beam decoding, and the
chat (whole and streamed)."""
from __future__ import annotations

import math

import torch

from workbench import inference, presets
from workbench.engine.model import build_model
from workbench.spec import with_overrides
from workbench.tasks import make_task

PAIRS = "hello\thi there\nwhat is your name\tmy name is bot\nhow are you\ti am fine\nbye\tsee you\n"


def _setup(tmp_path, copy: bool = True):
    path = tmp_path / "talk.tsv"
    path.write_text(PAIRS, encoding="utf-8")
    preset = with_overrides(presets.load_builtin("chatbot_encdec"), [
        f"data.path={path}", "data.options.val_fraction=0.25", "data.options.min_freq=1",
        f"model.copy={str(copy).lower()}",
        "model.input.embedding_dim=8", "model.layers.0.hidden_size=8", "model.decoder_layers.0.hidden_size=8"])
    task = make_task(preset)
    torch.manual_seed(0)
    return preset, task, build_model(preset.model, task.model_io()).eval()


def test_unknown_message_words_get_ids_beyond_the_vocabularies(tmp_path):
    _, task, _ = _setup(tmp_path)
    Vs, Vt = len(task.source_vocab), len(task.target_vocab)
    x = task.encode_source("hello zebra and zebra yak").x[0].tolist()
    assert x[0] == task.source_vocab.id("hello") and x[1:] == [Vs, Vs + 1, Vs, Vs + 2]
    [(source, target)] = task._encode_pairs([("zebra says hi", "hi zebra , yak")])
    assert source == [Vs, Vs + 1, task.source_vocab.id("hi")]
    # a reply word copied from the message: Vt + j; one the message lacks: <unk>
    assert target == [task.target_vocab.id("hi"), Vt, task.target_vocab.unk_id, task.target_vocab.unk_id]
    assert task.decode_target([task.target_vocab.id("hi"), Vt + 1, 2, Vt], "zebra says hi") == "hi says"
    _, plain, _ = _setup(tmp_path, copy=False)  # a model without copy reads plain ids (<unk>)
    assert plain.encode_source("hello zebra").x[0].tolist() == [plain.source_vocab.id("hello"), plain.source_vocab.unk_id]


def test_the_training_loss_covers_copied_unknown_words(tmp_path):
    _, task, model = _setup(tmp_path)
    batch = task._batch(task._encode_pairs([("zebra says hi", "hi zebra"), ("hello", "hi there")]))
    model.train()
    out = model(batch.x, batch.y_in, batch.lengths)  # [B, T, Vt + S]
    Vt = len(task.target_vocab)
    assert out.shape[-1] == Vt + batch.x.shape[1] and int(batch.y.max()) == Vt
    assert torch.allclose(out.exp().sum(-1), torch.ones(out.shape[:2]), atol=1e-5)
    loss = task.loss(out, batch)
    assert math.isfinite(float(loss.detach()))
    loss.backward()
    assert model.copy_gate.weight.grad is not None


def test_greedy_beam_and_chat_write_an_unknown_word_back(tmp_path):
    preset, task, model = _setup(tmp_path)
    with torch.no_grad():  # p_gen = 0: the output is the attention mass, all on the one source word
        model.copy_gate.weight.zero_()
        model.copy_gate.bias.fill_(-200.0)
    batch = task.encode_source("zebra")
    Vt = len(task.target_vocab)
    tokens, _ = model.generate(batch.x, 3, batch.lengths)
    assert tokens[0, 0] == Vt and task.decode_target(tokens[0].tolist(), "zebra").startswith("zebra")
    beam, _ = model.beam_search(batch.x, 3, 3, batch.lengths)
    assert beam[0, 0] == Vt
    session = inference.session_from_model(preset, task, model)
    for reply in (inference.chat(session, "zebra", max_len=3, rerank=0),
                  inference.chat(session, "zebra", beam=3, max_len=3, rerank=0)):
        assert reply["reply_tokens"][0] == "zebra" and reply["reply"].startswith("zebra")
    streamed = list(inference.chat_stream(session, "zebra", max_len=3))
    assert streamed[0]["token"] == "zebra" and streamed[0]["id"] == Vt
    # Try it's look inside the chat: the reply's copied word by name, its saliency on the message
    inside = inference.inside(session, {"text": "zebra", "output_ids": [Vt, Vt, 2]}, target={"step": 1})
    assert inside["out_steps"][1] == "zebra" and len(inside["saliency"]["values"]) == 1
