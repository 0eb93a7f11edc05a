#!/usr/bin/env bash
# The GPU training benchmark: every trainable model family (configs/model/*.yaml with a registered
# family) at real size on one CUDA GPU, bf16, sdpa and flash-attention 2 (when a real flash_attn
# is installed), vin-ocr's loop against a plain transformers.Trainer, then QLoRA (bitsandbytes
# 4-bit) and the verified merge; at most 8 minutes on an H100/H200 (budget_s=450 plus start-up).
# It appends its table, with date and device, to docs/benchmarks.md ("GPU training"), and to
# $OUT/bench_gpu_entry.md when $OUT is set (a device machine returns only $OUT; append that file
# here with: python scripts/bench_gpu_extras.py record_from=PATH).
#
#   scripts/bench_gpu.sh --setup     # only the Python environment (see below), then exit
#   scripts/bench_gpu.sh             # the benchmark (sets the environment up first if needed)
#   scripts/bench_gpu.sh --dry-run   # no GPU: the same stages on the CPU with tiny models
#   scripts/bench_gpu.sh models=[lfm2_vl_450m] budget_s=200   # any scripts/bench_gpu_extras.py option
#
# The environment: .venv when it imports vin-ocr's needs; else, with no .venv yet, a Python with
# torch already installed (python3, or $PYTHON) gets a .venv that sees its packages
# (--system-site-packages: its torch and CUDA are kept) and vin-ocr from PyPI; else `make setup`.
# On a CUDA machine bitsandbytes is installed from PyPI when missing (without it the QLoRA rows
# say why). No Hub access: weights are random.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0 setup_only=0 args=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    --setup) setup_only=1 ;;
    -h | --help) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: bench_gpu.sh: unknown flag $arg (--dry-run, --setup, --help)" >&2; exit 2 ;;
    *) args+=("$arg") ;;
  esac
done

# installed, not imported (seconds): a broken install fails loudly in the benchmark itself
NEEDS="import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('torch', 'transformers', 'peft', 'accelerate',
                                              'hydra', 'vin_ocr')))"
usable() { [ -x "$1" ] && "$1" -c "$NEEDS" >/dev/null 2>&1; }

PY=""
for candidate in "${PYTHON:-}" .venv/bin/python; do
  if [ -n "$candidate" ] && usable "$candidate"; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
  if [ "$dry" = 1 ]; then
    echo "error: bench_gpu.sh --dry-run: no Python environment with vin-ocr (run make setup)" >&2
    exit 1
  fi
  base=${PYTHON:-$(command -v python3 || true)}
  if [ ! -e .venv ] && [ -n "$base" ] && "$base" -c "import torch" >/dev/null 2>&1; then
    echo "bench_gpu.sh: .venv on $base's torch $("$base" -c 'import torch; print(torch.__version__)')"
    "$base" -m venv --system-site-packages .venv
    .venv/bin/pip install -q -e . || {
      echo "error: bench_gpu.sh: pip install -e . failed in .venv (PyPI unreachable?)" >&2
      exit 1
    }
  else
    echo "bench_gpu.sh: no Python with torch here: make setup (PyPI, about 3 GB)"
    make setup || { echo "error: bench_gpu.sh: make setup failed (PyPI unreachable?)" >&2; exit 1; }
  fi
  PY=.venv/bin/python
fi

if [ "$dry" = 0 ]; then
  if ! torch=$("$PY" -c "import torch, sys; print(torch.__version__)
sys.exit(not torch.cuda.is_available())"); then
    echo "error: bench_gpu.sh: torch $torch sees no CUDA GPU; on a CPU machine run" \
         "scripts/bench_gpu.sh --dry-run" >&2
    exit 1
  fi
  if ! "$PY" -c "import bitsandbytes" >/dev/null 2>&1; then  # QLoRA; pip only on a GPU machine
    "$PY" -m pip install -q "bitsandbytes>=0.45" ||
      echo "warning: bench_gpu.sh: no bitsandbytes (PyPI unreachable?): the QLoRA rows will fail" >&2
  fi
fi
[ "$setup_only" = 1 ] && { echo "bench_gpu.sh: environment ready: $PY"; exit 0; }

if [ "$dry" = 1 ]; then
  exec "$PY" scripts/bench_gpu_extras.py dry_run=true "${args[@]}"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
out_dir=()
[ -n "${OUT:-}" ] && out_dir=("out_dir=$OUT")
# The extras script keeps to budget_s (each model gets its share; a stage past it is killed and
# reported); this outer limit only guards against a hang.
exec timeout 540 "$PY" scripts/bench_gpu_extras.py "${out_dir[@]}" "${args[@]}"
