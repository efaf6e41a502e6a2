#!/usr/bin/env bash
# The engine's GPU checks and GPU throughput, in one script for a lent CUDA machine.
#
#   bash bench/gpu.sh            (from anywhere; it runs in the project root)
#
# The machine may reach nothing outside itself: this installs nothing from the network.
# It uses the first Python that imports a CUDA-enabled torch ($PYTHON, python3, then
# the project's .venv), finds the project through PYTHONPATH (or, failing that, an
# offline `pip install --no-deps --no-build-isolation -e .`), and needs numpy and
# safetensors already there. Each section runs under its own time limit and a failure
# in one does not stop the others; the whole script stays under 8 minutes (about 5 when all goes well). The
# throughput table comes last. If $OUT is set, logs and the JSON results go there too.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export PYTHONUNBUFFERED=1
LOGDIR="${OUT:-/tmp/workbench-gpu}"
mkdir -p "$LOGDIR"
START=$(date +%s)
STATUS=0

section() {  # section NAME SECONDS COMMAND...
  local name="$1" limit="$2"
  shift 2
  echo
  echo "=== $name (limit ${limit}s, at +$(( $(date +%s) - START ))s) ==="
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGDIR/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "=== $name: FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', time limit'))"
    STATUS=1
  else
    echo "=== $name: ok"
  fi
}

# --- which python ------------------------------------------------------------------
PY=""
for cand in "${PYTHON:-}" python3 "$ROOT/.venv/bin/python" python; do
  [ -n "$cand" ] || continue
  command -v "$cand" >/dev/null 2>&1 || [ -x "$cand" ] || continue
  if "$cand" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    PY="$cand"
    break
  fi
done
if [ -z "$PY" ]; then
  echo "no Python here imports a torch that sees a CUDA GPU; tried: ${PYTHON:-} python3 .venv/bin/python python"
  for cand in python3 "$ROOT/.venv/bin/python"; do
    command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>&1 | sed "s|^|  $cand: |"
  done
  nvidia-smi -L 2>&1 | sed 's/^/  nvidia-smi: /'
  exit 1
fi

echo "=== environment"
"$PY" - <<'EOF'
import platform, torch
print(f"python {platform.python_version()} ({__import__('sys').executable})")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
for mod in ("numpy", "safetensors", "pytest"):
    try:
        m = __import__(mod)
        print(f"{mod} {getattr(m, '__version__', '?')}")
    except ImportError:
        print(f"{mod}: NOT importable")
EOF
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv 2>/dev/null || true

# --- the project on the path, no network ----------------------------------------------
if ! "$PY" -c 'import workbench' >/dev/null 2>&1 || [ "$("$PY" -c 'import workbench, os; print(os.path.dirname(os.path.dirname(workbench.__file__)))' 2>/dev/null)" != "$ROOT" ]; then
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c 'import workbench.engine.trainer' >/dev/null 2>&1; then
  echo "workbench does not import from PYTHONPATH; trying an offline editable install"
  "$PY" -m pip install --no-deps --no-build-isolation --no-index -e "$ROOT" 2>&1 | tail -3
  "$PY" -c 'import workbench.engine.trainer' || { echo "workbench.engine.trainer does not import; stopping"; exit 1; }
fi

# --- correctness -----------------------------------------------------------------------
if "$PY" -c 'import pytest' >/dev/null 2>&1; then
  # the same tests as on the CPU, with every model and batch on the GPU, in float64
  section probe_vs_autograd_cuda 70 env WORKBENCH_TEST_DEVICE=cuda "$PY" -m pytest -q -x -p no:cacheprovider \
    -o addopts="" tests/engine/test_probe.py tests/engine/test_fused.py tests/engine/test_graphs.py \
    tests/engine/test_padding.py
else
  echo "pytest is not importable: skipping the probe-vs-autograd tests on CUDA"
fi
section engine_checks_cuda 90 "$PY" bench/gpu_checks.py

# what one exact probe costs in training steps, through the kernel and unrolled
section probe_cost 60 "$PY" bench/probe_cost.py --gpu --sizes small,medium --cells lstm,rnn_tanh,gru
# what the Dynamics record (Jacobian norms, Lyapunov exponents, spectra, gates) adds to a probe
section dynamics_cost 90 "$PY" bench/dynamics_cost.py --gpu --sizes small,medium --cells lstm,gru --repeats 3
# what reading padded rows correctly costs a bidirectional stack (two kernel calls a layer)
section padding_cost 30 "$PY" bench/padding_cost.py --gpu --batch 64 --hidden 256
# the scan cells (minGRU, minLSTM, LRU) against an LSTM and a GRU of the same width and
# depth at T = 256, 1024, 4096: steps/s and the ratios, one run
section modern_cells_throughput 60 "$PY" bench/modern_cells.py --json "$LOGDIR/modern_cells.json" throughput \
  --gpu --sizes 256x2 --batch 64 --steps 10
section modern_cells_scan_forms 30 "$PY" bench/modern_cells.py scan --gpu --batch 64 --hidden 256

# --- throughput (the table is printed last) ----------------------------------------------
# (30 warm-up steps: the engine's first untapped steps time its candidate paths, see
# StepPathTuner; the timed window comes after that choice)
section throughput_small_medium 150 "$PY" bench/throughput.py --gpu --sizes small,medium --cells lstm \
  --precisions fp32,bf16 --variants full,full_eager,full10,off,off_stack,bare,bare_stack \
  --steps 40 --warmup 30 --repeats 2 --json "$LOGDIR/throughput_sm.json"
section throughput_cells 70 "$PY" bench/throughput.py --gpu --sizes medium --cells gru,rnn_tanh \
  --precisions fp32 --variants full,full10,off,bare --steps 30 --warmup 30 --repeats 2 \
  --json "$LOGDIR/throughput_cells.json"
section throughput_large 80 "$PY" bench/throughput.py --gpu --sizes large --cells lstm --precisions fp32 \
  --variants full,full10,off,off_stack,bare --steps 20 --warmup 28 --repeats 2 \
  --json "$LOGDIR/throughput_large.json"

echo
echo "=== throughput, all cases (engine steps/s over bare fused-module steps/s; >= 1: the engine is faster)"
"$PY" - "$LOGDIR" <<'EOF' || true
import json, sys
from pathlib import Path
sys.path.insert(0, "bench")
from throughput import print_table
rows = []
for name in ("throughput_sm.json", "throughput_cells.json", "throughput_large.json"):
    path = Path(sys.argv[1]) / name
    if path.exists():
        rows += json.loads(path.read_text())
if rows:
    for r in rows:
        r["ratio_spread"] = {k: tuple(v) for k, v in r["ratio_spread"].items()}
    print_table(rows)
else:
    print("no throughput results (see the sections above)")
EOF
echo "gpu.sh: done in $(( $(date +%s) - START ))s, status $STATUS"
exit $STATUS
