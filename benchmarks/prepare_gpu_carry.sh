#!/usr/bin/env bash
# What benchmarks/gpu_goal.sh needs on a lent GPU machine and cannot fetch there, put in
# ignored folders of this checkout (carry [".whl", ".carry"] in the device `run`):
# - .whl/: Keras and the two of its dependencies that machine lacks, as Python 3.12 wheels;
# - .carry/StoP: the official StoP tree at the clone's HEAD (from ../.mirror, the bare
#   clone `fetch` brings), run there from its own files, never copied into the project;
# - .carry/peers: the peers harness's loader of the official sources (../shared/peers).
set -eu
MIRROR=${MIRROR:-../.mirror}
PEERS=${PEERS:-../shared/peers}
[ -d "$MIRROR/amirbar+StoP/repo" ] || { echo "no clone of amirbar/StoP under $MIRROR (fetch github:amirbar/StoP)"; exit 1; }
[ -f "$PEERS/refsrc.py" ] || { echo "no peers harness at $PEERS"; exit 1; }
rm -rf .whl .carry
mkdir -p .whl .carry/StoP .carry/peers
keras_version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('keras'))")
for package in "keras==$keras_version" namex optree; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$package"
done
git --git-dir="$MIRROR/amirbar+StoP/repo" archive HEAD main.py src configs | tar -x -C .carry/StoP
cp "$PEERS/refsrc.py" .carry/peers/
du -sh .whl .carry
