"""I-JEPA multi-block masks with static shapes."""

import dataclasses
import functools
import math
import numbers
import types

import keras
import numpy as np
from keras.random import SeedGenerator

from keras_flexpredict.utils import keras_internals
from keras_flexpredict.utils.backend_adapter import replica_context
from keras_flexpredict.utils.keras_internals import DataLayer
from keras_flexpredict.utils.rematerialization import RematerializedBySublayers
from keras_flexpredict.utils.seed_state import load_seed_state
from keras_flexpredict.utils.seed_state import save_seed_state
from keras_flexpredict.utils.validation import check_int
from keras_flexpredict.utils.validation import check_range


def _block_sizes(u, scale, aspect_ratio, grid_size, max_extent):
    """The reference block-size formula (I-JEPA `_sample_block_size`), vectorised.

    One uniform `u` in [0, 1) sets both the scale and the aspect ratio:
    `s = lo + u (hi - lo)`, `ar = lo_ar + u (hi_ar - lo_ar)`,
    `max_keep = int(H W s)`, `h = round(sqrt(max_keep ar))`,
    `w = round(sqrt(max_keep / ar))` (Python's half-to-even rounding), then
    `h`, `w` are clipped to `max_extent`.

    Returns:
        Two int64 NumPy arrays `(h, w)` shaped like `u`.
    """
    u = np.asarray(u, dtype=np.float64)
    height, width = grid_size
    s = scale[0] + u * (scale[1] - scale[0])
    max_keep = np.floor(height * width * s)
    ar = aspect_ratio[0] + u * (aspect_ratio[1] - aspect_ratio[0])
    h = np.minimum(np.round(np.sqrt(max_keep * ar)), max_extent[0])
    w = np.minimum(np.round(np.sqrt(max_keep / ar)), max_extent[1])
    return h.astype(np.int64), w.astype(np.int64)


def _block_size_table(scale, aspect_ratio, grid_size, max_extent):
    """Every block size the reference formula can give, with its probability.

    The size is a step function of `u`; its steps lie where `H W s(u)` crosses
    an integer or `max_keep ar(u)`, `max_keep / ar(u)` cross `(m + 1/2)^2`.
    Evaluating the formula between consecutive steps gives the exact table.

    Returns:
        `(thresholds, heights, widths, probabilities)`: size `i` is drawn when
        exactly `i` thresholds are `<= u`.
    """
    height, width = grid_size
    n = height * width
    lo, hi = scale
    alo, ahi = aspect_ratio
    cuts = [np.zeros((0,))]
    if hi > lo:
        ks = np.arange(math.ceil(n * lo), math.floor(n * hi) + 1, dtype=np.float64)
        cuts.append((ks / n - lo) / (hi - lo))
    if ahi > alo:
        ks = np.arange(max(math.floor(n * lo), 1), math.floor(n * hi) + 1, dtype=np.float64)[:, None]
        halves = (np.arange(0, max(height, width) + 2, dtype=np.float64)[None, :] + 0.5) ** 2
        for ar in (halves / ks, ks / halves):
            cuts.append(((ar - alo) / (ahi - alo)).ravel())
    cuts = np.concatenate(cuts)
    cuts = np.unique(cuts[(cuts > 0.0) & (cuts < 1.0)])
    edges = np.concatenate([[0.0], cuts, [1.0]])
    mids = 0.5 * (edges[:-1] + edges[1:])
    h, w = _block_sizes(mids, scale, aspect_ratio, grid_size, max_extent)
    starts = np.concatenate([[0], np.nonzero((h[1:] != h[:-1]) | (w[1:] != w[:-1]))[0] + 1])
    probabilities = np.add.reduceat(np.diff(edges), starts)
    return edges[starts[1:]], h[starts], w[starts], probabilities


def _coverage(n, extent):
    """P(cell r of a length-`n` axis lies in a block of `extent` at a uniform start)."""
    r = np.arange(n)
    first = np.maximum(r - extent + 1, 0)
    last = np.minimum(r, n - extent)
    return np.maximum(last - first + 1, 0) / (n - extent + 1)


