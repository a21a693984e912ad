"""The ViT encoder of I-JEPA / StoP (no class token, fixed sin-cos positions)."""

import copy

import keras
from keras import ops

from keras_flexpredict.layers.patch_embedding import PatchEmbedding
from keras_flexpredict.layers.sincos_positional_embedding import SinCosPositionalEmbedding
from keras_flexpredict.layers.transformer_stack import build_transformer_stack
from keras_flexpredict.layers.transformer_stack import run_blocks
from keras_flexpredict.layers.transformer_stack import transformer_stack
from keras_flexpredict.utils.model_config import model_config
from keras_flexpredict.utils.rematerialization import RematerializedBySublayers
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int
from keras_flexpredict.models.vit_presets import VIT_PRESETS


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class ViTEncoder(RematerializedBySublayers, keras.Model):
    """ViT without class token: patchify, add sin-cos PE, optionally keep only the
    context tokens, pre-LN blocks, final LayerNorm.

    With `context_indices` the tokens are gathered *after* the positional embedding is
    added (so each keeps its position), and slots whose `context_mask` is False are
    padding: they are never attended to and come out as zeros.

    Pretrained weights: `from_official_checkpoint` (the official I-JEPA / StoP
    `.pth.tar`), `from_preset` (preset folders, Hugging Face I-JEPA folders, `hf://`);
    `save_to_preset` writes a shareable folder (docs/pretrained.md).

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
    >>> tuple(encoder(np.zeros((2, 32, 32, 3), "float32")).shape)
    (2, 16, 16)
    >>> idx = np.array([[0, 5, 7], [1, 2, 3]], "int32")
    >>> tuple(encoder(np.zeros((2, 32, 32, 3), "float32"), context_indices=idx).shape)
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
        self.image_size = image_size
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.depth = check_int("depth", depth, minimum=1)
        self.num_heads = int(num_heads)
        self.mlp_ratio = check_float("mlp_ratio", mlp_ratio, minimum=0, exclusive_minimum=True)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_epsilon = check_float(
            "layer_norm_epsilon", layer_norm_epsilon, minimum=0, exclusive_minimum=True
        )
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

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """An encoder of a standard size or with pretrained weights.

        `preset` is one of:
        - a size name, e.g. `"vit_base_patch16_224"` (`ViTEncoder.presets()`): random
          weights, `kwargs` override its constructor arguments;
        - a preset folder written by `save_to_preset` (also a `FlexPredict` one: its
          target encoder);
        - a Hugging Face `IJepaModel` folder (`config.json` + `model.safetensors`, the
          layout of `facebook/ijepa_vith14_1k`), or an `hf://<owner>/<name>` handle
          where the network allows;
        - an official I-JEPA / StoP `.pth.tar` (as `from_official_checkpoint`), or a
          `.keras` file.

        For pretrained sources `kwargs` may hold `image_size` (load at another
        resolution: a sin-cos table is recomputed for the new grid, any other table
        resampled bicubically), `which` (`"target_encoder"` or `"encoder"`), `verbose`,
        and for conversions other constructor arguments. See docs/pretrained.md.
        """
        if isinstance(preset, str) and preset in VIT_PRESETS:
            config = copy.deepcopy(VIT_PRESETS[preset])
            config.update(kwargs)
            return cls(**config)
        from keras_flexpredict.convert.sources import load_encoder

        try:
            return load_encoder(preset, **kwargs)
        except ValueError as e:
            if "Unknown model source" in str(e):
                raise ValueError(f"{e} Preset names: {sorted(VIT_PRESETS)}.") from None
            raise

    @classmethod
    def presets(cls):
        return sorted(VIT_PRESETS)

    @classmethod
    def from_official_checkpoint(cls, path, which="target_encoder", num_heads=None, image_size=None, verbose=True, **overrides):
        """An encoder of an official I-JEPA / StoP `.pth.tar` checkpoint.

        The architecture is read from the tensors (patch, width, depth, MLP width,
        grid); the heads from the width (192: 3, 384: 6, 768: 12, 1024 / 1280 / 1408:
        16) or `num_heads`. A missing, extra or mis-shaped key raises before any model
        is built. Needs PyTorch to read the file (any Keras backend).

        Args:
            path: the checkpoint (keys `encoder`, `predictor`, `target_encoder`, with or
                without DDP's `module.` prefix; or a bare encoder state dict).
            which: `"target_encoder"` (the EMA teacher, evaluated in the papers) or
                `"encoder"`. Defaults to `"target_encoder"`.
            num_heads: int or None.
            image_size: int, `(h, w)` or None (the checkpoint's resolution).
            verbose: bool. Progress bar. Defaults to True.
            **overrides: other constructor arguments (e.g. `layer_norm_epsilon`).

        Example:
        >>> encoder = ViTEncoder.from_official_checkpoint(  # doctest: +SKIP
        ...     "IN1K-vit.h.14-300e.pth.tar")
        >>> encoder(images).shape  # doctest: +SKIP
        (8, 256, 1280)
        """
        from keras_flexpredict.convert.official import official_encoder

        return official_encoder(
            path, which=which, num_heads=num_heads, image_size=image_size, verbose=verbose, **overrides
        )

    def save_to_preset(self, directory):
        """Writes the encoder as a preset folder (`config.json`, `model.weights.h5`,
        `metadata.json`, the keras-hub layout), atomically; reload it on any backend
        with `ViTEncoder.from_preset(directory)`.

        Example:
        >>> import tempfile
        >>> encoder = ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
        >>> folder = encoder.save_to_preset(tempfile.mkdtemp() + "/tiny")
        >>> ViTEncoder.from_preset(folder).hidden_dim
        8
        """
        from keras_flexpredict.models.preset_io import save_preset

        if not self.built:
            self.build((None, *self.image_size, self.num_channels))
        return save_preset(self, directory)

    def with_image_size(self, image_size):
        """A copy of this encoder (same weights, trainable) for another input
        resolution: the positional table is recomputed when it is the sin-cos table,
        resampled bicubically otherwise.

        Example:
        >>> encoder = ViTEncoder(image_size=32, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
        >>> tuple(encoder.with_image_size(48)(np.zeros((1, 48, 48, 3), "float32")).shape)
        (1, 36, 8)
        """
        from keras_flexpredict.convert.positional_tables import positional_table_for_grid

        if not self.built:
            self.build((None, *self.image_size, self.num_channels))
        config = dict(self.get_config(), image_size=image_size, trainable=True)
        clone = ViTEncoder.from_config(config)
        clone.build((None, *clone.image_size, clone.num_channels))
        table = self.positional_embedding.embeddings
        for source, target in zip(self.weights, clone.weights):
            if source is table:
                value, _ = positional_table_for_grid(
                    ops.convert_to_numpy(source.value), self.grid_size, clone.grid_size
                )
            else:
                value = ops.convert_to_numpy(source.value)
            target.assign(value)
        return clone

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
        build_transformer_stack(self.blocks, self.norm, token_shape)
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
        # Padded slots are zeroed once, by the final norm.
        outputs = [
            self._final_norm(tokens, context_mask)
            for tokens in run_blocks(self.blocks, x, padding_mask=context_mask, last_n=last_n_layers)
        ]
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
        return {**model_config(self), **self.architecture()}

    def architecture(self):
        """The constructor arguments that define this encoder's shape and arithmetic
        (everything in `get_config` except `name`, `trainable` and `dtype`).

        `ViTEncoder(**encoder.architecture(), dtype=encoder.dtype_policy)` builds an
        untrained twin. Unlike `get_config`, it serialises nothing: Keras's serialiser
        imports TensorFlow whenever it is installed (about 0.4 GiB of RSS and two
        seconds on the JAX and torch backends).

        Example:
        >>> encoder = ViTEncoder(image_size=32, patch_size=8, hidden_dim=16, depth=1, num_heads=2)
        >>> ViTEncoder(**encoder.architecture()).num_patches
        16
        """
        return {
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
