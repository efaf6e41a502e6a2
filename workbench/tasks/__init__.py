"""The task registry: name -> "module:Class", imported only when a task is used.

Each task family lives in its own module and adds one line here."""
from __future__ import annotations

import importlib

from workbench.spec import Preset, SpecError

TASKS: dict[str, str] = {
    "adding": "workbench.tasks.adding:AddingTask",
    "video_classify": "workbench.tasks.video:VideoClassifyTask",
    "video_next_frame": "workbench.tasks.video:NextFrameTask",
    "forecast": "workbench.tasks.timeseries:ForecastTask",
    "charlm": "workbench.tasks.charlm:CharLMTask",
    "brackets": "workbench.tasks.bracket:BracketTask",
    "tagging": "workbench.tasks.tagging:TaggingTask",
    "transduction": "workbench.tasks.transduction:TransductionTask",
    "dialogue": "workbench.tasks.dialogue:DialogueTask",
    "captioning": "workbench.tasks.captioning:CaptionTask",
    "textclass": "workbench.tasks.textclass:TextClassTask",
    "speech_classify": "workbench.tasks.speech:SpeechClassifyTask",
    "speech_connected": "workbench.tasks.speech:ConnectedSpeechTask",
}

# Tasks whose per-step outputs are read without an alignment to their targets: the short
# note the diagram adds to the topology's name, and the sentence the designer shows.
TOPOLOGY_NOTES: dict[str, tuple[str, str]] = {
    "speech_connected": ("CTC", "Trained with CTC: at every input step the model emits a label or a blank, and "
                                "the loss sums over every alignment of the utterance's label string to its steps, "
                                "so no per-step targets are needed; decoding merges repeats and drops blanks."),
}


def topology_label(topology: str, task: str = "") -> str:
    """"Many-to-many", or "Many-to-many (CTC)" for a task in TOPOLOGY_NOTES."""
    from workbench.spec import TOPOLOGY_LABELS

    label = TOPOLOGY_LABELS.get(topology, topology)
    note = TOPOLOGY_NOTES.get(task)
    return f"{label} ({note[0]})" if note and topology == "many_to_many" else label


def task_class(name: str):
    try:
        target = TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise SpecError("data.task", f"unknown task {name!r} (known tasks: {known})") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def make_task(preset: Preset, artifacts: dict | None = None):
    """The preset's task, with its options validated and the model checked against it.

    With ``artifacts`` (a run's task.json) the task is restored for inference without
    reading its data; otherwise it is prepared (its data read or generated)."""
    task = task_class(preset.data.task)(preset.data.options, preset.data.path, preset.train.seed)
    task.check_model(preset.model)
    if artifacts is not None:
        task.restore(artifacts)
    else:
        task.ensure_prepared()
    return task
