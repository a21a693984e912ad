"""A `TransformerBlock`'s forward and backward passes on TensorFlow, in float32.

`backend_adapter.run_tf_fused_block` uses this on the TensorFlow backend in float32. It
pays where the step runs without XLA, as Keras runs TF train steps on CPU (under
`jit_compile=True` the functions are compiled into the step's XLA program):

- Each LayerNorm and the exact GELU run as one small XLA-compiled function for the
  forward pass and one for the backward pass (`tf.custom_gradient`). Without XLA, TF
  runs every elementwise op of those as its own kernel over the whole `(batch, tokens,
  width)` tensor: the LayerNorm and GELU gradients alone were ~10 `Mul`s a block,
  0.3-0.4 s of a 1.5 s ViT-Tiny step on 2 CPU cores. XLA compiles each island once per
  input shape (a few ms each); the step keeps TF's own matmul and attention kernels.
- The block runs as two TensorFlow functions of its tokens and weights (forward, and
  backward), shared by every block of the same structure and called, not inlined, from
  the step (`_BlockFunctions`): the step's graph holds one block instead of every
  block. By default the backward function computes the block again from its input
  (`rematerialized_forward`); for a block created under `keras.RematScope(mode=None)`
  it reads four tensors the forward pass kept (`forward`).

The weights are the block's own variables (read and passed in), so gradients, the
optimiser and the EMA see no difference; the values are those of the block's Keras
layers.
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


def _layer_norm_apply(x, gamma, beta, epsilon):
    return _layer_norm(x, gamma, beta, tf.constant(epsilon, x.dtype))


def _dense(x, kernel, bias):
    y = ops.matmul(x, kernel)
    # BiasAdd's gradient is one BiasAddGrad kernel; `y + bias` differentiates into a
    # broadcast-reducing Sum (-4% step time at ViT-Tiny 64/8 batch 32).
    return y if bias is None else tf.nn.bias_add(y, bias)


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


_WEIGHT_NAMES = (
    "norm1/gamma", "norm1/beta", "qkv/kernel", "qkv/bias", "attention_output/kernel",
    "attention_output/bias", "norm2/gamma", "norm2/beta", "mlp_hidden/kernel", "mlp_hidden/bias",
    "mlp_output/kernel", "mlp_output/bias",
)


def _weights(block):
    """The block's weights as tensors (read) by name (`_WEIGHT_NAMES`; a Dense without a bias
    has none)."""
    weights = {}
    for name in _WEIGHT_NAMES:
        layer_name, weight_name = name.split("/")
        layer = getattr(block, layer_name)
        if weight_name == "bias" and not layer.use_bias:
            continue
        # Read here: a variable passed to the functions would be read inside them, where
        # `tf.custom_gradient` cannot take its gradient (a `MirroredVariable` is).
        weights[name] = tf.convert_to_tensor(getattr(layer, weight_name).value)
    return weights


def _structure(block):
    """What the block's math depends on besides its weights and inputs."""
    return block.num_heads, block.hidden_dim, float(block.norm1.epsilon), float(block.norm2.epsilon)


