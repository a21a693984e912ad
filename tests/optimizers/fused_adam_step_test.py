"""JEPAAdamW's fused Adam steps against Keras's own step: torch's fused CPU kernel
(`torch._fused_adam_`) for all weights at once, TensorFlow's `ResourceApplyAdam` per
weight. Same weights and moments after several scheduled updates."""

from unittest import mock

import keras
import numpy as np
import pytest
from keras import ops

from keras_flexpredict.optimizers import CosineWeightDecay
from keras_flexpredict.optimizers import JEPAAdamW
from keras_flexpredict.optimizers import WarmupCosineDecay
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.utils import backend_adapter

# The backend's fused step, patched out to get Keras's own step.
FUSED_STEP = {"torch": "_torch_fused_cpu_adam_step", "tensorflow": "fused_adam_variable_step"}

pytestmark = pytest.mark.skipif(
    keras.backend.backend() not in FUSED_STEP, reason="JAX runs Keras's Adam step (XLA fuses it)"
)


def _train(fused, steps=6, graph=False, **kwargs):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in [(5, 3), (3,), (2, 1, 3)]]
    optimizer = JEPAAdamW(
        learning_rate=WarmupCosineDecay(total_steps=max(steps, 2), warmup_steps=2, start_lr=0.01, peak_lr=0.1),
        weight_decay=CosineWeightDecay(total_steps=max(steps, 1)),
        **kwargs,
    )
    optimizer.build(variables)
    grads = [[rng.normal(size=v.shape).astype("float32") * 10.0 ** -i for v in variables] for i in range(steps)]

    def apply(g):
        optimizer.apply_gradients(list(zip(g, variables)))

    if graph:  # as `fit` runs it on TF: inside a tf.function
        import tensorflow as tf

        apply = tf.function(apply)
    name = FUSED_STEP[keras.backend.backend()]
    original = getattr(backend_adapter, name)
    with mock.patch.object(backend_adapter, name, side_effect=original if fused else lambda *a: False) as step:
        for g in grads:
            apply([ops.convert_to_tensor(x) for x in g])
    slots = [ops.convert_to_numpy(v) for v in optimizer.variables[2:]]
    return [ops.convert_to_numpy(v) for v in variables], slots, step.call_count


class FusedAdamStepTest(TestCase):
    def test_fused_step__equals_keras_step(self):
        for graph in (False, True) if self.backend == "tensorflow" else (False,):
            with self.subTest(graph=graph):
                fused_weights, fused_slots, calls = _train(fused=True, graph=graph)
                keras_weights, keras_slots, _ = _train(fused=False, graph=graph)
                # torch: one call per step; TF: one per weight, per trace in graph mode.
                per_step = 1 if self.backend == "torch" else 3
                self.assertEqual(calls, per_step if graph else 6 * per_step)
                # Keras computes the bias corrections in float32, torch's kernel in
                # double: they differ by ~1e-5 of a step (the learning rate reaches 0.1).
                for a, b in zip(fused_weights + fused_slots, keras_weights + keras_slots):
                    self.assertAllClose(a, b, rtol=1e-5, atol=1e-5)
                # The weights really moved (the comparison can fail).
                start, _, _ = _train(fused=True, steps=0)
                self.assertGreater(np.abs(fused_weights[0] - start[0]).max(), 1e-2)

    def test_fused_step__runs_the_fused_kernel_and_skips_amsgrad(self):
        if self.backend == "torch":
            import torch

            module, kernel_name, per_step = torch, "_fused_adam_", 1
        else:
            import tensorflow as tf

            module, kernel_name, per_step = tf.raw_ops, "ResourceApplyAdam", 3
        kernel = getattr(module, kernel_name)
        with mock.patch.object(module, kernel_name, wraps=kernel) as spy:
            _train(fused=True, steps=2)
            self.assertEqual(spy.call_count, 2 * per_step)
            _train(fused=True, steps=2, amsgrad=True)  # Keras's own step: not the kernel
            self.assertEqual(spy.call_count, 2 * per_step)
