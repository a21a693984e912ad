import keras
import numpy as np
from keras import ops

from keras_flexpredict.models import JEPAPredictor
from keras_flexpredict.testing import TestCase

DE, DP = 16, 8
TINY = dict(encoder_dim=DE, hidden_dim=DP, depth=2, num_heads=2, grid_size=(4, 4), seed=0)


def to_np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), dtype=np.float64)


def randomize_trainable(model, seed=0, scale=0.3):
    rng = np.random.RandomState(seed)
    for w in model.trainable_weights:
        value = rng.randn(*w.shape) * scale
        if "gamma" in w.path:
            value = 1.0 + value
        w.assign(value.astype("float32"))


def make_masks():
    """B=2, Kc=6 context slots, M=3 target blocks of Kt=4 slots, with padding in both."""
    return {
        "context_indices": np.array([[0, 1, 4, 5, 0, 0], [2, 3, 6, 7, 10, 11]], "int32"),
        "context_mask": np.array([[True] * 4 + [False] * 2, [True] * 6]),
        "target_indices": np.array(
            [[[10, 11, 14, 15], [8, 12, 0, 0], [2, 3, 6, 7]],
             [[0, 1, 4, 5], [8, 9, 12, 13], [14, 15, 0, 0]]], "int32"),
        "target_mask": np.array(
            [[[True] * 4, [True, True, False, False], [True] * 4],
             [[True] * 4, [True] * 4, [True, True, False, False]]]),
    }


