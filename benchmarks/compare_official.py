"""Our train step beside the official StoP step, same machine, one run, interleaved.

    python -m benchmarks.compare_official                      # every cell, 2 rounds
    python -m benchmarks.compare_official --configs tiny224 --backends torch --rounds 1
    python -m benchmarks.compare_official --report             # rebuild the table only

Cells: configuration (`tiny224` ViT-Tiny 224/16 batch 8, `small224` ViT-Small 224/16
batch 8, `tiny64` ViT-Tiny 64/8 batch 32; predictor 384 wide, 6 deep, heads = encoder
heads; fp32) x implementation (the official StoP `train_step` with activation
checkpointing off, timed by `../shared/peers/bench_jepa_torch.py` from a local clone of
the official repository; ours through `model.fit` on the torch, JAX and TensorFlow
backends) x masks (`reference`: `MultiBlockMasker(reference=True)` with the official
collator's statistics, truncated per batch as the official per-process batch is;
`default`: the library's flaw-free masks). Each cell runs in its own process (peak RSS is
per cell); rounds interleave the cells so drift of the machine hits all alike.

Every implementation first runs `--warmup` steps (default 10), then `--steps` timed ones
(default 8). TensorFlow cuts each step to its masks' lengths (rounded up to multiples of
an eighth of the slots) and compiles its fused LayerNorm and GELU once per new length, a
one-off cost of a run's first steps, like JAX's first-step compilation, which the table
reports apart. So with the official masks our warm-up replays the timed steps' masks
(`warm_up_on_timed_masks`): every length a timed step meets has been compiled. With the
library's maskers (`reference`, `default`) a timed step can still meet a new length
(since session 10; before, the official masks' warm-up was their steps 0-9, and 1-2 of
the 8 timed TF steps compiled).

Both sides hold one batch of images: the official harness feeds the same batch every
step, ours a `keras.utils.PyDataset` that returns one batch `warmup + steps` times
(since session 15; before, `fit` got an array of every step's images, 87 MB at 224 px
batch 8, which TensorFlow's data adapter copied once more: ~0.24 GiB of TF's peak RSS).

Reported per cell: median step time after warm-up, images/s, ratio to the official
step of the same round, model FLOPs per step on real tokens (target encoder forward,
context encoder and predictor forward + backward; the same definition as the official
harness) and MFU = model FLOPs / step time / the fp32 matmul peak measured in the same
round (torch.mm 4096^3), mean real context / target tokens, first step (compilation) and
peak RSS, with (since session 23) the part of it that was mapped files in parentheses
(shared libraries' pages, read as each process exits: `benchmarks/mapped_file_rss.py`;
~0.5 GiB in a TensorFlow process, ~0.1 GiB in the official torch one). A timed step
during which other processes used more than 5% of the machine is re-run (at most 3
times) and counted. Raw results: `benchmarks/results/compare/*.json`;
the table goes to `benchmarks/results/compare_official.md` and into BENCHMARKS.md.

`--allocators system,tcmalloc` runs every cell (the official one too) once with glibc's
malloc and once with gperftools' tcmalloc preloaded (`LD_PRELOAD`), interleaved; the
ratio to the official step is taken within the same allocator. Why: XLA:CPU takes its
~0.6 GB temporary buffer afresh from the kernel at every step (glibc serves a
non-main-thread allocation that large with `mmap`, whatever `MALLOC_MMAP_MAX_` says), so
JAX pays ~150k page faults a step; tcmalloc keeps the buffer. `hugepages` keeps glibc's
malloc but sets `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35; the kernel's
transparent huge pages in `madvise` or `always` mode): the same buffer then faults in
2 MiB pages (JAX ~3.1M -> ~0.7M page faults in an 18-step ViT-Tiny run); the recipes'
command lines run JAX so since session 17. `one-arena` keeps glibc's malloc with
`MALLOC_ARENA_MAX=1`: every thread allocates from the main heap, so memory one thread
frees can serve another's next tensor (TensorFlow's executor threads otherwise hold freed
memory in arenas of their own). `--results DIR` keeps a run (another
machine's, say) apart from the table of BENCHMARKS.md; its table goes to `DIR.md`.

`--length-buckets N` sets `FlexPredict(length_buckets=N)` in our JAX cells (default: the
model's, up to 4 on CPU; `1` runs every batch at the masker's full slots, as before
session 12); each JAX result records the buckets it could choose from.

`--torch-only-python PATH` adds the cell `ours-torch-only`: the torch backend run by
another interpreter whose environment has no JAX or TensorFlow, as a torch user installs
it (`make torch-only-env` builds `.venv-torch-only`). With JAX installed, `import keras`
imports it (`keras/src/callbacks/orbax_checkpoint.py`), ~0.13 GiB of RSS that a torch-only
install does not pay; since session 15 `import keras_flexpredict` first imports Keras
without it (`utils.keras_import`), as the worker here does, so the two cells should differ
only by what else each environment loads; the step itself is the same.
`--jax-only-python PATH` adds `ours-jax-only` in the same way (`make jax-only-env` builds
`.venv-jax-only`, the package with its `jax` extra): with scikit-learn, SciPy and
matplotlib installed `import keras` loads them too (~45 MiB of RSS on JAX).
`--tensorflow-only-python PATH` adds `ours-tensorflow-only` (`make tensorflow-only-env`
builds `.venv-tensorflow-only`, the package with its `tensorflow` extra): with JAX
installed, TensorFlow's `tf.lite` imports it (~90 MiB of RSS with Keras's extras); since
session 27 `import keras_flexpredict` imports TensorFlow with JAX hidden too (and hands
`tf.lite` a `jax.jit` that imports JAX when first called), so what is left between the
two cells is Keras's scikit-learn, SciPy and matplotlib imports.

Needs: the official StoP clone (`../.mirror/amirbar+StoP/repo`, or `MIRROR`), the
peers harness (`../shared/peers`, or `PEERS`), pyyaml (`pip install -e .[bench]`).
"""