@dataclasses.dataclass(frozen=True)
class _MaskSpec:
    """What sampling needs from the configuration; hashable, so equal
    configurations share one compiled JAX function."""

    grid_size: tuple
    num_targets: int
    num_context_candidates: int
    min_keep: int
    num_context_tokens: int
    num_target_tokens: int
    largest_target: int
    target_table: tuple  # (thresholds, heights, widths)
    context_table: tuple
    reference: bool = False
    reference_group_size: int = 64


def _table_sizes(b, u, table):
    """Block sizes `(h, w)` for uniform draws `u`: size `i` when `i` thresholds are <= u."""
    thresholds, heights, widths = (np.asarray(x) for x in table)
    if len(thresholds) == 0:
        index = b.numpy.zeros_like(b.cast(u, "int32"))
    else:
        thresholds = b.convert_to_tensor(thresholds.astype("float32"))
        index = b.numpy.sum(b.cast(u[..., None] >= thresholds, "int32"), axis=-1)
    h = b.numpy.take(b.convert_to_tensor(heights.astype("int32")), index)
    w = b.numpy.take(b.convert_to_tensor(widths.astype("int32")), index)
    return h, w


def _blocks(b, grid_size, u_top, u_left, h, w, reference=False):
    """Boolean `(..., H*W)` block masks from uniform draws and block sizes
    (`h`, `w` broadcast against `u_top`).

    Tops (lefts) are uniform over all valid starts `0..H-h`; with `reference=True`
    over `0..H-h-1`, as the reference's `randint(0, H - h)` (never the last start)."""
    height, width = grid_size
    last = 0 if reference else 1
    top = b.cast(b.numpy.floor(u_top * b.cast(height - h + last, "float32")), "int32")
    left = b.cast(b.numpy.floor(u_left * b.cast(width - w + last, "float32")), "int32")
    top = b.numpy.minimum(top, height - h - 1 + last)
    left = b.numpy.minimum(left, width - w - 1 + last)
    rows = b.numpy.arange(height, dtype="int32")
    cols = b.numpy.arange(width, dtype="int32")
    in_rows = b.numpy.logical_and(rows >= top[..., None], rows < (top + h)[..., None])
    in_cols = b.numpy.logical_and(cols >= left[..., None], cols < (left + w)[..., None])
    block = b.numpy.logical_and(in_rows[..., :, None], in_cols[..., None, :])
    return b.numpy.reshape(block, tuple(b.core.shape(block)[:-2]) + (height * width,))


def _select(b, mask, k, noise=None):
    """Up to `k` True positions of `mask (..., N)` as ascending int32 indices
    plus validity (padding: index 0, False); a uniform random subset when
    there are more than `k`."""
    n = mask.shape[-1]
    if noise is None:
        priority = b.cast(mask, "float32")
    else:
        # Real tokens in [0, 1) at full float32 resolution, others below.
        priority = b.numpy.where(mask, noise, noise - 2.0)
    _, chosen = b.math.top_k(priority, k, sorted=False)
    chosen = b.cast(chosen, "int32")
    valid = b.numpy.take_along_axis(mask, chosen, axis=-1)
    key = b.numpy.sort(b.numpy.where(valid, chosen, n), axis=-1)
    valid = key < n
    return b.numpy.where(valid, key, 0), valid


def _reference_context(b, spec, u_context, targets, ch, cw):
    """The reference's context: the context block placed as `randint` places it, minus
    the image's target blocks, re-placed until it keeps more than `min_keep` tokens;
    after each round of failures one more target block (the last first) may overlap it.
    Vectorised: `num_context_candidates` positions per relaxation level, the first
    valid one (level by level, candidate by candidate) wins. At level `M` no target
    constrains the block, so some candidate is always valid.

    Returns:
        bool `(G, B, N)`: the context tokens before truncation.
    """
    m, c = spec.num_targets, spec.num_context_candidates
    shape = tuple(b.core.shape(targets))  # (G, B, M, N)
    levels = m + 1
    u_context = b.numpy.reshape(u_context, shape[:2] + (levels, c, 2))
    candidates = _blocks(
        b,
        spec.grid_size,
        u_context[..., 0],
        u_context[..., 1],
        ch[:, None, None, None],
        cw[:, None, None, None],
        reference=True,
    )  # (G, B, L, C, N)
    # Level t excludes the first M - t targets: the union of a prefix of the targets.
    prefix = b.numpy.cumsum(b.cast(targets, "int32"), axis=2) > 0  # union of the first k + 1
    none = b.numpy.zeros_like(prefix[:, :, :1])
    excluded = b.numpy.flip(b.numpy.concatenate([none, prefix], axis=2), axis=2)  # (G, B, L, N)
    candidates = b.numpy.logical_and(candidates, b.numpy.logical_not(excluded[:, :, :, None, :]))
    candidates = b.numpy.reshape(candidates, shape[:2] + (levels * c, shape[-1]))
    ok = b.numpy.sum(b.cast(candidates, "int32"), axis=-1) > spec.min_keep
    first = b.numpy.logical_and(ok, b.numpy.cumsum(b.cast(ok, "int32"), axis=-1) == 1)
    return b.numpy.any(b.numpy.logical_and(candidates, first[..., None]), axis=2)


