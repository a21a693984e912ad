import keras
import numpy as np
from keras import ops

from keras_flexpredict.layers import SinCosPositionalEmbedding
from keras_flexpredict.layers import sincos_2d_positional_embedding
from keras_flexpredict.testing import TestCase


# --- An independent port of MAE's util/pos_embed.py (facebookresearch/mae), kept as
# close to the original as NumPy allows, generalised from `grid_size` to (h, w) the
# same way (grid_h has h entries, grid_w has w). Note `np.meshgrid(grid_w, grid_h)`:
# "here w goes first", so the FIRST half of the channels encodes the column.
def _mae_1d_from_grid(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    pos = pos.reshape(-1)
    out = np.einsum("m,d->md", pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _mae_2d_from_grid(embed_dim, grid):
    emb_h = _mae_1d_from_grid(embed_dim // 2, grid[0])
    emb_w = _mae_1d_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def mae_get_2d_sincos_pos_embed(embed_dim, grid_h_size, grid_w_size):
    grid_h = np.arange(grid_h_size, dtype=np.float32)
    grid_w = np.arange(grid_w_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0)
    grid = grid.reshape([2, 1, grid_h_size, grid_w_size])
    return _mae_2d_from_grid(embed_dim, grid)


class SinCosPositionalEmbeddingTest(TestCase):
    def test_table__matches_mae_reference_port_square_grid(self):
        table = sincos_2d_positional_embedding((14, 14), 64)
        expected = mae_get_2d_sincos_pos_embed(64, 14, 14)
        self.assertEqual(table.shape, (196, 64))
        self.assertEqual(table.dtype, np.float32)
        np.testing.assert_allclose(table, expected, atol=1e-6, rtol=0)

    def test_table__matches_mae_reference_port_non_square_grid(self):
        table = sincos_2d_positional_embedding((3, 5), 16)
        np.testing.assert_allclose(table, mae_get_2d_sincos_pos_embed(16, 3, 5), atol=1e-6, rtol=0)

    def test_table__first_half_encodes_columns_second_half_rows(self):
        h, w, d = 3, 5, 16
        table = sincos_2d_positional_embedding((h, w), d).reshape(h, w, d)
        # Same column, different rows: identical first half, different second half.
        np.testing.assert_array_equal(table[0, 2, : d // 2], table[2, 2, : d // 2])
        self.assertFalse(np.allclose(table[0, 2, d // 2 :], table[2, 2, d // 2 :]))
        # Same row, different columns: identical second half.
        np.testing.assert_array_equal(table[1, 0, d // 2 :], table[1, 4, d // 2 :])
        self.assertFalse(np.allclose(table[1, 0, : d // 2], table[1, 4, : d // 2]))
        # Patch (0, 0): sin(0) = 0 and cos(0) = 1 in each quarter.
        q = d // 4
        np.testing.assert_array_equal(table[0, 0], np.tile(np.r_[np.zeros(q), np.ones(q)], 2))

    def test_table__int_grid_size_means_square(self):
        np.testing.assert_array_equal(
            sincos_2d_positional_embedding(4, 8), sincos_2d_positional_embedding((4, 4), 8)
        )

    def test_table__embed_dim_not_divisible_by_4_raises(self):
        with self.assertRaisesRegex(ValueError, "embed_dim=6"):
            sincos_2d_positional_embedding((2, 2), 6)

    def test_init__bad_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "embed_dim=10"):
            SinCosPositionalEmbedding(grid_size=(2, 2), embed_dim=10)
        with self.assertRaisesRegex(ValueError, "grid_size"):
            SinCosPositionalEmbedding(grid_size=(2, 0))
        with self.assertRaisesRegex(ValueError, "grid_size"):
            SinCosPositionalEmbedding(grid_size=(2, 2, 2))

    def test_build__wrong_sequence_length_raises(self):
        layer = SinCosPositionalEmbedding(grid_size=(2, 3))
        with self.assertRaisesRegex(ValueError, "Expected 6 tokens"):
            layer(np.zeros((1, 5, 8), "float32"))

    def test_call__adds_the_table_to_every_example(self):
        layer = SinCosPositionalEmbedding(grid_size=(2, 3))
        tokens = np.random.RandomState(0).randn(4, 6, 8).astype("float32")
        out = layer(tokens)
        self.assertEqual(tuple(out.shape), (4, 6, 8))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")
        self.assertAllClose(out, tokens + sincos_2d_positional_embedding((2, 3), 8)[None], atol=1e-6)

    def test_weights__table_is_a_single_non_trainable_weight(self):
        layer = SinCosPositionalEmbedding(grid_size=(2, 2), embed_dim=8)
        layer.build((None, 4, 8))
        self.assertEqual(layer.trainable_weights, [])
        self.assertEqual(len(layer.non_trainable_weights), 1)
        self.assertAllClose(layer.embeddings, sincos_2d_positional_embedding((2, 2), 8))

    def test_layer__shared_checks(self):
        # Build, shapes, weight counts, config and `.keras` / `.weights.h5` round trips,
        # symbolic call, bfloat16 (not on torch).
        layer = self.run_layer_test(
            SinCosPositionalEmbedding,
            dict(grid_size=(3, 4), embed_dim=8, name="pe"),
            np.random.RandomState(1).randn(2, 12, 8).astype("float32"),
            expected_output_shape=(2, 12, 8),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
        )
        clone = SinCosPositionalEmbedding.from_config(layer.get_config())
        self.assertEqual(clone.grid_size, (3, 4))
        self.assertEqual(clone.embed_dim, 8)

    def test_fit__one_step_in_a_model(self):
        inputs = keras.Input((4, 8))
        pe = SinCosPositionalEmbedding(grid_size=(2, 2))
        head = keras.layers.Dense(1)
        outputs = head(keras.layers.Flatten()(pe(inputs)))
        model = keras.Model(inputs, outputs)
        x = np.random.RandomState(2).randn(4, 4, 8).astype("float32")
        y = np.ones((4, 1), "float32")
        table = np.array(ops.convert_to_numpy(pe.embeddings))
        self.run_one_step_fit_test(model, x, y, check_variables=[head.kernel])
        # The fixed table is never trained.
        self.assertAllClose(pe.embeddings, table, atol=0, rtol=0)

    def test_mixed_precision__bfloat16_outputs(self):
        self.skip_if_no_mixed_precision()
        keras.config.set_dtype_policy("mixed_bfloat16")
        layer = SinCosPositionalEmbedding(grid_size=(2, 2))
        out = layer(np.zeros((2, 4, 8), "float32"))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
        self.assertEqual(keras.backend.standardize_dtype(layer.embeddings.dtype), "float32")
        out = ops.convert_to_numpy(ops.cast(out, "float32"))
        self.assertTrue(np.all(np.isfinite(out)))
        self.assertAllClose(out[0], sincos_2d_positional_embedding((2, 2), 8), atol=1e-2, rtol=1e-2)
