"""Fine-tuning a pretrained encoder: `ViTEncoder` + token pooling + linear head."""

import keras
from keras import ops

from keras_flexpredict.models.vit_encoder import ViTEncoder
from keras_flexpredict.utils.model_config import model_config
from keras_flexpredict.utils.rematerialization import RematerializedBySublayers
from keras_flexpredict.utils.validation import check_one_of

POOLINGS = ("mean", "max")


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class ViTClassifier(RematerializedBySublayers, keras.Model):
    """An image classifier on a (pretrained) `ViTEncoder`, keras-hub task style.

    The encoder's tokens (I-JEPA / StoP encoders have no class token) are pooled
    over the patches (mean, as the papers' probes; or max), optionally the last
    `last_n_layers` blocks concatenated, then dropout and one linear
    layer. The whole encoder trains unless `freeze_encoder=True`.

    Args:
        encoder: a `ViTEncoder` (or its config).
        num_classes: int.
        pooling: `"mean"` or `"max"`. Defaults to `"mean"`.
        last_n_layers: int. Concatenate the pooled tokens of the last n blocks.
            Defaults to 1.
        dropout: float. Dropout before the head. Defaults to 0.
        freeze_encoder: bool. Train the head only (a linear probe). Defaults to False.

    Call arguments:
        images: `(batch, h, w, channels)`, normalised as in pretraining.

    Returns:
        Logits `(batch, num_classes)`.

    Example:
    >>> encoder = ViTEncoder(image_size=32, patch_size=8, hidden_dim=16, depth=1, num_heads=2)
    >>> classifier = ViTClassifier(encoder, num_classes=3)
    >>> classifier.compile()
    >>> images, labels = np.random.rand(4, 32, 32, 3).astype("float32"), np.array([0, 1, 2, 0])
    >>> _ = classifier.fit(images, labels, epochs=1, verbose=0)
    >>> classifier.predict(images, verbose=0).shape
    (4, 3)
    """

    def __init__(
        self, encoder, num_classes, pooling="mean", last_n_layers=1, dropout=0.0, freeze_encoder=False, **kwargs
    ):
        kwargs.setdefault("name", "vit_classifier")
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder) if "class_name" in encoder else ViTEncoder(**encoder)
        if not isinstance(encoder, ViTEncoder):
            raise ValueError(f"`encoder` must be a ViTEncoder. Received: encoder={encoder!r}")
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1. Received: num_classes={num_classes}")
        check_one_of("pooling", pooling, POOLINGS)
        if not 1 <= int(last_n_layers) <= encoder.depth:
            raise ValueError(
                f"`last_n_layers` must be in [1, {encoder.depth}]. Received: last_n_layers={last_n_layers}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.last_n_layers = int(last_n_layers)
        self.dropout = float(dropout)
        self.freeze_encoder = bool(freeze_encoder)
        self.encoder.trainable = not self.freeze_encoder
        self.head_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="head_dropout")
        self.head = keras.layers.Dense(
            self.num_classes, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=self.dtype_policy, name="head",
        )
        self.build((None, *encoder.image_size, encoder.num_channels))

    @classmethod
    def from_preset(cls, preset, num_classes, pooling="mean", last_n_layers=1, dropout=0.0,
                    freeze_encoder=False, **kwargs):
        """A classifier on the encoder of any `ViTEncoder.from_preset` source (a
        preset folder, a Hugging Face I-JEPA folder or `hf://` handle, an official
        `.pth.tar`, a `.keras` file or a size name), or a classifier preset folder
        written by `save_to_preset`. `kwargs` go to `ViTEncoder.from_preset` (e.g.
        `image_size`, `which`, `num_heads`)."""
        from keras_flexpredict.models.preset_io import is_preset_directory
        from keras_flexpredict.models.preset_io import load_preset
        from keras_flexpredict.models.preset_io import read_preset_config

        if isinstance(preset, str) and is_preset_directory(preset):
            if read_preset_config(preset).get("class_name") == cls.__name__:
                return load_preset(preset)
        encoder = ViTEncoder.from_preset(preset, **kwargs)
        return cls(encoder, num_classes, pooling=pooling, last_n_layers=last_n_layers,
                   dropout=dropout, freeze_encoder=freeze_encoder)

    def build(self, images_shape):
        if not self.encoder.built:
            self.encoder.build(images_shape)
        self.head.build((None, self.encoder.hidden_dim * self.last_n_layers))
        self.built = True

    def call(self, images, training=None):
        tokens = self.encoder(images, last_n_layers=self.last_n_layers, training=training)
        tokens = tokens if isinstance(tokens, (list, tuple)) else [tokens]
        reduce = ops.mean if self.pooling == "mean" else ops.max
        features = ops.concatenate([reduce(t, axis=1) for t in tokens], axis=-1)
        return self.head(self.head_dropout(features, training=training))

    def compute_output_spec(self, images, training=None):
        return keras.KerasTensor((images.shape[0], self.num_classes), dtype=self.compute_dtype)

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """As `keras.Model.compile`, with fine-tuning defaults: AdamW (learning rate
        1e-4, weight decay 0.05), sparse categorical cross-entropy on logits, and
        sparse categorical accuracy."""
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.05)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def save_to_preset(self, directory):
        """Writes the classifier as a preset folder (keras-hub layout), atomically;
        reload with `ViTClassifier.from_preset(directory, num_classes)`."""
        from keras_flexpredict.models.preset_io import save_preset

        return save_preset(self, directory)

    def get_config(self):
        return model_config(
            self, "encoder", "num_classes", "pooling", "last_n_layers", "dropout", "freeze_encoder"
        )

    @classmethod
    def from_config(cls, config):
        return cls(**dict(config))
