"""The JEPA loss: predicted against target token features, over real tokens only."""

from keras import ops

LOSSES = ("smooth_l1", "mse")


def jepa_loss(predictions, targets, target_mask, loss="smooth_l1"):
    """Mean regression loss of predicted against target tokens, in float32.

    Averaged over the real target tokens (`target_mask` true), the features and the
    blocks; padding slots weigh nothing. At least one token is counted, so an empty
    mask gives 0, not NaN.

    Args:
        predictions: float `(B, M, Kt, D)`, the predictor's outputs.
        targets: float `(B, M, Kt, D)`, the normalised target-encoder features.
        target_mask: bool `(B, M, Kt)`, true on real target tokens.
        loss: `"smooth_l1"` (Huber with beta 1, as both official codes) or `"mse"`
            (the paper's L2). Defaults to `"smooth_l1"`.

    Returns:
        A float32 scalar.

    Example:
    >>> import numpy as np
    >>> p = np.zeros((1, 1, 2, 3), "float32")
    >>> t = np.full((1, 1, 2, 3), 2.0, "float32")
    >>> float(jepa_loss(p, t, np.array([[[True, False]]]), loss="mse"))
    4.0
    """
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}. Received: loss={loss!r}")
    predictions = ops.cast(predictions, "float32")
    targets = ops.cast(targets, "float32")
    weight = ops.cast(target_mask, "float32")[..., None]
    diff = predictions - targets
    if loss == "smooth_l1":
        abs_diff = ops.abs(diff)
        per_element = ops.where(abs_diff < 1.0, 0.5 * diff * diff, abs_diff - 0.5)
    else:
        per_element = diff * diff
    count = ops.maximum(ops.sum(weight), 1.0) * ops.cast(ops.shape(diff)[-1], "float32")
    return ops.sum(per_element * weight) / count
