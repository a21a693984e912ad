"""Dropping padding slots where shapes may change from step to step."""

import contextlib

from keras import ops

from keras_flexpredict.utils.backend_adapter import eager_slots_stay_static
from keras_flexpredict.utils.backend_adapter import graph_shapes_may_vary
from keras_flexpredict.utils.backend_adapter import shapes_may_vary
from keras_flexpredict.utils.length_buckets import first_fitting_bucket

__all__ = [
    "GRAPH_SHAPES_PER_AXIS",
    "cut_to_slots",
    "graph_length_multiple",
    "graph_shapes_may_vary",
    "longest_mask",
    "shapes_may_vary",
    "trim_padding",
]

# In a TensorFlow graph the cut lengths are rounded up to a multiple of
# `graph_length_multiple(slots)`, so a slot axis takes at most about this many shapes
# in a run (each new one costs the XLA-fused LayerNorm and GELU of
# `backend_adapter.run_tf_fused_block` a compilation and oneDNN a new matmul primitive)
# and the rounding adds at most 1/8 of the slots. (A fixed multiple of 8 ran 12 target
# slots for masks of 9 at 64/8, and that TF step 8-11% slower than with this rule.)
GRAPH_SHAPES_PER_AXIS = 8


def graph_length_multiple(slots):
    """What a TF graph rounds a slot axis of `slots` slots up to a multiple of.

    >>> graph_length_multiple(12), graph_length_multiple(77)
    (1, 9)
    """
    if slots is None:  # a slot axis of unknown size: multiples of 8
        return GRAPH_SHAPES_PER_AXIS
    return max(1, slots // GRAPH_SHAPES_PER_AXIS)


# The slot sizes `(kc, kt)` set by `cut_to_slots` for the trace under way (innermost last).
_SLOTS = []


@contextlib.contextmanager
def cut_to_slots(context_slots, target_slots):
    """Within this block `trim_padding` cuts every mask to these static sizes: the
    length bucket a compiled JAX step traces (`utils.jax_length_buckets`), whose caller
    guarantees that every real token of the batch fits.

    >>> with cut_to_slots(3, 2):
    ...     masks = trim_padding({
    ...         "context_indices": ops.zeros((1, 5), "int32"),
    ...         "context_mask": ops.zeros((1, 5), "bool"),
    ...         "target_indices": ops.zeros((1, 4, 3), "int32"),
    ...         "target_mask": ops.zeros((1, 4, 3), "bool")})
    >>> tuple(masks["context_mask"].shape), tuple(masks["target_mask"].shape)
    ((1, 3), (1, 4, 2))
    """
    _SLOTS.append((int(context_slots), int(target_slots)))
    try:
        yield
    finally:
        _SLOTS.pop()


def _round_up(length, multiple, limit):
    rounded = ((length + multiple - 1) // multiple) * multiple
    return rounded if limit is None else ops.minimum(rounded, limit)


def trim_padding(masks, compute_dtype="float32", length_buckets=None):
    """Cuts the padding slots that no image of the batch uses.

    The maskers put every real token before the padding (`MultiBlockMasker`: sorted
    indices, then padding), so slicing each slot axis to the batch's longest mask keeps
    every real token and drops only work on padding. Shapes then follow the masks, so
    this applies only where they may: on eager torch (`shapes_may_vary`) the slots are
    cut to the longest mask, read once on the host; where the Dense layers of a model
    computing in `compute_dtype` run as oneDNN matmuls there
    (`backend_adapter.eager_slots_stay_static`), which keeps a compiled primitive per
    shape, to the first of `length_buckets` that holds the longest mask (the static
    slots when `length_buckets` is None); in a TensorFlow graph without XLA
    (`graph_shapes_may_vary`) to the longest mask rounded up to a multiple of
    `graph_length_multiple(slots)` (at most the static slot count), computed in the
    graph; within `cut_to_slots` to the sizes it sets (a compiled JAX step's length
    bucket).
    Elsewhere `masks` come back as they are.

    Args:
        masks: dict with `context_indices`, `context_mask` `(B, Kc)` and
            `target_indices`, `target_mask` `(B, M, Kt)`.
        compute_dtype: the model's compute dtype.
        length_buckets: None, or `(kc, kt)` pairs, cheapest first, the last the static
            slots (`FlexPredict.train_length_buckets`): the only sizes eager torch
            cuts to where its Dense layers run as oneDNN matmuls.

    Returns:
        The same dict with `Kc`, `Kt` cut to the longest real mask of the batch.
    """
    context = masks["context_mask"]
    if _SLOTS:
        kc, kt = _SLOTS[-1]
    elif shapes_may_vary(context):
        static = eager_slots_stay_static(context, compute_dtype)
        if static and (length_buckets is None or len(length_buckets) < 2):
            return masks
        lengths = ops.stack([longest_mask(context), longest_mask(masks["target_mask"])])
        # One host read for both lengths.
        kc, kt = (int(v) for v in ops.convert_to_numpy(lengths))
        if static:
            kc, kt = first_fitting_bucket(length_buckets, kc, kt)
    elif graph_shapes_may_vary(context):
        kc, kt = (
            _round_up(longest_mask(m), graph_length_multiple(m.shape[-1]), m.shape[-1])
            for m in (context, masks["target_mask"])
        )
    else:
        return masks
    return {
        "context_indices": masks["context_indices"][:, :kc],
        "context_mask": context[:, :kc],
        "target_indices": masks["target_indices"][:, :, :kt],
        "target_mask": masks["target_mask"][:, :, :kt],
    }


def longest_mask(mask):
    """The batch's longest real mask: the most `True`s along the last axis of a
    validity mask, over every row (an int32 scalar tensor)."""
    return ops.max(ops.sum(ops.cast(mask, "int32"), axis=-1))
