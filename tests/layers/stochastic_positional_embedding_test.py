import os

import keras
import numpy as np
from keras import ops

from keras_flexpredict.layers import StochasticPositionalEmbedding
from keras_flexpredict.testing import TestCase

DE, DP = 16, 8  # noise (encoder) width and output (predictor) width


def built_dense(kernel_std=0.3, seed=0, units=DP, input_dim=DE):
    """A built Dense De -> Dp with a kernel large enough to make statistics sharp."""
    rng = np.random.RandomState(seed)
    dense = keras.layers.Dense(units)
    dense.build((None, input_dim))
    dense.kernel.assign(rng.randn(input_dim, units).astype("float32") * kernel_std)
    dense.bias.assign(rng.randn(units).astype("float32"))
    return dense


def to_np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), dtype=np.float64)


def relative_frobenius_error(empirical, expected):
    return np.linalg.norm(empirical - expected) / np.linalg.norm(expected)


def empirical_covariance(samples):
    return np.cov(samples.reshape(-1, samples.shape[-1]), rowvar=False)


class StochasticPositionalEmbeddingTest(TestCase):
    # ---------------------------------------------------------------- tied (default)
    def test_tied__empirical_covariance_matches_sigma2_A_At(self):
        sigma = 0.5
        dense = built_dense()
        layer = StochasticPositionalEmbedding(sigma=sigma, seed=0)
        psi = np.random.RandomState(1).randn(200, 200, DP).astype("float32")
        out = to_np(layer(psi, projection=dense, training=True)) - psi  # 40,000 draws
        kernel = to_np(dense.kernel)  # Keras Dense: y = x K + b, so A = K^T
        expected = sigma**2 * kernel.T @ kernel
        error = relative_frobenius_error(empirical_covariance(out), expected)
        self.assertLess(error, 0.05)
        # The mean of the noise term is the projection's bias b (the "mask token").
        np.testing.assert_allclose(out.reshape(-1, DP).mean(0), to_np(dense.bias), atol=0.02)

    def test_noise_shift__zero_mean_part_of_every_mode(self):
        sigma = 0.5
        psi = np.random.RandomState(1).randn(200, 200, DP).astype("float32")  # 40,000 draws
        dense = built_dense()
        kernel = to_np(dense.kernel)
        for covariance, kwargs in (("tied", {}), ("learned", dict(noise_dim=DE)), ("isotropic", {})):
            with self.subTest(covariance=covariance):
                layer = StochasticPositionalEmbedding(sigma=sigma, covariance=covariance, seed=0, **kwargs)
                layer.build(psi.shape)
                if covariance == "learned":
                    layer.noise_projection.kernel.assign(kernel)
                    layer.noise_projection.bias.assign(np.ones(DP, "float32"))  # must not show
                shift = to_np(layer.noise_shift(psi, projection=dense, training=True))
                self.assertEqual(shift.shape, psi.shape)
                # Zero mean (no bias b, no mask token), covariance sigma^2 A A^T (or I).
                np.testing.assert_allclose(shift.reshape(-1, DP).mean(0), 0.0, atol=0.02)
                expected = sigma**2 * (np.eye(DP) if covariance == "isotropic" else kernel.T @ kernel)
                self.assertLess(relative_frobenius_error(empirical_covariance(shift), expected), 0.05)
                # Nothing outside training or with sigma = 0.
                quiet = layer.noise_shift(psi[:2], projection=dense, training=False)
                self.assertAllClose(quiet, np.zeros((2, 200, DP)))
        none = StochasticPositionalEmbedding(covariance="none")
        none.build(psi.shape)
        self.assertAllClose(none.noise_shift(psi[:2], training=True), np.zeros((2, 200, DP)))
        zero_sigma = StochasticPositionalEmbedding(sigma=0.0)
        quiet = zero_sigma.noise_shift(psi[:2], projection=dense, training=True)
        self.assertAllClose(quiet, np.zeros((2, 200, DP)))
        with self.assertRaisesRegex(ValueError, "projection="):
            StochasticPositionalEmbedding().noise_shift(psi[:2], training=True)

    def test_tied__noise_is_drawn_in_the_projection_input_width(self):
        # A projection that reads only the first noise channel: the output variance is
        # sigma^2 in the one output channel, which proves the noise lives in De and is
        # pushed through the given layer (not drawn in Dp).
        dense = keras.layers.Dense(DP, use_bias=False)
        dense.build((None, DE))
        kernel = np.zeros((DE, DP), "float32")
        kernel[0, 3] = 1.0
        dense.kernel.assign(kernel)
        layer = StochasticPositionalEmbedding(sigma=0.5, seed=0)
        out = to_np(layer(np.zeros((20000, DP), "float32"), projection=dense, training=True))
        std = out.std(axis=0)
        self.assertAlmostEqual(std[3], 0.5, delta=0.5 * 0.05)
        np.testing.assert_array_equal(np.delete(std, 3), 0.0)

    def test_tied__loss_on_noise_term_gives_projection_kernel_a_gradient(self):
        dense = built_dense()
        layer = StochasticPositionalEmbedding(sigma=0.25, seed=0)
        psi = ops.zeros((4, 6, DP), "float32")

        def noise_loss(training):
            def loss():
                out = layer(psi, projection=dense, training=training)
                noise_term = out - psi - dense.bias  # = A n
                return ops.sum(noise_term**2)

            return loss

        grad_kernel, grad_bias = self.compute_gradients(noise_loss(True), [dense.kernel, dense.bias])
        self.assertGreater(np.abs(grad_kernel).max(), 1e-3)
        np.testing.assert_allclose(grad_bias, 0.0, atol=1e-5)  # b cancels in A n
        # Without noise the same loss is identically zero and A gets nothing: the
        # gradient above came from the noise term.
        (grad_kernel,) = self.compute_gradients(noise_loss(False), [dense.kernel])
        np.testing.assert_array_equal(grad_kernel, 0.0)

    def test_call__no_noise_when_not_training(self):
        dense = built_dense()
        layer = StochasticPositionalEmbedding(sigma=0.25, seed=0)
        psi = np.random.RandomState(2).randn(3, 5, DP).astype("float32")
        expected = psi + to_np(dense.bias)
        for training in (False, None):
            self.assertAllClose(layer(psi, projection=dense, training=training), expected, atol=1e-6)

    def test_call__sigma_zero_gives_the_deterministic_mean_even_when_training(self):
        dense = built_dense()
        layer = StochasticPositionalEmbedding(sigma=0.0, seed=0)
        psi = np.random.RandomState(3).randn(3, 5, DP).astype("float32")
        self.assertAllClose(
            layer(psi, projection=dense, training=True), psi + to_np(dense.bias), atol=1e-6
        )

    def test_call__same_seed_same_noise_fresh_noise_each_call(self):
        dense = built_dense()
        psi = np.zeros((2, 5, DP), "float32")
        first = StochasticPositionalEmbedding(seed=7)
        second = StochasticPositionalEmbedding(seed=7)
        other = StochasticPositionalEmbedding(seed=8)
        a = to_np(first(psi, projection=dense, training=True))
        self.assertAllClose(a, second(psi, projection=dense, training=True), atol=0, rtol=0)
        self.assertFalse(np.allclose(a, to_np(other(psi, projection=dense, training=True))))
        # The generator advances: the next call draws new noise, and so do tokens.
        self.assertFalse(np.allclose(a, to_np(first(psi, projection=dense, training=True))))
        self.assertFalse(np.allclose(a[0, 0], a[0, 1]))

    def test_tied__layer_owns_no_kernel(self):
        dense = built_dense()
        layer = StochasticPositionalEmbedding(seed=0)
        layer(np.zeros((1, 2, DP), "float32"), projection=dense, training=True)
        self.assertEqual(layer.trainable_weights, [])

    def test_tied__missing_projection_raises(self):
        layer = StochasticPositionalEmbedding(seed=0)
        with self.assertRaisesRegex(ValueError, "projection"):
            layer(np.zeros((1, 2, DP), "float32"), training=True)

    def test_init__negative_sigma_raises(self):
        with self.assertRaisesRegex(ValueError, "sigma=-0.1"):
            StochasticPositionalEmbedding(sigma=-0.1)
        # NaN passes a `sigma < 0` test and would silently mean "no noise".
        for bad in (float("nan"), float("inf"), "0.25", None):
            with self.assertRaisesRegex(ValueError, "finite number >= 0"):
                StochasticPositionalEmbedding(sigma=bad)

    def test_init__bad_covariance_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "covariance='full'"):
            StochasticPositionalEmbedding(covariance="full")
        with self.assertRaisesRegex(ValueError, "noise_dim=None"):
            StochasticPositionalEmbedding(covariance="learned")
        with self.assertRaisesRegex(ValueError, "rank=None"):
            StochasticPositionalEmbedding(covariance="low_rank")
        with self.assertRaisesRegex(ValueError, "rank=0"):
            StochasticPositionalEmbedding(covariance="low_rank", rank=0)

    # ---------------------------------------------------------------- other modes
    def _own_projection_layer(self, covariance, width, sigma=0.5, **kwargs):
        layer = StochasticPositionalEmbedding(sigma=sigma, covariance=covariance, seed=0, **kwargs)
        layer.build((None, DP))
        rng = np.random.RandomState(4)
        layer.noise_projection.kernel.assign(rng.randn(width, DP).astype("float32") * 0.3)
        layer.noise_projection.bias.assign(rng.randn(DP).astype("float32"))
        return layer

    def test_learned__own_A_covariance_and_mean(self):
        sigma = 0.5
        layer = self._own_projection_layer("learned", DE, sigma, noise_dim=DE)
        self.assertEqual(tuple(layer.noise_projection.kernel.shape), (DE, DP))
        psi = np.zeros((40000, DP), "float32")
        out = to_np(layer(psi, training=True))
        kernel = to_np(layer.noise_projection.kernel)
        self.assertLess(
            relative_frobenius_error(empirical_covariance(out), sigma**2 * kernel.T @ kernel), 0.05
        )
        self.assertAllClose(layer(psi[:3], training=False), psi[:3] + to_np(layer.noise_projection.bias))

    def test_low_rank__covariance_has_the_given_rank(self):
        sigma, rank = 0.5, 2
        layer = self._own_projection_layer("low_rank", rank, sigma, rank=rank)
        self.assertEqual(tuple(layer.noise_projection.kernel.shape), (rank, DP))
        out = to_np(layer(np.zeros((40000, DP), "float32"), training=True))
        cov = empirical_covariance(out)
        kernel = to_np(layer.noise_projection.kernel)
        self.assertLess(relative_frobenius_error(cov, sigma**2 * kernel.T @ kernel), 0.05)
        eigenvalues = np.sort(np.linalg.eigvalsh(cov))[::-1]
        self.assertTrue(np.all(eigenvalues[:rank] > 1e-3))
        self.assertTrue(np.all(np.abs(eigenvalues[rank:]) < 1e-6 * eigenvalues[0]))

    def test_isotropic__covariance_is_sigma2_identity_around_mask_token(self):
        sigma = 0.3
        layer = StochasticPositionalEmbedding(sigma=sigma, covariance="isotropic", seed=0)
        psi = np.random.RandomState(5).randn(40000, DP).astype("float32")
        out = to_np(layer(psi, training=True)) - psi
        self.assertLess(relative_frobenius_error(empirical_covariance(out), sigma**2 * np.eye(DP)), 0.05)
        mask_token = to_np(layer.mask_token)
        self.assertAllClose(layer(psi[:3], training=False), psi[:3] + mask_token, atol=1e-6)

    def test_none__deterministic_psi_plus_mask_token(self):
        layer = StochasticPositionalEmbedding(covariance="none", seed=0)
        psi = np.random.RandomState(6).randn(2, 3, DP).astype("float32")
        out = layer(psi, training=True)
        self.assertEqual(tuple(layer.mask_token.shape), (DP,))
        self.assertAllClose(out, psi + to_np(layer.mask_token), atol=1e-6)
        self.assertAllClose(layer(psi, training=False), out, atol=0, rtol=0)

    def test_mask_token__initialised_with_std_0_02(self):
        layer = StochasticPositionalEmbedding(covariance="none")
        layer.build((None, 4096))
        self.assertAlmostEqual(float(to_np(layer.mask_token).std()), 0.02, delta=0.02 * 0.05)

    # ---------------------------------------------------------------- drop-in use
    def test_drop_in__plain_keras_vit_decoder(self):
        """An MAE-style decoder built from stock Keras layers (learned positions,
        MultiHeadAttention) uses StoP for its masked tokens, trains and predicts."""

        class PlainViTDecoder(keras.Model):
            def __init__(self, num_patches, encoder_dim, decoder_dim, **kwargs):
                super().__init__(**kwargs)
                self.decoder_embed = keras.layers.Dense(decoder_dim)
                self.position = keras.layers.Embedding(num_patches, decoder_dim)
                self.masked_tokens = StochasticPositionalEmbedding(sigma=0.25, seed=0)
                self.norm = keras.layers.LayerNormalization()
                self.attention = keras.layers.MultiHeadAttention(2, decoder_dim // 2)
                self.head = keras.layers.Dense(3)

            def call(self, inputs, training=None):
                visible, visible_index, masked_index = inputs
                context = self.decoder_embed(visible) + self.position(visible_index)
                masked = self.masked_tokens(
                    self.position(masked_index), projection=self.decoder_embed, training=training
                )
                x = ops.concatenate([context, masked], axis=1)
                y = self.norm(x)
                x = x + self.attention(y, y)
                return self.head(x[:, ops.shape(visible)[1] :])

        rng = np.random.RandomState(7)
        model = PlainViTDecoder(num_patches=16, encoder_dim=DE, decoder_dim=DP)
        visible = rng.randn(4, 10, DE).astype("float32")
        visible_index = np.stack([rng.permutation(16)[:10] for _ in range(4)]).astype("int32")
        masked_index = np.stack([rng.permutation(16)[:6] for _ in range(4)]).astype("int32")
        x = (visible, visible_index, masked_index)
        model(x)
        self.run_one_step_fit_test(
            model, x, rng.randn(4, 6, 3).astype("float32"),
            check_variables=[model.decoder_embed.kernel, model.position.embeddings],
        )
        inference = to_np(model(x, training=False))
        self.assertEqual(inference.shape, (4, 6, 3))
        self.assertAllClose(model(x, training=False), inference, atol=0, rtol=0)
        self.assertFalse(np.allclose(to_np(model(x, training=True)), inference))

    # ---------------------------------------------------------------- shared checks
    def test_layer__shared_checks_tied(self):
        # Build, shapes, config and `.keras` / `.weights.h5` round trips, symbolic call,
        # with the caller's projection (bfloat16 is checked below, per mode).
        self.run_layer_test(
            StochasticPositionalEmbedding,
            dict(sigma=0.25, seed=0, name="stop"),
            np.random.RandomState(8).randn(2, 4, 5, DP).astype("float32"),
            call_kwargs=dict(projection=built_dense(), training=False),
            expected_output_shape=(2, 4, 5, DP),
            run_mixed_precision=False,
        )

    def test_layer__shared_checks_learned(self):
        self.run_layer_test(
            StochasticPositionalEmbedding,
            dict(covariance="learned", noise_dim=DE, sigma=0.25, seed=0, name="stop"),
            np.random.RandomState(9).randn(2, 5, DP).astype("float32"),
            call_kwargs=dict(training=False),
            expected_output_shape=(2, 5, DP),
        )

    def test_eager_call__shape_and_dtype_in_every_mode(self):
        dense = built_dense()
        psi = np.zeros((2, 3, 5, DP), "float32")
        for kwargs in (
            dict(covariance="tied"),
            dict(covariance="learned", noise_dim=DE),
            dict(covariance="low_rank", rank=3),
            dict(covariance="isotropic"),
            dict(covariance="none"),
        ):
            layer = StochasticPositionalEmbedding(seed=0, **kwargs)
            for training in (True, False):
                out = layer(psi, projection=dense, training=training)
                self.assertEqual(tuple(out.shape), psi.shape, kwargs)
                self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")

    def test_config_round_trip(self):
        for kwargs in (
            dict(sigma=0.2, seed=3),
            dict(covariance="learned", noise_dim=DE, kernel_regularizer=keras.regularizers.L2(1e-3)),
            dict(covariance="low_rank", rank=2, kernel_regularizer="l2"),
            dict(covariance="isotropic", sigma=0.1),
            dict(covariance="none"),
        ):
            layer = StochasticPositionalEmbedding(name="stop", **kwargs)
            clone = self.run_config_round_trip_test(layer)
            for key, value in kwargs.items():
                if key != "kernel_regularizer":
                    self.assertEqual(getattr(clone, key), value)
            if "kernel_regularizer" in kwargs:
                self.assertIsInstance(clone.kernel_regularizer, keras.regularizers.L2)

    def test_saving__keras_file_gives_equal_outputs_tied(self):
        dense = built_dense()
        layer = StochasticPositionalEmbedding(sigma=0.25, seed=0)
        psi = np.random.RandomState(8).randn(2, 5, DP).astype("float32")
        layer(psi, projection=dense, training=True)
        self.run_saving_test(layer, lambda l: l(psi, projection=dense, training=False))

    def test_saving__keras_file_keeps_own_weights_learned(self):
        layer = self._own_projection_layer("learned", DE, noise_dim=DE)
        psi = np.random.RandomState(9).randn(2, 5, DP).astype("float32")
        loaded = self.run_saving_test(layer, lambda l: l(psi, training=False))
        self.assertAllClose(loaded.noise_projection.kernel, layer.noise_projection.kernel, atol=0)

    def test_saving__loaded_layer_continues_the_noise_stream(self):
        from keras import saving as saving_lib  # accepts any layer, not only models

        dense = built_dense()
        layer = StochasticPositionalEmbedding(sigma=0.25, seed=0)
        psi = np.zeros((2, 5, DP), "float32")
        layer(psi, projection=dense, training=True)
        path = os.path.join(self.get_temp_dir(), "stop.keras")
        saving_lib.save_model(layer, path)
        loaded = saving_lib.load_model(path)
        self.assertAllClose(
            loaded(psi, projection=dense, training=True),
            layer(psi, projection=dense, training=True),
            atol=0, rtol=0,
        )

    def test_fit__one_step_in_a_model(self):
        class Wrapper(keras.Model):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.projection = keras.layers.Dense(DP)
                self.masked_tokens = StochasticPositionalEmbedding(sigma=0.25, seed=0)
                self.head = keras.layers.Dense(1)

            def call(self, inputs, training=None):
                context, psi = inputs
                context = self.projection(context)  # builds the projection first
                masked = self.masked_tokens(psi, projection=self.projection, training=training)
                x = ops.concatenate([context, masked], axis=1)
                return self.head(ops.mean(x, axis=1))

        rng = np.random.RandomState(10)
        model = Wrapper()
        x = (rng.randn(4, 3, DE).astype("float32"), rng.randn(4, 5, DP).astype("float32"))
        model(x)
        self.run_one_step_fit_test(
            model, x, rng.randn(4, 1).astype("float32"),
            check_variables=[model.projection.kernel, model.head.kernel],
        )

    def test_mixed_precision__bfloat16_outputs(self):
        self.skip_if_no_mixed_precision()
        keras.config.set_dtype_policy("mixed_bfloat16")
        dense = keras.layers.Dense(DP)
        dense.build((None, DE))
        psi = np.random.RandomState(11).randn(2, 5, DP).astype("float32")
        for kwargs in (dict(), dict(covariance="learned", noise_dim=DE), dict(covariance="isotropic")):
            layer = StochasticPositionalEmbedding(seed=0, **kwargs)
            out = layer(ops.cast(psi, "bfloat16"), projection=dense, training=True)
            self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16", kwargs)
            self.assertTrue(np.all(np.isfinite(to_np(out))))
