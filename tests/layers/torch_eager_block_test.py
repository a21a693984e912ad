"""The eager torch block (`backend_adapter.run_eager_torch_block`) against the block's
Keras-ops path: same outputs and gradients, and used exactly where it applies."""

from unittest import mock

import keras
import numpy as np
import pytest

from keras_flexpredict.layers import TransformerBlock
from keras_flexpredict.layers.transformer_stack import run_blocks
from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils import _torch_block
from keras_flexpredict.utils import backend_adapter
from transformer_block_test import randomize_weights

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="the eager torch block is torch-only")


def _outputs_and_grads(block, x, mask, zero_padding, eager, tokens_need_grad=True):
    import torch

    tokens = torch.tensor(x, requires_grad=tokens_need_grad)
    with mock.patch.object(backend_adapter, "block_stack_mode", return_value="eager_torch" if eager else "layers"):
        out = block(tokens, padding_mask=torch.tensor(mask), zero_padding=zero_padding)
    weights = [w.value for w in block.trainable_weights]
    leaves = ([tokens] if tokens_need_grad else []) + weights
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(), leaves)
    return out.detach().float().numpy(), [g.float().numpy() for g in grads]


class TorchEagerBlockTest(TestCase):
    def _block(self, dtype=None):
        block = TransformerBlock(hidden_dim=16, num_heads=4, dtype=dtype)
        block.build((None, None, 16))
        randomize_weights(block, seed=3)
        return block

    def _inputs(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(3, 7, 16)).astype("float32")
        mask = np.ones((3, 7), bool)
        mask[0, 5:] = False
        mask[2, 2:] = False
        return x, mask

    def test_forward_and_gradients__equal_the_keras_ops_path(self):
        block = self._block()
        x, mask = self._inputs()
        for zero_padding in (True, False):
            fast_out, fast_grads = _outputs_and_grads(block, x, mask, zero_padding, eager=True)
            slow_out, slow_grads = _outputs_and_grads(block, x, mask, zero_padding, eager=False)
            real = mask[..., None]
            if zero_padding:
                self.assertAllClose(fast_out, slow_out, atol=1e-5, rtol=1e-5)
                self.assertAllEqual(fast_out[~mask], np.zeros_like(fast_out[~mask]))
            else:  # padded rows' own outputs are meaningless; real rows must agree
                self.assertAllClose(np.where(real, fast_out, 0), np.where(real, slow_out, 0), atol=1e-5, rtol=1e-5)
            for fast, slow in zip(fast_grads, slow_grads):
                self.assertAllClose(fast, slow, atol=1e-5, rtol=1e-4)

    def test_weight_gradients__equal_the_keras_ops_path_for_inputs_without_gradient(self):
        # (A first block's input, e.g.: every weight, the LayerNorms' too, still learns.)
        block = self._block()
        x, mask = self._inputs()
        _, fast_grads = _outputs_and_grads(block, x, mask, True, eager=True, tokens_need_grad=False)
        _, slow_grads = _outputs_and_grads(block, x, mask, True, eager=False, tokens_need_grad=False)
        self.assertLen(fast_grads, len(block.trainable_weights))
        for fast, slow in zip(fast_grads, slow_grads):
            self.assertGreater(np.abs(slow).max(), 0)
            self.assertAllClose(fast, slow, atol=1e-5, rtol=1e-4)

    def test_mixed_bfloat16__equal_the_keras_ops_path(self):
        block = self._block(dtype="mixed_bfloat16")
        x, mask = self._inputs()
        fast_out, fast_grads = _outputs_and_grads(block, x, mask, True, eager=True)
        slow_out, slow_grads = _outputs_and_grads(block, x, mask, True, eager=False)
        self.assertAllClose(fast_out, slow_out, atol=3e-2, rtol=3e-2)
        scale = max(np.abs(g).max() for g in slow_grads)
        for fast, slow in zip(fast_grads, slow_grads):
            self.assertAllClose(fast, slow, atol=2e-2 * scale, rtol=0)

    def test_used__for_concrete_tensors_and_run_blocks(self):
        import torch

        block = self._block()
        x, mask = self._inputs()
        with mock.patch.object(_torch_block, "forward", wraps=_torch_block.forward) as forward:
            block(x, padding_mask=mask)
            run_blocks([block, block], torch.tensor(x), padding_mask=torch.tensor(mask), last_n=2)
        self.assertEqual(forward.call_count, 3)

    def test_not_used__with_lora_or_a_symbolic_input(self):
        block = self._block()
        x, mask = self._inputs()
        expected = keras.ops.convert_to_numpy(block(x, padding_mask=mask))
        block.qkv.enable_lora(2)
        self.assertFalse(block.has_plain_parts())
        with mock.patch.object(_torch_block, "forward", side_effect=AssertionError("eager path used")):
            got = block(x, padding_mask=mask)  # LoRA B starts at zero: same output
            symbolic = block(keras.Input((7, 16)))
        self.assertAllClose(got, expected, atol=1e-5)
        self.assertEqual(tuple(symbolic.shape), (None, 7, 16))