import argparse
import contextlib
import glob
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.mapped_file_rss import mapped_file_rss_mib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_RESULTS = os.path.join(HERE, "results", "compare")
RESULTS = DEFAULT_RESULTS  # --results moves it (another machine's run kept apart)

CONFIGS = {
    # name: encoder (width, depth, heads), image, patch, batch, min_keep
    "tiny224": dict(width=192, depth=12, heads=3, image=224, patch=16, batch=8, min_keep=10),
    "small224": dict(width=384, depth=12, heads=6, image=224, patch=16, batch=8, min_keep=10),
    "tiny64": dict(width=192, depth=12, heads=3, image=64, patch=8, batch=32, min_keep=4),
}
LABELS = {
    "tiny224": "ViT-Tiny 224/16, batch 8",
    "small224": "ViT-Small 224/16, batch 8",
    "tiny64": "ViT-Tiny 64/8, batch 32",
}
PREDICTOR_WIDTH, PREDICTOR_DEPTH, NUM_TARGETS = 384, 6, 4
OTHER_LOAD_LIMIT = 0.05
ALLOCATORS = ("system", "tcmalloc", "hugepages", "one-arena")
# glibc >= 2.35: malloc asks the kernel for transparent huge pages (madvise) on the
# memory it maps, so a fresh buffer faults in 2 MiB pages instead of 4 KiB ones. Set here,
# not through `keras_flexpredict.utils.memory.hugepage_malloc_environment`: the driver
# imports no Keras, and a cell gets the setting even over an explicit hugetlb=0.
HUGEPAGES_TUNABLE = "glibc.malloc.hugetlb=1"
WITH_TCMALLOC = os.path.join(ROOT, "scripts", "with_tcmalloc.sh")


REMAT_BLOCKS = "KFP_BENCH_REMAT_BLOCKS"
# Backend names of --backends that run a backend with a non-default setting, for an A/B
# beside the default in the same run: name -> (KERAS_BACKEND, extra environment).
BACKEND_VARIANTS = {
    # The JAX train step compiled with XLA:CPU's elemental emitters (the CPU default since
    # session 21, an opt-in before: less peak memory, often a slower step) or with XLA's
    # own fusion emitters (keras_flexpredict/utils/xla_cpu_options.py).
    "jax-elemental-emitters": ("jax", {"KFP_XLA_FUSION_EMITTERS": "0"}),
    "jax-fusion-emitters": ("jax", {"KFP_XLA_FUSION_EMITTERS": "1"}),
    # Every transformer block under a `keras.RematScope` (run_ours): its backward pass
    # computes its activations again instead of keeping them (on TensorFlow in float32
    # the default since session 26, so there the same step as `tensorflow`).
    "tensorflow-remat-blocks": ("tensorflow", {REMAT_BLOCKS: "1"}),
    "torch-remat-blocks": ("torch", {REMAT_BLOCKS: "1"}),
    "jax-remat-blocks": ("jax", {REMAT_BLOCKS: "1"}),
    # The model built under `keras.RematScope(mode=None)`: TensorFlow's blocks keep their
    # activations for the backward pass (its default before session 26).
    "tensorflow-keep-activations": ("tensorflow", {REMAT_BLOCKS: "0"}),
}


# Cells run by another interpreter, whose environment has one backend only: cell name ->
# (its `--backends` name, the argument naming the interpreter).
SINGLE_BACKEND_CELLS = {
    "ours-torch-only": ("torch", "torch_only_python"),
    "ours-jax-only": ("jax", "jax_only_python"),
    "ours-tensorflow-only": ("tensorflow", "tensorflow_only_python"),
    # A variant in a one-backend install: run only beside the variant in --backends.
    "ours-tensorflow-only-remat-blocks": ("tensorflow-remat-blocks", "tensorflow_only_python"),
    "ours-tensorflow-only-keep-activations": ("tensorflow-keep-activations", "tensorflow_only_python"),
}


