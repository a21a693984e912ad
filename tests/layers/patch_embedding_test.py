import keras
import numpy as np
from keras import ops

from keras_flexpredict.layers import PatchEmbedding
from keras_flexpredict.testing import TestCase


def numpy_patchify_project(images, kernel, bias, p):
    """Independent reference: cut p x p patches in row-major order and project them."""
    b, h, w, c = images.shape
    patches = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(b, (h // p) * (w // p), p * p * c)
    return patches @ kernel.reshape(p * p * c, -1) + bias


class PatchEmbeddingTest(TestCase):
    def test_call__row_major_patches_match_numpy_reference(self):
        layer = PatchEmbedding(patch_size=4, embed_dim=8)
        images = np.random.RandomState(0).randn(2, 8, 12, 3).astype("float32")
        out = layer(images)
        self.assertEqual(tuple(out.shape), (2, 6, 8))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")
        kernel = np.random.RandomState(1).randn(4, 4, 3, 8).astype("float32")
        bias = np.random.RandomState(2).randn(8).astype("float32")
        layer.projection.kernel.assign(kernel)
        layer.projection.bias.assign(bias)
        expected = numpy_patchify_project(images, kernel, bias, 4)
        self.assertAllClose(layer(images), expected, atol=1e-4, rtol=1e-4)

    def test_call__patch_index_is_row_times_width_plus_column(self):
        layer = PatchEmbedding(patch_size=2, embed_dim=1)
        layer.build((None, 4, 6, 1))
        layer.projection.kernel.assign(np.ones((2, 2, 1, 1), "float32"))
        images = np.zeros((1, 4, 6, 1), "float32")
        images[0, 2:4, 4:6, 0] = 1.0  # patch row 1, column 2 -> index 1 * 3 + 2 = 5
        out = ops.convert_to_numpy(layer(images))[0, :, 0]
        np.testing.assert_array_equal(np.nonzero(out)[0], [5])

    def test_init__default_kernel_std_is_0_02_and_bias_zero(self):
        layer = PatchEmbedding(patch_size=8, embed_dim=256)
        layer.build((None, 16, 16, 3))
        kernel = ops.convert_to_numpy(layer.projection.kernel)
        self.assertAlmostEqual(float(kernel.std()), 0.02, delta=0.02 * 0.05)
        self.assertAllClose(layer.projection.bias, np.zeros(256), atol=0)

    def test_build__size_not_divisible_by_patch_raises_naming_both(self):
        layer = PatchEmbedding(patch_size=8, embed_dim=4)
        with self.assertRaisesRegex(ValueError, r"height=30.*patch_size=8"):
            layer(np.zeros((1, 30, 32, 3), "float32"))
        layer = PatchEmbedding(patch_size=8, embed_dim=4)
        with self.assertRaisesRegex(ValueError, r"width=20.*patch_size=8"):
            layer(np.zeros((1, 32, 20, 3), "float32"))

    def test_build__non_image_input_raises(self):
        with self.assertRaisesRegex(ValueError, "rank 4"):
            PatchEmbedding(patch_size=2, embed_dim=4)(np.zeros((1, 4, 4), "float32"))

    def test_init__bad_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "patch_size=0"):
            PatchEmbedding(patch_size=0, embed_dim=4)
        with self.assertRaisesRegex(ValueError, "embed_dim=0"):
            PatchEmbedding(patch_size=2, embed_dim=0)

    def test_layer__shared_checks(self):
        # Build, shapes, weight counts, config and `.keras` / `.weights.h5` round trips,
        # symbolic call, bfloat16 (not on torch).
        layer = self.run_layer_test(
            PatchEmbedding,
            dict(patch_size=4, embed_dim=8, name="pe"),
            np.random.RandomState(3).randn(2, 16, 24, 3).astype("float32"),
            expected_output_shape=(2, 24, 8),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
        )
        self.assertEqual((layer.patch_size, layer.embed_dim), (4, 8))

    def test_fit__one_step_in_a_model(self):
        inputs = keras.Input((16, 16, 3))
        patches = PatchEmbedding(patch_size=8, embed_dim=8)
        x = keras.layers.GlobalAveragePooling1D()(patches(inputs))
        model = keras.Model(inputs, keras.layers.Dense(1)(x))
        images = np.random.RandomState(4).randn(4, 16, 16, 3).astype("float32")
        self.run_one_step_fit_test(
            model, images, np.ones((4, 1), "float32"),
            check_variables=[patches.projection.kernel, patches.projection.bias],
        )
