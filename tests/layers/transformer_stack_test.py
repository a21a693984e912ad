import math
import os

import h5py
import keras
import numpy as np

from keras_flexpredict.layers.transformer_stack import _exact_gelu
from keras_flexpredict.layers.transformer_stack import build_transformer_stack
from keras_flexpredict.layers.transformer_stack import run_blocks
from keras_flexpredict.layers.transformer_stack import transformer_stack
from keras_flexpredict.models.jepa_predictor import JEPAPredictor
from keras_flexpredict.models.vit_encoder import ViTEncoder
from keras_flexpredict.testing import TestCase


class TransformerStackTest(TestCase):
    def test_transformer_stack__names_widths_and_depth_scaled_init(self):
        blocks, norm = transformer_stack(8, 3, 2, mlp_ratio=2.0, layer_norm_epsilon=1e-5, depth_scaled_init=True)
        self.assertEqual([b.name for b in blocks], ["block_0", "block_1", "block_2"])
        self.assertEqual(norm.name, "norm")
        self.assertEqual(norm.epsilon, 1e-5)
        self.assertEqual([b.mlp_ratio for b in blocks], [2.0] * 3)
        np.testing.assert_allclose([b.output_kernel_scale for b in blocks], [2**-0.5, 4**-0.5, 6**-0.5])
        blocks, _ = transformer_stack(8, 2, 2)
        self.assertEqual([b.output_kernel_scale for b in blocks], [1.0, 1.0])

    def test_transformer_stack__depth_must_be_a_positive_int(self):
        with self.assertRaisesRegex(ValueError, "depth=0"):
            transformer_stack(8, 0, 2)

    def test_run_blocks__last_n_outputs_in_order(self):
        blocks, norm = transformer_stack(8, 3, 2)
        build_transformer_stack(blocks, norm, (None, None, 8))
        x = np.random.RandomState(0).randn(2, 4, 8).astype("float32")
        every = []
        tokens = x
        for block in blocks:
            tokens = block(tokens, zero_padding=False)
            every.append(tokens)
        got = run_blocks(blocks, x, last_n=2)
        self.assertLen(got, 2)
        self.assertAllClose(got, every[1:], atol=1e-6)

    def test_exact_gelu__equals_keras_gelu_and_its_gradient(self):
        # The stack's GELU (the erf form, as torch writes it) is the layers' GELU.
        x = np.linspace(-10.0, 10.0, 2001).astype("float32")
        self.assertAllClose(_exact_gelu(x), keras.activations.gelu(x), atol=2e-6, rtol=0)
        erf = np.vectorize(math.erf)
        want = 0.5 * x * (1.0 + erf(x.astype("float64") / math.sqrt(2.0)))
        self.assertAllClose(_exact_gelu(x), want, atol=2e-6, rtol=1e-6)
        if keras.backend.backend() == "jax":
            import jax

            grad = jax.vmap(jax.grad(_exact_gelu))(x)
            want_grad = jax.vmap(jax.grad(lambda v: keras.activations.gelu(v)))(x)
            self.assertAllClose(grad, want_grad, atol=2e-6, rtol=0)

    def test_owners__weight_paths_and_weights_file_layout_unchanged(self):
        # The stack is no layer of its own: the owner's paths and `.weights.h5` groups
        # are those of files saved before it existed.
        encoder = ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=2, num_heads=2)
        encoder.build((None, 16, 16, 3))
        paths = [w.path for w in encoder.weights]
        self.assertEqual(paths[:3], [
            "vit_encoder/patch_embedding/projection/kernel",
            "vit_encoder/patch_embedding/projection/bias",
            "vit_encoder/positional_embedding/embeddings",
        ])
        self.assertEqual(paths[3], "vit_encoder/block_0/norm1/gamma")
        self.assertEqual(paths[-2:], ["vit_encoder/norm/gamma", "vit_encoder/norm/beta"])
        path = os.path.join(self.get_temp_dir(), "encoder.weights.h5")
        encoder.save_weights(path)
        groups = []
        with h5py.File(path) as f:
            f.visit(lambda name: groups.append(name) if name.endswith("/vars") else None)
        self.assertIn("blocks/transformer_block/qkv/vars", groups)
        self.assertIn("blocks/transformer_block_1/mlp_output/vars", groups)
        predictor = JEPAPredictor(encoder_dim=8, hidden_dim=8, depth=1, num_heads=2, grid_size=(2, 2))
        predictor.build((None, None, 8))
        self.assertIn("jepa_predictor/block_0/qkv/kernel", [w.path for w in predictor.weights])
