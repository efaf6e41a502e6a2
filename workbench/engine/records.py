"""Records are plain dicts (see trainer.py for the kinds and their keys). This module
turns them into JSON lines and back; numpy arrays become lists of floats."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        # JSON has no NaN/Inf; keep them readable and loadable as strings.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def record_to_json(record: dict) -> str:
    return json.dumps(_plain(record), separators=(",", ":"))


def _is_record(value: Any) -> bool:
    """A JSON object with a "kind" text and, where it has one, a whole-number "step"
    (a step record must have one): what every reader of records may rely on."""
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        return False
    step = value.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int):
        return False
    return value["kind"] != "step" or "step" in value


def read_metrics(path) -> list[dict]:
    """metrics.jsonl -> records. A torn last line (killed process) and lines that are not
    records (JSON objects with a "kind") are skipped; a file that is not UTF-8 text is
    not a metrics file and is refused, naming it."""
    from workbench.io.errors import DataError

    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"is not a metrics file: not UTF-8 text (byte 0x{data[exc.start]:02x})",
                        data.count(b"\n", 0, exc.start) + 1) from None
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if _is_record(record):
            records.append(record)
    return records
