"""`workbench export RUN_DIR --script DIR`: a standalone, readable PyTorch training script.

DIR receives:
  train.py           the script (no import of workbench): model, data pipeline, training
                     loop with DistributedDataParallel; runs on one CPU, one GPU, or under
                     `torchrun --nproc_per_node N` (NCCL on GPUs, gloo on CPUs)
  preset.json        the run's resolved preset (its data.path made absolute when the file
                     exists here, so the script finds it from any folder)
  task.json          the run's task artifacts (vocabulary, ...), so ids stay the same
  requirements.txt   what the script needs (torch, safetensors, numpy for time series)

The script is put together from templates in workbench/export/templates/: the common
part (model, training loop) and the data pipeline of the run's task. A task whose data
pipeline the script does not carry is refused here, by name, with the list of those
it does. Only the model features those tasks use are in the script (many_to_one and
many_to_many; the 'embedding' and 'linear' inputs); anything else is refused too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workbench import cells
from workbench.errors import UserError
from workbench.fileio import atomic_write_text
from workbench.spec import Preset

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAIN_TEMPLATE = "train_standalone.py.txt"
BASE_REQUIREMENTS = ["torch>=2.3", "safetensors>=0.4"]


class ScriptExportError(UserError, ValueError):
    """The run cannot be exported as a standalone script; the message says why."""


@dataclass(frozen=True)
class Pipeline:
    template: str
    what: str  # for messages
    # The data.options the script's pipeline implements. A task may grow options later:
    # one the script does not know is accepted only at its default (what the script does).
    options: tuple[str, ...] = ()
    imports: str = ""
    requirements: tuple[str, ...] = ()


PIPELINES: dict[str, Pipeline] = {
    "adding": Pipeline("data_adding.py.txt", "the adding problem (generated)", options=("seq_len", "val_size")),
    "charlm": Pipeline("data_charlm.py.txt", "character- or word-level language model on a UTF-8 text file",
                       options=("level", "seq_len", "val_fraction", "val_path", "eval_context", "lowercase",
                                "min_freq", "max_vocab"),  # the last two only shape task.json's vocabulary
                       imports="import re\n"),
    "forecast": Pipeline("data_forecast.py.txt", "time-series forecasting from a CSV file (or the generated series)",
                         options=("time_column", "value_columns", "gaps", "window", "horizon", "val_fraction",
                                  "season", "normalise", "relative", "length", "period", "noise"),
                         imports="import csv\nimport io\n\nimport numpy as np\n", requirements=("numpy>=1.24",)),
}
TOPOLOGIES = ("many_to_one", "many_to_many")
INPUT_KINDS = ("embedding", "linear")


def supported_tasks_text() -> str:
    return "; ".join(f"{name} ({p.what})" for name, p in PIPELINES.items())


def check_supported(preset: Preset) -> Pipeline:
    """The data pipeline for the preset's task, or ScriptExportError saying why not."""
    task = preset.data.task
    pipeline = PIPELINES.get(task)
    if pipeline is None:
        raise ScriptExportError(f"the standalone script does not carry a data pipeline for task {task!r}; "
                                f"it supports: {supported_tasks_text()}")
    model = preset.model
    for i, layer in enumerate(model.layers):
        if cells.get(layer.cell).script is None:
            raise ScriptExportError(f"the standalone script has no layer for the {layer.cell!r} cell "
                                    f"(model.layers.{i}.cell); it carries: {', '.join(_script_cells())}")
    if model.topology not in TOPOLOGIES:
        raise ScriptExportError(f"the standalone script builds {' and '.join(TOPOLOGIES)} models, "
                                f"not {model.topology} (model.topology)")
    if model.input.kind not in INPUT_KINDS:
        raise ScriptExportError(f"the standalone script's input side is {' or '.join(INPUT_KINDS)}, "
                                f"not {model.input.kind!r} (model.input.kind)")
    options = _full_options(preset)
    for name, value in options.items():
        if name not in pipeline.options and value != _option_default(preset.data.task, name):
            raise ScriptExportError(f"the standalone script's {task} pipeline does not implement "
                                    f"data.options.{name} = {value!r} (it knows: {', '.join(pipeline.options)})")
    if task == "forecast" and options.get("gaps", "error") == "fill":
        raise ScriptExportError("the standalone script reads a CSV series as it is and does not fill gaps "
                                "(data.options.gaps = 'fill'): export a run with gaps 'error' or 'ignore', "
                                "or a file without gaps")
    return pipeline


def _full_options(preset: Preset) -> dict:
    """data.options with the task's defaults filled in (validated by the task)."""
    import dataclasses

    from workbench.tasks import task_class

    parsed = task_class(preset.data.task)(preset.data.options, preset.data.path, preset.train.seed).options
    return dataclasses.asdict(parsed) if dataclasses.is_dataclass(parsed) else dict(preset.data.options or {})


def _option_default(task: str, name: str):
    import dataclasses

    from workbench.tasks import task_class

    for f in dataclasses.fields(task_class(task).Options):
        if f.name == name:
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return None


def _script_cells() -> list[str]:
    return [name for name in cells.names() if cells.get(name).script is not None]


