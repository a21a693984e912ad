"""Synthetic features and a tiny stand-in encoder for the evaluation tests."""

import keras
import numpy as np
from keras import ops


def separable_features(num_classes=10, dim=32, num_train=400, num_test=200, seed=0):
    """Gaussian blobs around well-separated class centres: linearly separable."""
    rng = np.random.default_rng(seed)
    centers = 4.0 * rng.normal(size=(num_classes, dim))
    y_train = np.arange(num_train) % num_classes
    y_test = np.arange(num_test) % num_classes
    rng.shuffle(y_train)
    x_train = centers[y_train] + rng.normal(size=(num_train, dim))
    x_test = centers[y_test] + rng.normal(size=(num_test, dim))
    return (
        x_train.astype("float32"),
        y_train.astype("int64"),
        x_test.astype("float32"),
        y_test.astype("int64"),
    )


def random_label_features(num_classes=10, dim=32, num_train=400, num_test=300, seed=0):
    """Features independent of their labels: nothing to learn, chance = 1 / num_classes."""
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(num_train, dim)).astype("float32"),
        rng.integers(0, num_classes, size=num_train),
        rng.normal(size=(num_test, dim)).astype("float32"),
        rng.integers(0, num_classes, size=num_test),
    )


@keras.saving.register_keras_serializable(package="kfp_evaluation_test")
class StandInEncoder(keras.Model):
    """Patchify + Dense + `depth` residual Dense blocks, each output through a shared
    final LayerNorm: the call signature of `kfp.models.ViTEncoder`.

    `trace_count` counts Python executions of `call` (once per trace under jit).
    """

    def __init__(self, image_size=8, patch_size=4, hidden_dim=8, depth=4, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.depth = depth
        self.trace_count = 0
        self.projection = keras.layers.Dense(hidden_dim, dtype=self.dtype_policy, name="projection")
        self.blocks = [
            keras.layers.Dense(hidden_dim, dtype=self.dtype_policy, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=self.dtype_policy, name="norm")

    def build(self, images_shape):
        channels = images_shape[-1]
        self.projection.build((None, None, self.patch_size * self.patch_size * channels))
        for block in self.blocks:
            block.build((None, None, self.hidden_dim))
        self.norm.build((None, None, self.hidden_dim))
        self.built = True

    def call(self, images, last_n_layers=1, training=None):
        self.trace_count += 1
        p = self.patch_size
        height, width, channels = images.shape[1:]
        x = ops.reshape(images, (-1, height // p, p, width // p, p, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        x = ops.reshape(x, (-1, (height // p) * (width // p), p * p * channels))
        x = self.projection(x)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = x + ops.tanh(block(x))
            if i >= self.depth - last_n_layers:
                outputs.append(self.norm(x))
        return outputs[0] if last_n_layers == 1 else outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_dim=self.hidden_dim,
            depth=self.depth,
        )
        return config