class JEPAPredictorTest(TestCase):
    def setUp(self):
        super().setUp()
        self.masks = make_masks()
        self.context = np.random.RandomState(1).randn(2, 6, DE).astype("float32")

    def _predictor(self, **kwargs):
        predictor = JEPAPredictor(**{**TINY, **kwargs})
        predictor(self.context, self.masks)
        randomize_trainable(predictor)
        return predictor

    # ---------------------------------------------------------------- calls
    def test_call__output_shape_and_dtype(self):
        predictor = self._predictor()
        for training in (True, False):
            out = predictor(self.context, self.masks, training=training)
            self.assertEqual(tuple(out.shape), (2, 3, 4, DE))
            self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")

    def test_symbolic_call__shape_and_dtype(self):
        predictor = JEPAPredictor(**TINY)
        masks = {
            "context_indices": keras.KerasTensor((None, 6), dtype="int32"),
            "context_mask": keras.KerasTensor((None, 6), dtype="bool"),
            "target_indices": keras.KerasTensor((None, 3, 4), dtype="int32"),
            "target_mask": keras.KerasTensor((None, 3, 4), dtype="bool"),
        }
        out = predictor(keras.KerasTensor((None, 6, DE)), masks)
        self.assertEqual(tuple(out.shape), (None, 3, 4, DE))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")

    # ---------------------------------------------------------------- StoP, tied
    def test_tied__stop_layer_owns_no_kernel_and_reuses_context_projection(self):
        predictor = self._predictor()
        stop = predictor.masked_token_embedding
        self.assertEqual(stop.trainable_weights, [])
        self.assertFalse(any("mask_token" in w.path for w in predictor.weights))
        self.assertEqual(
            sum(tuple(w.shape) == (DE, DP) for w in predictor.trainable_weights), 1
        )  # one A in the whole predictor
        received = []
        original_call = stop.call

        def spy(*args, **kwargs):
            received.append(kwargs.get("projection"))
            return original_call(*args, **kwargs)

        stop.call = spy
        predictor(self.context, self.masks, training=True)
        self.assertEqual(len(received), 1)
        self.assertIs(received[0], predictor.context_projection)

    def test_tied__noise_goes_through_the_context_projection_kernel(self):
        predictor = self._predictor()
        self.assertFalse(np.allclose(
            to_np(predictor(self.context, self.masks, training=True)),
            to_np(predictor(self.context, self.masks, training=False)), atol=1e-4,
        ))
        # With A = 0 the noise A n vanishes: training no longer changes anything.
        predictor.context_projection.kernel.assign(np.zeros((DE, DP), "float32"))
        self.assertAllClose(
            predictor(self.context, self.masks, training=True),
            predictor(self.context, self.masks, training=False), atol=1e-6,
        )

    def test_call__no_noise_when_not_training(self):
        predictor = self._predictor()
        reference = to_np(predictor(self.context, self.masks, training=False))
        self.assertAllClose(predictor(self.context, self.masks, training=False), reference, atol=0)
        self.assertAllClose(predictor(self.context, self.masks), reference, atol=0)
        first = to_np(predictor(self.context, self.masks, training=True))
        second = to_np(predictor(self.context, self.masks, training=True))
        self.assertFalse(np.allclose(first, second, atol=1e-4))

    def test_call__noise_drawn_per_target_block(self):
        predictor = self._predictor()
        masks = dict(self.masks)
        masks["target_indices"] = np.repeat(self.masks["target_indices"][:, :1], 2, axis=1)
        masks["target_mask"] = np.ones((2, 2, 4), bool)
        mean = to_np(predictor(self.context, masks, training=False))
        np.testing.assert_allclose(mean[:, 0], mean[:, 1], atol=1e-6)
        noisy = to_np(predictor(self.context, masks, training=True))
        self.assertFalse(np.allclose(noisy[:, 0], noisy[:, 1], atol=1e-4))

    def test_call__same_seed_same_predictions(self):
        first = self._predictor(seed=5)
        second = self._predictor(seed=5)
        self.assertAllClose(
            first(self.context, self.masks, training=True),
            second(self.context, self.masks, training=True), atol=1e-6,
        )

    def test_noise_on__noise_reaches_only_the_chosen_tokens(self):
        # Which tokens get noise, read at the two places it enters: the masked tokens'
        # embedding (its `training` flag) and the context tokens' zero-mean shift.
        for noise_on, context_noisy, masked_noisy in (
            ("masked", False, True), ("context", True, False), ("both", True, True)
        ):
            with self.subTest(noise_on=noise_on):
                predictor = self._predictor(noise_on=noise_on)
                stop = predictor.masked_token_embedding
                flags, shifts = [], []
                original_call, original_shift = stop.call, stop.noise_shift

                def spy_call(*args, **kwargs):
                    flags.append(bool(kwargs.get("training")))
                    return original_call(*args, **kwargs)

                def spy_shift(*args, **kwargs):
                    shifts.append(original_shift(*args, **kwargs))
                    return shifts[-1]

                stop.call, stop.noise_shift = spy_call, spy_shift
                first = to_np(predictor(self.context, self.masks, training=True))
                second = to_np(predictor(self.context, self.masks, training=True))
                mean = to_np(predictor(self.context, self.masks, training=False))
                # Masked tokens: noisy only for "masked" and "both".
                self.assertEqual(flags[:2], [masked_noisy] * 2)
                # Context tokens: a zero-mean noise term (shape (B, Kc, Dp)) only for
                # "context" and "both", never outside training.
                self.assertEqual(len(shifts), 3 if context_noisy else 0)
                if context_noisy:
                    self.assertEqual(tuple(shifts[0].shape), (2, 6, DP))
                    self.assertGreater(np.abs(to_np(shifts[0])).max(), 1e-3)
                    self.assertAllClose(shifts[2], np.zeros((2, 6, DP)))
                # Either way training draws fresh noise; evaluation is the noise-free mean.
                self.assertFalse(np.allclose(first, second, atol=1e-4))
                self.assertFalse(np.allclose(first, mean, atol=1e-4))

    def test_noise_on__masked_is_the_default_and_context_keeps_masked_tokens_at_the_mean(self):
        self.assertEqual(JEPAPredictor(**TINY).noise_on, "masked")
        # With noise on the context only and A = 0 on the context side, the noise term
        # A n vanishes everywhere: training changes nothing (masked tokens get psi + b).
        predictor = self._predictor(noise_on="context")
        predictor.context_projection.kernel.assign(np.zeros((DE, DP), "float32"))
        self.assertAllClose(
            predictor(self.context, self.masks, training=True),
            predictor(self.context, self.masks, training=False), atol=1e-6,
        )

    def test_positional_noise_none__deterministic_mask_token(self):
        predictor = self._predictor(positional_noise="none")
        self.assertEqual(predictor.masked_token_embedding.covariance, "none")
        mask_tokens = [w for w in predictor.trainable_weights if "mask_token" in w.path]
        self.assertEqual([tuple(w.shape) for w in mask_tokens], [(DP,)])
        train = predictor(self.context, self.masks, training=True)
        self.assertAllClose(train, predictor(self.context, self.masks, training=True), atol=0)
        self.assertAllClose(train, predictor(self.context, self.masks, training=False), atol=0)

    def test_covariance_modes__own_parameters_and_shapes(self):
        for kwargs, weight, shape in (
            (dict(covariance="learned"), "noise_projection/kernel", (DE, DP)),
            (dict(covariance="low_rank", noise_rank=2), "noise_projection/kernel", (2, DP)),
            (dict(covariance="isotropic"), "mask_token", (DP,)),
        ):
            predictor = self._predictor(**kwargs)
            own = [w for w in predictor.masked_token_embedding.trainable_weights if weight in w.path]
            self.assertEqual([tuple(w.shape) for w in own], [shape], kwargs)
            train = to_np(predictor(self.context, self.masks, training=True))
            self.assertEqual(train.shape, (2, 3, 4, DE))
            self.assertFalse(np.allclose(train, to_np(predictor(self.context, self.masks, training=False))))

    # ---------------------------------------------------------------- padding, blocks
    def test_call__padded_slots_do_not_change_real_outputs(self):
        predictor = self._predictor()
        masks = self.masks
        out = to_np(predictor(self.context, masks, training=False))
        target_mask = masks["target_mask"]
        np.testing.assert_array_equal(out[~target_mask], 0.0)
        context = self.context.copy()
        context[0, 4:] = 100.0  # content of padded context slots
        changed = {k: v.copy() for k, v in masks.items()}
        changed["context_indices"][0, 4:] = [9, 13]  # positions of padded context slots
        changed["target_indices"][0, 1, 2:] = [6, 7]  # positions of padded target slots
        changed["target_indices"][1, 2, 2:] = [3, 5]
        out_changed = to_np(predictor(context, changed, training=False))
        np.testing.assert_allclose(out_changed[target_mask], out[target_mask], atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(out_changed[~target_mask], 0.0)
        # A real context slot does matter (the check above can fail).
        context[0, 0] += 1.0
        self.assertFalse(np.allclose(to_np(predictor(context, masks, training=False))[0], out[0]))

    def test_call__all_blocks_in_one_pass_equal_each_block_alone(self):
        predictor = self._predictor()
        together = to_np(predictor(self.context, self.masks, training=False))
        for m in range(3):
            masks = dict(self.masks)
            masks["target_indices"] = self.masks["target_indices"][:, m : m + 1]
            masks["target_mask"] = self.masks["target_mask"][:, m : m + 1]
            alone = to_np(predictor(self.context, masks, training=False))
            np.testing.assert_allclose(together[:, m], alone[:, 0], atol=1e-5, rtol=1e-5)

    # ---------------------------------------------------------------- errors
    def test_init__bad_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "covariance='none'"):
            JEPAPredictor(encoder_dim=DE, covariance="none")
        with self.assertRaisesRegex(ValueError, "positional_noise='gaussian'"):
            JEPAPredictor(encoder_dim=DE, positional_noise="gaussian")
        with self.assertRaisesRegex(ValueError, "depth=0"):
            JEPAPredictor(encoder_dim=DE, depth=0)
        with self.assertRaisesRegex(ValueError, "sigma=-1"):
            JEPAPredictor(encoder_dim=DE, sigma=-1.0)
        with self.assertRaisesRegex(ValueError, "noise_on='targets'"):
            JEPAPredictor(encoder_dim=DE, noise_on="targets")
        with self.assertRaisesRegex(ValueError, "noise_on='context'"):
            JEPAPredictor(encoder_dim=DE, positional_noise="none", noise_on="context")

    # ---------------------------------------------------------------- shared checks
    def test_config_round_trip(self):
        for kwargs in (
            dict(),
            dict(positional_noise="none", depth_scaled_init=True),
            dict(covariance="low_rank", noise_rank=3, sigma=0.2, mlp_ratio=2.0, qkv_bias=False),
            dict(noise_on="both"),
        ):
            predictor = JEPAPredictor(**{**TINY, **kwargs}, name="pred")
            clone = self.run_config_round_trip_test(predictor)
            for key, value in kwargs.items():
                self.assertEqual(getattr(clone, key), value)

    def test_saving__keras_file_gives_equal_outputs(self):
        for kwargs in (dict(), dict(positional_noise="none")):
            predictor = self._predictor(**kwargs)
            self.run_saving_test(
                predictor, lambda p: p(self.context, self.masks, training=False), atol=1e-5
            )

    def test_fit__one_step_in_a_model(self):
        predictor = JEPAPredictor(**TINY)
        context = keras.Input((6, DE), name="context")
        masks = {
            name: keras.Input(shape, dtype=dtype, name=name)
            for name, shape, dtype in (
                ("context_indices", (6,), "int32"),
                ("context_mask", (6,), "bool"),
                ("target_indices", (3, 4), "int32"),
                ("target_mask", (3, 4), "bool"),
            )
        }
        outputs = keras.layers.Dense(2)(predictor(context, masks))
        model = keras.Model({"context": context, **masks}, outputs)
        x = {"context": self.context, **self.masks}
        self.run_one_step_fit_test(
            model, x, np.random.RandomState(2).randn(2, 3, 4, 2).astype("float32"),
            check_variables=[
                predictor.context_projection.kernel,
                predictor.blocks[0].qkv.kernel,
                predictor.output_projection.kernel,
            ],
        )

    def test_mixed_precision__bfloat16_outputs(self):
        self.skip_if_no_mixed_precision()
        keras.config.set_dtype_policy("mixed_bfloat16")
        for kwargs in (dict(), dict(positional_noise="none")):
            predictor = JEPAPredictor(**TINY, **kwargs)
            out = predictor(self.context, self.masks, training=True)
            self.assertEqual(tuple(out.shape), (2, 3, 4, DE))
            self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
            self.assertTrue(np.all(np.isfinite(to_np(out))))
            self.assertEqual(
                keras.backend.standardize_dtype(predictor.context_projection.kernel.dtype), "float32"
            )