def _cell_tables() -> str:
    """The script's tables of every cell it carries (workbench.cells: Cell.script)."""
    described = [cells.get(name) for name in _script_cells()]
    classes = ", ".join(f"{c.name!r}: {c.script.module}" for c in described).replace("'", '"')
    options = ", ".join(f"{c.name!r}: {dict(c.script.kwargs)!r}" for c in described if c.script.kwargs)
    gates = ", ".join(f"{c.name!r}: {c.gates}" for c in described)
    forget = ", ".join(f"{c.name!r}: {c.forget_gate}" for c in described if c.forget_gate is not None)
    return (f"RNN_CLASSES = {{{classes}}}\n"
            f"RNN_OPTIONS = {{{options}}}\n".replace("'", '"')
            + f"GATES = {{{gates}}}  # blocks in W_ih / W_hh\n".replace("'", '"')
            + f"FORGET_GATE = {{{forget}}}  # the gate block whose bias init.forget_bias sets\n".replace("'", '"'))


def allocator_source() -> str:
    """The allocator policy's code, as workbench/engine/cpu_policy.py has it (one copy)."""
    from workbench.engine import cpu_policy

    text = Path(cpu_policy.__file__).read_text(encoding="utf-8")
    begin, end = "# ---- allocator: begin", "# ---- allocator: end"
    body = text[text.index(begin):text.index(end)]
    return body[body.index("\n") + 1:].rstrip()


def _module_body(path: Path) -> str:
    """A module's text after its docstring and imports (what a template embeds of it)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# ----"))
    return "\n".join(lines[start:]).rstrip() + "\n"


def _cell_sources() -> str:
    """The classes the script's cells need beyond torch.nn (Cell.script.source), each once."""
    import inspect

    described = [cells.get(name) for name in _script_cells()]
    out = []
    for template in dict.fromkeys(c.script.source for c in described if c.script.source):
        text = (TEMPLATES / template).read_text(encoding="utf-8")
        if "@@SCAN_MATH@@" in text:
            scan = Path(__file__).resolve().parents[1] / "engine" / "scan.py"
            text = text.replace("@@SCAN_MATH@@", _module_body(scan))
        if "@@SCAN_PARAMS@@" in text:  # each cell's parameter shapes, from its own module
            users = [c for c in described if c.script.source == template]
            defs = [inspect.getsource(c.params).replace("def _params(", f"def _params_{c.name}(", 1) for c in users]
            table = ", ".join(f'"{c.name}": _params_{c.name}' for c in users)
            text = text.replace("@@SCAN_PARAMS@@", "\n\n".join(defs) + f"\n\nSCAN_PARAMS = {{{table}}}\n")
        out.append(text.rstrip() + "\n")
    return "\n\n".join(out)


def render(preset: Preset) -> tuple[str, list[str]]:
    """The script's text and its requirements, for a supported preset."""
    pipeline = check_supported(preset)
    text = (TEMPLATES / MAIN_TEMPLATE).read_text(encoding="utf-8")
    data = (TEMPLATES / pipeline.template).read_text(encoding="utf-8").rstrip() + "\n"
    title = f"Train {preset.name!r}: {preset.description}" if preset.description else f"Train {preset.name!r}."
    replacements = {"@@TITLE@@": title.replace('"""', "'''"), "@@TASK@@": preset.data.task,
                    "@@IMPORTS@@": pipeline.imports, "@@DATA@@": data,
                    "@@CELLS@@": _cell_sources() + "\n\n" + _cell_tables(), "@@ALLOCATOR@@": allocator_source()}
    for marker, value in replacements.items():
        text = text.replace(marker, value)
    return text, BASE_REQUIREMENTS + list(pipeline.requirements)


def _portable_preset(preset: Preset) -> Preset:
    """Every data option spelled out (the task's defaults filled in, so the script never
    relies on defaults of its own), and data.path made absolute when it names an existing
    file here."""
    out = preset.copy()
    out.data.options = _full_options(preset)
    if out.data.path:
        try:
            from workbench.io.paths import resolve_data_path

            found = resolve_data_path(out.data.path)
        except ImportError:
            found = Path(out.data.path).expanduser()
        if found.exists():
            out.data.path = str(found.resolve())
    return out


def export_script(preset: Preset, artifacts: dict | None, out_dir: str | Path) -> list[Path]:
    """Write the script, preset, task artifacts and requirements into ``out_dir``."""
    script, requirements = render(preset)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ScriptExportError(f"{out_dir} is a file; the script export needs a folder")
    files = {
        "train.py": script,
        "preset.json": _portable_preset(preset).to_json(),
        "task.json": json.dumps(artifacts or {}) + "\n",
        "requirements.txt": "\n".join(requirements) + "\n",
    }
    written = []
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written


def export_run(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """`workbench export RUN_DIR --script DIR`."""
    from workbench.export.runfolder import read_artifacts
    from workbench.spec import load

    run_dir = Path(run_dir)
    if not (run_dir / "preset.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no preset.json)")
    preset = load(run_dir / "preset.json")
    check_supported(preset)  # before reading anything else
    return export_script(preset, read_artifacts(run_dir), out_dir)
