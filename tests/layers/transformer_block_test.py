import keras
import numpy as np
from keras import ops
from scipy.special import erf

from keras_flexpredict.layers import TransformerBlock
from keras_flexpredict.testing import TestCase


def to_np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), dtype=np.float64)


def randomize_weights(layer, seed=0, scale=0.3):
    """Non-trivial weights (biases and LayerNorm affine included) for equivalence tests."""
    rng = np.random.RandomState(seed)
    for w in layer.weights:
        value = rng.randn(*w.shape) * scale
        if "gamma" in w.path:
            value = 1.0 + value
        w.assign(value.astype("float32"))


def numpy_block(x, block, mask=None):
    """Independent NumPy reference of the I-JEPA `Block` (timm layout: fused qkv reshaped
    to (B, N, 3, heads, head_dim), pre-LN, exact GELU)."""
    w = {v.path.split("/", 1)[1]: to_np(v) for v in block.weights}
    eps, h = block.layer_norm_epsilon, block.num_heads

    def layer_norm(t, name):
        mu, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
        return (t - mu) / np.sqrt(var + eps) * w[f"{name}/gamma"] + w[f"{name}/beta"]

    b, n, d = x.shape
    qkv = layer_norm(x, "norm1") @ w["qkv/kernel"] + w["qkv/bias"]
    qkv = qkv.reshape(b, n, 3, h, d // h).transpose(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
    q, k, v = qkv
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // h)
    if mask is not None:
        logits = np.where(mask[:, None, None, :], logits, -np.inf)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    out = (attn @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
    x = x + out @ w["attention_output/kernel"] + w["attention_output/bias"]
    hidden = layer_norm(x, "norm2") @ w["mlp_hidden/kernel"] + w["mlp_hidden/bias"]
    hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
    x = x + hidden @ w["mlp_output/kernel"] + w["mlp_output/bias"]
    if mask is not None:
        x = np.where(mask[..., None], x, 0.0)
    return x


class TransformerBlockTest(TestCase):
    def _block_and_input(self, batch=2, length=5, dim=16, heads=4):
        block = TransformerBlock(hidden_dim=dim, num_heads=heads)
        x = np.random.RandomState(1).randn(batch, length, dim).astype("float32")
        block(x)
        randomize_weights(block)
        return block, x

    def test_call__matches_numpy_reference(self):
        block, x = self._block_and_input()
        out = block(x)
        self.assertEqual(tuple(out.shape), x.shape)
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")
        self.assertAllClose(out, numpy_block(x.astype(np.float64), block), atol=1e-4, rtol=1e-4)

    def test_call__padding_mask_matches_numpy_reference(self):
        block, x = self._block_and_input()
        mask = np.array([[True, True, False, True, False], [True] * 5])
        self.assertAllClose(
            block(x, padding_mask=mask), numpy_block(x.astype(np.float64), block, mask),
            atol=1e-4, rtol=1e-4,
        )

    def test_call__padded_tokens_are_never_attended_and_output_zero(self):
        block, x = self._block_and_input()
        mask = np.array([[True, True, False, True, False], [True, False, True, True, True]])
        out = to_np(block(x, padding_mask=mask))
        changed = x.copy()
        changed[~mask] = 100.0 * np.random.RandomState(2).randn(int((~mask).sum()), x.shape[-1])
        out_changed = to_np(block(changed, padding_mask=mask))
        np.testing.assert_allclose(out_changed[mask], out[mask], atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(out[~mask], 0.0)
        # The real tokens equal running the block on the real tokens alone.
        alone = to_np(block(x[:1, mask[0]]))
        np.testing.assert_allclose(out[0, mask[0]], alone[0], atol=1e-5, rtol=1e-5)

    def test_call__outputs_from_gives_the_kept_tokens_of_the_full_output(self):
        block, x = self._block_and_input()
        mask = np.array([[True, True, False, True, False], [True, False, True, True, True]])
        want = numpy_block(x.astype(np.float64), block, mask)[:, 2:]
        out = block(x, padding_mask=mask, outputs_from=2)
        self.assertEqual(tuple(out.shape), (2, 3, 16))
        self.assertAllClose(out, want, atol=1e-4, rtol=1e-4)
        self.assertAllClose(block(x, outputs_from=4), numpy_block(x.astype(np.float64), block)[:, 4:], atol=1e-4)
        symbolic = block(keras.KerasTensor((None, 5, 16)), outputs_from=2)
        self.assertEqual(tuple(symbolic.shape), (None, 3, 16))

    def test_call__all_true_mask_equals_no_mask(self):
        block, x = self._block_and_input()
        self.assertAllClose(block(x, padding_mask=np.ones(x.shape[:2], bool)), block(x), atol=1e-6)

    def test_init__default_kernels_std_0_02_biases_zero(self):
        block = TransformerBlock(hidden_dim=256, num_heads=4)
        block.build((None, None, 256))
        for layer in (block.qkv, block.attention_output, block.mlp_hidden, block.mlp_output):
            self.assertAlmostEqual(float(to_np(layer.kernel).std()), 0.02, delta=0.02 * 0.03)
            np.testing.assert_array_equal(to_np(layer.bias), 0.0)

    def test_init__output_kernel_scale_scales_only_output_kernels(self):
        scale = 0.25
        block = TransformerBlock(hidden_dim=256, num_heads=4, output_kernel_scale=scale)
        block.build((None, None, 256))
        for layer, std in (
            (block.qkv, 0.02),
            (block.mlp_hidden, 0.02),
            (block.attention_output, 0.02 * scale),
            (block.mlp_output, 0.02 * scale),
        ):
            self.assertAlmostEqual(float(to_np(layer.kernel).std()), std, delta=std * 0.03)

    def test_init__heads_must_divide_width(self):
        with self.assertRaisesRegex(ValueError, "hidden_dim=10, num_heads=4"):
            TransformerBlock(hidden_dim=10, num_heads=4)

    def test_init__mlp_ratio_and_qkv_bias(self):
        block = TransformerBlock(hidden_dim=8, num_heads=2, mlp_ratio=2.0, qkv_bias=False)
        block.build((None, None, 8))
        self.assertEqual(tuple(block.mlp_hidden.kernel.shape), (8, 16))
        self.assertIsNone(block.qkv.bias)

    def test_layer__shared_checks(self):
        # Build, shapes, weight counts, config and `.keras` / `.weights.h5` round trips,
        # symbolic call, bfloat16 (not on torch), with a padding mask.
        block = self.run_layer_test(
            TransformerBlock,
            dict(
                hidden_dim=16, num_heads=4, mlp_ratio=2.0, qkv_bias=False,
                layer_norm_epsilon=1e-5, output_kernel_scale=0.5, name="blk",
            ),
            [
                np.random.RandomState(1).randn(2, 5, 16).astype("float32"),
                np.array([[True, True, False, True, False], [True] * 5]),
            ],
            expected_output_shape=(2, 5, 16),
            expected_num_trainable_weights=11,  # no qkv bias
            expected_num_non_trainable_weights=0,
        )
        clone = TransformerBlock.from_config(block.get_config())
        self.assertEqual(clone.output_kernel_scale, 0.5)
        self.assertEqual(clone.layer_norm_epsilon, 1e-5)

    def test_fit__one_step_in_a_model(self):
        inputs = keras.Input((5, 16))
        block = TransformerBlock(hidden_dim=16, num_heads=4)
        x = keras.layers.GlobalAveragePooling1D()(block(inputs))
        model = keras.Model(inputs, keras.layers.Dense(1)(x))
        data = np.random.RandomState(3).randn(4, 5, 16).astype("float32")
        self.run_one_step_fit_test(
            model, data, np.ones((4, 1), "float32"),
            check_variables=[block.qkv.kernel, block.attention_output.kernel, block.mlp_output.kernel],
        )

    def test_mixed_precision__bfloat16_outputs(self):
        self.skip_if_no_mixed_precision()
        keras.config.set_dtype_policy("mixed_bfloat16")
        block = TransformerBlock(hidden_dim=16, num_heads=4)
        x = np.random.RandomState(4).randn(2, 5, 16).astype("float32")
        out = block(x, padding_mask=np.array([[True, True, True, False, False], [True] * 5]))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
        self.assertEqual(keras.backend.standardize_dtype(block.qkv.kernel.dtype), "float32")
        self.assertTrue(np.all(np.isfinite(to_np(out))))
