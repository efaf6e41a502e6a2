"""The try-out modes: one description per mode, read by the engine side
(workbench.inference), the CLI (`workbench try`) and the window's Try it panel.

Imports neither torch nor Qt (the panel reads it on the GUI thread); the functions and
views a mode names are looked up by name where they are used:

  answer   a function of workbench.inference, ``answer(session, request) -> (result,
           inside request)``: the mode's one-shot answer as plain data (the CLI prints it
           as JSON) and the request that looks inside the network for the same input.
           ``request`` holds what the CLI was given: "text" | "image" | "video" | "audio"
           (the mode's ``input``), "temperature", "top_k", "length", "seed", "max_frames",
           "beam".
  prepare  a function of workbench.inference, ``prepare(session, request) -> _Prepared``:
           one input as the model reads it, with labels for its steps (the look inside).
  view     a class of workbench.gui.tryout.views, built with the session's describe().
  outputs  what names the model's outputs: "classes", or the task's vocabulary attribute.
  input    what the mode reads: "text", "image", "video" or "audio" (the CLI's --text, --image, --audio or
           --video; the panel's input widgets).
  hint     (task) -> the line the panel shows above the input.
  extras   (task) -> what describe() adds for the view (a video model's clip length...).

Adding a mode: one Mode here (its tasks, title, input, hint), its answer and prepare
functions in workbench.inference and its view in workbench.gui.tryout.views, plus their
tests.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    tasks: tuple[str, ...]  # the tasks (data.task) whose runs this mode tries
    input: str  # "text" | "image" | "video" | "audio"
    answer: str  # function name in workbench.inference
    prepare: str  # function name in workbench.inference: the input for the look inside
    view: str  # class name in workbench.gui.tryout.views
    # what names the model's outputs: the task's "classes" (classes_of), or the task's
    # attribute holding the vocabulary of output tokens ("vocab", "target_vocab")
    outputs: str = "classes"
    hint: Callable[[object], str] = lambda task: ""
    extras: Callable[[object], dict] = field(default=lambda task: {})

    @property
    def flag(self) -> str:
        """The CLI's option for this mode's input."""
        return f"--{self.input}"


def _classify_hint(task) -> str:
    if getattr(task, "name", "") == "brackets":
        return "Type brackets: " + " ".join(task.pairs) + ", e.g. ([]{})"
    return "Type a text: the plot was not good but the acting was great ."


def _transduce_hint(task) -> str:
    kind = getattr(task.options, "kind", "")
    if not task.path and kind == "dates":
        return "Type a date: tuesday, march 5, 2024"
    if not task.path and kind == "numbers":
        return "Type a number in words: three hundred forty-two"
    return "Type a source sentence."


def _video_extras(key: str) -> Callable[[object], dict]:
    return lambda task: {key: int(getattr(task, key)), "frame_shape": list(task.frame_shape)}


_VIDEO_HINT = "Open a video file or a frames folder."

MODES: tuple[Mode, ...] = (
    Mode("generate", "Generate text", tasks=("charlm",), input="text", answer="answer_generate",
         prepare="prepare_generate", view="GenerateView", outputs="vocab",
         hint=lambda task: "Type a prompt; the model continues it."),
    Mode("tag", "Tag a sentence", tasks=("tagging",), input="text", answer="answer_tag",
         prepare="prepare_tag", view="TagView",
         hint=lambda task: "Type a sentence, words separated by spaces: The old man the boat ."),
    Mode("classify", "Classify a sequence", tasks=("textclass", "brackets"), input="text", answer="answer_classify",
         prepare="prepare_classify", view="ClassifyView", hint=_classify_hint),
    Mode("transduce", "Transduce (encoder-decoder)", tasks=("transduction",), input="text",
         answer="answer_transduce", prepare="prepare_transduce", view="TransduceView", outputs="target_vocab",
         hint=_transduce_hint),
    Mode("chat", "Chat", tasks=("dialogue",), input="text", answer="answer_chat", prepare="prepare_transduce",
         view="ChatView", outputs="target_vocab", hint=lambda task: "Type a message: Hello, how are you?",
         extras=lambda task: {"rerank": int(getattr(task.options, "rerank", 0))}),
    Mode("caption", "Caption an image", tasks=("captioning",), input="image", answer="answer_caption",
         prepare="prepare_caption", view="CaptionView", outputs="vocab",
         hint=lambda task: "Generate a new image or open one.",
         extras=lambda task: {"image_size": int(task.size)}),
    Mode("video_classify", "Classify video frames", tasks=("video_classify",), input="video",
         answer="answer_video", prepare="prepare_video", view="VideoView",
         hint=lambda task: _VIDEO_HINT, extras=_video_extras("clip_len")),
    Mode("next_frame", "Predict the next frame", tasks=("video_next_frame",), input="video",
         answer="answer_video", prepare="prepare_video", view="VideoView",
         hint=lambda task: _VIDEO_HINT, extras=_video_extras("window")),
    Mode("forecast", "Forecast a series", tasks=("forecast",), input="text", answer="answer_numbers",
         prepare="prepare_forecast", view="NumbersView",
         hint=lambda task: (f"Type the last values (at least one; the model reads {task.options.window}), "
                            f"separated by commas; rows by ';' for {len(task.columns)} columns. "
                            "Empty: the end of the training series.")),
    Mode("adding", "Add marked numbers", tasks=("adding",), input="text", answer="answer_numbers",
         prepare="prepare_adding", view="NumbersView",
         hint=lambda task: "Type numbers in [0, 1]; mark the two to add with *: 0.2 0.7* 0.1 0.4* 0.9"),
    Mode("speech", "Listen to audio", tasks=("speech_classify", "speech_connected"), input="audio",
         answer="answer_audio", prepare="prepare_audio", view="AudioView",
         hint=lambda task: "Open an audio file (WAV, FLAC, MP3, OGG) or drop one here.",
         extras=lambda task: {"sample_rate": int(task.mel.sample_rate),
                              "hop_s": task.mel.hop / task.mel.sample_rate}),
)

BY_NAME: dict[str, Mode] = {m.name: m for m in MODES}


def get(name: str) -> Mode:
    return BY_NAME[name]


def for_task(task: str) -> Mode | None:
    """The mode that tries runs of this task, or None."""
    return next((m for m in MODES if task in m.tasks), None)


def of_input(kind: str) -> tuple[str, ...]:
    """The names of the modes that read this input ("text", "image", "video", "audio")."""
    return tuple(m.name for m in MODES if m.input == kind)
