"""Masker + encoder + predictor compile once under `jax.jit`, with fresh masks every call."""

import numpy as np
from keras import ops

from keras_flexpredict.layers import MultiBlockMasker
from keras_flexpredict.models import JEPAPredictor
from keras_flexpredict.models import ViTEncoder
from keras_flexpredict.testing import TestCase

NUM_CALLS = 20


def _values(variables):
    return [v.value for v in variables]


class StaticShapesTest(TestCase):
    def test_jit__masker_encoder_predictor_compile_once_over_fresh_masks(self):
        if self.backend != "jax":
            self.skipTest("Counts XLA compilations of a jax.jit function.")
        for reference in (False, True):
            with self.subTest(reference=reference):
                self.check_compiles_once(reference)

    def check_compiles_once(self, reference):
        import jax

        batch = 2
        masker = MultiBlockMasker(grid_size=(8, 8), num_targets=2, min_keep=4, reference=reference, seed=0)
        encoder = ViTEncoder(image_size=32, patch_size=4, hidden_dim=16, depth=1, num_heads=2)
        predictor = JEPAPredictor(
            encoder_dim=16, hidden_dim=8, depth=1, num_heads=2, grid_size=(8, 8), seed=0
        )
        images = np.zeros((batch, 32, 32, 3), "float32")
        masks = masker(images)
        context = encoder(
            images, context_indices=masks["context_indices"], context_mask=masks["context_mask"]
        )
        predictor(context, masks)

        traces = []

        def forward(masker_state, encoder_state, predictor_state, images):
            traces.append(1)  # runs only while JAX traces (i.e. compiles) the function
            # The masker draws inside the compiled function: its seed-generator state
            # goes in and comes out, so every call gets fresh masks.
            masks, masker_state = masker.stateless_call([], masker_state, images)
            context, _ = encoder.stateless_call(
                *encoder_state, images,
                context_indices=masks["context_indices"], context_mask=masks["context_mask"],
            )
            trainable, non_trainable = predictor_state
            predictions, non_trainable = predictor.stateless_call(
                trainable, non_trainable, context, masks, training=True
            )
            return predictions, masks, masker_state, (trainable, non_trainable)

        step = jax.jit(forward)
        masker_state = _values(masker.non_trainable_variables)
        encoder_state = (_values(encoder.trainable_variables), _values(encoder.non_trainable_variables))
        predictor_state = (
            _values(predictor.trainable_variables), _values(predictor.non_trainable_variables)
        )
        rng = np.random.default_rng(0)
        seen_masks, context_sizes, predictions = set(), set(), []
        for _ in range(NUM_CALLS):
            images = rng.standard_normal((batch, 32, 32, 3)).astype("float32")
            out, masks, masker_state, predictor_state = step(
                masker_state, encoder_state, predictor_state, images
            )
            masks = {k: np.asarray(v) for k, v in masks.items()}
            self.assertEqual(masks["context_indices"].shape, (batch, masker.num_context_tokens))
            self.assertEqual(
                masks["target_indices"].shape,
                (batch, masker.num_targets, masker.num_target_tokens),
            )
            self.assertEqual(
                out.shape, (batch, masker.num_targets, masker.num_target_tokens, 16)
            )
            self.assertTrue(np.all(np.isfinite(np.asarray(out))))
            seen_masks.add(masks["context_indices"].tobytes() + masks["target_indices"].tobytes())
            context_sizes.update(masks["context_mask"].sum(axis=1).tolist())
            predictions.append(np.asarray(out))
            for b in range(batch if not reference else 0):  # no target token in the context
                context_set = set(masks["context_indices"][b][masks["context_mask"][b]].tolist())
                target_set = set(masks["target_indices"][b][masks["target_mask"][b]].tolist())
                self.assertFalse(context_set & target_set)

        self.assertEqual(len(traces), 1)
        self.assertEqual(step._cache_size(), 1)
        # Masks really were fresh (and of varying real length) while shapes stayed fixed.
        self.assertGreaterEqual(len(seen_masks), NUM_CALLS - 1)
        self.assertGreater(len(context_sizes), 1)
        self.assertFalse(np.allclose(predictions[0], predictions[1]))
        # The seed states advanced inside the compiled function.
        initial = ops.convert_to_numpy(masker.non_trainable_variables[0])
        self.assertFalse(np.array_equal(np.asarray(masker_state[0]), initial))
