"""Pre-LayerNorm ViT block with a fused-qkv self-attention that honours padding."""

import keras
from keras import ops

from keras_flexpredict.utils import backend_adapter
from keras_flexpredict.utils import keras_internals
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int


def check_positive_float(name, value):
    """`value` as a float; a `ValueError` naming it unless it is finite and > 0.

    Kept for existing imports; new code calls `utils.validation.check_float`.
    """
    return check_float(name, value, minimum=0, exclusive_minimum=True)


def _normal(stddev):
    return keras.initializers.RandomNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class TransformerBlock(keras.layers.Layer):
    """`x + Attn(LN(x))`, then `x + MLP(LN(x))`, as the ViT blocks of I-JEPA.

    Attention uses a fused `qkv` projection (the layout of the official checkpoints)
    and `keras.ops.dot_product_attention`. Padded tokens (`padding_mask` False) are
    never attended to; their own outputs are meaningless and are zeroed. On eager torch
    the same math runs as plain torch functions (`backend_adapter.run_eager_torch_block`);
    on TensorFlow in float32 as two shared TensorFlow functions, rematerialised unless
    the block is created under `keras.RematScope(mode=None)` (`rematerializes`).
    LayerNorm eps 1e-6, exact GELU, MLP ratio 4 by default. Kernels are drawn from
    N(0, 0.02), biases 0; `output_kernel_scale` multiplies the std of the attention-output
    and second MLP kernels (the reference's `1 / sqrt(2 l)` depth rescaling, off by
    default because the official training scripts re-initialise every linear layer and
    undo it).

    Args:
        hidden_dim: int. Token width.
        num_heads: int. Attention heads; must divide `hidden_dim`.
        mlp_ratio: float. MLP hidden width = `int(hidden_dim * mlp_ratio)`. Defaults to 4.
        qkv_bias: bool. Bias in the qkv projection. Defaults to True.
        layer_norm_epsilon: float. Defaults to 1e-6.
        output_kernel_scale: float. Defaults to 1.0.

    Call arguments:
        tokens: `(batch, length, hidden_dim)`.
        padding_mask: optional bool `(batch, length)`, True for real tokens.
        zero_padding: bool. Zero the outputs of padded tokens. A stack of blocks needs
            it only after its last block (padded tokens are never attended to, so their
            values never reach a real token); skipping it inside saves a select per
            block forward and backward. Defaults to True.
        outputs_from: optional int (or scalar tensor) `s`. Compute the outputs of
            tokens `s:` only: their queries attend to every token's keys and values,
            and the attention output, MLP and residuals run on them alone. The result
            is `(batch, length - s, hidden_dim)`, equal to `block(tokens)[:, s:]`. The
            predictor's last block needs only its target tokens' outputs; this skips
            the context tokens' work there. Defaults to None (every token).

    Example:
    >>> block = TransformerBlock(hidden_dim=8, num_heads=2)
    >>> tuple(block(np.zeros((2, 5, 8), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        layer_norm_epsilon=1e-6,
        output_kernel_scale=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_dim = check_int("hidden_dim", hidden_dim, minimum=1)
        num_heads = check_int("num_heads", num_heads, minimum=1)
        if hidden_dim % num_heads:
            raise ValueError(
                "`hidden_dim` must be divisible by `num_heads`. Received: "
                f"hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_ratio = check_positive_float("mlp_ratio", mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_epsilon = check_positive_float("layer_norm_epsilon", layer_norm_epsilon)
        self.output_kernel_scale = check_positive_float("output_kernel_scale", output_kernel_scale)

    def build(self, input_shape):
        d = self.hidden_dim
        kw = dict(dtype=self.dtype_policy, bias_initializer="zeros")
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="norm1"
        )
        self.qkv = keras.layers.Dense(
            3 * d, use_bias=self.qkv_bias, kernel_initializer=_normal(0.02), name="qkv", **kw
        )
        self.attention_output = keras.layers.Dense(
            d, kernel_initializer=_normal(0.02 * self.output_kernel_scale), name="attention_output", **kw
        )
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="norm2"
        )
        self.mlp_hidden = keras.layers.Dense(
            int(d * self.mlp_ratio),
            activation="gelu",  # exact (erf) GELU, as torch's nn.GELU()
            kernel_initializer=_normal(0.02),
            name="mlp_hidden",
            **kw,
        )
        self.mlp_output = keras.layers.Dense(
            d, kernel_initializer=_normal(0.02 * self.output_kernel_scale), name="mlp_output", **kw
        )
        token_shape = (None, None, d)
        for layer in (self.norm1, self.qkv, self.norm2, self.mlp_hidden):
            layer.build(token_shape)
        self.attention_output.build(token_shape)
        self.mlp_output.build((None, None, int(d * self.mlp_ratio)))

    def call(self, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
        mode = backend_adapter.block_stack_mode((self,), tokens)
        if mode == "eager_torch":
            return backend_adapter.run_eager_torch_block(self, tokens, padding_mask, zero_padding, outputs_from)
        if mode == "tf_fused":
            if keras_internals.layer_remat_mode(self) is None:
                # TensorFlow's default: rematerialised (`rematerializes`).
                return backend_adapter.run_tf_rematerialized_block(
                    self, tokens, padding_mask, zero_padding, outputs_from
                )
            return backend_adapter.run_tf_fused_block(self, tokens, padding_mask, zero_padding, outputs_from)
        b, n = ops.shape(tokens)[0], ops.shape(tokens)[1]
        head_dim = self.hidden_dim // self.num_heads
        qkv = self.qkv(self.norm1(tokens))
        qkv = ops.reshape(qkv, (b, n, 3, self.num_heads, head_dim))
        # One unstack, not three slices: on TF each slice's gradient zero-fills a whole
        # qkv-sized tensor (0.3 s of a 1.6 s ViT-Tiny step on 2 CPU cores).
        q, k, v = ops.unstack(qkv, num=3, axis=2)
        keys_mask = padding_mask
        if outputs_from is not None:
            # The layers path keeps the Dense call whole (LoRA, quantisation) and drops
            # the unused queries after it; the fast paths skip computing them.
            tokens, q = tokens[:, outputs_from:], q[:, outputs_from:]
            if padding_mask is not None:
                padding_mask = padding_mask[:, outputs_from:]
        mask = None
        if keys_mask is not None:
            mask = ops.cast(keys_mask, "bool")[:, None, None, :]
        attended = ops.dot_product_attention(q, k, v, mask=mask)
        attended = ops.reshape(attended, (b, ops.shape(q)[1], self.hidden_dim))
        x = tokens + self.attention_output(attended)
        x = x + self.mlp_output(self.mlp_hidden(self.norm2(x)))
        if padding_mask is not None and zero_padding:
            x = ops.where(ops.cast(padding_mask, "bool")[..., None], x, ops.zeros_like(x))
        return x

    def rematerialized_call(self, layer_call, *args, **kwargs):
        """`layer_call` rematerialised over its tokens where the `keras.RematScope`
        the block was created under covers it (`full`, its name in `list_of_layers`, or
        its output above `larger_than`'s threshold): the backward pass keeps the block's
        input tokens only and computes its activations again. The padding mask and the
        Python arguments are closed over, not differentiated (Keras's own wrapper
        fails on them on TensorFlow and JAX; `utils.rematerialization`). Every way the
        block runs goes through this (`transformer_stack.run_blocks`)."""
        if super().rematerialized_call(layer_call, *args, **kwargs) is layer_call:
            return layer_call

        def rematerialized(tokens, *rest, **options):
            if backend_adapter.block_stack_mode((self,), tokens) == "tf_fused":
                return backend_adapter.run_tf_rematerialized_block(self, tokens, *rest, **options)
            return keras.remat(lambda t: layer_call(t, *rest, **options))(tokens)

        return rematerialized

    def rematerializes(self, tokens, **kwargs):
        """True if `self(tokens, **kwargs)` runs rematerialised: where the
        `keras.RematScope` the block was created under covers it
        (`rematerialized_call`), and on TensorFlow in float32 (the `"tf_fused"` mode of
        `backend_adapter.block_stack_mode`) for a block created outside any
        `keras.RematScope`.

        Why TensorFlow's default differs: its library pages alone hold ~0.3 GiB more
        than torch's, so only a step that keeps no activations stays within the
        official StoP step's peak memory (the official code ships with activation
        checkpointing in every block; the comparison bypasses it). Rematerialised,
        TensorFlow installed alone held 4-281 MiB less than the official step at 1.41-
        1.55x its speed on a 2-core CPU (BENCHMARKS.md, session 26). A block created
        under `keras.RematScope(mode=None)` keeps its activations instead: a step
        12-14% shorter for 0.2-0.3 GiB more.

        Example:

        >>> import keras
        >>> from keras_flexpredict.layers import TransformerBlock
        >>> with keras.RematScope(mode=None):
        ...     block = TransformerBlock(hidden_dim=8, num_heads=2)
        >>> block.build((None, None, 8))
        >>> block.rematerializes(keras.ops.zeros((1, 3, 8)))
        False
        """
        if keras_internals.layer_remat_mode(self) is None:
            return backend_adapter.block_stack_mode((self,), tokens) == "tf_fused"
        call = self.call
        return self.rematerialized_call(call, tokens, **kwargs) is not call

    def has_plain_parts(self):
        """True when the block is built and is exactly the math of `call`: no Dense has
        LoRA or quantisation and both LayerNorms are the plain last-axis ones. Then
        `transformer_stack.run_blocks` may run it as a function of its weights (eager
        torch, TensorFlow's fused block, or one `scan` over the stack); a
        `keras.RematScope` still applies there (`rematerialized_call`)."""
        if not self.built:
            return False
        for dense in (self.qkv, self.attention_output, self.mlp_hidden, self.mlp_output):
            if getattr(dense, "lora_enabled", False) or getattr(dense, "quantization_mode", None):
                return False
        for norm in (self.norm1, self.norm2):
            axis = norm.axis if isinstance(norm.axis, (list, tuple)) else [norm.axis]
            if not (norm.center and norm.scale and not norm.rms_scaling and list(axis) in ([-1], [2])):
                return False
        return getattr(self.mlp_hidden.activation, "__name__", None) == "gelu"

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
        shape = list(tokens.shape)
        if outputs_from is not None:
            start = outputs_from if isinstance(outputs_from, int) else None
            shape[1] = None if shape[1] is None or start is None else max(shape[1] - start, 0)
        return keras.KerasTensor(tuple(shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "output_kernel_scale": self.output_kernel_scale,
            }
        )
        return config
