#!/usr/bin/env bash
# Runs the tests that guard our use of private Keras API on the newest Keras release
# (or on KFP_CI_KERAS_VERSION), without touching the pinned Keras of the venv.
#
# The newest version comes from the package index (`pip index versions keras`, else
# `pip download keras --no-deps`). If it equals the pin of requirements/constraints.txt,
# one line says so and nothing runs. Otherwise that Keras is installed, without its
# dependencies (the venv's are used), into an overlay folder put first on PYTHONPATH,
# and on it run:
#   - tests/utils/keras_internals_test.py on jax, tensorflow and torch;
#   - the whole torch-backend suite (BACKENDS=torch scripts/run_tests.sh, without the
#     cross-backend stage, which the keras_internals tests stand in for: 2-5 min).
# Exits non-zero if any of them fails, or if the overlay Keras cannot be installed.
#
# Environment:
#   PYTHON                 the venv's python (default .venv/bin/python).
#   KFP_CI_KERAS_VERSION   test this Keras version instead of the newest on the index,
#                          even if it equals the pin (e.g. 3.14.0, to try this by hand).
#   KFP_CI_KERAS_OVERLAY   where overlays go (default ${TMPDIR:-/tmp}/kfp_keras_overlay).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

pinned=$(sed -n 's/^keras==\([^[:space:]]*\).*/\1/p' requirements/constraints.txt | head -n 1)

newest_on_index() {
  local out
  out=$("$PYTHON" -m pip index versions keras 2>/dev/null | sed -n 's/^keras (\(.*\))$/\1/p' | head -n 1)
  if [ -z "$out" ]; then
    local tmp
    tmp=$(mktemp -d)
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" keras >/dev/null 2>&1
    out=$(ls "$tmp" 2>/dev/null | sed -n 's/^keras-\([^-]*\)-.*\.whl$/\1/p' | head -n 1)
    rm -rf "$tmp"
  fi
  echo "$out"
}

if [ -n "${KFP_CI_KERAS_VERSION:-}" ]; then
  version=$KFP_CI_KERAS_VERSION
  echo "newest-keras: testing Keras $version (KFP_CI_KERAS_VERSION; pinned $pinned)"
else
  version=$(newest_on_index)
  if [ -z "$version" ]; then
    echo "newest-keras: could not read the newest Keras from the package index" >&2
    exit 1
  fi
  if [ "$version" = "$pinned" ]; then
    echo "newest-keras: the newest Keras on the index ($version) is the pinned one; nothing more to run"
    exit 0
  fi
  echo "newest-keras: Keras $version on the index, pinned $pinned: testing $version"
fi

overlay=${KFP_CI_KERAS_OVERLAY:-${TMPDIR:-/tmp}/kfp_keras_overlay}/keras-$version
if [ ! -f "$overlay/.installed" ]; then
  rm -rf "$overlay"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$overlay" "keras==$version" \
    || { echo "newest-keras: cannot install keras==$version" >&2; exit 1; }
  touch "$overlay/.installed"
fi
export PYTHONPATH="$overlay${PYTHONPATH:+:$PYTHONPATH}"
found=$(KERAS_BACKEND=jax "$PYTHON" -c "import keras; print(keras.__version__)" 2>/dev/null | tail -n 1)
if [ "$found" != "$version" ]; then
  echo "newest-keras: the overlay imports Keras '$found', not $version" >&2
  exit 1
fi

status=0
for backend in jax tensorflow torch; do
  echo "=== keras $version: keras_internals_test on $backend ==="
  KERAS_BACKEND=$backend "$PYTHON" -m pytest -q -p no:cacheprovider tests/utils/keras_internals_test.py || status=1
done
echo "=== keras $version: torch suite ==="
REPORTS_DIR=.pytest_reports/keras-$version SKIP_CROSS_BACKEND=1 BACKENDS=torch PYTHON=$PYTHON \
  bash scripts/run_tests.sh || status=1
if [ $status -ne 0 ]; then
  echo "newest-keras: FAILED on Keras $version (pinned $pinned): see the failures above" \
    "(private Keras API: keras_flexpredict/utils/keras_internals.py, docs/keras_internals.md)"
else
  echo "newest-keras: passed on Keras $version (pinned $pinned)"
fi
exit $status
