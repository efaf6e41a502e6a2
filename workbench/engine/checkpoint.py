"""Weights and checkpoints on disk. Nothing here ever unpickles untrusted data.

A run folder holds:
  preset.json                     the exact resolved preset
  model.safetensors               the final (or latest) weights, preset in its metadata
  checkpoints/step-NNNNNNNN.safetensors   weights at that step
  checkpoints/step-NNNNNNNN.optim.pt      optimizer/scaler state, RNG states and the trainer's
                                          own state (data position, TBPTT carry), read back
                                          with torch.load(weights_only=True)
  checkpoints/step-NNNNNNNN.json          the commit marker: written last, so a checkpoint
                                          without it is incomplete and is ignored
Every file is written to a temp name and renamed, so a killed process leaves either the
old file or the new one, never half of one.
"""
from __future__ import annotations

import io
import json
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from workbench.errors import UserError
from workbench.fileio import atomic_write_bytes, atomic_write_text, complete_checkpoints
from workbench.spec import Preset

KEEP_CHECKPOINTS = 2


class WeightsError(UserError, ValueError):
    """A weights file is missing, corrupt, or does not fit the model; names the file."""


def state_dict_bytes(model: torch.nn.Module, preset: Preset | None = None) -> bytes:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "rnn-workbench"}
    if preset is not None:
        metadata["preset"] = preset.to_json()
    return st_save(tensors, metadata=metadata)


def save_weights(path: Path, model: torch.nn.Module, preset: Preset | None = None) -> Path:
    atomic_write_bytes(Path(path), state_dict_bytes(model, preset))
    return Path(path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except OSError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc.strerror}") from None
    try:
        return st_load(data)
    except (SafetensorError, ValueError, Exception) as exc:  # safetensors raises several kinds
        raise WeightsError(f"{path} is not a valid safetensors weights file ({_reason(exc)})") from None


def load_weights(path: Path, model: torch.nn.Module) -> None:
    tensors = read_weights(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""))
        raise WeightsError(f"{path} does not fit this model's preset: {'; '.join(parts)}")
    for name, tensor in sorted(tensors.items()):  # sorted: the same message every time
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise WeightsError(f"{path} does not fit this model's preset: {name} has shape "
                               f"{tuple(tensor.shape)}, the preset needs {tuple(expected[name].shape)}")
    model.load_state_dict({k: v.to(expected[k].device) for k, v in tensors.items()})


def _stem(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scaler, preset: Preset,
                    generator: torch.Generator | None = None, final: bool = False,
                    extra: dict | None = None) -> Path:
    """``extra``: the trainer's own state (plain values and tensors only), returned by
    ``restore_checkpoint`` under "trainer"."""
    run_dir = Path(run_dir)
    stem = _stem(run_dir, step)
    save_weights(stem.with_suffix(".safetensors"), model, preset)
    state = {"optimizer": optimizer.state_dict(), "step": step}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if generator is not None:
        state["generator"] = generator.get_state()
    state["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    if extra is not None:
        state["trainer"] = extra
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(stem.with_suffix(".optim.pt"), buffer.getvalue())
    atomic_write_text(stem.with_suffix(".json"), json.dumps({"step": step, "final": final}) + "\n")
    if final:
        save_weights(run_dir / "model.safetensors", model, preset)
    _prune(run_dir)
    return stem.with_suffix(".safetensors")


def _prune(run_dir: Path) -> None:
    for _step, stem in complete_checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        for suffix in (".json", ".safetensors", ".optim.pt"):  # marker first: never half-valid
            try:
                Path(str(stem) + suffix).unlink()
            except OSError:
                pass


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1][1] if found else None


def load_checkpoint(stem: Path, model, optimizer, scaler=None, generator: torch.Generator | None = None) -> int:
    """Restore weights, optimizer (and scaler, RNG) from a checkpoint; returns its step."""
    return int(restore_checkpoint(stem, model, optimizer, scaler, generator)["step"])


def _reason(exc: BaseException, limit: int = 160) -> str:
    """A library's error in a few words (torch's weights_only refusal is a paragraph that
    ends by suggesting weights_only=False, which must never reach a user as advice)."""
    text = " ".join(str(exc).split())
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if found:  # what it met, without torch's advice on how to let it through
        text = re.split(r"\. (?:Please|To |Re-running|If you)", found.group(1))[0]
    text = text.strip(" .") or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_checkpoint_state(path: Path) -> dict:
    """A checkpoint's .optim.pt through torch.load(weights_only=True): tensors and plain
    values only. Anything else (a pickle that would run code, a torch.save of arbitrary
    objects) is refused unread; so is a truncated or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} does not exist: the checkpoint is incomplete")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on its way to refusing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only met something that is not plain data
        raise WeightsError(f"{path} is not a valid checkpoint: it holds Python objects that a checkpoint never "
                           f"holds, refused without running them ({_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad header, ...: torch raises several kinds
        raise WeightsError(f"{path} is not a valid checkpoint: it is truncated or corrupt ({_reason(exc)})") from None
    if not isinstance(state, dict) or "optimizer" not in state or "step" not in state:
        raise WeightsError(f"{path} is not a valid checkpoint (no optimizer state or step)")
    return state


def restore_checkpoint(stem: Path, model, optimizer, scaler=None, generator: torch.Generator | None = None) -> dict:
    """Like load_checkpoint, but returns the whole saved state: "step", and "trainer"
    (the ``extra`` given to save_checkpoint, {} if none)."""
    stem = Path(stem)
    load_weights(Path(str(stem) + ".safetensors"), model)
    state = read_checkpoint_state(Path(str(stem) + ".optim.pt"))
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise WeightsError(f"{stem}.optim.pt does not fit this model's optimizer ({exc})") from None
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    cuda_rng = state.get("cuda_rng")
    if cuda_rng is not None and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_rng)
    state.setdefault("trainer", {})
    return state


def preset_from_weights(path: Path) -> Preset | None:
    """The preset stored in a weights file's metadata, if any (no code executed)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:
        raise WeightsError(f"{path} is not a valid safetensors weights file ({exc})") from None
    if "preset" not in meta:
        return None
    from workbench.spec import loads

    return loads(meta["preset"], source=f"the preset stored in {path}")
