"""A linear classifier on top of a frozen encoder (VISSL-style linear evaluation)."""

import math

import keras
from keras import ops

from keras_flexpredict.evaluation.feature_extraction import _POOLINGS
from keras_flexpredict.evaluation.feature_extraction import _encode_and_pool
from keras_flexpredict.utils.model_config import model_config
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int
from keras_flexpredict.utils.validation import check_one_of


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class FrozenEncoderClassifier(keras.Model):
    """Frozen encoder, pooled tokens, optional BatchNorm, one linear layer.

    The head of VISSL's linear benchmark for ViTs without class token (the
    `vit_{b,l,h}16_no_cls` configs that StoP's `bash/in1k_eval_vissl.sh` runs):
    the encoder runs in inference mode (`training=False`) and receives no
    gradient; its last layer's tokens are mean-pooled (VISSL's `lastPOOL`;
    `last_n_layers=4` concatenates the last four, `concatPOOL4`); the `eval_mlp`
    head is a BatchNorm over the features (affine, eps 1e-5, PyTorch momentum
    0.1 = Keras momentum 0.9) and a `Dense(num_classes)`; VISSL's plain `mlp`
    head is `batch_norm=False`. The Dense starts as PyTorch's `nn.Linear`
    (kernel and bias uniform in `+-1/sqrt(fan_in)`). `weight_decay` is PyTorch
    SGD's coupled weight decay: an L2 loss `(weight_decay / 2) * ||w||^2` on the
    Dense kernel and bias (VISSL `regularize_bias: True`), none on the BatchNorm
    parameters (`regularize_bn: False`).

    Train it with `fit` on augmented images (see `augmented_linear_probe` and
    `keras_flexpredict.data.vissl_train_transform`): every epoch sees new crops
    through the frozen encoder. Setting `encoder.trainable = False` is done here.

    Args:
        encoder: a Keras model called as `encoder(images, training=False)` that
            returns tokens `(batch, tokens, dim)` (with `last_n_layers > 1`, as
            `encoder(images, last_n_layers=n, training=False)` returning a list
            of n such tensors), e.g. `kfp.models.ViTEncoder`. It is frozen.
        num_classes: int. Number of classes.
        pooling: `"mean"` or `"max"` over tokens. Defaults to `"mean"`.
        last_n_layers: int. Pool and concatenate the last n layers. Defaults to `1`.
        batch_norm: bool. BatchNorm before the linear layer (VISSL `eval_mlp`).
            Defaults to `True`.
        weight_decay: float. Coupled L2 weight decay of the linear layer.
            Defaults to `5e-4` (VISSL's linear benchmark).
        seed: int. Seed of the linear layer's initial weights. Defaults to `0`.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`, normalised as
            in pretraining.
        training: bool. Batch statistics in the BatchNorm when True.

    Returns:
        Logits `(batch, num_classes)`, float32.

    Example:

    >>> encoder = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Reshape((16, 12))])
    >>> model = FrozenEncoderClassifier(encoder, num_classes=5)
    >>> tuple(model(np.zeros((2, 8, 8, 3), "float32")).shape)
    (2, 5)

    References:
        - [Goyal et al., VISSL, 2021](https://github.com/facebookresearch/vissl)
        - [Bar et al., Stochastic positional embeddings improve masked image
          modeling (StoP), 2024](https://arxiv.org/abs/2308.00566)
    """

    def __init__(
        self,
        encoder,
        num_classes,
        pooling="mean",
        last_n_layers=1,
        batch_norm=True,
        weight_decay=5e-4,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes = check_int("num_classes", num_classes, minimum=1)
        check_one_of("pooling", pooling, _POOLINGS)
        last_n_layers = check_int("last_n_layers", last_n_layers, minimum=1)
        weight_decay = check_float("weight_decay", weight_decay, minimum=0, allow_string=False)
        self.encoder = encoder
        self.encoder.trainable = False
        self.num_classes = num_classes
        self.pooling = pooling
        self.last_n_layers = last_n_layers
        self.batch_norm = bool(batch_norm)
        self.weight_decay = float(weight_decay)
        self.seed = seed
        regularizer = keras.regularizers.L2(self.weight_decay / 2.0) if self.weight_decay else None
        self.feature_norm = (
            keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype="float32", name="feature_norm")
            if self.batch_norm
            else None
        )
        self.classifier = keras.layers.Dense(
            num_classes,
            # PyTorch nn.Linear: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
            kernel_initializer=keras.initializers.VarianceScaling(
                scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed
            ),
            kernel_regularizer=regularizer,
            bias_regularizer=regularizer,
            dtype="float32",
            name="classifier",
        )

    def _features(self, images):
        features = _encode_and_pool(self.encoder, images, self.pooling, self.last_n_layers)
        return ops.stop_gradient(features)

    def build(self, images_shape):
        images_shape = tuple(images_shape)
        if not self.encoder.built:
            self.encoder.build(images_shape)
        # A symbolic pass gives the feature width (encoder width x last_n_layers).
        spec = self._features(keras.KerasTensor(images_shape, "float32"))
        num_features = int(spec.shape[-1])
        if self.feature_norm is not None:
            self.feature_norm.build((None, num_features))
        bound = 1.0 / math.sqrt(num_features)
        self.classifier.bias_initializer = keras.initializers.RandomUniform(-bound, bound, seed=self.seed + 1)
        self.classifier.build((None, num_features))
        self.built = True

    def call(self, images, training=None):
        features = self._features(images)
        if self.feature_norm is not None:
            features = self.feature_norm(features, training=training)
        return self.classifier(features)

    def get_config(self):
        return model_config(
            self, "encoder", "num_classes", "pooling", "last_n_layers", "batch_norm", "weight_decay", "seed"
        )

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
