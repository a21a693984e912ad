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

from keras_flexpredict.layers.transformer_block import TransformerBlock
from keras_flexpredict.utils import backend_adapter
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


def run_blocks(blocks, tokens, padding_mask=None, last_n=1):
    """The tokens after each of the last `last_n` blocks (earliest first).

    Padded slots (`padding_mask` False) are never attended to and are not zeroed here:
    the caller zeroes them once, after its final norm.
    """
    outputs = []
    first_kept = len(blocks) - last_n
    # On eager torch the blocks run as plain torch functions, without Keras's
    # per-layer call (same math, ~9% of a CPU train step).
    eager = backend_adapter.eager_torch_blocks(blocks, tokens)
    for i, block in enumerate(blocks):
        if eager:
            tokens = backend_adapter.run_eager_torch_block(block, tokens, padding_mask, zero_padding=False)
        else:
            tokens = block(tokens, padding_mask=padding_mask, zero_padding=False)
        if i >= first_kept:
            outputs.append(tokens)
    return outputs
