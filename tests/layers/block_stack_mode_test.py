"""`run_blocks` in every `backend_adapter.block_stack_mode`: the same outputs and
gradients as each block's own Keras call, and the mode each backend picks."""

import contextlib
from unittest import mock

import keras
import numpy as np
from keras import ops

from keras_flexpredict.layers.transformer_stack import build_transformer_stack
from keras_flexpredict.layers.transformer_stack import run_blocks
from keras_flexpredict.layers.transformer_stack import transformer_stack
from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils import backend_adapter
from transformer_block_test import randomize_weights

EXPECTED_MODE = {"jax": "scan", "tensorflow": "tf_fused", "torch": "eager_torch"}
FAST_MODES = {"jax": ["scan", "flat"], "tensorflow": ["tf_fused"], "torch": ["eager_torch"]}


def _stack(depth=3, dtype=None, keep_activations=False):
    """Blocks with random weights; with `keep_activations`, created under
    `keras.RematScope(mode=None)` (on TensorFlow: not rematerialised)."""
    scope = keras.RematScope(mode=None) if keep_activations else contextlib.nullcontext()
    with scope:
        blocks, norm = transformer_stack(hidden_dim=16, depth=depth, num_heads=4, dtype=dtype)
    build_transformer_stack(blocks, norm, (None, None, 16))
    for i, block in enumerate(blocks):
        randomize_weights(block, seed=i)
    return blocks


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 16)).astype("float32")
    mask = np.ones((3, 6), bool)
    mask[0, 4:] = False
    mask[1, 1:] = False
    return x, mask


def _loss_and_grads(blocks, x, mask, mode, last_n, outputs_from=None):
    """The kept outputs and the gradients of a fixed loss of them w.r.t. the tokens and
    every weight, with `run_blocks` in `mode` (None: the backend's own choice). With
    `outputs_from` the loss sees only the last block's tokens `outputs_from:`: cut by
    `run_blocks` itself, or (`outputs_from=("slice", s)`) sliced from its full output."""
    weights = [w for b in blocks for w in b.trainable_weights]
    patch = mock.patch.object(backend_adapter, "block_stack_mode", return_value=mode) if mode else mock.MagicMock()
    sliced = isinstance(outputs_from, tuple)
    start = outputs_from[1] if sliced else outputs_from
    kept_mask = mask if start is None else mask[:, start:]
    real = ops.convert_to_tensor(kept_mask[..., None], "float32")

    def loss_fn(tokens, values):
        outs = run_blocks(
            blocks, tokens, ops.convert_to_tensor(mask), last_n=last_n, outputs_from=None if sliced else start
        )
        if sliced:
            outs = [o[:, start:] for o in outs]
        return sum(ops.sum(ops.square(o * real) * (i + 1)) for i, o in enumerate(outs)), outs

    with patch:
        backend = keras.backend.backend()
        tokens = ops.convert_to_tensor(x)
        if backend == "jax":
            import jax

            def pure(tokens, values):
                mapping = list(zip(weights, values))
                with keras.StatelessScope(state_mapping=mapping):
                    return loss_fn(tokens, values)

            (_, outs), grads = jax.value_and_grad(pure, argnums=(0, 1), has_aux=True)(
                tokens, [w.value for w in weights]
            )
            grads = [grads[0]] + list(grads[1])
        elif backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                tape.watch(tokens)
                loss, outs = loss_fn(tokens, None)
            grads = tape.gradient(loss, [tokens] + [w.value for w in weights])
        else:
            import torch

            tokens.requires_grad_(True)
            loss, outs = loss_fn(tokens, None)
            grads = torch.autograd.grad(loss, [tokens] + [w.value for w in weights])
    return [ops.convert_to_numpy(o) * kept_mask[..., None] for o in outs], [ops.convert_to_numpy(g) for g in grads]


