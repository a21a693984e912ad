import keras
import numpy as np

from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict
from keras_flexpredict.utils.xla_cpu_options import train_step_compiler_options


def train(length_buckets, steps_per_execution=1, steps=12):
    """The tiny model without StoP noise (sigma=0: its draws follow the slot count)
    trained for `steps` batches of 8; returns the model and its weights."""
    keras.utils.set_random_seed(0)
    model = tiny_flexpredict(sigma=0.0, length_buckets=length_buckets)
    model.compile(steps_per_execution=steps_per_execution)
    model.fit(structured_images(8 * steps), batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model, [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]


class LengthBucketedTrainingTest(TestCase):
    def setUp(self):
        super().setUp()
        if self.backend != "jax":
            self.skipTest("Length buckets are the JAX train function's (other backends cut per batch).")

    def test_fit__buckets_train_exactly_as_the_full_slots(self):
        plain, plain_weights = train(length_buckets=1)
        self.assertFalse(hasattr(plain.train_function, "length_bucketed_step"))
        # Two batches per call to the train function: the buckets are chosen batch by batch.
        bucketed, bucketed_weights = train(length_buckets=4, steps_per_execution=2)
        ran = bucketed.train_function.length_bucketed_step.steps
        self.assertGreater(len(ran), 1, msg=f"buckets run: {sorted(ran)}")
        self.assertLessEqual(set(ran), set(bucketed.train_length_buckets(8)))
        self.assertEqual(int(bucketed.train_steps.value), 12)
        for a, b in zip(plain_weights, bucketed_weights):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    def test_run_eagerly_or_one_bucket__keras_own_train_function(self):
        for kwargs, length_buckets in ((dict(run_eagerly=True), 4), ({}, 1)):
            model = tiny_flexpredict(length_buckets=length_buckets)
            model.compile(**kwargs)
            model.make_train_function()
            self.assertFalse(hasattr(model.train_function, "length_bucketed_step"), msg=str(kwargs))

    def test_opt_in__train_step_jit_gets_elemental_emitters(self):
        import os
        from unittest import mock

        import jax

        seen = []
        jit = jax.jit

        def recording_jit(fun, **kwargs):
            seen.append(kwargs.get("compiler_options"))
            return jit(fun, **kwargs)

        runs = {}
        for value in ("0", ""):
            seen.clear()
            with mock.patch.dict(os.environ, {"KFP_XLA_FUSION_EMITTERS": value}), mock.patch.object(
                jax, "jit", recording_jit
            ):
                model = tiny_flexpredict(length_buckets=2)
                model.compile()
                model.fit(structured_images(8), batch_size=8, epochs=1, verbose=0)
            runs[value] = (len(model.train_function.length_bucketed_step.steps), list(seen))
        if jax.default_backend() != "cpu":
            self.skipTest("The option is XLA:CPU's.")
        expected = train_step_compiler_options("cpu", {"KFP_XLA_FUSION_EMITTERS": "0"})
        # Opted in: one jit with it per bucket run, none elsewhere (the mask-length
        # function, Keras's own jits keep XLA's defaults); by default, none at all.
        buckets, seen_opt_in = runs["0"]
        self.assertGreaterEqual(buckets, 1)
        self.assertEqual(seen_opt_in.count(expected), buckets, msg=str(seen_opt_in))
        self.assertNotIn(expected, runs[""][1])
