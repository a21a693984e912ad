"""How our train step grows with batch size and image size, per backend (CPU).

    python -m benchmarks.growth                       # every cell, 3 backends
    python -m benchmarks.growth --backends torch --cells tiny224_b8,tiny224_b32
    python -m benchmarks.growth --report              # rebuild the table only

ViT-Tiny/16 (width 192, depth 12, 3 heads), predictor 384 x 6, fp32, StoP, masks from
`MultiBlockMasker(reference=True)` grouped per batch (the official statistics), through
`model.fit`, one process per cell (peak RSS is per cell). Cells: batch 8, 32 and 64 at
224 px, and images of 128, 160 and 224 px at batch 8. The step time is the median after
warm-up; "per image" divides it by the batch, so a flat column means linear growth.
Raw results: `benchmarks/results/growth/*.json`; the table:
`benchmarks/results/growth.md` (included in BENCHMARKS.md by `benchmarks/report.py`).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from benchmarks import compare_official

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "growth")
TINY = dict(width=192, depth=12, heads=3, patch=16)
CELLS = {
    "tiny224_b8": dict(TINY, image=224, batch=8, min_keep=10),
    "tiny224_b32": dict(TINY, image=224, batch=32, min_keep=10),
    "tiny224_b64": dict(TINY, image=224, batch=64, min_keep=10),
    "tiny128_b8": dict(TINY, image=128, batch=8, min_keep=4),
    "tiny160_b8": dict(TINY, image=160, batch=8, min_keep=4),
}


def run_cell(cell, warmup, steps):
    compare_official.CONFIGS[cell] = CELLS[cell]
    return compare_official.run_ours(cell, "reference", warmup, steps)


def drive(args):
    os.makedirs(RESULTS, exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    for cell in args.cells:
        for backend in args.backends:
            out = os.path.join(RESULTS, f"{cell}__{backend}.json")
            start = time.time()
            cmd = [
                sys.executable, "-m", "benchmarks.growth", "--worker", f"--cells={cell}",
                f"--warmup={args.warmup}", f"--steps={args.steps}", f"--out={out}",
            ]
            proc = subprocess.run(cmd, cwd=ROOT, env=dict(env, KERAS_BACKEND=backend), capture_output=True, text=True)
            if proc.returncode:
                print(f"   {cell} {backend}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.load(open(out))
            print(
                f"   {cell:12s} {backend:10s} {r['step_ms']:8.0f} ms  first {r['first_step_s']:5.1f} s  "
                f"rss {r['peak_rss_mib'] / 1024:.2f} GiB  ({time.time() - start:.0f} s)",
                flush=True,
            )
    write_report()


def write_report():
    rows = {}
    for cell in CELLS:
        for backend in ("torch", "jax", "tensorflow"):
            path = os.path.join(RESULTS, f"{cell}__{backend}.json")
            if os.path.exists(path):
                rows[cell, backend] = json.load(open(path))
    if not rows:
        return
    lines = [
        "| image | batch | backend | ms / step | ms / image | img/s | real tokens ctx / tgt (slots) | "
        "first step s | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (cell, backend), r in rows.items():
        cfg = CELLS[cell]
        lines.append(
            f"| {cfg['image']} | {cfg['batch']} | {backend} | {r['step_ms']:.0f} | "
            f"{r['step_ms'] / cfg['batch']:.0f} | {r['images_per_s']:.1f} | "
            f"{r['context_tokens']:.1f} / {r['target_tokens']:.1f} ({r['context_slots']} / {r['target_slots']}) | "
            f"{r['first_step_s']:.1f} | {r['peak_rss_mib'] / 1024:.2f} |"
        )
    text = (
        f"Machine: {platform.node() or 'cpu'}, {os.cpu_count()} cores; ViT-Tiny/16, predictor "
        "384 x 6, fp32, StoP, reference masks; median step after warm-up.\n\n" + "\n".join(lines) + "\n"
    )
    path = os.path.join(HERE, "results", "growth.md")
    compare_official.write_text(path, text)
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--backends", default="torch,jax,tensorflow")
    parser.add_argument(
        "--warmup", type=int, default=10,
        help="untimed steps first (JAX compiles each length bucket, TensorFlow each new cut "
        "length, the first time a batch needs it)",
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--report", action="store_true", help="only rebuild the table")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cells, args.backends = args.cells.split(","), args.backends.split(",")
    for cell in args.cells:
        if cell not in CELLS:
            parser.error(f"unknown cell {cell!r}; choose from {sorted(CELLS)}")
    for backend in args.backends:
        if backend not in ("torch", "jax", "tensorflow"):
            parser.error(f"unknown backend {backend!r}; choose from torch, jax, tensorflow")
    if args.worker:
        compare_official.write_json(args.out, run_cell(args.cells[0], args.warmup, args.steps))
    elif args.report:
        write_report()
    else:
        drive(args)


if __name__ == "__main__":
    main()
