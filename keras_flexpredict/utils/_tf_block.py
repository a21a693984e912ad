"""A `TransformerBlock`'s forward pass on TensorFlow with fused LayerNorms and GELU.

`backend_adapter.run_tf_fused_block` uses this on the TensorFlow backend in float32. It
pays where the step runs without XLA, as Keras runs TF train steps on CPU (under
`jit_compile=True` the functions are simply inlined into the step's XLA program): the
same math as the block's Keras layers, but each LayerNorm and the exact GELU run as one
small XLA-compiled function for the forward pass and one for the backward pass
(`tf.custom_gradient`). Without XLA, TF
runs every elementwise op of those as its own kernel over the whole `(batch, tokens,
width)` tensor: the LayerNorm and GELU gradients alone were ~10 `Mul`s a block, 0.3-0.4 s
of a 1.5 s ViT-Tiny step on 2 CPU cores. XLA compiles each island once per input shape
(a few ms each); the step keeps TF's own matmul and attention kernels. The weights are
the block's own variables, so gradients, the optimiser and the EMA see no difference.
"""

import math

import tensorflow as tf
from keras import ops

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _gelu_forward(x):
    return x * (0.5 * (1.0 + tf.math.erf(x * _SQRT_HALF)))


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _gelu_backward(x, upstream):
    # d/dx [x Phi(x)] = Phi(x) + x phi(x), recomputed from x (nothing else is kept).
    cdf = 0.5 * (1.0 + tf.math.erf(x * _SQRT_HALF))
    return upstream * (cdf + x * (tf.exp(-0.5 * tf.square(x)) * _INV_SQRT_2PI))


@tf.custom_gradient
def gelu(x):
    """Exact (erf) GELU, `x / 2 * (1 + erf(x / sqrt(2)))`, as two XLA islands."""

    def grad(upstream):
        return _gelu_backward(x, upstream)

    return _gelu_forward(x), grad


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _layer_norm_forward(x, gamma, beta, epsilon):
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centred = x - mean
    inverse_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True) + epsilon)
    return centred * inverse_std * gamma + beta, mean, inverse_std


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _layer_norm_backward(x, gamma, mean, inverse_std, upstream):
    normalised = (x - mean) * inverse_std
    scaled = upstream * gamma
    grad_x = inverse_std * (
        scaled
        - tf.reduce_mean(scaled, axis=-1, keepdims=True)
        - normalised * tf.reduce_mean(scaled * normalised, axis=-1, keepdims=True)
    )
    width = tf.shape(x)[-1]
    flat_upstream = tf.reshape(upstream, (-1, width))
    grad_gamma = tf.reduce_sum(flat_upstream * tf.reshape(normalised, (-1, width)), axis=0)
    return grad_x, grad_gamma, tf.reduce_sum(flat_upstream, axis=0)


@tf.custom_gradient
def _layer_norm(x, gamma, beta, epsilon):
    y, mean, inverse_std = _layer_norm_forward(x, gamma, beta, epsilon)

    def grad(upstream):
        grad_x, grad_gamma, grad_beta = _layer_norm_backward(x, gamma, mean, inverse_std, upstream)
        return grad_x, grad_gamma, grad_beta, None

    return y, grad


def layer_norm(layer, x):
    """`layer(x)` for a plain last-axis float32 `keras.layers.LayerNormalization`."""
    epsilon = tf.constant(layer.epsilon, x.dtype)
    return _layer_norm(x, tf.convert_to_tensor(layer.gamma.value), tf.convert_to_tensor(layer.beta.value), epsilon)


def _dense(layer, x):
    y = ops.matmul(x, layer.kernel.value)
    # BiasAdd's gradient is one BiasAddGrad kernel; `y + bias` differentiates into a
    # broadcast-reducing Sum (-4% step time at ViT-Tiny 64/8 batch 32).
    return tf.nn.bias_add(y, layer.bias.value) if layer.use_bias else y


def attention(q, k, v, keep=None):
    """`keras.ops.dot_product_attention(q, k, v, mask=keep[:, None, None, :])` for
    `(batch, tokens, heads, head_dim)` inputs as two batched matmuls in the
    `(batch, heads, tokens, head_dim)` layout, the same values to the bit.

    Keras's TF attention is two `einsum`s; oneDNN's `_MklEinsum` and their gradients
    took ~23% longer than `BatchMatMulV2` for the predictor's attention (forward and
    backward, 32 x 3 heads x 112 tokens x 128), and the whole ViT-Tiny step ~2% longer.
    """
    q, k, v = (tf.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
    scores = tf.matmul(q, k, transpose_b=True) * tf.cast(1.0 / math.sqrt(q.shape[-1]), q.dtype)
    if keep is not None:
        scores = tf.where(keep[:, None, None, :], scores, tf.cast(-1e9, scores.dtype))
    return tf.transpose(tf.matmul(tf.nn.softmax(scores, axis=-1), v), (0, 2, 1, 3))


def _queries_keys_values(block, normed, outputs_from):
    """q, k, v `(batch, tokens, heads, head_dim)`; with `outputs_from`, q only for the
    tokens `outputs_from:` (the kernel's query columns on those tokens, its key and
    value columns on all: the other queries are never computed)."""
    b, n = ops.shape(normed)[0], ops.shape(normed)[1]
    heads, head_dim = block.num_heads, block.hidden_dim // block.num_heads
    if outputs_from is None:
        qkv = _dense(block.qkv, normed)
        # One unstack, not three slices: each slice's gradient zero-fills a qkv-sized tensor.
        return ops.unstack(ops.reshape(qkv, (b, n, 3, heads, head_dim)), num=3, axis=2)
    d = block.hidden_dim
    kernel = block.qkv.kernel.value
    bias = block.qkv.bias.value if block.qkv.use_bias else None
    kept = normed[:, outputs_from:]
    q = ops.matmul(kept, kernel[:, :d])
    kv = ops.matmul(normed, kernel[:, d:])
    if bias is not None:
        q, kv = tf.nn.bias_add(q, bias[:d]), tf.nn.bias_add(kv, bias[d:])
    k, v = ops.unstack(ops.reshape(kv, (b, n, 2, heads, head_dim)), num=2, axis=2)
    return ops.reshape(q, (b, ops.shape(kept)[1], heads, head_dim)), k, v


def forward(block, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
    """`block.call(tokens, padding_mask, zero_padding, outputs_from)` with fused
    LayerNorms and GELU."""
    q, k, v = _queries_keys_values(block, layer_norm(block.norm1, tokens), outputs_from)
    keep = None if padding_mask is None else ops.cast(padding_mask, "bool")
    attended = attention(q, k, v, keep)
    if outputs_from is not None:
        tokens = tokens[:, outputs_from:]
        keep = None if keep is None else keep[:, outputs_from:]
    attended = ops.reshape(attended, (ops.shape(tokens)[0], ops.shape(tokens)[1], block.hidden_dim))
    x = tokens + _dense(block.attention_output, attended)
    x = x + _dense(block.mlp_output, gelu(_dense(block.mlp_hidden, layer_norm(block.norm2, x))))
    if keep is not None and zero_padding:
        x = ops.where(keep[..., None], x, ops.zeros_like(x))
    return x