def one_backend_cells(backends, pythons):
    """The `SINGLE_BACKEND_CELLS` a run has: those whose interpreter is given
    (`pythons`: argument name -> path or None), a variant's only where `backends` has
    that variant.

    >>> one_backend_cells(["tensorflow"], {"tensorflow_only_python": "py"})
    ['ours-tensorflow-only']
    >>> one_backend_cells(["tensorflow-remat-blocks"], {"tensorflow_only_python": "py"})
    ['ours-tensorflow-only', 'ours-tensorflow-only-remat-blocks']
    """
    return [
        cell
        for cell, (backend, arg) in SINGLE_BACKEND_CELLS.items()
        if pythons.get(arg) and (backend not in BACKEND_VARIANTS or backend in backends)
    ]


def implementations(backends, single_backend_cells=()):
    """The cells of one configuration, in run order: the official step, ours on each of
    `backends`, and each of `single_backend_cells` right after its backend's own cell.

    >>> implementations(["torch", "jax", "tensorflow"], ["ours-jax-only", "ours-torch-only"])
    ['official', 'ours-torch', 'ours-torch-only', 'ours-jax', 'ours-jax-only', 'ours-tensorflow']
    """
    impls = ["official"] + [f"ours-{b}" for b in backends]
    for cell in SINGLE_BACKEND_CELLS:
        if cell in single_backend_cells:
            own = f"ours-{SINGLE_BACKEND_CELLS[cell][0]}"
            impls.insert(impls.index(own) + 1 if own in impls else 1, cell)
    return impls


def backend_environment(env, backend):
    """`env` for a cell of `--backends` name `backend` (a Keras backend or a
    `BACKEND_VARIANTS` name).

    >>> backend_environment({}, "jax-elemental-emitters")["KFP_XLA_FUSION_EMITTERS"]
    '0'
    >>> backend_environment({}, "torch")
    {'KERAS_BACKEND': 'torch'}
    """
    name, extra = BACKEND_VARIANTS.get(backend, (backend, {}))
    return dict(env, KERAS_BACKEND=name, **extra)


