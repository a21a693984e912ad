#!/usr/bin/env bash
# Runs the suite once per Keras backend, each in its own process, then the tests that
# start all three backends themselves. Fails if any run fails; ends with one summary line
# per backend ("jax: N passed, N failed").
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYTHONUNBUFFERED=1
REPORTS=${REPORTS_DIR:-.pytest_reports}  # JUnit reports (scripts/test_newest_keras.sh sets its own)
mkdir -p "$REPORTS"
status=0
summary=()
run() {  # name, then pytest arguments
  local name=$1; shift
  echo "=== $name ==="
  local start=$SECONDS
  "$PYTHON" -m pytest -q -p no:cacheprovider --junitxml="$REPORTS/$name.xml" "$@"
  local rc=$?
  # pytest exits 5 when nothing was collected: that is a failure here.
  [ $rc -ne 0 ] && status=1
  summary+=("$("$PYTHON" scripts/junit_summary.py "$REPORTS/$name.xml" "$name" "$rc" $((SECONDS - start)))")
}
for backend in ${BACKENDS:-jax torch tensorflow}; do
  KERAS_BACKEND=$backend run "$backend" tests integration_tests -m "not all_backends" "$@"
done
# SKIP_CROSS_BACKEND=1 leaves these out (scripts/test_newest_keras.sh, to keep CI short).
if [ "${SKIP_CROSS_BACKEND:-0}" != 1 ]; then
  KERAS_BACKEND=jax run cross_backend tests integration_tests -m all_backends "$@"
fi
echo
echo "=== summary ==="
tp=0; tf=0; ts=0
for line in "${summary[@]}"; do
  IFS=$'\t' read -r name p f s rc secs <<<"$line"
  echo "$name took ${secs}s (pytest exit $rc)"
done
for line in "${summary[@]}"; do
  IFS=$'\t' read -r name p f s rc secs <<<"$line"
  echo "$name: $p passed, $f failed, $s skipped"
  tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
done
echo "total: $tp passed, $tf failed, $ts skipped"
exit $status