def _truncate_to_group_minimum(b, spec, context):
    """Keeps the first `min(L_g, Kc)` context tokens in raster order, `L_g` the
    shortest context of the image's group of `reference_group_size` consecutive
    images (the reference truncates every mask of a per-GPU batch to its shortest)."""
    counts = b.numpy.sum(b.cast(context, "int32"), axis=-1)  # (G, B)
    batch = b.core.shape(counts)[1]
    group = b.numpy.floor_divide(b.numpy.arange(batch, dtype="int32"), spec.reference_group_size)
    same = b.numpy.equal(group[:, None], group[None, :])  # (B, B); batch may be symbolic
    n = spec.grid_size[0] * spec.grid_size[1]
    shortest = b.numpy.min(b.numpy.where(same[None], counts[:, None, :], n), axis=-1)
    keep = b.numpy.minimum(shortest, spec.num_context_tokens)
    rank = b.numpy.cumsum(b.cast(context, "int32"), axis=-1)
    return b.numpy.logical_and(context, rank <= keep[..., None])


def _numpy_top_k(x, k, sorted=True):
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, order, axis=-1), order


# The few backend entry points the sampler uses, in NumPy (Keras cannot load its numpy
# backend beside another one): the configuration statistics are computed with it.
_NUMPY_OPS = types.SimpleNamespace(
    numpy=np,
    cast=lambda x, dtype: np.asarray(x).astype(dtype),
    convert_to_tensor=np.asarray,
    core=types.SimpleNamespace(shape=np.shape),
    math=types.SimpleNamespace(top_k=_numpy_top_k),
    random=types.SimpleNamespace(
        uniform=lambda shape, dtype, seed: np.random.default_rng(seed).random(shape, dtype=dtype)
    ),
)


