import keras
import numpy as np
import pytest

from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import torch_onednn_linear_switch

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch backend only")


def _saved_bytes(fn):
    """Bytes of the distinct storages autograd keeps for the backward pass of `fn()`,
    and the result."""
    import torch

    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


class TorchRecomputingDenseTest(TestCase):
    def setUp(self):
        super().setUp()
        from keras_flexpredict.utils import _torch_recomputing_dense

        self.module = _torch_recomputing_dense

    def _inputs(self, rows=12, width=8, out=5):
        import torch

        generator = torch.Generator().manual_seed(0)
        x = torch.randn(3, rows // 3, width, generator=generator)
        kernel = torch.randn(width, out, generator=generator) / width**0.5
        bias = torch.randn(out, generator=generator)
        gamma = 1 + 0.1 * torch.randn(width, generator=generator)
        beta = 0.1 * torch.randn(width, generator=generator)
        return x, kernel, bias, gamma, beta

    def _check(self, fast, plain, leaves):
        """Same values and gradients, for every subset of leaves needing gradients."""
        import torch

        for needs in ([True] * len(leaves), [False] + [True] * (len(leaves) - 1), [True] + [False] * (len(leaves) - 1)):
            args = [t.detach().clone().requires_grad_(n) for t, n in zip(leaves, needs)]
            wanted = [a for a in args if a.requires_grad]
            got, want = fast(*args), plain(*args)
            grad = torch.linspace(-1, 1, got.numel()).reshape(got.shape)
            np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
            for g, w in zip(torch.autograd.grad(got, wanted, grad), torch.autograd.grad(want, wanted, grad)):
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-5)

    def test_gelu_dense__values_and_gradients_equal_the_plain_ops(self):
        import torch.nn.functional as F

        x, kernel, bias, _, _ = self._inputs()
        for switch in ("1", "0"):  # oneDNN's matmuls and torch's
            with torch_onednn_linear_switch(switch):
                self._check(self.module.gelu_dense, lambda h, k, b: F.gelu(h) @ k + b, [x, kernel, bias])

    def test_layer_norm_dense__values_and_gradients_equal_the_plain_ops(self):
        import torch.nn.functional as F

        x, kernel, bias, gamma, beta = self._inputs()
        for switch in ("1", "0"):
            with torch_onednn_linear_switch(switch):
                self._check(
                    lambda x, g, b, k, c: self.module.layer_norm_dense(x, g, b, 1e-6, k, c),
                    lambda x, g, b, k, c: F.layer_norm(x, (x.shape[-1],), g, b, 1e-6) @ k + c,
                    [x, gamma, beta, kernel, bias],
                )

    def test_keeps_only_the_input_for_the_backward_pass(self):
        import torch.nn.functional as F

        x, kernel, bias, gamma, beta = self._inputs(rows=300, width=64, out=16)
        x.requires_grad_(True)
        kernel.requires_grad_(True)
        one = x.numel() * 4  # bytes of one activation of x's shape
        plain, _ = _saved_bytes(lambda: F.gelu(x) @ kernel + bias)
        lean, _ = _saved_bytes(lambda: self.module.gelu_dense(x, kernel, bias))
        self.assertGreaterEqual(plain - lean, one)  # gelu(x) is not kept
        plain, _ = _saved_bytes(lambda: F.layer_norm(x, (64,), gamma, beta) @ kernel + bias)
        lean, _ = _saved_bytes(lambda: self.module.layer_norm_dense(x, gamma, beta, 1e-5, kernel, bias))
        self.assertGreaterEqual(plain - lean, one)  # layer_norm(x) is not kept

    def test_only_float32_on_cpu(self):
        import torch

        self.assertTrue(self.module.runs_for(torch.zeros(2)))
        self.assertFalse(self.module.runs_for(torch.zeros(2, dtype=torch.bfloat16)))
        x, kernel, bias, _, _ = self._inputs()
        x, kernel, bias = (t.to(torch.bfloat16) for t in (x, kernel, bias))
        self.assertEqual(self.module.gelu_dense(x, kernel, bias).dtype, torch.bfloat16)

    def test_docstring_examples(self):
        # A private module: tests/docstring_examples_test.py does not run its examples.
        import doctest

        result = doctest.testmod(self.module, optionflags=doctest.NORMALIZE_WHITESPACE)
        self.assertGreater(result.attempted, 0)
        self.assertEqual(result.failed, 0)
