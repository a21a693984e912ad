"""Mask statistics of `MultiBlockMasker` beside the official I-JEPA collator.

Samples `--num_batches` batches of `--batch_size` images at 224/16 (grid 14x14)
and 224/14 (grid 16x16) with the paper's mask configuration, and prints and
writes a markdown table (benchmarks/results/masker_statistics.md):

- target block size (tokens) min / mean / max;
- real context tokens per image min / mean / max, and the mean before the slot
  budget (ours) or the per-batch truncation (reference);
- `Kc`, `Kt`, the share of padded context and target slots (slots that cost
  compute but hold no token), and the share of context tokens dropped by the
  budget or the truncation.

Usage:
    KERAS_BACKEND=tensorflow python benchmarks/masker_statistics.py
"""

import argparse
import os
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reference_ijepa_masks import ReferenceMaskCollator  # noqa: E402

from keras_flexpredict.layers.multi_block_masker import MultiBlockMasker  # noqa: E402
from keras_flexpredict.utils.atomic_write import atomic_write_text  # noqa: E402

PAPER_MASKS = dict(
    num_targets=4,
    target_scale=(0.15, 0.2),
    target_aspect_ratio=(0.75, 1.5),
    context_scale=(0.85, 1.0),
    context_aspect_ratio=(1.0, 1.0),
    min_keep=10,
)


def _stats(x):
    x = np.asarray(x, dtype=np.float64)
    return f"{x.min():.0f} / {x.mean():.1f} / {x.max():.0f}"


def ours(grid, num_batches, batch_size, seed, **kwargs):
    masker = MultiBlockMasker(grid_size=grid, seed=seed, **PAPER_MASKS, **kwargs)
    # Same seed and a budget of H*W - 1 slots, which never cuts (targets always
    # remove tokens) yet draws the same random numbers: the same masks before
    # the context is cut to Kc (checked below).
    n = grid[0] * grid[1]
    uncut = MultiBlockMasker(grid_size=grid, seed=seed, num_context_tokens=n - 1, **PAPER_MASKS, **kwargs)
    start = time.perf_counter()
    masks = keras.tree.map_structure(
        keras.ops.convert_to_numpy, masker.sample_batches(num_batches, batch_size)
    )
    seconds = time.perf_counter() - start
    full = keras.tree.map_structure(
        keras.ops.convert_to_numpy, uncut.sample_batches(num_batches, batch_size)
    )
    np.testing.assert_array_equal(full["target_indices"], masks["target_indices"])
    kept = np.zeros(masks["context_mask"].shape[:-1] + (n + 1,), bool)
    np.put_along_axis(kept, np.where(masks["context_mask"], masks["context_indices"], n), True, -1)
    available = np.zeros_like(kept)
    np.put_along_axis(available, np.where(full["context_mask"], full["context_indices"], n), True, -1)
    assert not (kept[..., :n] & ~available[..., :n]).any(), "cut context is not a subset"
    context = masks["context_mask"].sum(-1)
    before = full["context_mask"].sum(-1)
    target = masks["target_mask"].sum(-1)
    row_of = masks["context_indices"] // grid[1]
    rows = [float(((row_of == r) & masks["context_mask"]).sum(-1).mean()) for r in range(grid[0])]
    return {
        "rows": rows,
        "Kc": masker.num_context_tokens,
        "Kt": masker.num_target_tokens,
        "target": _stats(target),
        "target_sizes": sorted(set(target.ravel().tolist())),
        "context": _stats(context),
        "context_before": f"{before.mean():.1f}",
        "pad_context": f"{1 - masks['context_mask'].mean():.1%}",
        "pad_target": f"{1 - masks['target_mask'].mean():.1%}",
        "dropped": f"{1 - context.sum() / before.sum():.1%}",
        "seconds": seconds,
    }


