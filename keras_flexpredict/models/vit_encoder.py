"""The ViT encoder of I-JEPA / StoP (no class token, fixed sin-cos positions)."""

import copy

import keras
from keras import ops

from keras_flexpredict.layers.patch_embedding import PatchEmbedding
from keras_flexpredict.layers.sincos_positional_embedding import SinCosPositionalEmbedding
from keras_flexpredict.layers.transformer_block import TransformerBlock
from keras_flexpredict.layers.transformer_block import check_positive_float
from keras_flexpredict.models.vit_presets import VIT_PRESETS


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class ViTEncoder(keras.Model):
    """ViT without class token: patchify, add sin-cos PE, optionally keep only the
    context tokens, pre-LN blocks, final LayerNorm.

    With `context_indices` the tokens are gathered *after* the positional embedding is
    added (so each keeps its position), and slots whose `context_mask` is False are
    padding: they are never attended to and come out as zeros.

    Args:
        image_size: int or `(h, w)`. Input resolution; multiple of `patch_size`.
        patch_size: int. Defaults to 16.
        hidden_dim: int. Token width `De`. Defaults to 768.
        depth: int. Number of blocks. Defaults to 12.
        num_heads: int. Defaults to 12.
        mlp_ratio: float. Defaults to 4.
        qkv_bias: bool. Defaults to True.
        layer_norm_epsilon: float. Defaults to 1e-6.
        depth_scaled_init: bool. Divide the attention-output and second-MLP kernels of
            block `l` (from 1) by `sqrt(2 l)` as the reference model classes do. Off by
            default: the official training scripts re-initialise every linear layer
            afterwards, so the paper's runs trained without it.
        num_channels: int. Defaults to 3.

    Call arguments:
        images: `(batch, h, w, num_channels)`.
        context_indices: optional int32 `(batch, Kc)` patch indices (row-major) to keep.
        context_mask: optional bool `(batch, Kc)`, True for real tokens.
        last_n_layers: int. 1 returns the last layer's tokens; `n > 1` returns a list of
            the last `n` blocks' tokens (earliest first), each through the final norm.

    Returns:
        `(batch, N or Kc, hidden_dim)`, or a list of them.

    Example:
    >>> encoder = ViTEncoder(image_size=32, patch_size=8, hidden_dim=16, depth=2, num_heads=2)
    >>> encoder(np.zeros((2, 32, 32, 3), "float32")).shape
    (2, 16, 16)
    >>> idx = np.array([[0, 5, 7], [1, 2, 3]], "int32")
    >>> encoder(np.zeros((2, 32, 32, 3), "float32"), context_indices=idx).shape
    (2, 3, 16)

    References:
        - [Assran et al., 2023, I-JEPA](https://arxiv.org/abs/2301.08243)
        - [Dosovitskiy et al., 2020, ViT](https://arxiv.org/abs/2010.11929)
    """

    def __init__(
        self,
        image_size=224,
        patch_size=16,
        hidden_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        layer_norm_epsilon=1e-6,
        depth_scaled_init=False,
        num_channels=3,
        **kwargs,
    ):
        kwargs.setdefault("name", "vit_encoder")
        super().__init__(**kwargs)
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        image_size = tuple(int(s) for s in image_size)
        for axis, size in zip(("height", "width"), image_size):
            if size % patch_size:
                raise ValueError(
                    f"Image {axis} must be divisible by the patch size. Received: "
                    f"image_size={image_size}, patch_size={patch_size}"
                )
        if depth < 1:
            raise ValueError(f"`depth` must be >= 1. Received: depth={depth}")
        self.image_size = image_size
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_ratio = check_positive_float("mlp_ratio", mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_epsilon = check_positive_float("layer_norm_epsilon", layer_norm_epsilon)
        self.depth_scaled_init = bool(depth_scaled_init)
        self.num_channels = int(num_channels)
        self.grid_size = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

        self.patch_embedding = PatchEmbedding(
            patch_size, hidden_dim, dtype=self.dtype_policy, name="patch_embedding"
        )
        self.positional_embedding = SinCosPositionalEmbedding(
            self.grid_size, hidden_dim, dtype=self.dtype_policy, name="positional_embedding"
        )
        self.blocks = [
            TransformerBlock(
                hidden_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                layer_norm_epsilon=layer_norm_epsilon,
                output_kernel_scale=(2.0 * (i + 1)) ** -0.5 if depth_scaled_init else 1.0,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(depth)
        ]
        self.norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="norm"
        )

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Builds a randomly initialised encoder of a standard size, e.g.
        `"vit_base_patch16_224"`; `kwargs` override the preset's arguments."""
        if preset not in VIT_PRESETS:
            raise ValueError(
                f"Unknown preset. Choose one of {sorted(VIT_PRESETS)}. Received: preset={preset!r}"
            )
        config = copy.deepcopy(VIT_PRESETS[preset])
        config.update(kwargs)
        return cls(**config)

    @classmethod
    def presets(cls):
        return sorted(VIT_PRESETS)

    def build(self, images_shape):
        images_shape = tuple(images_shape)
        expected = (*self.image_size, self.num_channels)
        if len(images_shape) != 4 or tuple(images_shape[1:]) != expected:
            raise ValueError(
                f"ViTEncoder expects images of shape (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}). Received: shape={images_shape}"
            )
        self.patch_embedding.build(images_shape)
        token_shape = (images_shape[0], self.num_patches, self.hidden_dim)
        self.positional_embedding.build(token_shape)
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        self.built = True

    def call(self, images, context_indices=None, context_mask=None, last_n_layers=1, training=None):
        if not 1 <= last_n_layers <= self.depth:
            raise ValueError(
                f"`last_n_layers` must be in [1, {self.depth}]. Received: last_n_layers={last_n_layers}"
            )
        x = self.positional_embedding(self.patch_embedding(images))
        if context_indices is not None:
            idx = ops.cast(context_indices, "int32")
            x = ops.take_along_axis(x, idx[..., None], axis=1)
        elif context_mask is not None:
            raise ValueError("`context_mask` needs `context_indices`.")
        outputs = []
        for i, block in enumerate(self.blocks):
            # Padded slots are zeroed once, by the final norm.
            x = block(x, padding_mask=context_mask, zero_padding=False)
            if i >= self.depth - last_n_layers:
                outputs.append(self._final_norm(x, context_mask))
        return outputs[0] if last_n_layers == 1 else outputs

    def _final_norm(self, x, mask):
        x = self.norm(x)
        if mask is not None:
            x = ops.where(ops.cast(mask, "bool")[..., None], x, ops.zeros_like(x))
        return x

    def compute_output_spec(self, images, context_indices=None, context_mask=None, last_n_layers=1, training=None):
        n = self.num_patches if context_indices is None else context_indices.shape[1]
        spec = keras.KerasTensor((images.shape[0], n, self.hidden_dim), dtype=self.compute_dtype)
        return spec if last_n_layers == 1 else [spec] * last_n_layers

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "depth_scaled_init": self.depth_scaled_init,
            "num_channels": self.num_channels,
        }
