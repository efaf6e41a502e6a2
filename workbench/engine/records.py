"""Records are plain dicts (see trainer.py for the kinds and their keys). This module
turns them into JSON lines and back; numpy arrays become lists of floats."""
from __future__ import annotations

import json
import math
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


def read_metrics(path) -> list[dict]:
    """metrics.jsonl -> records; a torn last line (killed process) is skipped."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
