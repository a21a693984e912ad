#!/usr/bin/env bash
# The GPU benchmark, as one short script for a lent GPU machine that has torch and JAX
# but neither Keras nor TensorFlow: Keras travels as wheels in .whl/ (see BENCHMARKS.md).
# Writes $OUT/gpu_results.txt (one RESULT json line per run).
set -u
OUT=${OUT:-benchmarks/results}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu_info.txt"
python3 -c "import jax, torch; print('jax', jax.__version__, 'torch', torch.__version__)" | tee -a "$OUT/gpu_info.txt"
export BENCH_MACHINE=${BENCH_MACHINE:-gpu} PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
RUNS=${RUNS:-forward:tiny,train:tiny:stop,train:tiny:ijepa,train:tiny:stop_no_ema,train:small:stop,train:small:ijepa,train:small:stop_no_ema}
for backend in ${BACKENDS:-jax torch}; do
  KERAS_BACKEND=$backend timeout ${PER_BACKEND_TIMEOUT:-240} python3 -m benchmarks.step_benchmark \
    --runs="$RUNS" --steps ${STEPS:-30} --repeats ${REPEATS:-20} 2>&1 | grep -E "RESULT|Error|error" | tee -a "$OUT/gpu_results.txt"
done