def find_tcmalloc():
    """Path of gperftools' tcmalloc as `scripts/with_tcmalloc.sh` finds it
    (`$KFP_TCMALLOC`, else the usual library folders), or None."""
    proc = subprocess.run(["bash", WITH_TCMALLOC, "--path"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def allocator_env(env, allocator):
    """`env` with the allocator preloaded (`"system"`: glibc's malloc, unchanged;
    `"hugepages"`: glibc's malloc with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` added to
    the tunables `env` already sets; `"one-arena"`: glibc's malloc with
    `MALLOC_ARENA_MAX=1`, every thread allocating from the main heap)."""
    if allocator == "system":
        return env
    if allocator == "one-arena":
        return dict(env, MALLOC_ARENA_MAX="1")
    if allocator == "hugepages":
        tunables = [
            t for t in env.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.malloc.hugetlb=")
        ]
        return dict(env, GLIBC_TUNABLES=":".join(tunables + [HUGEPAGES_TUNABLE]))
    preload = " ".join(x for x in (find_tcmalloc(), env.get("LD_PRELOAD")) if x)
    return dict(env, LD_PRELOAD=preload)


# ----------------------------------------------------------------------------- load guard
def _busy_seconds():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system _idle_ _iowait_ irq softirq steal
    return (sum(fields[0:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    t = os.times()
    return t.user + t.system


def other_load(fn):
    """Runs `fn`; returns (result, wall seconds, share of the machine other processes used)."""
    busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    other = (_busy_seconds() - busy) - (_own_seconds() - own)
    return result, wall, max(0.0, other) / ((os.cpu_count() or 1) * max(wall, 1e-9))


# ----------------------------------------------------------------------------- FLOPs
def model_flops(cfg, context_tokens, target_tokens):
    """Matmul FLOPs (2 per multiply-add) of one step on real tokens: target encoder
    forward; context encoder and predictor forward + backward (3x forward; the patch
    embedding and the StoP noise projection need weight gradients only, 2x)."""
    d, depth, b = cfg["width"], cfg["depth"], cfg["batch"]
    n = (cfg["image"] // cfg["patch"]) ** 2

    def block(tokens, width):
        return 24 * tokens * width * width + 4 * tokens * tokens * width

    patch = 2 * n * 3 * cfg["patch"] ** 2 * d
    target = b * (patch + depth * block(n, d))
    context = b * depth * block(context_tokens, d)
    projection_in = 2 * b * context_tokens * d * PREDICTOR_WIDTH
    noise = 2 * NUM_TARGETS * b * target_tokens * d * PREDICTOR_WIDTH
    predictor = NUM_TARGETS * b * PREDICTOR_DEPTH * block(context_tokens + target_tokens, PREDICTOR_WIDTH)
    projection_out = 2 * NUM_TARGETS * b * target_tokens * PREDICTOR_WIDTH * d
    return target + 2 * b * patch + 3 * (context + projection_in + predictor + projection_out) + 2 * noise


# ----------------------------------------------------------------------------- our worker
def drawn_token_counts(masker, steps, batch):
    """Mean real context and target tokens per image of each of the first `steps`
    batches `masker` draws: a twin of the same configuration and seed draws the same
    stream, so the model's own masker is left untouched. Two `(steps,)` arrays."""
    import keras

    from keras_flexpredict.layers.multi_block_masker import MultiBlockMasker

    twin = MultiBlockMasker(**dict(masker.get_config(), name="twin"))
    drawn = keras.tree.map_structure(keras.ops.convert_to_numpy, twin.sample_batches(steps, batch))
    return drawn["context_mask"].sum(-1).mean(-1), drawn["target_mask"].sum(-1).mean((-1, -2))


def load_official_masks(path, steps, num_targets=NUM_TARGETS):
    """The official harness's `--dump-masks` file as padded arrays with the
    masker's layout: `context_indices (S, B, Kc)`, `target_indices (S, B, M, Kt)` and
    their validity masks (every official mask of a step has the same length)."""
    import numpy as np

    raw = np.load(path)
    context = [raw[f"step{i}_enc0"].astype("int32") for i in range(steps)]
    targets = [np.stack([raw[f"step{i}_pred{j}"] for j in range(num_targets)], 1) for i in range(steps)]
    kc, kt = max(c.shape[-1] for c in context), max(t.shape[-1] for t in targets)

    def pad(x, k):
        width = [(0, 0)] * (x.ndim - 1) + [(0, k - x.shape[-1])]
        valid = np.pad(np.ones(x.shape, bool), width)
        # Sorted indices, as the masker gives them (the official ones are sorted too).
        return np.pad(np.sort(x, -1).astype("int32"), width), valid

    (ci, cm), (ti, tm) = zip(*[pad(c, kc) for c in context]), zip(*[pad(t, kt) for t in targets])
    return {
        "context_indices": np.stack(ci), "context_mask": np.stack(cm),
        "target_indices": np.stack(ti), "target_mask": np.stack(tm),
    }


def warm_up_on_timed_masks(replayed, warmup, steps):
    """Reorders replayed masks (`(warmup + steps, ...)` arrays, step i of the official
    run at i) so that the warm-up replays the timed steps' masks first: steps
    `warmup..warmup + steps - 1` keep their masks, and the warm-up cycles through those
    same masks. Every length a timed step meets has then been seen, so TensorFlow's
    per-length compilations (its fused LayerNorm and GELU, oneDNN primitives) happen in
    the warm-up, as in the first minutes of a long run, not in the timed steps.

    >>> import numpy as np
    >>> warm_up_on_timed_masks({"m": np.arange(5)}, 3, 2)["m"].tolist()
    [3, 4, 3, 3, 4]
    """
    timed = list(range(warmup, warmup + steps))
    order = [timed[i % len(timed)] for i in range(warmup)] + timed if timed else list(range(warmup))
    return {k: v[order] for k, v in replayed.items()}


def run_ours(config, masks, warmup, steps, seed=0, replay=None, label=None, length_buckets=None):
    """One cell of ours in this process (KERAS_BACKEND chosen by the caller).
    `masks`: "official" (replay the official run's masks from `replay`),
    "reference" (`MultiBlockMasker(reference=True)`) or "default". `length_buckets`:
    `FlexPredict(length_buckets=...)` (JAX), or None for the model's default."""
    import keras_flexpredict  # first: imports Keras without JAX on torch (utils.keras_import)

    import keras
    import numpy as np

    from keras_flexpredict.models.flex_predict import FlexPredict

    cfg = CONFIGS[config]
    masker_args = dict(min_keep=cfg["min_keep"], seed=seed, reference=masks != "default")
    if masks != "default":
        # The official code truncates per process batch: the batch here.
        masker_args["reference_group_size"] = cfg["batch"]
    cls = FlexPredict
    if masks == "official":
        replayed = warm_up_on_timed_masks(load_official_masks(replay, warmup + steps), warmup, steps)
        masker_args.update(
            num_context_tokens=replayed["context_indices"].shape[-1],
            num_target_tokens=replayed["target_indices"].shape[-1],
        )

        class ReplayFlexPredict(FlexPredict):
            """Takes step i's masks from the official run (same work, same tokens)."""

            def build(self, images_shape):
                self.replay_step = self.add_weight(
                    name="replay_step", shape=(), dtype="int32", initializer="zeros", trainable=False
                )
                super().build(images_shape)

            def draw_masks(self, images):
                i = self.replay_step.value % len(replayed["context_indices"])
                self.replay_step.assign_add(1)
                return {k: keras.ops.take(keras.ops.convert_to_tensor(v), i, axis=0) for k, v in replayed.items()}

        cls = ReplayFlexPredict
    scope = contextlib.nullcontext()
    if os.environ.get(REMAT_BLOCKS) == "1":
        # The blocks by name: `mode="full"` fails in Keras's own Dense on TensorFlow
        # (keras-team/keras#21207).
        names = [f"block_{i}" for i in range(max(cfg["depth"], PREDICTOR_DEPTH))]
        scope = keras.RematScope(mode="list_of_layers", layer_names=names)
    elif os.environ.get(REMAT_BLOCKS) == "0":
        scope = keras.RematScope(mode=None)
    with scope:
        model = cls.from_preset(
            "stop_vit_base_patch16_224_imagenet",
            encoder=dict(
                image_size=cfg["image"], patch_size=cfg["patch"], hidden_dim=cfg["width"],
                depth=cfg["depth"], num_heads=cfg["heads"],
            ),
            predictor=dict(
                hidden_dim=PREDICTOR_WIDTH, depth=PREDICTOR_DEPTH, num_heads=cfg["heads"], seed=seed
            ),
            masker=masker_args,
            **({} if length_buckets is None else dict(length_buckets=length_buckets)),
        )
    if masks == "official":
        drawn = replayed
        context_tokens = drawn["context_mask"].sum(-1).mean(-1)  # per step
        target_tokens = drawn["target_mask"].sum(-1).mean((-1, -2))
    else:
        context_tokens, target_tokens = drawn_token_counts(model.masker, warmup + steps, cfg["batch"])
    model.compile()
    batch = np.random.default_rng(seed).normal(size=(cfg["batch"], cfg["image"], cfg["image"], 3))
    batch = batch.astype("float32")

    class SameBatch(keras.utils.PyDataset):
        """The one batch, `warmup + steps` times (as the official harness feeds its
        step): no array of every step's images in memory beside the step."""

        def __len__(self):
            return warmup + steps

        def __getitem__(self, index):
            return batch

    images = SameBatch()

    times, others, reruns = [], [], 0

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.busy, self.own, self.start = _busy_seconds(), _own_seconds(), time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # waits for the step
            wall = time.perf_counter() - self.start
            other = (_busy_seconds() - self.busy) - (_own_seconds() - self.own)
            times.append(wall)
            others.append(max(0.0, other) / ((os.cpu_count() or 1) * wall))

    model.fit(
        images, epochs=1, verbose=0, shuffle=False, callbacks=[Timer()]
    )
    timed = list(range(warmup, warmup + steps))
    quiet = [i for i in timed if others[i] <= OTHER_LOAD_LIMIT]
    reruns = len(timed) - len(quiet)
    use = quiet if len(quiet) >= max(3, steps // 2) else timed
    flops = [model_flops(cfg, context_tokens[i], target_tokens[i]) for i in use]
    step = statistics.median(times[i] for i in use)
    return dict(
        impl=label or f"ours-{keras.backend.backend()}", config=config, masks=masks,
        step_ms=1e3 * step, images_per_s=cfg["batch"] / step,
        step_ms_all=[round(1e3 * t, 1) for t in times],
        first_step_s=times[0], context_tokens=float(np.mean(context_tokens[use])),
        target_tokens=float(np.mean(target_tokens[use])),
        context_slots=int(model.masker.num_context_tokens), target_slots=int(model.masker.num_target_tokens),
        length_buckets=[list(b) for b in model.train_length_buckets(cfg["batch"])]
        if keras.backend.backend() in ("jax", "torch") else None,
        model_flops=float(np.mean(flops)), noisy_steps=reruns,
        max_other_load=max(others[i] for i in use),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        mapped_file_rss_mib=mapped_file_rss_mib(),
        keras=keras.__version__,
    )


# ----------------------------------------------------------------------------- driver
def _peers_dir():
    return os.environ.get("PEERS", os.path.join(ROOT, "..", "shared", "peers"))


def run_official(config, masks, warmup, steps, out, env=None):
    if masks != "official":
        return None  # the official code has only its own masks
    # Run through `benchmarks.mapped_file_rss`, which reads the process's file-backed RSS as
    # it exits, as our worker does at the end of its run.
    cmd = [
        sys.executable, "-m", "benchmarks.mapped_file_rss", out + ".files",
        os.path.join(_peers_dir(), "bench_jepa_torch.py"), "--impl", "stop",
        "--stop", "1", "--ckpt", "off", "--config", config, "--warmup", str(warmup),
        "--steps", str(steps), "--collator-calls", "20", "--flops", "0", "--out", out,
        "--dump-masks", _masks_file(config),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"official benchmark failed:\n{proc.stderr[-3000:]}")
    raw = json.load(open(out))
    cfg = CONFIGS[config]
    shapes = raw["mask_shapes"][warmup:]
    return dict(
        impl="official", config=config, masks="official", step_ms=raw["median_ms"],
        images_per_s=raw["imgs_per_s"], step_ms_all=raw["step_ms"], first_step_s=None,
        context_tokens=statistics.mean(s[0] for s in shapes),
        target_tokens=statistics.mean(s[1] for s in shapes),
        model_flops=statistics.mean(model_flops(cfg, c, t) for c, t in shapes),
        noisy_steps=sum(k - 1 for k in raw["tries"]), max_other_load=max(raw["other_load"]),
        peak_rss_mib=raw["rss_mib"]["peak"], ref_commit=raw.get("ref_commit"),
        mapped_file_rss_mib=_read_mapped_file_rss(out + ".files"),
    )


def _mapped_files(runs):
    """` (0.45)`: the most of `runs`' RSS that was mapped files, GiB; "" if none read it."""
    values = [r["mapped_file_rss_mib"] for r in runs if r.get("mapped_file_rss_mib") is not None]
    return f" ({max(values) / 1024:.2f})" if values else ""


def _read_mapped_file_rss(path):
    try:
        with open(path) as f:
            return json.load(f)["mapped_file_rss_mib"]
    except (OSError, ValueError, KeyError):
        return None


def write_json(path, value, indent=None):
    """Writes `value` as JSON to `path`, atomically."""
    write_text(path, json.dumps(value, indent=indent))


def write_text(path, text):
    """Writes `text` to `path`, atomically (`keras_flexpredict.utils.atomic_write`)."""
    # Imported here: the orchestrating process stays free of Keras until it writes.
    from keras_flexpredict.utils.atomic_write import atomic_write_text

    atomic_write_text(path, text)


def _masks_file(config):
    return os.path.join(RESULTS, f"official_masks_{config}.npz")


def matmul_peak():
    """fp32 GFLOP/s of a 4096^3 matmul on this machine, `{"torch_mm": ..., "onednn": ...}`:
    torch.mm (MKL's sgemm, what the official step and `F.linear` run) and oneDNN's
    matmul (`torch.ops.mkldnn._linear_pointwise`, what TensorFlow and our torch blocks
    on AMD CPUs run; absent where torch lacks the op). MKL runs its AVX2 code on AMD
    CPUs, so on an AVX-512 AMD CPU oneDNN's is the machine's peak (2-core Zen 5 VM: ~195
    against ~420). Each is the median call over 3 s (a short burst runs faster than a
    sustained load on these VMs)."""
    code = (
        "import json, time, torch\n"
        "a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)\n"
        "def rate(f):\n"
        "    f(); rates = []; end = time.perf_counter() + 3.0\n"
        "    while time.perf_counter() < end:\n"
        "        t = time.perf_counter(); f(); rates.append(2 * 4096**3 / (time.perf_counter() - t))\n"
        "    return sorted(rates)[len(rates) // 2] / 1e9\n"
        "out = {'torch_mm': rate(lambda: torch.mm(a, b))}\n"
        "if hasattr(torch.ops.mkldnn, '_linear_pointwise') and torch.backends.mkldnn.is_available():\n"
        "    out['onednn'] = rate(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, 'none', [], ''))\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def drive(args):
    os.makedirs(RESULTS, exist_ok=True)
    env_base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    for r in range(args.first_round, args.first_round + args.rounds):
        peaks = matmul_peak()
        peak = max(peaks.values())
        write_json(os.path.join(RESULTS, f"matmul__r{r}.json"), dict(gflops=peak, **peaks))
        print(f"== round {r}: matmul peak {peak:.0f} GFLOP/s ({peaks})", flush=True)
        for config in args.configs:
            for masks, allocator in [(m, a) for m in args.masks for a in args.allocators]:
                impls = implementations(
                    args.backends,
                    one_backend_cells(args.backends, {arg: getattr(args, arg) for _, arg in SINGLE_BACKEND_CELLS.values()}),
                )
                cell_env = allocator_env(env_base, allocator)
                suffix = "" if allocator == "system" else f"__{allocator}"
                for impl in impls:
                    out = os.path.join(RESULTS, f"{config}__{masks}__{impl}{suffix}__r{r}.json")
                    start = time.time()
                    if impl == "official":
                        result = run_official(config, masks, args.warmup, args.steps, out + ".raw", cell_env)
                        if result is None:
                            continue
                    else:
                        single = SINGLE_BACKEND_CELLS.get(impl)
                        env = backend_environment(cell_env, single[0] if single else impl.split("-", 1)[1])
                        if masks == "official" and not os.path.exists(_masks_file(config)):
                            print(f"   {config}: no official masks to replay (run the official cell)")
                            continue
                        cmd = [
                            getattr(args, single[1]) if single else sys.executable,
                            "-m", "benchmarks.compare_official", "--worker",
                            f"--configs={config}", f"--masks={masks}", f"--warmup={args.warmup}",
                            f"--steps={args.steps}", f"--out={out}", f"--label={impl}", f"--results={RESULTS}",
                        ]
                        if args.length_buckets is not None:
                            cmd.append(f"--length-buckets={args.length_buckets}")
                        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                        if proc.returncode:
                            print(proc.stderr[-3000:], file=sys.stderr)
                            continue
                        result = json.load(open(out))
                    result.update(round=r, matmul_gflops=peak, matmul_peaks=peaks, allocator=allocator)
                    write_json(out, result, indent=1)
                    print(
                        f"   {config} {masks:9s} {allocator:8s} {impl:17s} {result['step_ms']:7.0f} ms "
                        f"{result['images_per_s']:6.2f} img/s  ctx {result['context_tokens']:.1f} "
                        f"tgt {result['target_tokens']:.1f}  ({time.time() - start:.0f} s)",
                        flush=True,
                    )
    write_report()


def write_report():
    rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(RESULTS, "*__r*.json")))]
    rows = [r for r in rows if "impl" in r]
    if not rows:
        return
    for r in rows:
        r.setdefault("allocator", "system")  # results written before the option existed
    official = {(r["config"], r["round"], r["allocator"]): r for r in rows if r["impl"] == "official"}
    cells = {}
    for r in rows:
        cells.setdefault((r["config"], r["masks"], r["allocator"], r["impl"]), []).append(r)
    several_allocators = len({r["allocator"] for r in rows}) > 1
    order = {c: i for i, c in enumerate(CONFIGS)}
    impl_order = {
        "official": 0, "ours-torch": 1, "ours-torch-only": 2, "ours-jax": 3, "ours-jax-only": 4,
        "ours-jax-elemental-emitters": 5, "ours-jax-fusion-emitters": 6, "ours-tensorflow": 7,
        "ours-tensorflow-only": 8, "ours-tensorflow-remat-blocks": 9, "ours-tensorflow-only-remat-blocks": 10,
        "ours-tensorflow-keep-activations": 11, "ours-tensorflow-only-keep-activations": 12,
    }
    any_files = any(r.get("mapped_file_rss_mib") is not None for r in rows)
    lines = [
        "| configuration | masks | implementation | ms / step | img/s | vs official | "
        "model GFLOP / step | MFU | real tokens ctx / tgt (slots) | first step s | "
        f"peak RSS GiB{' (mapped files)' if any_files else ''} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    mask_order = {"official": 0, "reference": 1, "default": 2}
    for key in sorted(
        cells,
        key=lambda k: (order[k[0]], mask_order[k[1]], ALLOCATORS.index(k[2]), impl_order.get(k[3], len(impl_order)), k[3]),
    ):
        runs = cells[key]
        step = statistics.median(r["step_ms"] for r in runs)
        ratios = [
            official[(r["config"], r["round"], r["allocator"])]["step_ms"] / r["step_ms"]
            for r in runs if (r["config"], r["round"], r["allocator"]) in official
        ]
        mfu = statistics.median(r["model_flops"] / (r["step_ms"] / 1e3) / (r["matmul_gflops"] * 1e9) for r in runs)
        slots = ""
        if "context_slots" in runs[0]:
            buckets = len(runs[0].get("length_buckets") or [])
            more = f", {buckets} length buckets" if buckets > 1 else ""
            slots = f" ({runs[0]['context_slots']} / {runs[0]['target_slots']}{more})"
        first = runs[0].get("first_step_s")
        lines.append(
            f"| {LABELS[key[0]]} | {key[1]} | {key[3]}{', ' + key[2] if several_allocators else ''} | {step:.0f} | "
            f"{CONFIGS[key[0]]['batch'] / step * 1e3:.2f} | "
            f"{'%.2fx' % statistics.median(ratios) if ratios else '-'} | "
            f"{statistics.mean(r['model_flops'] for r in runs) / 1e9:.0f} | {100 * mfu:.0f}% | "
            f"{statistics.mean(r['context_tokens'] for r in runs):.1f} / "
            f"{statistics.mean(r['target_tokens'] for r in runs):.1f}{slots} | "
            f"{'%.1f' % first if first is not None else '-'} | "
            f"{max(r['peak_rss_mib'] for r in runs) / 1024:.2f}{_mapped_files(runs)} |"
        )
    peaks = sorted({r["matmul_gflops"] for r in rows})
    mkl = sorted({r["matmul_peaks"]["torch_mm"] for r in rows if "matmul_peaks" in r})
    if len(mkl) and any("onednn" in r.get("matmul_peaks", {}) for r in rows):
        peak_name = "the faster of torch.mm (MKL) and oneDNN's matmul, 4096^3"
        peak_note = f" (torch.mm {mkl[0]:.0f}-{mkl[-1]:.0f})"
    else:
        peak_name, peak_note = "torch.mm 4096^3", ""
    rounds = len({r["round"] for r in rows})
    noisy = sum(r.get("noisy_steps", 0) for r in rows)
    header = [
        f"Machine: {platform.node() or 'cpu'}, {os.cpu_count()} cores; fp32; {rounds} round(s), "
        f"median over rounds; fp32 matmul peak ({peak_name}) {peaks[0]:.0f}-{peaks[-1]:.0f} "
        f"GFLOP/s{peak_note}; {noisy} timed steps saw other load above {OTHER_LOAD_LIMIT:.0%} "
        "(re-run by the official harness, dropped on ours).",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    write_text(table_path(RESULTS), text)
    print(text)


def table_path(results):
    """Where the table of the raw results in `results` goes: `results/compare_official.md`
    (read into BENCHMARKS.md) for the default folder, else `<results>.md` beside it.

    >>> os.path.basename(table_path(os.path.join("x", "compare_epyc")))
    'compare_epyc.md'
    """
    if os.path.abspath(results) == os.path.abspath(DEFAULT_RESULTS):
        return os.path.join(HERE, "results", "compare_official.md")
    return os.path.abspath(results) + ".md"


def main():
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny224,small224,tiny64")
    parser.add_argument(
        "--masks",
        default="official,reference,default",
        help="official: ours replays the official run's masks (equal work); reference: "
        "MultiBlockMasker(reference=True); default: the library's default masks",
    )
    parser.add_argument(
        "--backends", default="torch,jax,tensorflow",
        help=f"comma-separated Keras backends, or variants for an A/B: {sorted(BACKEND_VARIANTS)}; "
        "`none` runs only the one-backend cells (--torch-only-python and the like)",
    )
    parser.add_argument(
        "--allocators",
        default="system",
        help="comma-separated: system (glibc malloc), tcmalloc (preloaded; apt install "
        "libtcmalloc-minimal4, or KFP_TCMALLOC=/path/libtcmalloc.so), hugepages (glibc malloc "
        "with GLIBC_TUNABLES=glibc.malloc.hugetlb=1) and/or one-arena (glibc malloc with "
        "MALLOC_ARENA_MAX=1); each into every cell, the official one too",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--first-round", type=int, default=0,
        help="number of the first round (a later sitting adds rounds to --results instead of replacing them)",
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--torch-only-python",
        help="a Python whose environment has torch but no JAX or TensorFlow (make torch-only-env): "
        "adds the cell ours-torch-only",
    )
    parser.add_argument(
        "--jax-only-python",
        help="a Python whose environment has JAX but no torch, TensorFlow, scikit-learn, SciPy or "
        "matplotlib extras (make jax-only-env): adds the cell ours-jax-only",
    )
    parser.add_argument(
        "--tensorflow-only-python",
        help="a Python whose environment has TensorFlow but no torch, JAX, scikit-learn, SciPy or "
        "matplotlib (make tensorflow-only-env): adds the cell ours-tensorflow-only",
    )
    parser.add_argument(
        "--results",
        default=DEFAULT_RESULTS,
        help="folder of the raw results (default benchmarks/results/compare, whose table goes into "
        "BENCHMARKS.md); another folder keeps another machine's run apart, its table in <folder>.md",
    )
    parser.add_argument(
        "--length-buckets", type=int,
        help="FlexPredict(length_buckets=N) for our JAX cells (default: the model's default)",
    )
    parser.add_argument("--report", action="store_true", help="only rebuild the table")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    args = parser.parse_args()
    RESULTS = os.path.abspath(args.results)
    args.configs = args.configs.split(",")
    args.masks = args.masks.split(",")
    args.backends = [] if args.backends == "none" else args.backends.split(",")
    if not args.worker and not args.report and not args.backends and not any(
        getattr(args, arg) for _, arg in SINGLE_BACKEND_CELLS.values()
    ):
        parser.error("--backends none runs only the one-backend cells, and no --*-only-python was given")
    args.allocators = args.allocators.split(",")
    for name in args.allocators:
        if name not in ALLOCATORS:
            parser.error(f"unknown allocator {name!r}; choose from {list(ALLOCATORS)}")
    if "tcmalloc" in args.allocators and not args.worker and find_tcmalloc() is None:
        parser.error(
            "--allocators tcmalloc: no libtcmalloc found by scripts/with_tcmalloc.sh "
            "(apt install libtcmalloc-minimal4, or set KFP_TCMALLOC)"
        )
    for backend, arg in SINGLE_BACKEND_CELLS.values():
        path = getattr(args, arg)
        if path and not os.path.exists(path):
            flag = "--" + arg.replace("_", "-")
            parser.error(f"{flag} {path!r} does not exist (make {backend}-only-env)")
    for name in args.configs:
        if name not in CONFIGS:
            parser.error(f"unknown configuration {name!r}; choose from {sorted(CONFIGS)}")
    if args.worker:
        write_json(
            args.out,
            run_ours(
                args.configs[0], args.masks[0], args.warmup, args.steps,
                replay=_masks_file(args.configs[0]), label=args.label,
                length_buckets=args.length_buckets,
            ),
        )
    elif args.report:
        write_report()
    else:
        drive(args)


if __name__ == "__main__":
    main()
