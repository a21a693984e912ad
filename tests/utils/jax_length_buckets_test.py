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

    def test_default__train_step_jit_gets_elemental_emitters_on_cpu(self):
        import os
        from unittest import mock

        import jax

        seen = []
        jit = jax.jit

        def recording_jit(fun, **kwargs):
            seen.append(kwargs.get("compiler_options"))
            return jit(fun, **kwargs)

        runs = {}
        for value in ("", "1"):
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
        expected = train_step_compiler_options("cpu", {})
        self.assertIsNotNone(expected)
        # By default: one jit with it per bucket run, none elsewhere (the mask-length
        # function, Keras's own jits keep XLA's defaults); switched off, none at all.
        buckets, seen_default = runs[""]
        self.assertGreaterEqual(buckets, 1)
        self.assertEqual(seen_default.count(expected), buckets, msg=str(seen_default))
        self.assertNotIn(expected, runs["1"][1])

    def test_bad_fusion_emitters_switch__fit_names_it_before_compiling(self):
        import os
        from unittest import mock

        model = tiny_flexpredict(length_buckets=2)
        model.compile()
        with mock.patch.dict(os.environ, {"KFP_XLA_FUSION_EMITTERS": "maybe"}):
            with self.assertRaisesRegex(ValueError, "KFP_XLA_FUSION_EMITTERS='maybe'"):
                model.fit(structured_images(8), batch_size=8, epochs=1, verbose=0)
        self.assertEqual(int(model.train_steps.value), 0)

    def test_fit__drops_jax_compiled_programs_once_before_its_first_step(self):
        from unittest import mock

        import jax

        if jax.default_backend() != "cpu":
            self.skipTest("The train function keeps JAX's caches off a CPU.")
        earlier = jax.jit(lambda x: x + 1)
        earlier(1.0)
        self.assertEqual(earlier._cache_size(), 1)
        clears = []
        clear = jax.clear_caches

        def counting_clear():
            clears.append(len(step.compiled))
            clear()

        keras.utils.set_random_seed(0)
        model = tiny_flexpredict(sigma=0.0, length_buckets=4)
        model.compile()
        model.make_train_function()
        step = model.train_function.length_bucketed_step
        with mock.patch.object(jax, "clear_caches", counting_clear):
            model.fit(structured_images(8 * 12), batch_size=8, epochs=1, shuffle=False, verbose=0)
        # Once, before the first bucket compiled, however many buckets ran after it.
        self.assertGreater(len(step.compiled), 1)
        self.assertEqual(clears, [0])
        self.assertEqual(earlier._cache_size(), 0)