class BlockStackModeTest(TestCase):
    def test_backend_mode__is_the_fast_one_for_concrete_tensors(self):
        blocks = _stack()
        x, _ = _inputs()
        self.assertEqual(backend_adapter.block_stack_mode(blocks, ops.convert_to_tensor(x)), EXPECTED_MODE[keras.backend.backend()])
        self.assertEqual(backend_adapter.block_stack_mode(blocks, keras.KerasTensor((None, 6, 16))), "layers")

    def test_modes__equal_the_layers_outputs_and_gradients(self):
        x, mask = _inputs()
        modes = FAST_MODES[keras.backend.backend()]
        # TensorFlow's default (rematerialised) and its blocks that keep their activations.
        for keep_activations in (False, True):
            blocks = _stack(keep_activations=keep_activations)
            for last_n in (1, 2):
                want_outs, want_grads = _loss_and_grads(blocks, x, mask, "layers", last_n)
                self.assertGreater(max(np.abs(g).max() for g in want_grads[1:]), 1e-3)
                for mode in modes + [None]:
                    outs, grads = _loss_and_grads(blocks, x, mask, mode, last_n)
                    msg = f"{mode}, keep_activations={keep_activations}"
                    self.assertEqual(len(outs), last_n)
                    for got, want in zip(outs, want_outs):
                        self.assertAllClose(got, want, atol=1e-4, rtol=1e-4, msg=msg)
                    for got, want in zip(grads, want_grads):
                        self.assertAllClose(got, want, atol=1e-3, rtol=1e-3, msg=msg)

    def test_outputs_from__equals_the_cut_full_output_in_every_mode(self):
        x, mask = _inputs()
        modes = FAST_MODES[keras.backend.backend()]
        for depth, keep_activations in ((1, False), (2, False), (3, False), (1, True), (3, True)):
            blocks = _stack(depth=depth, keep_activations=keep_activations)
            want_outs, want_grads = _loss_and_grads(blocks, x, mask, "layers", 1, outputs_from=("slice", 2))
            for mode in ["layers"] + modes + [None]:
                outs, grads = _loss_and_grads(blocks, x, mask, mode, 1, outputs_from=2)
                msg = f"depth {depth}, {mode}, keep_activations={keep_activations}"
                self.assertEqual(tuple(outs[0].shape), (3, 4, 16))
                self.assertAllClose(outs[0], want_outs[0], atol=1e-4, rtol=1e-4, msg=msg)
                for got, want in zip(grads, want_grads):
                    self.assertAllClose(got, want, atol=1e-3, rtol=1e-3, msg=msg)

    def test_outputs_from__keeps_only_the_last_block(self):
        blocks = _stack()
        x, _ = _inputs()
        with self.assertRaisesRegex(ValueError, "last_n=2"):
            run_blocks(blocks, ops.convert_to_tensor(x), last_n=2, outputs_from=3)

    def test_lora__falls_back_to_the_layers(self):
        blocks = _stack()
        x, _ = _inputs()
        blocks[1].qkv.enable_lora(2)
        self.assertEqual(backend_adapter.block_stack_mode(blocks, ops.convert_to_tensor(x)), "layers")

    def test_mixed_bfloat16__scan_matches_layers(self):
        blocks = _stack(dtype="mixed_bfloat16")
        x, mask = _inputs()
        x = ops.cast(x, "bfloat16")
        with mock.patch.object(backend_adapter, "block_stack_mode", return_value="layers"):
            want = ops.convert_to_numpy(ops.cast(run_blocks(blocks, x, ops.convert_to_tensor(mask))[0], "float32"))
        got = run_blocks(blocks, x, ops.convert_to_tensor(mask))[0]
        self.assertEqual(keras.backend.standardize_dtype(got.dtype), "bfloat16")
        got = ops.convert_to_numpy(ops.cast(got, "float32"))
        self.assertAllClose(got * mask[..., None], want * mask[..., None], atol=0.1, rtol=0.05)

    def test_remat_scope__same_outputs_and_gradients_and_rematerialised_in_every_mode(self):
        # Blocks created under a `keras.RematScope` keep the backend's fast mode, give the
        # same values and gradients, and run rematerialised: through `keras.remat`, or
        # (a JAX scan over every block) a scan body that keeps nothing.
        x, mask = _inputs()
        want_outs, want_grads = _loss_and_grads(_stack(), x, mask, "layers", 1, outputs_from=2)
        scopes = {
            "full": dict(mode="full"),
            "list_of_layers": dict(mode="list_of_layers", layer_names=["block_1"]),
            "larger_than": dict(mode="larger_than", output_size_threshold=10),
        }
        for name, scope in scopes.items():
            with keras.RematScope(**scope):
                blocks = _stack()
            self.assertEqual(backend_adapter.block_stack_mode(blocks, ops.convert_to_tensor(x)), EXPECTED_MODE[keras.backend.backend()])
            for mode in ["layers"] + FAST_MODES[keras.backend.backend()]:
                with mock.patch.object(keras, "remat", wraps=keras.remat) as keras_remat, mock.patch.object(
                    backend_adapter, "scan_step", wraps=backend_adapter.scan_step
                ) as scan_step, mock.patch.object(
                    backend_adapter, "run_tf_rematerialized_block", wraps=backend_adapter.run_tf_rematerialized_block
                ) as tf_remat:
                    outs, grads = _loss_and_grads(blocks, x, mask, mode, 1, outputs_from=2)
                msg = f"{name} in {mode}"
                self.assertAllClose(outs[0], want_outs[0], atol=1e-4, rtol=1e-4, msg=msg)
                for got, want in zip(grads, want_grads):
                    self.assertAllClose(got, want, atol=1e-3, rtol=1e-3, msg=msg)
                scanned_all = mode == "scan" and name != "list_of_layers"
                if scanned_all:
                    self.assertTrue(scan_step.call_args.kwargs["rematerialize_all"], msg)
                # TensorFlow's fused blocks rematerialise as functions of their own,
                # every other mode through `keras.remat`.
                remat = tf_remat if mode == "tf_fused" else keras_remat
                self.assertEqual((keras_remat if mode == "tf_fused" else tf_remat).call_count, 0, msg)
                self.assertGreater(remat.call_count, 0, msg)
                if name == "list_of_layers" and mode != "layers":
                    self.assertEqual(remat.call_count, 1, msg)  # block_1 only

    def test_no_remat_scope__only_tensorflows_fused_blocks_rematerialised(self):
        # Outside any `keras.RematScope` nothing goes through `keras.remat` (the JAX
        # scan's body keeps the Dense outputs); TensorFlow's fused blocks run
        # rematerialised by default, and keep their activations when created under
        # `keras.RematScope(mode=None)`.
        x, mask = _inputs()
        tensorflow = keras.backend.backend() == "tensorflow"
        for keep_activations in (False, True):
            blocks = _stack(keep_activations=keep_activations)
            with mock.patch.object(keras, "remat", wraps=keras.remat) as remat, mock.patch.object(
                backend_adapter, "run_tf_rematerialized_block", wraps=backend_adapter.run_tf_rematerialized_block
            ) as tf_remat, mock.patch.object(
                backend_adapter, "run_tf_fused_block", wraps=backend_adapter.run_tf_fused_block
            ) as tf_kept:
                _loss_and_grads(blocks, x, mask, None, 1, outputs_from=2)
            msg = f"keep_activations={keep_activations}"
            self.assertEqual(remat.call_count, 0, msg)
            self.assertEqual(tf_remat.call_count, 3 if tensorflow and not keep_activations else 0, msg)
            self.assertEqual(tf_kept.call_count, 3 if tensorflow and keep_activations else 0, msg)
            x_tensor = ops.convert_to_tensor(x)
            self.assertEqual(
                [b.rematerializes(x_tensor) for b in blocks], [tensorflow and not keep_activations] * 3, msg
            )

    def test_tensorflow__blocks_call_one_shared_pair_of_functions(self):
        # On TensorFlow the fused blocks run as two functions (forward; backward,
        # recomputing the block or, under `keras.RematScope(mode=None)`, from the kept
        # residuals) that every block of the same structure shares and the step calls,
        # not inlines: the graph holds one block, not `depth`.
        if keras.backend.backend() != "tensorflow":
            self.skipTest("TensorFlow's graph")
        import tensorflow as tf

        x, mask = _inputs()
        backward_names = {}
        scopes = {
            "default": contextlib.nullcontext(),
            "full": keras.RematScope(mode="full"),
            "kept": keras.RematScope(mode=None),
        }
        for scope, context in scopes.items():
            with context:
                blocks = _stack(depth=3)
            weights = [w.value for b in blocks for w in b.trainable_weights]

            @tf.function
            def gradients(tokens):
                with tf.GradientTape() as tape:
                    tape.watch(tokens)
                    loss = tf.reduce_sum(tf.square(run_blocks(blocks, tokens, tf.constant(mask))[0]))
                return tape.gradient(loss, [tokens] + weights)

            graph = gradients.get_concrete_function(tf.TensorSpec(x.shape, "float32")).graph
            called = [op.get_attr("f").name for op in graph.get_operations() if op.type.endswith("PartitionedCall")]
            self.assertLen(called, 6, scope)  # 3 blocks forward, 3 backward
            self.assertLen(set(called), 2, scope)
            library = {f.signature.name: f for f in graph.as_graph_def().library.function}
            for name in set(called):
                self.assertTrue(library[name].attr["_noinline"].b, name)
            backward_names[scope] = called[-1]
        # Rematerialised (the default, or a scope over the blocks), the backward
        # function recomputes the block; keeping the activations, it is another one.
        self.assertEqual(backward_names["default"], backward_names["full"])
        self.assertNotEqual(backward_names["kept"], backward_names["full"])