def _sample_masks(spec, backend, num_batches, batch_size, seed):
    """Masks `(num_batches, batch_size, ...)` with backend `backend` ops (or NumPy,
    `"numpy"` or a `_numpy_rows` namespace, with an int seed) and one uniform draw from `seed` (a `SeedGenerator` or,
    on JAX, a seed tensor)."""
    if isinstance(backend, types.SimpleNamespace):
        b = backend  # NumPy ops (`_numpy_rows`)
    else:
        b = _NUMPY_OPS if backend == "numpy" else keras_internals.DynamicBackend(backend)
    groups, m, c = num_batches, spec.num_targets, spec.num_context_candidates
    n = spec.grid_size[0] * spec.grid_size[1]
    cut_context = spec.num_context_tokens < n and not spec.reference
    cut_targets = spec.num_target_tokens < spec.largest_target
    context_draws = 2 * c * (m + 1) if spec.reference else 2 * c
    # One uniform draw per call (one seed-state step), split below.
    widths = [2, 2 * m, context_draws, n if cut_context else 0, m * n if cut_targets else 0]
    u = b.random.uniform((groups, batch_size, sum(widths)), dtype="float32", seed=seed)
    offsets = np.cumsum([0] + widths)
    u_size, u_target, u_context, u_context_noise, u_target_noise = (
        u[..., offsets[i] : offsets[i + 1]] for i in range(len(widths))
    )

    # Sizes once per batch (from the draws of the batch's first image).
    th, tw = _table_sizes(b, u_size[:, 0, 0], spec.target_table)
    ch, cw = _table_sizes(b, u_size[:, 0, 1], spec.context_table)

    # Positions per image and block.
    u_target = b.numpy.reshape(u_target, (groups, batch_size, m, 2))
    targets = _blocks(
        b,
        spec.grid_size,
        u_target[..., 0],
        u_target[..., 1],
        th[:, None, None],
        tw[:, None, None],
        reference=spec.reference,
    )  # (G, B, M, N)

    if spec.reference:
        context = _truncate_to_group_minimum(
            b, spec, _reference_context(b, spec, u_context, targets, ch, cw)
        )
    else:
        free = b.numpy.logical_not(b.numpy.any(targets, axis=2))  # (G, B, N)
        # Context: the first of C candidate positions that keeps min_keep tokens
        # outside the targets; if none does, every token outside the targets.
        u_context = b.numpy.reshape(u_context, (groups, batch_size, c, 2))
        candidates = _blocks(
            b, spec.grid_size, u_context[..., 0], u_context[..., 1], ch[:, None, None], cw[:, None, None]
        )
        candidates = b.numpy.logical_and(candidates, free[:, :, None, :])  # (G, B, C, N)
        counts = b.numpy.sum(b.cast(candidates, "int32"), axis=-1)
        ok = counts >= spec.min_keep
        first = b.numpy.logical_and(ok, b.numpy.cumsum(b.cast(ok, "int32"), axis=-1) == 1)
        chosen = b.numpy.any(b.numpy.logical_and(candidates, first[..., None]), axis=2)
        context = b.numpy.where(b.numpy.any(ok, axis=-1)[..., None], chosen, free)

    context_indices, context_mask = _select(
        b, context, spec.num_context_tokens, u_context_noise if cut_context else None
    )
    target_noise = None
    if cut_targets:
        target_noise = b.numpy.reshape(u_target_noise, (groups, batch_size, m, n))
    target_indices, target_mask = _select(b, targets, spec.num_target_tokens, target_noise)
    return {
        "context_indices": context_indices,
        "context_mask": context_mask,
        "target_indices": target_indices,
        "target_mask": target_mask,
    }


