"""What a run folder's metrics.jsonl costs per step, against writing every record whole.

Trains a built-in preset through the run session (what `workbench train` and the window
do) and, from the very same records, counts what the file would hold if every step kept
its per-timestep profiles at full precision (what metrics.jsonl held before the session
thinned them). Prints bytes per step both ways, their ratio, and MB per 10k steps.

  python bench/run_folder_size.py                      # adding_lstm and charlm_lstm, CPU
  python bench/run_folder_size.py adding_lstm --steps 500
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workbench import cli  # noqa: E402
from workbench.engine.records import _plain  # noqa: E402
from workbench.engine.session import RunSession  # noqa: E402
from workbench.runs import RunHistory  # noqa: E402


def measure(name: str, steps: int) -> tuple[float, float]:
    preset = cli.load_preset_with_overrides(name, ["train.num_threads=1"], steps, "cpu", None)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        whole = 0
        with RunSession(preset, run_dir, history=RunHistory(Path(tmp) / "history.sqlite3")) as run:
            for record in run:  # the baseline: every record whole, full precision
                whole += len(json.dumps(_plain(record.as_dict()), separators=(",", ":"))) + 1
        written = (run_dir / "metrics.jsonl").stat().st_size
    return written / steps, whole / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=["adding_lstm", "charlm_lstm"])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"{'preset':<14} {'bytes/step':>10} {'whole':>8} {'whole/written':>13} {'MB per 10k steps':>17}")
    for name in args.presets:
        written, whole = measure(name, args.steps)
        print(f"{name:<14} {written:>10.0f} {whole:>8.0f} {whole / written:>13.1f} {written * 1e4 / 1e6:>17.1f}")


if __name__ == "__main__":
    main()
