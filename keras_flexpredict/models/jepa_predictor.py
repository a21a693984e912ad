"""The narrow ViT predictor of I-JEPA, with stochastic positional embeddings (StoP)."""

import keras
from keras import ops

from keras_flexpredict.layers.sincos_positional_embedding import sincos_2d_positional_embedding
from keras_flexpredict.layers.sincos_positional_embedding import _as_grid
from keras_flexpredict.layers.stochastic_positional_embedding import COVARIANCES
from keras_flexpredict.layers.stochastic_positional_embedding import StochasticPositionalEmbedding
from keras_flexpredict.layers.transformer_stack import build_transformer_stack
from keras_flexpredict.layers.transformer_stack import run_blocks
from keras_flexpredict.layers.transformer_stack import transformer_stack
from keras_flexpredict.utils.model_config import model_config
from keras_flexpredict.utils.rematerialization import RematerializedBySublayers
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int
from keras_flexpredict.utils.validation import check_one_of

POSITIONAL_NOISE = ("stop", "none")
NOISE_ON = ("masked", "context", "both")


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class JEPAPredictor(RematerializedBySublayers, keras.Model):
    """Predicts target-encoder features of the target blocks from the context tokens.

    Context tokens: `c_i = A s_i + b + psi_i` (`A, b` = `context_projection`, a Dense
    `De -> Dp`; `psi` the predictor's fixed sin-cos PE). Target tokens come from
    `StochasticPositionalEmbedding`: with `positional_noise="stop"` and the default
    `covariance="tied"`, `m_j = psi_j + A n_j + b`, `n_j ~ N(0, sigma^2 I_De)` through
    the *same* `context_projection`; with `positional_noise="none"`,
    `m_j = psi_j + mask_token` (I-JEPA). `noise_on` moves StoP's noise for the paper's
    ablation: `"masked"` (the default, the paper's method and the official code),
    `"context"` (`c_i = A (s_i + n_i) + b + psi_i`, masked tokens get the noise-free
    `psi_j + b`) or `"both"`. All `M` target blocks run in one pass as a batch
    of `B * M` sequences `[context; block m]`; padding slots of either are never attended
    to. Blocks, final LayerNorm, a Dense `Dp -> De`; outputs at the target slots only
    (the last block computes only those: the context tokens' outputs there would be
    dropped).

    Args:
        encoder_dim: int. `De`.
        hidden_dim: int. `Dp`. Defaults to 384.
        depth: int. Defaults to 6 (ViT-B); 12 for ViT-L/H.
        num_heads: int. Defaults to 12 (the encoder's heads).
        grid_size: int or `(h, w)`. Patch grid. Defaults to `(14, 14)`.
        positional_noise: `"stop"` or `"none"`. Defaults to `"stop"`.
        sigma: float. StoP noise std. Defaults to 0.25.
        covariance: StoP covariance mode (`"tied"`, `"learned"`, `"low_rank"`,
            `"isotropic"`); ignored when `positional_noise="none"`. Defaults to `"tied"`.
        noise_rank: int or None. Rank for `covariance="low_rank"`.
        noise_on: which tokens get StoP noise: `"masked"`, `"context"` or `"both"`
            (the paper's ablation, ViT-B 1% probe: 57.8 / 55.1 / 56.8; the official
            code has masked only). Defaults to `"masked"`.
        mlp_ratio, qkv_bias, layer_norm_epsilon, depth_scaled_init: as `ViTEncoder`.
        seed: int or None. Seed of the noise.

    Call arguments:
        context: `(B, Kc, De)` context-encoder output.
        masks: dict with `context_indices (B, Kc)`, `context_mask (B, Kc)`,
            `target_indices (B, M, Kt)`, `target_mask (B, M, Kt)` (see `MultiBlockMasker`).
        training: bool. StoP noise only when true.

    Returns:
        `(B, M, Kt, De)` predictions (padding slots are zeros).

    Example:
    >>> predictor = JEPAPredictor(encoder_dim=16, hidden_dim=8, depth=1, num_heads=2,
    ...                           grid_size=(4, 4), seed=0)
    >>> masks = {"context_indices": np.array([[0, 1, 2]], "int32"),
    ...          "context_mask": np.ones((1, 3), bool),
    ...          "target_indices": np.array([[[5, 6], [9, 10]]], "int32"),
    ...          "target_mask": np.ones((1, 2, 2), bool)}
    >>> tuple(predictor(np.zeros((1, 3, 16), "float32"), masks).shape)
    (1, 2, 2, 16)

    References:
        - [Bar et al., 2024, StoP](https://arxiv.org/abs/2308.00566)
        - [Assran et al., 2023, I-JEPA](https://arxiv.org/abs/2301.08243)
    """

    def __init__(
        self,
        encoder_dim,
        hidden_dim=384,
        depth=6,
        num_heads=12,
        grid_size=(14, 14),
        positional_noise="stop",
        sigma=0.25,
        covariance="tied",
        noise_rank=None,
        noise_on="masked",
        mlp_ratio=4.0,
        qkv_bias=True,
        layer_norm_epsilon=1e-6,
        depth_scaled_init=False,
        seed=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "jepa_predictor")
        super().__init__(**kwargs)
        check_one_of("positional_noise", positional_noise, POSITIONAL_NOISE)
        if covariance not in COVARIANCES or covariance == "none":
            raise ValueError(
                "`covariance` must be one of ('tied', 'learned', 'low_rank', 'isotropic'); "
                f"use positional_noise='none' for I-JEPA. Received: covariance={covariance!r}"
            )
        check_one_of("noise_on", noise_on, NOISE_ON)
        if positional_noise == "none" and noise_on != "masked":
            raise ValueError(
                "`noise_on` places StoP noise; with positional_noise='none' (I-JEPA) there is "
                f"none. Received: noise_on={noise_on!r}"
            )
        self.encoder_dim = int(encoder_dim)
        self.hidden_dim = int(hidden_dim)
        self.depth = check_int("depth", depth, minimum=1)
        self.num_heads = int(num_heads)
        self.grid_size = _as_grid(grid_size)
        self.positional_noise = positional_noise
        self.sigma = float(sigma)
        self.covariance = covariance
        self.noise_rank = noise_rank
        self.noise_on = noise_on
        self.mlp_ratio = check_float("mlp_ratio", mlp_ratio, minimum=0, exclusive_minimum=True)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_epsilon = check_float(
            "layer_norm_epsilon", layer_norm_epsilon, minimum=0, exclusive_minimum=True
        )
        self.depth_scaled_init = bool(depth_scaled_init)
        self.seed = seed

        normal = keras.initializers.RandomNormal(stddev=0.02)
        self.context_projection = keras.layers.Dense(
            hidden_dim, kernel_initializer=normal, dtype=self.dtype_policy, name="context_projection"
        )
        self.masked_token_embedding = StochasticPositionalEmbedding(
            sigma=sigma,
            covariance=covariance if positional_noise == "stop" else "none",
            noise_dim=self.encoder_dim if covariance in ("tied", "learned") else None,
            rank=noise_rank,
            seed=seed,
            dtype=self.dtype_policy,
            name="masked_token_embedding",
        )
        self.blocks, self.norm = transformer_stack(
            hidden_dim,
            depth,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            layer_norm_epsilon=layer_norm_epsilon,
            depth_scaled_init=depth_scaled_init,
            dtype=self.dtype_policy,
        )
        self.output_projection = keras.layers.Dense(
            encoder_dim, kernel_initializer=normal, dtype=self.dtype_policy, name="output_projection"
        )

    def build(self, context_shape, masks_shape=None):
        num_patches = self.grid_size[0] * self.grid_size[1]
        table = sincos_2d_positional_embedding(self.grid_size, self.hidden_dim)
        self.positional_embedding = self.add_weight(
            name="positional_embedding",
            shape=(num_patches, self.hidden_dim),
            initializer=keras.initializers.Constant(table),
            trainable=False,
        )
        self.context_projection.build((None, None, self.encoder_dim))
        self.masked_token_embedding.build((None, None, self.hidden_dim))
        build_transformer_stack(self.blocks, self.norm, (None, None, self.hidden_dim))
        self.output_projection.build((None, None, self.hidden_dim))
        self.built = True

    def call(self, context, masks, training=None):
        context_indices = ops.cast(masks["context_indices"], "int32")
        context_mask = ops.cast(masks["context_mask"], "bool")
        target_indices = ops.cast(masks["target_indices"], "int32")
        target_mask = ops.cast(masks["target_mask"], "bool")
        b, kc = ops.shape(context_indices)[0], ops.shape(context_indices)[1]
        _, m, kt = ops.shape(target_indices)
        psi = ops.cast(self.positional_embedding, self.compute_dtype)

        psi_context = ops.take(psi, context_indices, axis=0)
        x = self.context_projection(context) + psi_context
        if self.noise_on != "masked":
            x = x + self.masked_token_embedding.noise_shift(
                psi_context, projection=self.context_projection, training=training
            )
        targets = self.masked_token_embedding(
            ops.take(psi, target_indices, axis=0),  # (B, M, Kt, Dp)
            projection=self.context_projection,
            training=training if self.noise_on != "context" else False,
        )
        # One pass for all M blocks: B * M sequences of [context (Kc); block m (Kt)].
        x = ops.broadcast_to(x[:, None], (b, m, kc, self.hidden_dim))
        tokens = ops.concatenate([x, targets], axis=2)
        tokens = ops.reshape(tokens, (b * m, kc + kt, self.hidden_dim))
        keep = ops.concatenate(
            [ops.broadcast_to(context_mask[:, None], (b, m, kc)), target_mask], axis=2
        )
        keep = ops.reshape(keep, (b * m, kc + kt))
        # Only the target slots' outputs are used, so the last block computes only
        # theirs. Padded slots are zeroed once, at the output.
        tokens = run_blocks(self.blocks, tokens, padding_mask=keep, outputs_from=kc)[-1]
        out = self.output_projection(self.norm(tokens))
        out = ops.reshape(out, (b, m, kt, self.encoder_dim))
        return ops.where(target_mask[..., None], out, ops.zeros_like(out))

    def compute_output_spec(self, context, masks, training=None):
        t = masks["target_indices"].shape
        return keras.KerasTensor((t[0], t[1], t[2], self.encoder_dim), dtype=self.compute_dtype)

    def get_config(self):
        return model_config(
            self,
            "encoder_dim",
            "hidden_dim",
            "depth",
            "num_heads",
            "grid_size",
            "positional_noise",
            "sigma",
            "covariance",
            "noise_rank",
            "noise_on",
            "mlp_ratio",
            "qkv_bias",
            "layer_norm_epsilon",
            "depth_scaled_init",
            "seed",
        )
