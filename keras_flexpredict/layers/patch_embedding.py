"""Patchify an image with a strided convolution."""

import keras
from keras import ops

from keras_flexpredict.utils.rematerialization import RematerializedBySublayers
from keras_flexpredict.utils.validation import check_int


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class PatchEmbedding(RematerializedBySublayers, keras.layers.Layer):
    """Splits images into non-overlapping patches and projects each to `embed_dim`.

    A `Conv2D` with kernel = stride = `patch_size`, flattened to a row-major sequence,
    as the ViT of I-JEPA (`PatchEmbed`). Weights are drawn from N(0, 0.02) (torch's
    `trunc_normal_(std=0.02)` truncates at +-2 absolute, i.e. never at this std), biases 0.

    Args:
        patch_size: int. Side of a square patch.
        embed_dim: int. Output width.

    Call arguments:
        images: `(batch, height, width, channels)` channels-last images; height and width
            must be multiples of `patch_size`.

    Returns:
        `(batch, (height // patch_size) * (width // patch_size), embed_dim)`.

    Example:
    >>> layer = PatchEmbedding(patch_size=4, embed_dim=8)
    >>> tuple(layer(np.zeros((2, 16, 16, 3), "float32")).shape)
    (2, 16, 8)
    """

    def __init__(self, patch_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "PatchEmbedding expects images of rank 4 (batch, height, width, channels). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        for name, size in (("height", input_shape[1]), ("width", input_shape[2])):
            if size is not None and size % self.patch_size:
                raise ValueError(
                    f"Image {name} must be divisible by the patch size. Received: "
                    f"image {name}={size}, patch_size={self.patch_size}"
                )
        self.projection = keras.layers.Conv2D(
            self.embed_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="projection",
        )
        self.projection.build(input_shape)

    def call(self, images):
        x = self.projection(images)
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1] * shape[2], self.embed_dim))

    def compute_output_shape(self, input_shape):
        b, h, w = input_shape[0], input_shape[1], input_shape[2]
        n = None if h is None or w is None else (h // self.patch_size) * (w // self.patch_size)
        return (b, n, self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size, "embed_dim": self.embed_dim})
        return config
