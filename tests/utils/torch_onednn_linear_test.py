import keras
import numpy as np
import pytest

from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import torch_onednn_linear_switch

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch backend only")


class TorchOneDNNLinearTest(TestCase):
    def setUp(self):
        super().setUp()
        from keras_flexpredict.utils import _torch_onednn_linear

        self.module = _torch_onednn_linear
        switch = torch_onednn_linear_switch("1")
        switch.__enter__()
        self.addCleanup(switch.__exit__, None, None, None)
        if not _torch_onednn_linear.runs_for("cpu", "float32"):
            self.skipTest("this torch has no oneDNN linear op")

    def _check_against_f_linear(self, x, kernel, bias):
        import torch
        import torch.nn.functional as F

        leaves = [t for t in (x, kernel, bias) if t is not None]
        for t in leaves:
            t.requires_grad_(True)
        y = self.module.linear(x, kernel, bias)
        want = F.linear(x, kernel.t(), bias)
        grad = torch.randn_like(want)
        got_grads = torch.autograd.grad(y, leaves, grad)
        want_grads = torch.autograd.grad(want, leaves, grad)
        np.testing.assert_allclose(y.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
        for got, expected in zip(got_grads, want_grads):
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)

    def test_values_and_gradients_equal_f_linear(self):
        import torch

        torch.manual_seed(0)
        self._check_against_f_linear(torch.randn(2, 5, 8), torch.randn(8, 12), torch.randn(12))
        self._check_against_f_linear(torch.randn(7, 8), torch.randn(8, 3), None)

    def test_kernel_gradient_in_either_orientation(self):
        # Taken as (grad.T @ inputs).T where the kernel has fewer outputs than inputs.
        import torch

        torch.manual_seed(2)
        for rows, fan_in, fan_out in [(9, 8, 3), (9, 3, 8), (9, 4, 4)]:
            inputs, grad = torch.randn(rows, fan_in), torch.randn(rows, fan_out)
            got = self.module.kernel_gradient(inputs, grad)
            self.assertEqual(tuple(got.shape), (fan_in, fan_out))
            np.testing.assert_allclose(got.numpy(), (inputs.t() @ grad).numpy(), rtol=1e-5, atol=1e-5)

    def test_sliced_kernel_and_non_contiguous_input(self):
        # As the predictor's last block: the query columns of the qkv kernel, on the
        # kept tokens only (column slices take oneDNN's reference kernel unless copied).
        import torch

        torch.manual_seed(1)
        tokens = torch.randn(3, 6, 8)[:, 2:]
        kernel, bias = torch.randn(8, 24)[:, 8:], torch.randn(24)[8:]
        self.assertFalse(kernel.is_contiguous())
        self._check_against_f_linear(tokens, kernel, bias)
        self._check_against_f_linear(tokens, kernel, None)

    def test_only_float32_on_cpu(self):
        import torch

        self.assertTrue(self.module.enabled_for(torch.zeros(2, 2)))
        self.assertFalse(self.module.enabled_for(torch.zeros(2, 2, dtype=torch.bfloat16)))
        self.assertFalse(self.module.runs_for("cuda", "float32"))
        # bfloat16 falls back to F.linear.
        x = torch.ones(2, 3, dtype=torch.bfloat16)
        self.assertEqual(self.module.linear(x, torch.ones(3, 4, dtype=torch.bfloat16)).dtype, torch.bfloat16)

    def test_switch(self):
        self.assertFalse(self.module.switch_state({"KFP_TORCH_ONEDNN_LINEAR": "off"}, vendor="AuthenticAMD"))
        self.assertTrue(self.module.switch_state({}, vendor="AuthenticAMD"))
        self.assertFalse(self.module.switch_state({}, vendor="GenuineIntel"))
        self.assertTrue(self.module.switch_state({"KFP_TORCH_ONEDNN_LINEAR": "1"}, vendor="GenuineIntel"))
        with self.assertRaisesRegex(ValueError, "KFP_TORCH_ONEDNN_LINEAR.*'maybe'"):
            self.module.switch_state({"KFP_TORCH_ONEDNN_LINEAR": "maybe"})
        with torch_onednn_linear_switch("0"):
            self.assertFalse(self.module.runs_for("cpu", "float32"))

    def test_a_block_trains_the_same_either_way(self):
        import torch

        from keras_flexpredict.layers.transformer_block import TransformerBlock

        block = TransformerBlock(16, 2)
        block.build((2, 6, 16))
        tokens = torch.randn(2, 6, 16)
        mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
        outputs, grads = [], []
        for value in ("1", "0"):
            with torch_onednn_linear_switch(value):
                y = block(tokens, padding_mask=mask, outputs_from=2)
                outputs.append(y.detach().numpy())
                grads.append([g.numpy() for g in torch.autograd.grad(y.square().sum(), [w.value for w in block.trainable_weights])])
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
        for a, b in zip(*grads):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)

    def test_docstring_examples(self):
        # A private module: tests/docstring_examples_test.py does not run its examples.
        import doctest

        result = doctest.testmod(self.module, optionflags=doctest.NORMALIZE_WHITESPACE)
        self.assertGreater(result.attempted, 0)
        self.assertEqual(result.failed, 0)
