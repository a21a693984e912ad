#!/usr/bin/env bash
# Issue 9's GPU measurement (benchmarks/gpu_goal.py) as one script for a lent GPU
# machine, which has torch and JAX but neither Keras nor the official code: run
# `bash benchmarks/prepare_gpu_carry.sh` here first, then on the machine (device `run`,
# carry [".whl", ".carry"]): `bash benchmarks/gpu_goal.sh`. Writes $OUT/gpu_goal.txt:
# the GPU, the bfloat16 matmul peak, then one RESULT json line per cell. Each cell's
# batch grows through $BATCHES (x4 each: few JAX compilations) until it no longer fits
# (exit status 3) or fails.
set -u
OUT=${OUT:-benchmarks/results/gpu_goal}
mkdir -p "$OUT"
LOG="$OUT/gpu_goal.txt"
WHEELS=${WHEELS:-.whl}
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export OFFICIAL_SRC=${OFFICIAL_SRC:-$PWD/.carry/StoP} PEERS=${PEERS:-$PWD/.carry/peers}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
BATCHES=${BATCHES:-256 1024 4096}
# Cells: official:off, official:official, ours:torch, ours:jax, ours:torch-compiled (an
# experiment; give it its own call, e.g. CELLS=ours:torch-compiled BATCHES=1024 CELL_TIMEOUT=400).
CELLS=${CELLS:-official:off ours:torch ours:jax official:official}
CELL_TIMEOUT=${CELL_TIMEOUT:-150}
STEPS=${STEPS:-10}
# The model: ViT-B/16 at 224 px (the issue's); a CPU smoke test takes SIZE=tiny IMAGE=64 PATCH=8 MIN_KEEP=4.
SIZE=${SIZE:-base} IMAGE=${IMAGE:-224} PATCH=${PATCH:-16} MIN_KEEP=${MIN_KEEP:-10}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$LOG"
python3 -c "import jax, torch; print('jax', jax.__version__, 'torch', torch.__version__)" 2>&1 | tee -a "$LOG"
peak=$(python3 -m benchmarks.gpu_goal --impl matmul-peak | grep RESULT | tee -a "$LOG" | sed -n 's/.*"bf16_tflops": \([0-9.]*\).*/\1/p')
echo "bf16 matmul peak: ${peak:-unknown} TFLOP/s" | tee -a "$LOG"
for cell in $CELLS; do
  impl=${cell%%:*}
  what=${cell#*:}
  for batch in $BATCHES; do
    args=(--impl "$impl" --size "$SIZE" --image "$IMAGE" --patch "$PATCH" --min-keep "$MIN_KEEP" --batch "$batch" --steps "$STEPS" ${peak:+--peak-tflops "$peak"})
    if [ "$impl" = official ]; then
      args+=(--ckpt "$what" --count-ops)
      backend=torch
    elif [ "$what" = torch-compiled ]; then
      args+=(--jit-compile)  # not in the default cells: torch.compile's first step takes minutes
      backend=torch
    else
      backend=$what
      [ "$backend" = torch ] && args+=(--count-ops)
    fi
    echo "# $cell batch $batch" | tee -a "$LOG"
    KERAS_BACKEND=$backend timeout "$CELL_TIMEOUT" python3 -m benchmarks.gpu_goal "${args[@]}" >"$OUT/cell.log" 2>&1
    status=$?
    grep RESULT "$OUT/cell.log" | tee -a "$LOG"
    if [ $status -ne 0 ]; then
      [ $status -ne 3 ] && { echo "# $cell batch $batch failed (status $status):"; tail -5 "$OUT/cell.log"; } | tee -a "$LOG"
      break
    fi
  done
done
rm -f "$OUT/cell.log"
