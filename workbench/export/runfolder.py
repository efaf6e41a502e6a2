"""Rebuild a trained model from its run folder: preset.json + task.json + model.safetensors.

Nothing in the folder is executed or unpickled: the preset and the task's artifacts are
JSON, the weights safetensors (workbench.engine.checkpoint.load_weights)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.engine.checkpoint import WeightsError, latest_checkpoint, load_weights
from workbench.spec import Preset, SpecError, load


@dataclass
class LoadedRun:
    run_dir: Path
    preset: Preset
    artifacts: dict | None  # task.json (None for an old folder without one)
    task: object  # workbench.tasks.base.Task, restored from the artifacts
    model: object  # workbench.engine.model.RecurrentModel, eval mode, on the CPU
    weights: Path


def weights_path(run_dir: Path) -> Path:
    """model.safetensors, or the latest complete checkpoint's weights (a run that was
    killed before its end has no model.safetensors yet)."""
    final = run_dir / "model.safetensors"
    if final.is_file():
        return final
    stem = latest_checkpoint(run_dir)
    if stem is not None:
        return Path(str(stem) + ".safetensors")
    raise WeightsError(f"{run_dir} holds no weights (neither model.safetensors nor a checkpoint): "
                       f"has the run trained a step?")


def read_artifacts(run_dir: Path) -> dict | None:
    path = run_dir / "task.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError("", f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SpecError("", f"{path} must hold a JSON object")
    return data


def load_run(run_dir: str | Path, with_weights: bool = True) -> LoadedRun:
    """The run's preset, restored task and model with its trained weights (CPU, eval)."""
    from workbench.engine.model import build_model
    from workbench.tasks import make_task

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    if not (run_dir / "preset.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no preset.json)")
    preset = load(run_dir / "preset.json")
    artifacts = read_artifacts(run_dir)
    # Without task.json the task must read its data again to learn its shapes.
    task = make_task(preset, artifacts=artifacts)
    model = build_model(preset.model, task.model_io())
    weights = weights_path(run_dir) if with_weights else run_dir / "model.safetensors"
    if with_weights:
        load_weights(weights, model)
    model.eval()
    return LoadedRun(run_dir=run_dir, preset=preset, artifacts=artifacts, task=task, model=model, weights=weights)


def export_weights(run_dir: str | Path, path: str | Path) -> list[Path]:
    """The run's trained weights as one safetensors file at ``path`` (a copy of
    model.safetensors, or of the latest checkpoint's weights for a run killed before its
    end); its metadata keeps the preset, so the file alone says what it fits."""
    import shutil

    run_dir = Path(run_dir)
    if not (run_dir / "preset.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no preset.json)")
    source = weights_path(run_dir)
    target = Path(path)
    if target.suffix != ".safetensors":
        target = target.with_name(target.name + ".safetensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return [target]
