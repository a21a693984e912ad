"""The stack of pre-LN blocks and the final LayerNorm shared by `ViTEncoder` and
`JEPAPredictor`.

These are plain functions, not a `Layer`: a wrapping layer would add one level to
every weight's path (`vit_encoder/transformer_stack/block_0/...`) and to the
`.weights.h5` layout (`layers/transformer_stack/blocks/...` instead of `blocks/...`),
so files saved before it existed (presets, checkpoints) would no longer load. The
owner keeps the returned layers as its own `blocks` and `norm` attributes.

Example:

>>> blocks, norm = transformer_stack(hidden_dim=8, depth=2, num_heads=2)
>>> [block.name for block in blocks], norm.name
(['block_0', 'block_1'], 'norm')
>>> build_transformer_stack(blocks, norm, (None, None, 8))
>>> outputs = run_blocks(blocks, np.zeros((1, 5, 8), "float32"), last_n=2)
>>> len(outputs), tuple(norm(outputs[-1]).shape)
(2, (1, 5, 8))
"""

import keras
from keras import ops

from keras_flexpredict.layers.transformer_block import TransformerBlock
from keras_flexpredict.utils import backend_adapter
from keras_flexpredict.utils import keras_internals
from keras_flexpredict.utils.validation import check_int


def transformer_stack(
    hidden_dim,
    depth,
    num_heads,
    mlp_ratio=4.0,
    qkv_bias=True,
    layer_norm_epsilon=1e-6,
    depth_scaled_init=False,
    dtype=None,
):
    """`(blocks, norm)`: `depth` `TransformerBlock`s named `block_<i>` and the final
    `LayerNormalization` named `norm`, created but not built.

    With `depth_scaled_init`, block `l` (from 1) draws its attention-output and second
    MLP kernels with std scaled by `1 / sqrt(2 l)` (the reference model classes).
    """
    depth = check_int("depth", depth, minimum=1)
    blocks = [
        TransformerBlock(
            hidden_dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            layer_norm_epsilon=layer_norm_epsilon,
            output_kernel_scale=(2.0 * (i + 1)) ** -0.5 if depth_scaled_init else 1.0,
            dtype=dtype,
            name=f"block_{i}",
        )
        for i in range(depth)
    ]
    norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="norm")
    return blocks, norm


def build_transformer_stack(blocks, norm, token_shape):
    """Builds every block, then the norm, for tokens of `token_shape`."""
    for block in blocks:
        block.build(token_shape)
    norm.build(token_shape)


def run_blocks(blocks, tokens, padding_mask=None, last_n=1, outputs_from=None):
    """The tokens after each of the last `last_n` blocks (earliest first).

    Padded slots (`padding_mask` False) are never attended to and are not zeroed here:
    the caller zeroes them once, after its final norm.

    With `outputs_from` (an int, or a scalar tensor on TensorFlow; `last_n` must be 1)
    the last block computes only the outputs of tokens `outputs_from:`, the ones the
    caller keeps (`TransformerBlock`'s `outputs_from`): the same values as
    `run_blocks(...)[-1][:, outputs_from:]`, without the other tokens' queries,
    attention output and MLP in that block. The predictor keeps only its target
    tokens, so this skips most of the context tokens' work in its last block (ViT-Tiny
    224/16 with the official masks: 68% of the predictor's tokens are context tokens,
    so ~9% of the predictor's matmul work).

    The math is `block(tokens)` for each block in turn; `backend_adapter.
    block_stack_mode` chooses how it runs: plain torch functions on eager torch, one
    rematerialised `keras.ops.scan` over the stacked weights on JAX (the blocks one by
    one as functions of their weights on 2-D tokens under a weight-sharding
    distribution), each block's Keras call otherwise (on TensorFlow in float32 with
    its LayerNorms and GELU fused by XLA).
    """
    if outputs_from is not None and last_n != 1:
        raise ValueError(
            "`outputs_from` cuts the last block's outputs, so only that block's can be "
            f"kept. Received: last_n={last_n}, outputs_from={outputs_from!r}"
        )
    mode = backend_adapter.block_stack_mode(blocks, tokens)
    if mode in ("scan", "flat"):
        return _functional_blocks(
            blocks, tokens, padding_mask, last_n, scan=mode == "scan", outputs_from=outputs_from
        )
    outputs = []
    first_kept = len(blocks) - last_n
    for i, block in enumerate(blocks):
        cut = outputs_from if i == len(blocks) - 1 else None
        scope = keras_internals.layer_remat_mode(block)
        if mode == "eager_torch" and (scope is None or scope.mode is None):
            tokens = backend_adapter.run_eager_torch_block(block, tokens, padding_mask, False, cut)
        else:
            # Under a `keras.RematScope` through the block's Keras call, which
            # rematerialises it (`TransformerBlock.rematerialized_call`).
            tokens = block(tokens, padding_mask=padding_mask, zero_padding=False, outputs_from=cut)
        if i >= first_kept:
            outputs.append(tokens)
    return outputs


