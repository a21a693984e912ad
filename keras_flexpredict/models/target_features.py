"""The target side of a JEPA step: teacher features, normalised, gathered per block."""

from keras import ops


def layer_norm_no_affine(x, epsilon=1e-5):
    """LayerNorm over the last axis without scale or offset, in float32: the
    reference's `F.layer_norm(h, (h.size(-1),))` (eps 1e-5).

    Example:
    >>> import numpy as np
    >>> y = layer_norm_no_affine(np.array([[1.0, 3.0]], "float32"))
    >>> [round(float(v), 3) for v in np.asarray(y)[0]]
    [-1.0, 1.0]
    """
    x = ops.cast(x, "float32")
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.var(x, axis=-1, keepdims=True)
    return (x - mean) * ops.rsqrt(var + epsilon)


def gather_blocks(tokens, target_indices):
    """The tokens of every target block: `(B, N, D)` and int `(B, M, Kt)` indices to
    `(B, M, Kt, D)`."""
    b = ops.shape(tokens)[0]
    m, kt = ops.shape(target_indices)[1], ops.shape(target_indices)[2]
    idx = ops.reshape(ops.cast(target_indices, "int32"), (b, m * kt, 1))
    return ops.reshape(ops.take_along_axis(tokens, idx, axis=1), (b, m, kt, -1))


def target_features(target_encoder, images, target_indices):
    """The regression targets of one step: the target encoder's tokens of the whole
    image, normalised without affine (`layer_norm_no_affine`), with no gradient, and
    gathered per target block.

    Args:
        target_encoder: a `ViTEncoder` (the EMA teacher); run with `training=False`.
        images: float `(B, H, W, C)`.
        target_indices: int `(B, M, Kt)` patch indices of the target blocks.

    Returns:
        float32 `(B, M, Kt, D)`.

    Example:
    >>> import numpy as np
    >>> from keras_flexpredict.models.vit_encoder import ViTEncoder
    >>> encoder = ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
    >>> targets = target_features(encoder, np.zeros((2, 16, 16, 3), "float32"),
    ...                           np.zeros((2, 3, 1), "int32"))
    >>> tuple(targets.shape)
    (2, 3, 1, 8)
    """
    tokens = target_encoder(images, training=False)
    tokens = ops.stop_gradient(layer_norm_no_affine(tokens))
    return gather_blocks(tokens, target_indices)