def reference(grid, patch, num_batches, batch_size, seed):
    collator = ReferenceMaskCollator(
        input_size=(grid[0] * patch, grid[1] * patch),
        patch_size=patch,
        enc_mask_scale=PAPER_MASKS["context_scale"],
        pred_mask_scale=PAPER_MASKS["target_scale"],
        aspect_ratio=PAPER_MASKS["target_aspect_ratio"],
        npred=PAPER_MASKS["num_targets"],
        min_keep=PAPER_MASKS["min_keep"],
        seed=seed,
    )
    context, before, target = [], [], []
    rows = np.zeros(grid[0])
    for _ in range(num_batches):
        enc, pred, full = collator.sample(batch_size)
        rows += np.bincount((enc[0] // grid[1]).ravel(), minlength=grid[0]) / (batch_size * num_batches)
        context.append(np.full((batch_size,), enc.shape[-1]))
        before.append(full)
        target.append(np.full((pred.shape[0] * batch_size,), pred.shape[-1]))
    context, before, target = map(np.concatenate, (context, before, target))
    return {
        "Kc": "varies",
        "Kt": "varies",
        "target": _stats(target),
        "target_sizes": sorted(set(target.tolist())),
        "context": _stats(context),
        "context_before": f"{before.mean():.1f}",
        "pad_context": "0.0%",
        "pad_target": "0.0%",
        "dropped": f"{1 - context.sum() / before.sum():.1%}",
        "relaxations": collator.relaxations,
        "rows": rows.tolist(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_batches", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "masker_statistics.md"),
    )
    args = parser.parse_args(argv)
    if args.num_batches < 1 or args.batch_size < 1:
        parser.error(
            f"--num_batches and --batch_size must be >= 1. Received: "
            f"num_batches={args.num_batches}, batch_size={args.batch_size}"
        )

    rows = []
    for grid, patch in (((14, 14), 16), ((16, 16), 14)):
        label = f"224/{patch} ({grid[0]}x{grid[1]})"
        n, b, s = args.num_batches, args.batch_size, args.seed
        rows.append((label, "MultiBlockMasker (default)", ours(grid, n, b, s)))
        clipped = ours(grid, n, b, s, reference_clip=True)
        rows.append((label, "MultiBlockMasker (reference_clip=True)", clipped))
        exact = ours(grid, n, b, s, reference=True, reference_group_size=b)
        rows.append((label, f"MultiBlockMasker (reference=True, groups of {b})", exact))
        rows.append((label, f"I-JEPA reference, batch {b}", reference(grid, patch, n, b, s)))

    header = (
        "| grid | sampler | Kc | Kt | target block tokens min/mean/max | real context tokens "
        "min/mean/max | context before cut (mean) | padded context slots | padded target slots "
        "| context tokens dropped |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {g} | {name} | {r['Kc']} | {r['Kt']} | {r['target']} | {r['context']} | "
        f"{r['context_before']} | {r['pad_context']} | {r['pad_target']} | {r['dropped']} |"
        for g, name, r in rows
    ]
    notes = [
        "",
        f"{args.num_batches} batches of {args.batch_size} images, seed {args.seed}, "
        f"Keras backend `{keras.backend.backend()}`. Masks: {PAPER_MASKS}.",
        "Context before cut: real context tokens before our slot budget `Kc` (ours) or the "
        "truncation of every mask to the batch's shortest (reference).",
        "Target block sizes seen: "
        + "; ".join(f"{g} {name}: {r['target_sizes']}" for g, name, r in rows),
        "Real context tokens per grid row (row 0 first): "
        + "; ".join(
            f"{g} {name}: " + " ".join(f"{v:.1f}" for v in r["rows"])
            for g, name, r in rows
            if "reference" in name
        ),
        "Reference context masks that had to overlap a target block (after 20 failed tries): "
        + ", ".join(f"{g}: {r['relaxations']}" for g, name, r in rows if "relaxations" in r),
        "",
    ]
    table = "## MultiBlockMasker statistics\n\n" + header + "\n".join(lines) + "\n" + "\n".join(notes)
    print(table)
    atomic_write_text(args.output, table)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
