"""Positional tables of a checkpoint at another resolution: the sin-cos table
recomputed for the new grid, any other table resampled (bicubic, as PyTorch)."""

import numpy as np

from keras_flexpredict.layers.sincos_positional_embedding import sincos_2d_positional_embedding

# Official tables are float32 casts of the float64 sin-cos table: equal to ~1e-7.
SINCOS_TOLERANCE = 1e-5


def is_sincos_table(table, grid_size):
    """Whether `table` `(h * w, dim)` is the fixed 2-D sin-cos table of `grid_size`
    (MAE / I-JEPA layout, see `sincos_2d_positional_embedding`).

    Example:
    >>> is_sincos_table(sincos_2d_positional_embedding((3, 3), 8), (3, 3))
    True
    """
    table = np.asarray(table)
    h, w = grid_size
    if table.ndim != 2 or table.shape[0] != h * w or table.shape[1] % 4:
        return False
    expected = sincos_2d_positional_embedding((h, w), table.shape[1])
    return bool(np.max(np.abs(table.astype(np.float64) - expected)) <= SINCOS_TOLERANCE)


def _cubic_weights(t, a=-0.75):
    """Weights of the 4 neighbours at offsets -1, 0, 1, 2 (Keys' cubic kernel with
    PyTorch's `a = -0.75`)."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(in_size, out_size):
    """`(out_size, in_size)` matrix of 1-D bicubic resampling, exactly as PyTorch's
    `F.interpolate(mode="bicubic", align_corners=False, size=...)` (borders clamped).

    Example:
    >>> m = bicubic_matrix(4, 4)
    >>> bool(np.allclose(m, np.eye(4)))
    True
    """
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    base = np.floor(src)
    weights = _cubic_weights(src - base)
    matrix = np.zeros((out_size, in_size), np.float64)
    for k in range(4):
        idx = np.clip(base.astype(np.int64) - 1 + k, 0, in_size - 1)
        np.add.at(matrix, (np.arange(out_size), idx), weights[:, k])
    return matrix


def resample_positional_table(table, from_grid, to_grid):
    """Bicubic resampling of a `(h * w, dim)` table from grid `from_grid` to `to_grid`
    (what PyTorch ViTs, Hugging Face's `interpolate_pos_encoding` included, do).

    Example:
    >>> table = np.random.rand(4 * 4, 8).astype("float32")
    >>> resample_positional_table(table, (4, 4), (6, 5)).shape
    (30, 8)
    """
    table = np.asarray(table, np.float64)
    (h, w), (nh, nw) = tuple(from_grid), tuple(to_grid)
    if table.ndim != 2 or table.shape[0] != h * w:
        raise ValueError(
            f"A positional table of grid {tuple(from_grid)} must have shape ({h * w}, dim). "
            f"Received: shape={table.shape}"
        )
    grid = table.reshape(h, w, -1)
    grid = np.einsum("ih,hwd->iwd", bicubic_matrix(h, nh), grid)
    grid = np.einsum("jw,iwd->ijd", bicubic_matrix(w, nw), grid)
    return grid.reshape(nh * nw, -1).astype(np.float32)


def positional_table_for_grid(table, from_grid, to_grid):
    """`(table, how)`: the positional table for `to_grid` and how it was made:
    `"stored"` (same grid), `"sincos"` (a sin-cos table, recomputed for the new grid)
    or `"bicubic"` (any other table, resampled).

    Example:
    >>> table = sincos_2d_positional_embedding((4, 4), 8)
    >>> new, how = positional_table_for_grid(table, (4, 4), (2, 2))
    >>> how, new.shape
    ('sincos', (4, 8))
    """
    table = np.asarray(table)
    from_grid, to_grid = tuple(from_grid), tuple(to_grid)
    if from_grid == to_grid:
        return table.astype(np.float32), "stored"
    if is_sincos_table(table, from_grid):
        return sincos_2d_positional_embedding(to_grid, table.shape[1]), "sincos"
    return resample_positional_table(table, from_grid, to_grid), "bicubic"
