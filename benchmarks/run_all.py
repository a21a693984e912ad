"""Runs the CPU benchmarks on every backend (one process each) and rewrites BENCHMARKS.md.

    python -m benchmarks.run_all            # all backends, then the report
    python -m benchmarks.run_all --report   # only rebuild BENCHMARKS.md from results/

Raw results land in benchmarks/results/cpu.jsonl (one JSON line per run); the GPU
results (benchmarks/gpu_benchmark.sh on a lent GPU) in results/gpu_h100.jsonl.
"""

import argparse
import json
import os
import subprocess
import sys

from benchmarks import report

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = ",".join(
    [
        "forward:tiny",
        "train:tiny:stop",
        "train:tiny:ijepa",
        "train:tiny:stop_no_ema",
        "train:small:stop",
        "train:small:ijepa",
        "train:small:stop_no_ema",
    ]
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", action="store_true", help="only rebuild BENCHMARKS.md")
    parser.add_argument("--backends", default="jax,torch,tensorflow")
    parser.add_argument("--runs", default=RUNS)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.report:
        lines = []
        for backend in args.backends.split(","):
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", BENCH_MACHINE="cpu-2core")
            cmd = [sys.executable, "-m", "benchmarks.step_benchmark", f"--runs={args.runs}",
                   f"--steps={args.steps}", f"--repeats={args.repeats}"]
            print(f"== {backend}: {' '.join(cmd)}", flush=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=os.path.dirname(HERE))
            got = [l[len("RESULT "):] for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            for line in got:
                print(line, flush=True)
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
            lines += got
        path = os.path.join(HERE, "results", "cpu.jsonl")
        # Imported here: the orchestrating process stays free of Keras until it writes.
        from keras_flexpredict.utils.atomic_write import atomic_write_text

        atomic_write_text(path, "\n".join(lines) + "\n")
    report.write_benchmarks_md()


if __name__ == "__main__":
    main()
