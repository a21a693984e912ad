"""Fixed 2-D sine-cosine positional embedding (MAE / I-JEPA layout)."""

import keras
import numpy as np
from keras import ops


def sincos_1d(embed_dim, positions):
    """1-D sin-cos embedding of `positions` (any shape) -> (P, embed_dim) float64."""
    if embed_dim % 2:
        raise ValueError(f"`embed_dim` must be even. Received: embed_dim={embed_dim}")
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("p,d->pd", np.asarray(positions, np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d_positional_embedding(grid_size, embed_dim):
    """The 2-D sin-cos table of MAE and I-JEPA, as a NumPy array (h * w, embed_dim).

    Rows of the table are patches in row-major order (index = row * w + col).
    Channel layout, exactly as MAE's `get_2d_sincos_pos_embed` (whose `meshgrid(grid_w,
    grid_h)` puts the column coordinate first): the first `embed_dim / 2` channels encode
    the **column** (x) coordinate and the last `embed_dim / 2` the **row** (y) coordinate;
    each half is `[sin(pos * omega), cos(pos * omega)]` with
    `omega_k = 10000^(-k / (embed_dim / 4))`.

    Example:
    >>> table = sincos_2d_positional_embedding((2, 3), 8)
    >>> table.shape
    (6, 8)
    """
    h, w = _as_grid(grid_size)
    if embed_dim % 4:
        raise ValueError(
            "`embed_dim` must be divisible by 4 for a 2-D sin-cos embedding. "
            f"Received: embed_dim={embed_dim}"
        )
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    emb_cols = sincos_1d(embed_dim // 2, cols)
    emb_rows = sincos_1d(embed_dim // 2, rows)
    return np.concatenate([emb_cols, emb_rows], axis=1).astype(np.float32)


def _as_grid(grid_size):
    if isinstance(grid_size, int):
        grid_size = (grid_size, grid_size)
    grid_size = tuple(int(g) for g in grid_size)
    if len(grid_size) != 2 or min(grid_size) < 1:
        raise ValueError(
            f"`grid_size` must be a positive int or a pair of them. Received: grid_size={grid_size}"
        )
    return grid_size


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class SinCosPositionalEmbedding(keras.layers.Layer):
    """Adds the fixed 2-D sin-cos positional embedding to a sequence of patch tokens.

    The table is a non-trainable weight (as `pos_embed` in the official checkpoints);
    see `sincos_2d_positional_embedding` for the channel layout (first half: columns,
    second half: rows).

    Args:
        grid_size: int or `(h, w)`. The patch grid; the sequence length is `h * w`.
        embed_dim: int or None. Channel width; None takes it from the input at build.

    Call arguments:
        tokens: `(batch, h * w, embed_dim)` tokens in row-major patch order.

    Example:
    >>> layer = SinCosPositionalEmbedding(grid_size=(2, 2))
    >>> tuple(layer(np.zeros((1, 4, 8), "float32")).shape)
    (1, 4, 8)

    References:
        - [He et al., 2021, MAE](https://arxiv.org/abs/2111.06377)
    """

    def __init__(self, grid_size, embed_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = _as_grid(grid_size)
        self.embed_dim = embed_dim
        if embed_dim is not None and embed_dim % 4:
            raise ValueError(
                f"`embed_dim` must be divisible by 4. Received: embed_dim={embed_dim}"
            )

    def build(self, input_shape):
        dim = self.embed_dim or input_shape[-1]
        if input_shape[-1] is not None and input_shape[-1] != dim:
            raise ValueError(
                f"Token width must equal embed_dim={dim}. Received: input_shape={tuple(input_shape)}"
            )
        n = self.grid_size[0] * self.grid_size[1]
        if input_shape[-2] is not None and input_shape[-2] != n:
            raise ValueError(
                f"Expected {n} tokens for grid_size={self.grid_size}. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        table = sincos_2d_positional_embedding(self.grid_size, dim)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=table.shape,
            initializer=keras.initializers.Constant(table),
            trainable=False,
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embeddings, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"grid_size": self.grid_size, "embed_dim": self.embed_dim})
        return config