_DENSE = ("qkv", "attention_output", "mlp_hidden", "mlp_output")
_NORMS = ("norm1", "norm2")


def _block_weights(block, dtype):
    """The block's weights by name; Dense kernels and biases in the compute `dtype`
    (as Keras's autocast gives them to the layer), LayerNorm's as stored."""
    weights = {}
    for name in _DENSE:
        dense = getattr(block, name)
        weights[f"{name}/kernel"] = ops.cast(dense.kernel.value, dtype)
        if dense.use_bias:
            weights[f"{name}/bias"] = ops.cast(dense.bias.value, dtype)
    for name in _NORMS:
        norm = getattr(block, name)
        weights[f"{name}/gamma"] = norm.gamma.value
        weights[f"{name}/beta"] = norm.beta.value
    return weights


def _block_function(weights, tokens, mask, batch, length, num_heads, epsilon, outputs_from=None):
    """`TransformerBlock.call(tokens, padding_mask, zero_padding=False, outputs_from)`
    as a function of the block's weights, on tokens flattened to `(batch * length,
    width)`: the same ops, with every Dense a 2-D matmul (XLA:CPU ran the MLP's 3-D
    matmuls and their gradients 2.3x slower than the same matmuls in 2-D). With
    `outputs_from` (a static int) the result is `(batch * (length - outputs_from),
    width)`."""
    dtype = tokens.dtype
    width = tokens.shape[-1]
    head_dim = width // num_heads

    def norm(x, name):
        y = ops.layer_normalization(x, weights[f"{name}/gamma"], weights[f"{name}/beta"], epsilon=epsilon)
        return ops.cast(y, dtype)

    def dense(x, name):
        y = ops.matmul(x, weights[f"{name}/kernel"])
        bias = weights.get(f"{name}/bias")
        return y if bias is None else y + bias

    normed = norm(tokens, "norm1")
    if outputs_from is None:
        qkv = ops.reshape(dense(normed, "qkv"), (batch, length, 3, num_heads, head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    else:
        # Only the kept tokens' queries: the kernel's query columns on them, its key
        # and value columns on every token.
        kept = length - outputs_from

        def cut(x):
            return ops.reshape(ops.reshape(x, (batch, length, width))[:, outputs_from:], (batch * kept, width))

        kernel, bias = weights["qkv/kernel"], weights.get("qkv/bias")
        q = ops.matmul(cut(normed), kernel[:, :width])
        kv = ops.matmul(normed, kernel[:, width:])
        if bias is not None:
            q, kv = q + bias[:width], kv + bias[width:]
        q = ops.reshape(q, (batch, kept, num_heads, head_dim))
        kv = ops.reshape(kv, (batch, length, 2, num_heads, head_dim))
        k, v = kv[:, :, 0], kv[:, :, 1]
        tokens, length = cut(tokens), kept
    attended = ops.dot_product_attention(q, k, v, mask=mask)
    x = tokens + dense(ops.reshape(attended, (batch * length, width)), "attention_output")
    hidden = _exact_gelu(dense(norm(x, "norm2"), "mlp_hidden"))
    return x + dense(hidden, "mlp_output")


def _exact_gelu(x):
    """Exact GELU as torch's `nn.GELU()` writes it, `x / 2 * (1 + erf(x / sqrt(2)))`.

    The same function as `keras.activations.gelu(x)` (within 1.3e-6 in float32), but JAX
    writes that one with `erfc`, which XLA:CPU lowers to a longer chain (an `exp`, a
    division and branch selects) in the forward pass and again in the rematerialised
    backward: this form made the JAX ViT-Tiny train step 2-6% faster on 2 CPU cores.
    """
    return ops.multiply(ops.multiply(x, 0.5), ops.add(ops.erf(ops.multiply(x, _SQRT_HALF)), 1.0))


_SQRT_HALF = 0.7071067811865476


def _functional_blocks(blocks, tokens, padding_mask, last_n, scan, outputs_from=None):
    first = blocks[0]
    for block in blocks[1:]:
        if (block.hidden_dim, block.num_heads, block.mlp_ratio, block.qkv_bias, block.layer_norm_epsilon) != (
            first.hidden_dim, first.num_heads, first.mlp_ratio, first.qkv_bias, first.layer_norm_epsilon
        ):
            raise ValueError(
                f"Blocks {first.name} and {block.name} differ in shape; they cannot run as one stack."
            )
    per_block = [_block_weights(block, keras.backend.standardize_dtype(tokens.dtype)) for block in blocks]
    mask = None if padding_mask is None else ops.cast(padding_mask, "bool")[:, None, None, :]
    batch, length, width = ops.shape(tokens)[0], ops.shape(tokens)[1], tokens.shape[-1]
    flat = ops.reshape(tokens, (batch * length, width))

    def apply(weights, x, outputs_from=None):
        return _block_function(
            weights, x, mask, batch, length, first.num_heads, first.layer_norm_epsilon, outputs_from
        )

    # Blocks under a `keras.RematScope` that covers them keep only their input tokens
    # for the backward pass (`TransformerBlock.rematerialized_call`).
    remat = [
        block.rematerializes(
            tokens, padding_mask=padding_mask, zero_padding=False,
            outputs_from=outputs_from if i == len(blocks) - 1 else None,
        )
        for i, block in enumerate(blocks)
    ]

    def run(i, weights, x, cut=None):
        if remat[i]:
            return keras.remat(lambda y: apply(weights, y, cut))(x)
        return apply(weights, x, cut)

    if outputs_from is not None:
        # The last block runs on its own, outside the scan, to cut its outputs.
        per_block, last = per_block[:-1], per_block[-1]
    scanned = remat[: len(per_block)]
    if scan and len(per_block) > 1 and len(set(scanned)) == 1:
        keep_all = last_n > 1

        def step(x, weights):
            x = apply(weights, x)
            return x, (x if keep_all else None)

        stacked = {name: ops.stack([w[name] for w in per_block]) for name in per_block[0]}
        step = backend_adapter.scan_step(step, rematerialize_all=scanned[0])
        final, every = ops.scan(step, flat, stacked)
        kept = [every[i] for i in range(len(blocks) - last_n, len(blocks))] if keep_all else [final]
    else:
        kept = []
        for i, weights in enumerate(per_block):
            flat = run(i, weights, flat)
            if i >= len(blocks) - last_n:
                kept.append(flat)
    if outputs_from is None:
        return [ops.reshape(x, (batch, length, width)) for x in kept]
    flat = run(len(blocks) - 1, last, kept[-1] if kept else flat, outputs_from)
    return [ops.reshape(flat, (batch, length - outputs_from, width))]
