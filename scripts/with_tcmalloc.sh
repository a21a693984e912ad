#!/usr/bin/env bash
# Runs a command with gperftools' tcmalloc as the memory allocator (LD_PRELOAD).
#
#   scripts/with_tcmalloc.sh python -m recipes.demo
#   KERAS_BACKEND=jax scripts/with_tcmalloc.sh python -m recipes.pretrain --config=...
#   scripts/with_tcmalloc.sh --path     # prints the library found (exit 1 if none)
#
# Why: on a CPU, XLA (the JAX backend) takes its ~0.6 GB temporary buffer afresh from the
# kernel at every train step. glibc serves an allocation that large from a worker
# thread with mmap whatever MALLOC_MMAP_MAX_ says, so every step first-touches ~150k
# fresh pages. tcmalloc keeps the freed buffer for the next step. Measured on a 2-core
# AMD EPYC VM (BENCHMARKS.md): JAX's step 0-16% faster, but with JAX's length buckets
# (the CPU default) tcmalloc keeps each bucket's freed buffers, so peak RSS rose by
# 0.5-1.2 GiB; torch and TensorFlow about as fast, 0.1-0.25 GiB lower peak RSS.
#
# Finds libtcmalloc_minimal.so.4 or libtcmalloc.so.4 in the usual library folders, or
# takes KFP_TCMALLOC=/path/to/libtcmalloc.so. Without one, says how to install it
# (Debian / Ubuntu: apt install libtcmalloc-minimal4) and runs the command unchanged.
set -euo pipefail
if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi
lib="${KFP_TCMALLOC:-}"
if [ -n "$lib" ] && [ ! -e "$lib" ]; then
    echo "with_tcmalloc: KFP_TCMALLOC=$lib does not exist" >&2
    exit 2
fi
if [ -z "$lib" ]; then
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
        for name in libtcmalloc_minimal.so.4 libtcmalloc.so.4; do
            if [ -e "$dir/$name" ]; then
                lib="$dir/$name"
                break 2
            fi
        done
    done
fi
if [ "$1" = "--path" ]; then
    if [ -z "$lib" ]; then
        echo "with_tcmalloc: no libtcmalloc found (apt install libtcmalloc-minimal4, or set KFP_TCMALLOC)" >&2
        exit 1
    fi
    echo "$lib"
    exit 0
fi
if [ -z "$lib" ]; then
    echo "with_tcmalloc: no libtcmalloc found (apt install libtcmalloc-minimal4, or set KFP_TCMALLOC);" \
        "running with the system allocator" >&2
    exec "$@"
fi
export LD_PRELOAD="$lib${LD_PRELOAD:+ $LD_PRELOAD}"
exec "$@"
