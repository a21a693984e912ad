"""Dropping padding slots where shapes may change from step to step."""

from keras import ops

from keras_flexpredict.utils.backend_adapter import shapes_may_vary

__all__ = ["shapes_may_vary", "trim_padding"]


def trim_padding(masks):
    """Cuts the padding slots that no image of the batch uses.

    The maskers put every real token before the padding (`MultiBlockMasker`: sorted
    indices, then padding), so slicing each slot axis to the batch's longest mask keeps
    every real token and drops only work on padding. Shapes then follow the masks,
    so this is applied only where `shapes_may_vary`; elsewhere `masks` come back as
    they are.

    Args:
        masks: dict with `context_indices`, `context_mask` `(B, Kc)` and
            `target_indices`, `target_mask` `(B, M, Kt)`.

    Returns:
        The same dict with `Kc`, `Kt` cut to the longest real mask of the batch.
    """
    if not shapes_may_vary(masks["context_mask"]):
        return masks
    context = ops.sum(ops.cast(masks["context_mask"], "int32"), axis=-1)
    targets = ops.sum(ops.cast(masks["target_mask"], "int32"), axis=-1)
    # One host read for both lengths.
    kc, kt = (int(v) for v in ops.convert_to_numpy(ops.stack([ops.max(context), ops.max(targets)])))
    return {
        "context_indices": masks["context_indices"][:, :kc],
        "context_mask": masks["context_mask"][:, :kc],
        "target_indices": masks["target_indices"][:, :, :kt],
        "target_mask": masks["target_mask"][:, :, :kt],
    }
