"""Shared test helpers, in the spirit of keras-hub's `TestCase.run_layer_test`."""

import contextlib
import os
import sys
import tempfile
import unittest

import keras
import numpy as np
from keras import ops


def to_numpy(x):
    """Any backend tensor (or nested structure of them) to NumPy."""
    return keras.tree.map_structure(
        lambda t: np.asarray(ops.convert_to_numpy(t)), x
    )


@contextlib.contextmanager
def torch_onednn_linear_switch(value):
    """`KFP_TORCH_ONEDNN_LINEAR=value` ("0" or "1") for the duration: whether eager
    torch runs its Dense layers as oneDNN matmuls (`utils._torch_onednn_linear`, on by
    default on AMD CPUs only), so a test sees the same path on every machine. The
    switch is read once per process; its cached reading is dropped on entry and exit."""
    name = "KFP_TORCH_ONEDNN_LINEAR"
    before = os.environ.get(name)

    def forget():
        module = sys.modules.get("keras_flexpredict.utils._torch_onednn_linear")
        if module is not None:
            module._available.cache_clear()

    os.environ[name] = value
    forget()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
        forget()


class TestCase(unittest.TestCase):
    """Base class of every test: seeded, with helpers for the checks all classes share."""

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(1337)
        keras.config.set_dtype_policy("float32")

    def tearDown(self):
        keras.config.set_dtype_policy("float32")
        super().tearDown()

    def get_temp_dir(self):
        d = tempfile.mkdtemp(prefix="kfp_test_")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        return d

    @property
    def backend(self):
        return keras.backend.backend()

    def assertAllClose(self, a, b, atol=1e-6, rtol=1e-6, msg=None):
        a, b = to_numpy(a), to_numpy(b)
        flat_a, flat_b = keras.tree.flatten(a), keras.tree.flatten(b)
        self.assertEqual(len(flat_a), len(flat_b), msg)
        for x, y in zip(flat_a, flat_b):
            np.testing.assert_allclose(
                np.asarray(x, dtype=np.float64) if x.dtype != bool else x,
                np.asarray(y, dtype=np.float64) if y.dtype != bool else y,
                atol=atol,
                rtol=rtol,
                err_msg=msg or "",
            )

    def assertAllEqual(self, a, b, msg=None):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=msg or "")

    def run_config_round_trip_test(self, obj):
        """`from_config(get_config())` rebuilds an object with the same config,
        and a full `keras.saving` serialisation round trip does too."""
        config = obj.get_config()
        clone = obj.__class__.from_config(config)
        self.assertEqual(clone.get_config(), config)
        serialized = keras.saving.serialize_keras_object(obj)
        revived = keras.saving.deserialize_keras_object(serialized)
        self.assertIsInstance(revived, obj.__class__)
        self.assertEqual(revived.get_config(), config)
        return clone

    def run_saving_test(self, obj, call_fn, atol=1e-6):
        """Saves `obj` (a built layer or model) to `.keras`, loads it, and checks
        that `call_fn(loaded)` equals `call_fn(obj)`. Returns the loaded object."""
        from keras import saving as saving_lib

        expected = to_numpy(call_fn(obj))
        path = os.path.join(self.get_temp_dir(), "obj.keras")
        # saving_lib accepts any layer; keras.saving.save_model wants a Model.
        saving_lib.save_model(obj, path)
        loaded = saving_lib.load_model(path)
        self.assertIsInstance(loaded, obj.__class__)
        self.assertAllClose(call_fn(loaded), expected, atol=atol, rtol=atol)
        return loaded

    def run_symbolic_call_test(self, layer, input_specs, expected_shapes, expected_dtypes=None, **kwargs):
        """`layer(*KerasTensors)` gives outputs of the documented shapes/dtypes.

        `input_specs` is a list of `(shape, dtype)`; `expected_shapes` lists the
        shapes of the flattened outputs (dict outputs flatten in sorted key order).
        """
        inputs = [keras.KerasTensor(shape, dtype=dtype) for shape, dtype in input_specs]
        out = layer(*inputs, **kwargs)
        flat = keras.tree.flatten(out)
        self.assertEqual([tuple(o.shape) for o in flat], [tuple(s) for s in expected_shapes])
        if expected_dtypes is not None:
            self.assertEqual([keras.backend.standardize_dtype(o.dtype) for o in flat], list(expected_dtypes))
        return out

    def skip_if_no_mixed_precision(self):
        if self.backend == "torch":
            self.skipTest("bfloat16 mixed precision is not tested on torch CPU.")

    def compute_gradients(self, loss_fn, variables):
        """Gradients of the scalar `loss_fn()` (a closure over layers) with respect to
        the Keras `variables`, on the current backend. Returns NumPy arrays."""
        variables = list(variables)
        if self.backend == "jax":
            import jax
            from keras import StatelessScope

            def f(values):
                with StatelessScope(state_mapping=list(zip(variables, values))):
                    return loss_fn()

            grads = jax.grad(f)([v.value for v in variables])
        elif self.backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = loss_fn()
            grads = tape.gradient(loss, variables)
        elif self.backend == "torch":
            import torch

            loss = loss_fn()
            grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
        else:  # pragma: no cover
            self.skipTest(f"No gradient helper for backend {self.backend}.")
        return [
            np.zeros(v.shape, "float32") if g is None else np.asarray(ops.convert_to_numpy(g))
            for v, g in zip(variables, grads)
        ]

    def run_one_step_fit_test(self, model, x, y, check_variables=None, learning_rate=0.1):
        """Compiles `model` with SGD and MSE, fits one step, and checks the loss is
        finite and that `check_variables` (default: all trainable weights) changed.
        Returns the loss."""
        model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
        variables = list(model.trainable_weights if check_variables is None else check_variables)
        self.assertTrue(variables, "no variables to check")
        before = [np.array(ops.convert_to_numpy(v)) for v in variables]
        batch = len(keras.tree.flatten(x)[0])
        history = model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=1, verbose=0)
        loss = history.history["loss"][-1]
        self.assertTrue(np.isfinite(loss), f"loss is not finite: {loss}")
        for v, b in zip(variables, before):
            self.assertFalse(
                np.array_equal(np.asarray(ops.convert_to_numpy(v)), b),
                f"variable {v.path} did not change after one fit step",
            )
        return loss

    def run_layer_test(
        self,
        layer_cls,
        init_kwargs,
        input_data,
        call_kwargs=None,
        expected_output_shape=None,
        expected_output_dtype="float32",
        expected_num_trainable_weights=None,
        expected_num_non_trainable_weights=None,
        run_symbolic_call=True,
        run_saving=True,
        run_keras_file_saving=True,
        run_mixed_precision=True,
        atol=1e-5,
    ):
        """The checks every layer shares, in one call (keras-hub's `run_layer_test`).

        Builds `layer_cls(**init_kwargs)` by calling it on `input_data` (an array, or a
        list of arrays passed positionally) with `call_kwargs`, then checks: the output
        shapes and dtype (`expected_output_shape` a shape, or for several outputs a
        structure of them, flattened as `keras.tree.flatten` does); the trainable and
        non-trainable weight counts; `get_config` / `from_config` and `keras.saving`
        round trips; a symbolic call on `KerasTensor`s of the same shapes; that weights
        saved to `.weights.h5` and loaded into a layer rebuilt from the config, and a
        `.keras` save/load, give equal outputs; and, except on torch, that under
        `mixed_bfloat16` the outputs are bfloat16 while the weights stay float32.
        Outputs with an integer or bool dtype are kept as they are under mixed precision.
        A layer whose outputs draw from a saved random stream (a seeded masker) passes
        `run_keras_file_saving=False`: `run_saving_test` compares the loaded layer's next
        draw with the draw made before saving.

        Returns the built layer.
        """
        call_kwargs = dict(call_kwargs or {})
        inputs = list(input_data) if isinstance(input_data, (list, tuple)) else [input_data]

        def call(layer):
            return layer(*inputs, **call_kwargs)

        layer = layer_cls(**init_kwargs)
        outputs = call(layer)
        flat = keras.tree.flatten(outputs)
        if expected_output_shape is not None:
            if isinstance(expected_output_shape, dict):  # flattened in sorted key order
                expected = [expected_output_shape[k] for k in sorted(expected_output_shape)]
            elif expected_output_shape and isinstance(expected_output_shape[0], (list, tuple)):
                expected = list(expected_output_shape)
            else:
                expected = [expected_output_shape]
            self.assertEqual([tuple(o.shape) for o in flat], [tuple(s) for s in expected])
        if expected_output_dtype is not None:
            for o in flat:
                dtype = keras.backend.standardize_dtype(o.dtype)
                if "float" in dtype:
                    self.assertEqual(dtype, expected_output_dtype)
        if expected_num_trainable_weights is not None:
            self.assertLen(layer.trainable_weights, expected_num_trainable_weights)
        if expected_num_non_trainable_weights is not None:
            self.assertLen(layer.non_trainable_weights, expected_num_non_trainable_weights)

        self.run_config_round_trip_test(layer)

        if run_symbolic_call:
            symbolic = layer_cls(**init_kwargs)
            specs = [
                keras.KerasTensor(np.shape(x), dtype=keras.backend.standardize_dtype(np.asarray(x).dtype))
                for x in inputs
            ]
            symbolic_out = keras.tree.flatten(symbolic(*specs, **call_kwargs))
            self.assertEqual([tuple(o.shape) for o in symbolic_out], [tuple(o.shape) for o in flat])

        if run_saving:
            clone = layer_cls.from_config(layer.get_config())
            call(clone)
            path = os.path.join(self.get_temp_dir(), "layer.weights.h5")
            _WeightsHolder(layer).save_weights(path)
            _WeightsHolder(clone).load_weights(path)
            self.assertAllClose(call(clone), call(layer), atol=atol, rtol=atol)
            if run_keras_file_saving:
                self.run_saving_test(layer, call, atol=atol)

        if run_mixed_precision and self.backend != "torch":
            keras.config.set_dtype_policy("mixed_bfloat16")
            try:
                mixed = layer_cls(**init_kwargs)
                mixed_out = keras.tree.flatten(call(mixed))
            finally:
                keras.config.set_dtype_policy("float32")
            for o in mixed_out:
                dtype = keras.backend.standardize_dtype(o.dtype)
                if "float" in dtype:
                    self.assertEqual(dtype, "bfloat16")
                    self.assertTrue(np.all(np.isfinite(np.asarray(ops.convert_to_numpy(ops.cast(o, "float32"))))))
            for w in mixed.weights:
                if "float" in keras.backend.standardize_dtype(w.dtype):
                    self.assertEqual(keras.backend.standardize_dtype(w.dtype), "float32", w.path)
        return layer

    def assertLen(self, container, expected_len, msg=None):
        self.assertEqual(len(container), expected_len, msg)


class _WeightsHolder(keras.Model):
    """A model around one layer, so that its weights go through the public
    `save_weights` / `load_weights` (`.weights.h5`)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.built = True