@functools.cache
def _reference_context_lengths(spec, num_images=4096):
    """Context lengths after the reference's group truncation (before any slot cap),
    over about `num_images` images in groups of `spec.reference_group_size` (at least
    32 groups): a fixed-seed NumPy simulation with the layer's own sampler, cached per
    configuration."""
    num_batches = max(32, num_images // spec.reference_group_size)
    # In chunks of at most 512 images, each taking its rows of the one seed-0 draw (the
    # same numbers as a single call): the sampler's candidate tensors for all 4,096
    # images at once would add ~0.2 GiB to the process's peak memory.
    per_chunk = max(1, 512 // spec.reference_group_size)
    lengths = []
    for start in range(0, num_batches, per_chunk):
        chunk = min(per_chunk, num_batches - start)
        masks = _sample_masks(spec, _numpy_rows(start, num_batches), chunk, spec.reference_group_size, 0)
        lengths.append(np.asarray(masks["context_mask"]).sum(-1).ravel())
    return np.concatenate(lengths)


@functools.cache
def _longest_mask_samples(spec, batch_size, num_images=8192):
    """The longest real context and target mask of each of `max(16, num_images //
    batch_size)` batches of `batch_size`, as a fixed-seed NumPy simulation with the
    layer's own sampler (at most ~512 images at a time), cached per configuration."""
    num_batches = max(16, num_images // batch_size)
    per_chunk = max(1, 512 // batch_size)
    context, target = [], []
    for start in range(0, num_batches, per_chunk):
        chunk = min(per_chunk, num_batches - start)
        masks = _sample_masks(spec, _numpy_rows(start, num_batches), chunk, batch_size, 1)
        context.append(np.asarray(masks["context_mask"]).sum(-1).max(-1))
        target.append(np.asarray(masks["target_mask"]).sum(-1).max((-1, -2)))
    return np.concatenate(context), np.concatenate(target)


def _numpy_rows(start, total):
    """`_NUMPY_OPS` whose uniform draw of `(rows, ...)` is rows `start:start + rows` of
    the draw of `(total, ...)` from the same seed."""

    def uniform(shape, dtype, seed):
        return np.random.default_rng(seed).random((total, *shape[1:]), dtype=dtype)[start : start + shape[0]]

    return types.SimpleNamespace(**dict(vars(_NUMPY_OPS), random=types.SimpleNamespace(uniform=uniform)))


def _reference_context_slots(lengths, tolerance=0.5):
    """The fewest context slots `Kc` whose raster-order cap of the truncated lengths
    loses at most `tolerance` tokens per image on average: the static size follows the
    truncated lengths, not their rare maximum."""
    mean = lengths.mean()
    for slots in range(int(lengths.min()), int(lengths.max()) + 1):
        if np.minimum(lengths, slots).mean() >= mean - tolerance:
            return slots
    return int(lengths.max())


@functools.cache
def _jax_sample_masks():
    import jax

    return jax.jit(_sample_masks, static_argnums=(0, 1, 2, 3))


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class MultiBlockMasker(RematerializedBySublayers, DataLayer):
    """I-JEPA multi-block masks as fixed-size index tensors.

    Samples one context block and `num_targets` target blocks per image on a
    patch grid, as I-JEPA's `MaskCollator` does: block *sizes* are drawn once
    per call (per batch) from one uniform draw that sets both scale and aspect
    ratio; block *positions* are drawn per image and per block; the context is
    the context block minus the union of the image's target blocks and keeps at
    least `min_keep` tokens. Unlike the reference:

    - every row and column can start a block (starts are uniform over
      `0..H-h`; the reference never starts a block on the last valid row/column);
    - blocks may span the whole grid (the reference clips `h`, `w` to
      `grid - 1`, so at 14x14 its context block is always the top-left 13x13
      and never sees the last row or column); set `reference_clip=True` to
      clip as the reference does (the block then starts at row/column 0 or 1);
    - masks are never truncated to the batch minimum: each mask is returned in
      a fixed number of slots (`num_context_tokens`, `num_target_tokens`) with
      a validity mask. When a mask holds more tokens than its slots, a uniformly
      random subset is kept (no raster-order bias). Kept indices are sorted
      ascending; padding slots hold index 0 with mask `False`;
    - the context position is the first of `num_context_candidates` vectorised
      candidate positions that leaves at least `min_keep` tokens (rejection
      sampling truncated at a fixed count). If none does, the context falls back
      to every token outside the target blocks (never to target tokens, which
      the reference allows after repeated failures). The constructor checks that
      this fallback always holds at least `min_keep` tokens.

    `min_keep` means "at least `min_keep` tokens" (the reference requires
    strictly more than `min_keep`).

    The layer is a `DataLayer`: it runs eagerly, inside a compiled step (with
    the seed generator state handled by Keras, e.g. in `predict`/`fit` or a
    `keras.StatelessScope`), and inside a `tf.data` map on every backend.

    Args:
        grid_size: tuple of 2 ints. Patch grid `(H, W)`, e.g. `(14, 14)` for
            224/16. Defaults to `(14, 14)`.
        num_targets: int. Target blocks per image, `M`. Defaults to `4`.
        target_scale: tuple of 2 floats in (0, 1]. Range of the target block
            area as a share of the grid. Defaults to `(0.15, 0.2)`.
        target_aspect_ratio: tuple of 2 positive floats. Range of the target
            block height / width. Defaults to `(0.75, 1.5)`.
        context_scale: tuple of 2 floats in (0, 1]. Range of the context block
            area. Defaults to `(0.85, 1.0)`.
        context_aspect_ratio: tuple of 2 positive floats. Defaults to `(1.0, 1.0)`.
        min_keep: int. Minimum number of real tokens in every mask. Defaults to `10`.
        num_context_tokens: int or `None`. Context slots `Kc`. `None` uses the
            expected number of context tokens of this configuration, rounded up
            (computed exactly at construction; `expected_context_tokens`): 91 at
            14x14 with the defaults, which pads about 8% of the slots.
            The config stores the resolved int. Defaults to `None`.
        num_target_tokens: int or `None`. Slots per target block `Kt`. `None`
            uses the largest target block the configuration can produce, so
            target blocks are never cut (40 at 14x14 with the defaults). The
            config stores the resolved int. Defaults to `None`.
        num_context_candidates: int. Context positions tried per image.
            Defaults to `8`.
        reference_clip: bool. Clip block sides to `grid - 1` as the reference
            does. Defaults to `False`.
        seed: int or `None`. Seed of the layer's `SeedGenerator`. Defaults to `None`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Under data parallelism that runs the step once per replica (`tf.distribute`
    strategies, torch DDP) each replica draws the masks of the whole global batch from
    the shared seed state and keeps its own rows (`num_replicas * B` draws, a few
    thousand integers per image): replicas never share masks, and image `i` of a global
    batch gets the same masks whatever the replica count. A JAX program over a sharded
    global batch draws the global batch directly. Either way block sizes are drawn once
    per global batch.

    Call arguments:
        inputs: a batch of images `(B, H_img, W_img, C)` (only its batch size is
            used), or a Python int batch size.

    Returns:
        A dict with `"context_indices"` int32 `(B, Kc)` (row-major patch
        indices, `row * W + col`), `"context_mask"` bool `(B, Kc)`,
        `"target_indices"` int32 `(B, M, Kt)` and `"target_mask"` bool
        `(B, M, Kt)`.

    Example:

    >>> masker = MultiBlockMasker(grid_size=(14, 14), seed=0)
    >>> masks = masker(8)
    >>> tuple(masks["context_indices"].shape), tuple(masks["target_indices"].shape)
    ((8, 91), (8, 4, 40))

    References:
        - [Assran et al., 2023](https://arxiv.org/abs/2301.08243) (I-JEPA)
        - [Bar et al., 2024](https://arxiv.org/abs/2308.00566) (StoP)
    """

    def __init__(
        self,
        grid_size=(14, 14),
        num_targets=4,
        target_scale=(0.15, 0.2),
        target_aspect_ratio=(0.75, 1.5),
        context_scale=(0.85, 1.0),
        context_aspect_ratio=(1.0, 1.0),
        min_keep=10,
        num_context_tokens=None,
        num_target_tokens=None,
        num_context_candidates=8,
        reference_clip=False,
        reference=False,
        reference_group_size=64,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        try:
            grid = tuple(grid_size)
        except TypeError:
            grid = ()
        if len(grid) != 2 or any(
            isinstance(g, bool) or not isinstance(g, numbers.Integral) or g < 1 for g in grid
        ):
            raise ValueError(f"`grid_size` must be 2 positive ints. Received: grid_size={grid_size}")
        self.grid_size = tuple(int(g) for g in grid)
        self.num_targets = check_int("num_targets", num_targets, minimum=1)
        self.target_scale = check_range("target_scale", target_scale, minimum=0.0, maximum=1.0, exclusive_minimum=True)
        self.target_aspect_ratio = check_range("target_aspect_ratio", target_aspect_ratio, minimum=0.0, exclusive_minimum=True)
        self.context_scale = check_range("context_scale", context_scale, minimum=0.0, maximum=1.0, exclusive_minimum=True)
        self.context_aspect_ratio = check_range("context_aspect_ratio", context_aspect_ratio, minimum=0.0, exclusive_minimum=True)
        self.min_keep = check_int("min_keep", min_keep, minimum=1)
        self.num_context_candidates = check_int("num_context_candidates", num_context_candidates, minimum=1)
        self.reference = bool(reference)
        self.reference_group_size = check_int("reference_group_size", reference_group_size, minimum=1)
        # The reference clips every block side to grid - 1.
        self.reference_clip = bool(reference_clip) or self.reference
        self.seed = seed

        height, width = self.grid_size
        num_patches = height * width
        max_extent = (height - 1, width - 1) if self.reference_clip else (height, width)
        if min(max_extent) < 1:
            raise ValueError(
                "`grid_size` is too small: `reference_clip=True` needs at least 2 rows and "
                f"2 columns. Received: grid_size={grid_size}"
            )
        self._target_table = _block_size_table(
            self.target_scale, self.target_aspect_ratio, self.grid_size, max_extent
        )
        self._context_table = _block_size_table(
            self.context_scale, self.context_aspect_ratio, self.grid_size, max_extent
        )
        for name, scale, table in (
            ("target_scale", self.target_scale, self._target_table),
            ("context_scale", self.context_scale, self._context_table),
        ):
            _, hs, ws, _ = table
            if hs.min() < 1 or ws.min() < 1:
                raise ValueError(
                    f"`grid_size` is too small for `{name}={scale}`: some blocks would be "
                    f"empty. Received: grid_size={grid_size}"
                )
            smallest = int((hs * ws).min())
            if self.reference and smallest <= self.min_keep:
                # The reference re-draws a block until it keeps more than min_keep
                # tokens: with a smaller block it would loop forever.
                raise ValueError(
                    f"With `reference=True` every block must hold more than `min_keep` tokens; "
                    f"the smallest block of `{name}={scale}` on grid_size={self.grid_size} has "
                    f"{smallest}. Received: min_keep={min_keep}"
                )
            if smallest < self.min_keep:
                raise ValueError(
                    f"`min_keep` is larger than the smallest block `{name}={scale}` gives on "
                    f"grid_size={self.grid_size} ({smallest} tokens). Received: min_keep={min_keep}"
                )
        largest_target = int((self._target_table[1] * self._target_table[2]).max())
        uncovered = num_patches - min(num_patches, self.num_targets * largest_target)
        if uncovered < self.min_keep and not self.reference:
            raise ValueError(
                f"`min_keep` cannot be guaranteed for the context: num_targets={self.num_targets} "
                f"target blocks of up to {largest_target} tokens can leave only {uncovered} of the "
                f"{num_patches} tokens free. Received: min_keep={min_keep}"
            )
        spec = dict(
            grid_size=self.grid_size,
            num_targets=self.num_targets,
            num_context_candidates=self.num_context_candidates,
            min_keep=self.min_keep,
            largest_target=largest_target,
            target_table=tuple(tuple(x.tolist()) for x in self._target_table[:3]),
            context_table=tuple(tuple(x.tolist()) for x in self._context_table[:3]),
            reference=self.reference,
            reference_group_size=self.reference_group_size,
        )
        if self.reference:
            lengths = _reference_context_lengths(_MaskSpec(**spec, num_context_tokens=num_patches, num_target_tokens=largest_target))
            self.expected_context_tokens = float(lengths.mean())
        else:
            self.expected_context_tokens = self._expected_context_tokens()
        if num_target_tokens is None:
            num_target_tokens = largest_target
        if num_context_tokens is None:
            if self.reference:
                num_context_tokens = _reference_context_slots(lengths)
            else:
                num_context_tokens = max(self.min_keep, math.ceil(self.expected_context_tokens))
        self.num_target_tokens = check_int("num_target_tokens", num_target_tokens, minimum=self.min_keep)
        self.num_context_tokens = check_int("num_context_tokens", num_context_tokens, minimum=self.min_keep)
        for name, value in (
            ("num_target_tokens", self.num_target_tokens),
            ("num_context_tokens", self.num_context_tokens),
        ):
            if value > num_patches:
                raise ValueError(
                    f"`{name}` cannot exceed the {num_patches} patches of the grid. "
                    f"Received: {name}={value}"
                )
        self._spec = _MaskSpec(
            **spec, num_context_tokens=self.num_context_tokens, num_target_tokens=self.num_target_tokens
        )
        self.seed_generator = SeedGenerator(seed)
        self.built = True

    def _expected_context_tokens(self):
        """Exact E[#context tokens] before the budget cut, with independent
        uniform positions (ignores the rare `min_keep` re-draws)."""
        height, width = self.grid_size
        expected = 0.0
        _, ths, tws, tps = self._target_table
        _, chs, cws, cps = self._context_table
        for th, tw, tp in zip(ths, tws, tps):
            free = (1.0 - np.outer(_coverage(height, th), _coverage(width, tw))) ** self.num_targets
            for ch, cw, cp in zip(chs, cws, cps):
                inside = np.outer(_coverage(height, ch), _coverage(width, cw))
                expected += tp * cp * float(np.sum(inside * free))
        return expected

    @keras_internals.no_automatic_dependency_tracking
    def save_own_variables(self, store):
        super().save_own_variables(store)
        save_seed_state(self, store)

    def load_own_variables(self, store):
        super().load_own_variables(load_seed_state(self, store))

    def _get_seed_generator(self, backend=None):
        if backend is None or backend == keras.backend.backend():
            return self.seed_generator
        if not hasattr(self, "_backend_generators"):
            self._backend_generators = {}
        if backend not in self._backend_generators:
            self._backend_generators[backend] = SeedGenerator(self.seed, backend=self.backend)
        return self._backend_generators[backend]

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, numbers.Integral) and not isinstance(inputs, bool):
            if inputs < 1:
                raise ValueError(f"The batch size must be a positive int. Received: inputs={inputs}")
            # Only the batch size of the inputs is used: an empty placeholder carries it.
            inputs = np.zeros((int(inputs), 0, 0, 0), dtype="float32")
        return super().__call__(inputs, **kwargs)

    def call(self, inputs):
        if len(inputs.shape) != 4:
            raise ValueError(
                "`MultiBlockMasker` expects a batch of images (B, H, W, C) or an int batch "
                f"size; sizes are drawn per batch, so batch before masking. "
                f"Received: inputs.shape={tuple(inputs.shape)}"
            )
        batch_size = self.backend.core.shape(inputs)[0]
        # Data parallelism that runs this step once per replica (tf.distribute, torch
        # DDP; the seed state is the same on every replica): draw the masks of the
        # whole global batch and keep this replica's contiguous rows, so no two
        # replicas share masks, block sizes are drawn once per global batch (as in one
        # JAX program over the global batch, where `replica_context` is (0, 1)), and
        # image i of a global batch gets the same masks on any replica count.
        replica_id, num_replicas = replica_context(self.backend.name)
        masks = self._sample(1, batch_size * num_replicas)
        masks = {key: value[0] for key, value in masks.items()}
        if num_replicas > 1:
            rows = replica_id * batch_size + self.backend.numpy.arange(batch_size, dtype="int32")
            masks = {key: self.backend.numpy.take(value, rows, axis=0) for key, value in masks.items()}
        return masks

    def longest_mask_samples(self, batch_size):
        """How long the masks of a batch of `batch_size` really are: the longest real
        context and target mask of each of ~8,192 / `batch_size` (at least 16)
        simulated batches, two int arrays. A fixed-seed NumPy simulation of this
        configuration (the layer's seed generator is not touched), cached; what a
        compiled step's length buckets are chosen from (`utils.length_buckets`).

        >>> masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=0)
        >>> context, target = masker.longest_mask_samples(4)
        >>> bool(context.max() <= masker.num_context_tokens), len(target) >= 16
        (True, True)
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        return _longest_mask_samples(self._spec, batch_size)

    def sample_batches(self, num_batches, batch_size):
        """Masks for `num_batches` independent batches in one vectorised draw.

        Equivalent to `num_batches` calls on batches of `batch_size` (sizes are
        drawn once per batch), for statistics and precomputed mask streams.

        Returns:
            The dict of `call`, each entry with a leading `num_batches` axis.
        """
        num_batches = check_int("num_batches", num_batches, minimum=1)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        return self._sample(num_batches, batch_size)

    def _sample(self, num_batches, batch_size):
        backend = self.backend.name
        generator = self._get_seed_generator(backend)
        if backend != "jax":
            return _sample_masks(self._spec, backend, num_batches, batch_size, generator)
        # JAX runs op by op outside `jit` and compiles each op for each new
        # shape; one compiled function per (configuration, shape) is far
        # cheaper. `next()` keeps the Keras seed-state handling (eager,
        # stateless scopes, tracing).
        return _jax_sample_masks()(self._spec, backend, num_batches, batch_size, generator.next())

    def compute_output_spec(self, inputs):
        batch = inputs if isinstance(inputs, numbers.Integral) else inputs.shape[0]
        m, kc, kt = self.num_targets, self.num_context_tokens, self.num_target_tokens
        return {
            "context_indices": keras.KerasTensor((batch, kc), dtype="int32"),
            "context_mask": keras.KerasTensor((batch, kc), dtype="bool"),
            "target_indices": keras.KerasTensor((batch, m, kt), dtype="int32"),
            "target_mask": keras.KerasTensor((batch, m, kt), dtype="bool"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_size": self.grid_size,
                "num_targets": self.num_targets,
                "target_scale": self.target_scale,
                "target_aspect_ratio": self.target_aspect_ratio,
                "context_scale": self.context_scale,
                "context_aspect_ratio": self.context_aspect_ratio,
                "min_keep": self.min_keep,
                "num_context_tokens": self.num_context_tokens,
                "num_target_tokens": self.num_target_tokens,
                "num_context_candidates": self.num_context_candidates,
                "reference_clip": self.reference_clip,
                "reference": self.reference,
                "reference_group_size": self.reference_group_size,
                "seed": self.seed,
            }
        )
        return config