def forward(block, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
    """`block.call(tokens, padding_mask, zero_padding, outputs_from)` with fused
    LayerNorms and GELU, as the block's shared functions (`_BlockFunctions`): the
    backward pass keeps the block's input, its `qkv` projection, the residual stream
    after attention and the MLP's hidden layer, and computes the rest again (a block
    created under `keras.RematScope(mode=None)`)."""
    return _call(block, tokens, padding_mask, zero_padding, outputs_from, rematerialize=False)


def rematerialized_forward(block, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
    """`forward(block, ...)` whose backward pass keeps only the block's inputs and
    computes its activations again (the default, and a `keras.RematScope` over the
    block)."""
    return _call(block, tokens, padding_mask, zero_padding, outputs_from, rematerialize=True)


# One `_BlockFunctions` for every block of the same structure, whatever its weights.
_FUNCTIONS = {}


def _call(block, tokens, padding_mask, zero_padding, outputs_from, rematerialize):
    weights = _weights(block)
    dynamic_from = tf.is_tensor(outputs_from)
    key = (
        _structure(block), tuple(weights), padding_mask is None, bool(zero_padding),
        "tensor" if dynamic_from else outputs_from,
    )
    if key not in _FUNCTIONS:
        _FUNCTIONS[key] = _BlockFunctions(
            _structure(block), tuple(weights), bool(zero_padding), dynamic_from,
            None if dynamic_from else outputs_from,
        )
    start = outputs_from if dynamic_from else None
    return _FUNCTIONS[key](tokens, padding_mask, start, list(weights.values()), rematerialize)


class _BlockFunctions:
    """A block's forward and backward passes as TensorFlow functions of its tokens and
    weights, shared by every block of the same structure and called, not inlined,
    from the train step (`_noinline`).

    Why: inlined, TensorFlow's graph holds every block's forward and backward ops
    (~0.3 GiB of the step's memory at ViT-Tiny, traced and instantiated), its executor
    keeps every intermediate the backward pass might read, and its graph optimiser
    merges a recomputation back into the forward pass. Here the forward function
    returns the block's output and what the backward function reads (the residuals:
    `qkv` or its query and key-value parts, the residual stream after attention, the
    MLP's hidden layer), and the backward function recomputes the LayerNorms, the
    attention probabilities and the GELU from them. Rematerialised (TensorFlow's
    default since session 26, and under a `keras.RematScope` over the block) the
    residuals are dropped and the backward function computes them again from the
    block's input. Official masks, TensorFlow-only install, 2-core CPU (session 25,
    BENCHMARKS.md): peak RSS 1.59 / 2.02 / 1.58 GiB at ViT-Tiny 224/16 b8 / ViT-Small
    224/16 b8 / ViT-Tiny 64/8 b32 against 1.86 / 2.40 / 1.83 inlined, the step 5-10%
    slower, the first step 7-9 s against 10-11; rematerialised, 1.37 / 1.72 / 1.34 GiB
    against 1.52 / 1.86 / 1.50 with `tf.recompute_grad` around the inlined block.

    Each backward segment differentiates its forward piece again with a tape and
    only that piece's gradient is used: TensorFlow prunes the recomputed matmuls
    whose outputs no gradient reads (a matmul's gradient needs its inputs only).
    """

    def __init__(self, structure, names, zero_padding, dynamic_from, static_from):
        self.num_heads, self.hidden_dim, self.epsilon1, self.epsilon2 = structure
        self.names = names
        self.zero_padding = zero_padding
        self.dynamic_from = dynamic_from
        self.static_from = static_from
        not_inlined = {"_noinline": True}
        options = dict(autograph=False, experimental_attributes=not_inlined)
        self.forward_function = tf.function(self._forward_with_residuals, **options)
        self.backward_function = tf.function(self._backward_from_residuals, **options)
        self.rematerialized_backward_function = tf.function(self._rematerialized_backward, **options)

    def __call__(self, tokens, padding_mask, start, weights, rematerialize):
        @tf.custom_gradient
        def block(tokens, *weights):
            outputs, *residuals = self.forward_function(tokens, padding_mask, start, *weights)
            if rematerialize:
                residuals = []  # unused outputs: freed when the call returns

            def grad(upstream):
                if rematerialize:
                    return self.rematerialized_backward_function(tokens, padding_mask, start, upstream, *weights)
                return self.backward_function(tokens, padding_mask, start, upstream, *residuals, *weights)

            return outputs, grad

        return block(tokens, *weights)

    # The block's math in pieces (the same ops as `TransformerBlock.call`).
    def _outputs_from(self, start):
        return start if self.dynamic_from else self.static_from

    def _queries_keys_values(self, outputs_from, tokens, gamma, beta, kernel, *bias):
        """[qkv] `(batch, tokens, 3 width)`; with `outputs_from`, [q, kv]: the kernel's
        query columns on the tokens `outputs_from:`, its key and value columns on all."""
        normed = _layer_norm_apply(tokens, gamma, beta, self.epsilon1)
        bias = bias[0] if bias else None
        if outputs_from is None:
            return [_dense(normed, kernel, bias)]
        d = self.hidden_dim
        return [
            _dense(normed[:, outputs_from:], kernel[:, :d], None if bias is None else bias[:d]),
            _dense(normed, kernel[:, d:], None if bias is None else bias[d:]),
        ]

    def _attend(self, projections, keep):
        """The attention's output `(batch, query tokens, width)` from `_queries_keys_values`."""
        heads, d = self.num_heads, self.hidden_dim
        b = tf.shape(projections[-1])[0]
        n_queries = tf.shape(projections[0])[1]
        if len(projections) == 1:
            # One unstack, not three slices: each slice's gradient zero-fills a qkv-sized tensor.
            q, k, v = tf.unstack(tf.reshape(projections[0], (b, n_queries, 3, heads, d // heads)), num=3, axis=2)
        else:
            n = tf.shape(projections[1])[1]
            k, v = tf.unstack(tf.reshape(projections[1], (b, n, 2, heads, d // heads)), num=2, axis=2)
            q = tf.reshape(projections[0], (b, n_queries, heads, d // heads))
        return tf.reshape(attention(q, k, v, keep), (b, n_queries, d))

    def _mlp_hidden(self, x, gamma, beta, kernel, *bias):
        return _dense(_layer_norm_apply(x, gamma, beta, self.epsilon2), kernel, bias[0] if bias else None)

    @staticmethod
    def _mlp_output(hidden, kernel, *bias):
        return _dense(gelu(hidden), kernel, bias[0] if bias else None)

    @staticmethod
    def _projection(attended, kernel, *bias):
        return _dense(attended, kernel, bias[0] if bias else None)

    @staticmethod
    def _cut(tensor, outputs_from):
        return tensor if outputs_from is None else tensor[:, outputs_from:]

    def _layer(self, w, name, *before):
        """The arguments of a piece for Dense `name`: `before`, its kernel, its bias if any."""
        return [*before, w[f"{name}/kernel"]] + ([w[f"{name}/bias"]] if f"{name}/bias" in w else [])

    # The two passes.
    def _forward_with_residuals(self, tokens, padding_mask, start, *weights):
        w = dict(zip(self.names, weights))
        outputs_from = self._outputs_from(start)
        keep = None if padding_mask is None else tf.cast(padding_mask, tf.bool)
        projections = self._queries_keys_values(
            outputs_from, *self._layer(w, "qkv", tokens, w["norm1/gamma"], w["norm1/beta"])
        )
        attended = self._attend(projections, keep)
        x = self._cut(tokens, outputs_from) + self._projection(*self._layer(w, "attention_output", attended))
        hidden = self._mlp_hidden(*self._layer(w, "mlp_hidden", x, w["norm2/gamma"], w["norm2/beta"]))
        outputs = x + self._mlp_output(*self._layer(w, "mlp_output", hidden))
        if keep is not None and self.zero_padding:
            outputs = tf.where(self._cut(keep, outputs_from)[..., None], outputs, tf.zeros_like(outputs))
        return (outputs, *projections, x, hidden)

    def _rematerialized_backward(self, tokens, padding_mask, start, upstream, *weights):
        _, *residuals = self._forward_with_residuals(tokens, padding_mask, start, *weights)
        return self._backward_from_residuals(tokens, padding_mask, start, upstream, *residuals, *weights)

    def _backward_from_residuals(self, tokens, padding_mask, start, upstream, *residuals_and_weights):
        outputs_from = self._outputs_from(start)
        n_projections = 1 if outputs_from is None else 2
        projections = list(residuals_and_weights[:n_projections])
        x, hidden = residuals_and_weights[n_projections:n_projections + 2]
        w = dict(zip(self.names, residuals_and_weights[n_projections + 2:]))
        keep = None if padding_mask is None else tf.cast(padding_mask, tf.bool)
        if keep is not None and self.zero_padding:
            upstream = tf.where(self._cut(keep, outputs_from)[..., None], upstream, tf.zeros_like(upstream))
        grads = {}

        def piece_gradients(piece, name, inputs, upstream, n_before):
            """Gradients of `piece(*inputs)` for `upstream`; the Dense's go into `grads`."""
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                piece_outputs = piece(*inputs)
            gradients = tape.gradient(piece_outputs, inputs, output_gradients=upstream)
            grads[f"{name}/kernel"] = gradients[n_before]
            if f"{name}/bias" in w:
                grads[f"{name}/bias"] = gradients[n_before + 1]
            return gradients[:n_before]

        (grad_hidden,) = piece_gradients(self._mlp_output, "mlp_output", self._layer(w, "mlp_output", hidden), upstream, 1)
        grad_x, grads["norm2/gamma"], grads["norm2/beta"] = piece_gradients(
            self._mlp_hidden, "mlp_hidden", self._layer(w, "mlp_hidden", x, w["norm2/gamma"], w["norm2/beta"]),
            grad_hidden, 3,
        )
        grad_x += upstream
        with tf.GradientTape() as attention_tape:
            attention_tape.watch(projections)
            attended = self._attend(projections, keep)
        (grad_attended,) = piece_gradients(
            self._projection, "attention_output", self._layer(w, "attention_output", attended), grad_x, 1
        )
        grad_projections = attention_tape.gradient(attended, projections, output_gradients=grad_attended)
        grad_tokens, grads["norm1/gamma"], grads["norm1/beta"] = piece_gradients(
            lambda *inputs: self._queries_keys_values(outputs_from, *inputs), "qkv",
            self._layer(w, "qkv", tokens, w["norm1/gamma"], w["norm1/beta"]), grad_projections, 3,
        )
        if outputs_from is None:
            grad_tokens += grad_x
        else:
            grad_tokens += tf.pad(grad_x, [[0, 0], [outputs_from, 0], [0, 0]])
        return [grad_tokens] + [grads[name] for name in self.names]
