"""The window's chat mode: a transcript of user and model turns, the reply streamed in
as it is decoded, beam search, minimum Bayes risk and retrieve-then-rerank on demand, and the attention over the user's words."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.tryout.test_panel import open_run, panel, wait_for  # noqa: E402,F401  (the panel fixture)

TALK = """conversations:
- - Hello
  - Hi, how are you?
  - Fine, thanks.
- - What is your name?
  - I am a chatbot.
- - Good morning
  - Good morning to you.
"""


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    from workbench.cli import main

    root = tmp_path_factory.mktemp("chat")
    (root / "talk.yml").write_text(TALK, encoding="utf-8")
    args = ["train", "chatbot_encdec", "--steps", "3", "--run-dir", str(root / "run"), "--quiet"]
    for s in ["train.eval_every=1000", "train.eval_batches=1", "train.probe_every=0", "train.checkpoint_every=0",
              "train.batch_size=4", "model.layers.0.hidden_size=8", "model.decoder_layers.0.hidden_size=8",
              "model.input.embedding_dim=8", "data.options.val_fraction=0.3", f"data.path={root / 'talk.yml'}"]:
        args += ["--set", s]
    assert main(args) == 0
    return root / "run"


def test_chat_transcript_streamed_reply_beam_and_attention(qtbot, panel, chat_run):  # noqa: F811
    view = open_run(qtbot, panel, chat_run)
    assert panel.mode == "chat" and not view.attention_box.isHidden()
    assert view.rerank.value() == 1  # the preset's data.options.rerank
    view.rerank.setValue(0)  # off: greedy, streamed
    streamed: list = []
    panel.client.tokens.connect(lambda _job, tokens: streamed.extend(tokens))
    view.input.setText("Hello there")
    wait_for(qtbot, panel, view.send, "chat_stream", "inside")
    reply = view.last_result
    assert view.turns == [("user", "Hello there"), ("model", reply["reply"])]
    assert "".join(t["text"] for t in streamed) == reply["reply"]  # what streamed is the reply
    assert reply["source_tokens"] == ["hello", "there"]
    assert reply["ids"]  # an untrained model rambles on rather than stopping at once
    assert view.attention.data.shape == (len(reply["ids"]), 2)
    assert np.allclose(view.attention.data.sum(axis=1), 1.0, atol=1e-5)
    transcript = view.transcript.toPlainText()
    assert "You: Hello there" in transcript and f"Model: {reply['reply']}" in transcript

    view.beam.setValue(3)
    view.input.setText("What is your name?")
    wait_for(qtbot, panel, view.send, "chat")
    assert view.last_result["decoding"] == "beam 3"
    assert [who for who, _ in view.turns] == ["user", "model", "user", "model"]
    view.mbr.setValue(4)  # minimum Bayes risk over 4 samples, shown whole
    view.input.setText("Good morning")
    wait_for(qtbot, panel, view.send, "chat")
    assert view.last_result["decoding"] == "MBR over 4 samples" and len(view.turns) == 6
    view.mbr.setValue(0)
    view.rerank.setValue(2)  # retrieve-then-rerank: the transcript says whether it was written or retrieved
    view.input.setText("Hello")
    wait_for(qtbot, panel, view.send, "chat")
    decoding = view.last_result["decoding"]
    assert decoding.startswith("reranked: ") and f"({decoding})" in view.transcript.toPlainText()
    view.clear()
    assert view.turns == [] and view.transcript.toPlainText() == ""
