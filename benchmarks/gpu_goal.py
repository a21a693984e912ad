"""Issue 9's GPU measurement: the train step at ViT-B/16, bfloat16, growing batches,
ours (JAX, torch) beside the official StoP step on the same GPU, with MFU.

One process runs one cell and prints one `RESULT {json}` line; `benchmarks/gpu_goal.sh`
runs every cell on a lent GPU machine. A batch that does not fit prints a RESULT with
`"oom": true` and exits with status 3, so the driver stops growing the batch there.

    python -m benchmarks.gpu_goal --impl matmul-peak
    python -m benchmarks.gpu_goal --impl official --batch 128 --official-src DIR
    KERAS_BACKEND=jax python -m benchmarks.gpu_goal --impl ours --batch 128

What each side runs, so that the work is the same:
- **Masks**: the official collator's distribution on both sides (`MultiBlockMasker(
  reference=True)` with `reference_group_size` = the batch, as the official code
  truncates per process batch); token counts are reported, and the model FLOPs are
  counted on each side's real tokens (`compare_official.model_flops`).
- **Precision**: bfloat16 autocast with float32 weights. The official step as shipped
  (`use_float16: true` in its ViT-B config: `torch.cuda.amp.autocast(bfloat16)` and a
  `GradScaler`); ours under Keras's `mixed_bfloat16` policy.
- **Images**: one random batch already on the device, fed every step (data loading is
  left out on both sides, as the official harness in `../shared/peers` does). Ours calls
  `train_on_batch`, Keras's whole train step plus its per-call state bookkeeping.
- **Official activation checkpointing**: `--ckpt off` (the CPU comparison's setting, for
  equal arithmetic) or `official` (as shipped: every block's attention and MLP run again
  in the backward pass).

MFU = model FLOPs per step / step time / the bfloat16 matmul peak measured on the same
GPU (`--impl matmul-peak`: torch's 8192^3 bfloat16 matmul, mean of 10 after 3 warm-ups).
On a CPU (no GPU present) every cell runs too, for a smoke test of the script:

    python -m benchmarks.gpu_goal --impl official --size tiny --image 64 --patch 8 \\
        --min-keep 4 --batch 2 --steps 2 --official-src DIR
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

from benchmarks.compare_official import drawn_token_counts
from benchmarks.compare_official import model_flops

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {
    # name: (width, depth, heads); the official `deit_<name>` models
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}
PREDICTOR_WIDTH, PREDICTOR_DEPTH = 384, 6  # the ViT-B recipe's predictor
OOM_EXIT_STATUS = 3


def config(size, image, patch, batch, min_keep=10):
    """The cell's configuration in `compare_official.model_flops`'s layout.

    >>> config("base", 224, 16, 64)["width"]
    768
    """
    if size not in SIZES:
        raise ValueError(f"Unknown size. Expected one of {sorted(SIZES)}. Received: size={size!r}")
    if image % patch:
        raise ValueError(f"The image size must be a multiple of the patch size. Received: image={image}, patch={patch}")
    if batch < 1:
        raise ValueError(f"The batch must be at least 1. Received: batch={batch}")
    width, depth, heads = SIZES[size]
    return dict(width=width, depth=depth, heads=heads, image=image, patch=patch, batch=batch, min_keep=min_keep)


def check_masks(cfg):
    """Raises a ValueError naming `min_keep` when a block of the official mask
    distribution on this grid can never hold more than `min_keep` tokens: the official
    collator would then re-draw it forever. Checked before either side starts.

    >>> check_masks(config("tiny", 64, 8, 2, min_keep=4))
    >>> check_masks(config("tiny", 32, 8, 2, min_keep=2))
    Traceback (most recent call last):
    ...
    ValueError: With `reference=True` every block must hold more than `min_keep` tokens; the smallest block of `target_scale=(0.15, 0.2)` on grid_size=(4, 4) has 1. Received: min_keep=2
    """
    import keras_flexpredict  # noqa: F401 - first: imports Keras without JAX on torch

    from keras_flexpredict.layers.multi_block_masker import MultiBlockMasker

    grid = cfg["image"] // cfg["patch"]
    MultiBlockMasker(grid_size=(grid, grid), min_keep=cfg["min_keep"], reference=True, reference_group_size=cfg["batch"])


def is_out_of_memory(error):
    """Whether an exception is a device's out-of-memory error (torch or XLA).

    >>> is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 2 GiB"))
    True
    >>> is_out_of_memory(ValueError("bad shape"))
    False
    """
    text = f"{type(error).__name__}: {error}"
    return any(s in text for s in ("OutOfMemoryError", "RESOURCE_EXHAUSTED", "CUDA out of memory", "out of memory"))


def summarize(times, flops_per_step, batch, peak_flops):
    """Median step, images/s and MFU from timed steps (seconds) and FLOPs per step.

    >>> r = summarize([0.1, 0.2, 0.1], 4e12, 64, 8e14)
    >>> round(r["step_ms"]), round(r["images_per_s"]), round(r["mfu"], 2)
    (100, 640, 0.05)
    """
    step = statistics.median(times)
    return dict(
        step_ms=1e3 * step,
        step_ms_all=[round(1e3 * t, 2) for t in times],
        images_per_s=batch / step,
        model_tflops_per_s=flops_per_step / step / 1e12,
        mfu=None if not peak_flops else flops_per_step / step / peak_flops,
    )


def count_aten_ops(step):
    """Runs `step()` once under a torch dispatch mode and counts the aten ops it
    dispatches: `(all, launching)`, where `launching` leaves out the views and other
    ops that move no data (no kernel on a GPU). On a GPU each launching op is one or
    more kernel launches, so an eager step's count says how launch-bound it is.

    >>> import torch
    >>> count_aten_ops(lambda: (torch.ones(3) + 1).view(3, 1))
    (3, 2)
    """
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    counts = collections.Counter()

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with Counting():
        step()
    return sum(counts.values()), sum(n for name, n in counts.items() if name not in _MOVE_NO_DATA)


_MOVE_NO_DATA = {
    "view", "_unsafe_view", "_reshape_alias", "reshape", "as_strided", "expand", "permute", "transpose", "t",
    "unsqueeze", "squeeze", "slice", "select", "narrow", "split", "split_with_sizes", "unbind", "chunk",
    "unfold", "alias", "detach", "lift_fresh", "promote_types",
}


def report(lines):
    """A markdown table of a `gpu_goal.sh` log's RESULT lines: each cell's median step,
    images/s, MFU and peak memory, and its speed against the official step (activation
    checkpointing off) at the same batch.

    >>> rows = [dict(impl="official-ckpt-off", batch=64, oom=False, step_ms=100.0, images_per_s=640.0,
    ...              model_tflops_per_s=400.0, mfu=0.5, peak_memory_mib=2048.0, context_tokens=54.0,
    ...              target_tokens=30.0, first_step_s=None),
    ...         dict(impl="ours-jax", batch=64, oom=False, step_ms=80.0, images_per_s=800.0,
    ...              model_tflops_per_s=500.0, mfu=0.63, peak_memory_mib=1024.0, context_tokens=54.1,
    ...              target_tokens=30.2, first_step_s=40.0),
    ...         dict(impl="ours-jax", batch=128, oom=True)]
    >>> lines = report(["RESULT " + json.dumps(r) for r in rows]).splitlines()
    >>> lines[3]
    '| ours-jax | 64 | 80.0 | 800 | 500 | 63% | 1.25x | 1.00 | 54.1 / 30.2 | 40.0 | - |'
    >>> lines[4]
    '| ours-jax | 128 | does not fit | | | | | | | | |'
    """
    rows = [json.loads(line.split("RESULT ", 1)[1]) for line in lines if line.startswith("RESULT ")]
    official = {r["batch"]: r for r in rows if r.get("impl") == "official-ckpt-off" and not r.get("oom")}
    out = [
        "| implementation | batch | step ms | images/s | model TFLOP/s | MFU | vs official (checkpointing off) "
        "| peak GPU memory GiB | context / target tokens | first step s | launching aten ops / step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "batch" not in r:
            continue  # the matmul peak
        if r.get("oom"):
            out.append(f"| {r['impl']} | {r['batch']} | does not fit | | | | | | | | |")
            continue
        base = official.get(r["batch"])
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else "-"
        mfu = "-" if r.get("mfu") is None else f"{100 * r['mfu']:.0f}%"
        memory = "-" if r.get("peak_memory_mib") is None else f"{r['peak_memory_mib'] / 1024:.2f}"
        first = "-" if r.get("first_step_s") is None else f"{r['first_step_s']:.1f}"
        ops = "-" if not r.get("aten_ops") else str(r["aten_ops"][1])
        out.append(
            f"| {r['impl']} | {r['batch']} | {r['step_ms']:.1f} | {r['images_per_s']:.0f} | "
            f"{r['model_tflops_per_s']:.0f} | {mfu} | {ratio} | {memory} | "
            f"{r['context_tokens']:.1f} / {r['target_tokens']:.1f} | {first} | {ops} |"
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------- matmul peak
def run_matmul_peak(size=8192, warmup=3, repeats=10):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = size if device == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(warmup):
        torch.mm(a, b)
    _sync(torch)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _sync(torch)
    seconds = (time.perf_counter() - start) / repeats
    return dict(impl="matmul-peak", device=_torch_device_name(torch), size=size, bf16_tflops=2 * size**3 / seconds / 1e12)


def _sync(torch):
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _torch_device_name(torch):
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"


# ----------------------------------------------------------------------------- official
def run_official(cfg, precision, warmup, steps, ckpt, official_src, peers, count_ops=False, seed=0):
    """The official StoP `train_step`, compiled from its source at run time by the peers
    harness's `refsrc` (nothing of the official code is stored in this project), on the
    GPU when there is one."""
    import copy
    import contextlib
    import io

    import numpy as np
    import torch
    import yaml

    sys.path.insert(0, peers)
    import refsrc  # noqa: E402 - the peers harness's loader of the official sources

    main_py = os.path.join(official_src, "main.py")
    if not os.path.isfile(main_py):
        raise SystemExit(f"No official main.py under --official-src. Received: official_src={official_src!r}")
    sys.path.insert(0, official_src)
    refsrc.stub_module("src.data_manager", init_data=None, make_transforms=None)  # needs torchvision
    ref = refsrc.import_file("stop_main", main_py)
    conf = yaml.safe_load(open(os.path.join(official_src, "configs", "pretrain", "vit-b16.yaml")))
    if ckpt == "off":
        ref.deit.checkpoint = lambda fn, *a, **k: fn(*a)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_float16 = precision == "bfloat16"
    size = {192: "tiny", 384: "small", 768: "base"}[cfg["width"]]
    torch.manual_seed(seed)
    np.random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        encoder, predictor = ref.init_model(
            device, patch_size=cfg["patch"], crop_size=cfg["image"], pred_depth=PREDICTOR_DEPTH,
            emb_dim=PREDICTOR_WIDTH, model_name=f"deit_{size}", apply_stop=True,
            noise_var=conf["stop_params"]["var"],
        )
        target_encoder = copy.deepcopy(encoder)
        opt = conf["optimization"]
        optimizer, scaler, scheduler, wd_scheduler = ref.init_opt(
            encoder=encoder, predictor=predictor, wd=float(opt["weight_decay"]),
            final_wd=float(opt["final_weight_decay"]), start_lr=opt["start_lr"], ref_lr=opt["lr"],
            final_lr=opt["final_lr"], iterations_per_epoch=1000, warmup=opt["warmup"],
            num_epochs=opt["epochs"], ipe_scale=opt["ipe_scale"], use_float16=use_float16,
        )
    for p in target_encoder.parameters():
        p.requires_grad = False
    momentum = (0.996 + i * 0.004 / 10**6 for i in range(10**6))
    mask = conf["mask"]
    collator = ref.MaskCollator(
        input_size=cfg["image"], patch_size=cfg["patch"], pred_mask_scale=tuple(mask["pred_mask_scale"]),
        enc_mask_scale=tuple(mask["enc_mask_scale"]), aspect_ratio=tuple(mask["aspect_ratio"]),
        nenc=mask["num_enc_masks"], npred=mask["num_pred_masks"], min_keep=cfg["min_keep"],
    )
    torch.manual_seed(seed + 1)
    # The collator on the batch's indices gives the masks alone (the peers harness times
    # it so too): no images are stacked for every step.
    batches = [collator(list(range(cfg["batch"]))) for _ in range(warmup + steps)]
    generator = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(cfg["batch"], 3, cfg["image"], cfg["image"], generator=generator).to(device)
    namespace = dict(vars(ref))
    namespace.update(
        encoder=encoder, predictor=predictor, target_encoder=target_encoder, optimizer=optimizer,
        scaler=scaler, scheduler=scheduler, wd_scheduler=wd_scheduler, momentum_scheduler=momentum,
        target_blocks=conf["meta"]["target_blocks"], use_float16=use_float16,
        dtype=torch.bfloat16 if use_float16 else None, all_gather=False, clip_grad=opt["clip_grad"],
    )
    train_step = refsrc.nested_function(main_py, "main", "train_step", namespace)
    times, context_tokens, target_tokens = [], [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i, (_, masks_enc, masks_pred) in enumerate(batches):
        # Moved before the clock starts, as the official loop does before calling the step.
        namespace.update(
            imgs=images, masks_enc=[m.to(device) for m in masks_enc], masks_pred=[m.to(device) for m in masks_pred]
        )
        _sync(torch)
        start = time.perf_counter()
        train_step()  # returns float(loss): waits for the step
        _sync(torch)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            context_tokens.append(masks_enc[0].shape[1])
            target_tokens.append(masks_pred[0].shape[1])
    peak_memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    ops = count_aten_ops(train_step) if count_ops else None
    return dict(
        impl=f"official-ckpt-{ckpt}", device=_torch_device_name(torch), torch=torch.__version__, aten_ops=ops,
        context_tokens=float(np.mean(context_tokens)), target_tokens=float(np.mean(target_tokens)),
        flops=float(np.mean([model_flops(cfg, c, t) for c, t in zip(context_tokens, target_tokens)])),
        times=times, first_step_s=None, peak_memory_mib=peak_memory,
    )


# ----------------------------------------------------------------------------- ours
def run_ours(cfg, precision, warmup, steps, count_ops=False, jit_compile="auto", seed=0):
    """Ours through Keras's `train_on_batch` on the backend of `KERAS_BACKEND`;
    `jit_compile=True` on torch runs the step through `torch.compile` (Keras's)."""
    import keras_flexpredict  # noqa: F401 - first: imports Keras without JAX on torch

    import keras
    import numpy as np

    from keras_flexpredict.models.flex_predict import FlexPredict

    if precision == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    model = FlexPredict.from_preset(
        "stop_vit_base_patch16_224_imagenet",
        encoder=dict(
            image_size=cfg["image"], patch_size=cfg["patch"], hidden_dim=cfg["width"], depth=cfg["depth"],
            num_heads=cfg["heads"],
        ),
        predictor=dict(hidden_dim=PREDICTOR_WIDTH, depth=PREDICTOR_DEPTH, num_heads=cfg["heads"], seed=seed),
        masker=dict(min_keep=cfg["min_keep"], seed=seed, reference=True, reference_group_size=cfg["batch"]),
    )
    model.compile(jit_compile=jit_compile)
    context_tokens, target_tokens = drawn_token_counts(model.masker, warmup + steps, cfg["batch"])
    context_tokens, target_tokens = context_tokens[warmup:], target_tokens[warmup:]
    images = np.random.default_rng(seed).standard_normal((cfg["batch"], cfg["image"], cfg["image"], 3), "float32")
    images = keras.ops.convert_to_tensor(images)  # on the default device
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        float(model.train_on_batch(images, return_dict=True)["loss"])  # waits for the step
        times.append(time.perf_counter() - start)
    peak_memory = _keras_peak_memory_mib(keras)
    ops = None
    if count_ops and keras.backend.backend() == "torch" and jit_compile is not True:
        ops = count_aten_ops(lambda: model.train_on_batch(images))
    return dict(
        impl=f"ours-{keras.backend.backend()}" + ("-compiled" if jit_compile is True and keras.backend.backend() == "torch" else ""),
        device=_keras_device_name(keras), keras=keras.__version__, aten_ops=ops,
        context_tokens=float(np.mean(context_tokens)), target_tokens=float(np.mean(target_tokens)),
        context_slots=int(model.masker.num_context_tokens), target_slots=int(model.masker.num_target_tokens),
        flops=float(np.mean([model_flops(cfg, c, t) for c, t in zip(context_tokens, target_tokens)])),
        times=times[warmup:], first_step_s=times[0], peak_memory_mib=peak_memory,
    )


def _keras_device_name(keras):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if backend == "torch":
        import torch

        return _torch_device_name(torch)
    return platform.processor() or "cpu"


def _keras_peak_memory_mib(keras):
    """The device allocator's peak on a GPU; None on a CPU (see compare_official for RSS)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return None


# ----------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=["ours", "official", "matmul-peak"])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--min-keep", type=int, default=10, help="the masks' min_keep (the official 10; 4 at 64/8)")
    parser.add_argument("--precision", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--ckpt", choices=["off", "official"], default="off", help="official side only")
    parser.add_argument("--official-src", default=os.environ.get("OFFICIAL_SRC"),
                        help="an extracted tree of amirbar/StoP (main.py, src/, configs/)")
    parser.add_argument("--peers", default=os.environ.get("PEERS", os.path.join(HERE, "..", "..", "shared", "peers")))
    parser.add_argument("--peak-tflops", type=float, default=None, help="bfloat16 matmul peak, for MFU")
    parser.add_argument("--count-ops", action="store_true",
                        help="after timing, count one step's aten ops (torch and the official side)")
    parser.add_argument("--jit-compile", action="store_true",
                        help="ours on torch: the step through torch.compile (an experiment: untested beyond a CPU smoke run)")
    parser.add_argument("--report", metavar="LOG", help="print the markdown table of a gpu_goal.sh log, and stop")
    args = parser.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            print(report(f.read().splitlines()))
        return 0
    if args.impl is None:
        parser.error("--impl is required (unless --report)")
    if args.impl == "matmul-peak":
        print("RESULT " + json.dumps(run_matmul_peak()), flush=True)
        return 0
    cfg = config(args.size, args.image, args.patch, args.batch, args.min_keep)
    if args.steps < 1:
        raise SystemExit(f"--steps must be at least 1. Received: steps={args.steps}")
    if args.impl == "official" and not args.official_src:
        raise SystemExit("--impl official needs --official-src (or OFFICIAL_SRC): an extracted amirbar/StoP tree")
    check_masks(cfg)
    common = dict(size=args.size, image=args.image, patch=args.patch, batch=args.batch, precision=args.precision)
    try:
        if args.impl == "official":
            raw = run_official(
                cfg, args.precision, args.warmup, args.steps, args.ckpt, args.official_src, args.peers, args.count_ops
            )
        else:
            raw = run_ours(cfg, args.precision, args.warmup, args.steps, args.count_ops, True if args.jit_compile else "auto")
    except Exception as error:  # noqa: BLE001 - an out-of-memory batch is a result, not a crash
        if not is_out_of_memory(error):
            raise
        print("RESULT " + json.dumps(dict(common, impl=args.impl, oom=True, error=str(error)[:300])), flush=True)
        return OOM_EXIT_STATUS
    peak = None if args.peak_tflops is None else 1e12 * args.peak_tflops
    times, flops = raw.pop("times"), raw["flops"]
    print("RESULT " + json.dumps(dict(common, oom=False, **raw, **summarize(times, flops, args.batch, peak))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
