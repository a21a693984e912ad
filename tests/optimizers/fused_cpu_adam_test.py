"""JEPAAdamW's fused CPU Adam step on torch (`torch._fused_adam_`) against Keras's
multi-tensor step: same weights and moments after several scheduled updates."""

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

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="the fused CPU Adam step is torch-only")


def _train(fused, steps=6, **kwargs):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in [(5, 3), (3,), (2, 1, 3)]]
    optimizer = JEPAAdamW(
        learning_rate=WarmupCosineDecay(total_steps=max(steps, 2), warmup_steps=2, start_lr=0.01, peak_lr=0.1),
        weight_decay=CosineWeightDecay(total_steps=max(steps, 1)),
        **kwargs,
    )
    grads = [[rng.normal(size=v.shape).astype("float32") * 10.0 ** -i for v in variables] for i in range(steps)]
    original = backend_adapter._torch_fused_cpu_adam_step
    with mock.patch.object(
        backend_adapter, "_torch_fused_cpu_adam_step", side_effect=original if fused else lambda *a: False
    ) as step:
        for g in grads:
            optimizer.apply_gradients([(ops.convert_to_tensor(x), v) for x, v in zip(g, variables)])
    used = step.call_count
    slots = [ops.convert_to_numpy(v) for v in optimizer.variables[2:]]
    return [ops.convert_to_numpy(v) for v in variables], slots, used


class FusedCPUAdamTest(TestCase):
    def test_fused_step__equals_keras_multi_tensor_step(self):
        fused_weights, fused_slots, calls = _train(fused=True)
        keras_weights, keras_slots, _ = _train(fused=False)
        self.assertEqual(calls, 6)
        # Keras computes the bias corrections in float32, the kernel in double: they
        # differ by ~1e-5 of a step (the learning rate reaches 0.1 here).
        for a, b in zip(fused_weights + fused_slots, keras_weights + keras_slots):
            self.assertAllClose(a, b, rtol=1e-5, atol=1e-5)
        # The weights really moved (the comparison can fail).
        start, _, _ = _train(fused=True, steps=0)
        self.assertGreater(np.abs(fused_weights[0] - start[0]).max(), 1e-2)

    def test_fused_step__runs_the_fused_kernel_and_skips_amsgrad(self):
        import torch

        with mock.patch.object(torch, "_fused_adam_", wraps=torch._fused_adam_) as kernel:
            _train(fused=True, steps=2)
            self.assertEqual(kernel.call_count, 2)
            _train(fused=True, steps=2, amsgrad=True)  # Keras's own step: not the kernel
            self.assertEqual(kernel.call_count, 2)
