"""The target side of a step: parameter-free LayerNorm and the gather of target blocks."""

import numpy as np

from keras_flexpredict.models.target_features import gather_blocks
from keras_flexpredict.models.target_features import layer_norm_no_affine
from keras_flexpredict.models.target_features import target_features
from keras_flexpredict.models.vit_encoder import ViTEncoder
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import to_numpy


class TargetFeaturesTest(TestCase):
    def test_layer_norm_no_affine__matches_numpy(self):
        x = np.random.default_rng(0).normal(size=(2, 5, 7)).astype("float32") * 3 + 1
        expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        self.assertAllClose(layer_norm_no_affine(x), expected, atol=1e-5, rtol=1e-5)

    def test_gather_blocks__picks_the_indexed_tokens(self):
        tokens = np.arange(2 * 6 * 3, dtype="float32").reshape(2, 6, 3)
        indices = np.array([[[0, 5], [2, 2]], [[1, 3], [4, 0]]], "int32")
        expected = np.stack([tokens[b][indices[b]] for b in range(2)])
        self.assertAllEqual(gather_blocks(tokens, indices), expected)

    def test_target_features__normalised_teacher_tokens_of_each_block(self):
        encoder = ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
        images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
        indices = np.array([[[0, 3]], [[1, 2]]], "int32")
        targets = to_numpy(target_features(encoder, images, indices))
        self.assertEqual(targets.shape, (2, 1, 2, 8))
        tokens = to_numpy(layer_norm_no_affine(encoder(images, training=False)))
        self.assertAllClose(targets[0, 0], tokens[0, [0, 3]])
        self.assertAllClose(targets[1, 0], tokens[1, [1, 2]])
