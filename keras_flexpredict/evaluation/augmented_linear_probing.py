"""Linear probe trained through the frozen encoder on augmented images (VISSL set-up)."""

import keras

from keras_flexpredict.evaluation import _checks
from keras_flexpredict.evaluation.frozen_encoder_classifier import FrozenEncoderClassifier
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int


def _check_milestones(lr_milestones):
    try:
        milestones = tuple(lr_milestones)
    except TypeError:
        milestones = None
    if milestones is None or any(
        isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones
    ) or list(milestones) != sorted(set(milestones)):
        raise ValueError(
            "`lr_milestones` must be an increasing sequence of positive epoch numbers. "
            f"Received: lr_milestones={lr_milestones}"
        )
    return milestones


def multistep_learning_rate(epoch, lr, lr_milestones, lr_decay):
    """VISSL's `multistep` schedule (update per epoch): `lr * lr_decay ** k` during
    epoch `epoch` (0-based), k the number of milestones at or before it.

    Example:

    >>> [multistep_learning_rate(e, 0.01, (8, 16, 24), 0.1) for e in (0, 7, 8, 24)]
    [0.01, 0.01, 0.001, 1e-05]
    """
    k = sum(1 for m in lr_milestones if epoch >= m)
    return float(f"{lr * lr_decay**k:.12g}")


def augmented_linear_probe(
    encoder,
    train_data,
    test_data,
    num_classes,
    epochs=28,
    lr=0.01,
    lr_milestones=(8, 16, 24),
    lr_decay=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    batch_norm=True,
    pooling="mean",
    last_n_layers=1,
    seed=0,
    verbose=0,
):
    """Linear probe as StoP's official 100% evaluation (VISSL), with `model.fit`.

    Builds a `FrozenEncoderClassifier` (frozen encoder in inference mode,
    mean-pooled last-layer tokens, BatchNorm, `Dense(num_classes)`) and trains
    it on `train_data`, whose images must carry the random training
    augmentation (e.g. `image_folder_dataset(..., training=True,
    transform="vissl_train")`: RandomResizedCrop 0.08-1 bicubic + horizontal
    flip), so every epoch sends new crops through the frozen encoder. Unlike
    `linear_probe`, nothing is precomputed: each step runs the encoder.

    The defaults are VISSL's `eval_resnet_8gpu_transfer_in1k_linear` config with
    the `vit_b16_no_cls` / `vit_l16_no_cls` overrides, as StoP's
    `bash/in1k_eval_vissl.sh` launches it: SGD with Nesterov momentum 0.9,
    coupled weight decay 5e-4 on the linear weight and bias (none on the
    BatchNorm), 28 epochs, learning rate 0.01 (VISSL's base value at global batch
    256 = 32 per GPU x 8 GPUs; VISSL scales it linearly with the global batch,
    so pass `lr=0.01 * batch / 256` for another batch size), divided by 10 at
    epochs 8, 16 and 24, softmax cross-entropy; test images resized to 256
    (bicubic) and centre-cropped to 224 (`"vissl_eval"`).

    Args:
        encoder: the encoder to probe (see `FrozenEncoderClassifier`); frozen.
        train_data: a `tf.data.Dataset` (or anything `fit` takes) of
            `(images, labels)` batches with random augmentation, one pass = one
            epoch.
        test_data: the same for the test split, without augmentation.
        num_classes: int. Number of classes.
        epochs: int. Defaults to `28`.
        lr: float. Initial learning rate. Defaults to `0.01`.
        lr_milestones: increasing ints. Epochs at which the rate is multiplied
            by `lr_decay`. Defaults to `(8, 16, 24)`.
        lr_decay: float in (0, 1]. Defaults to `0.1`.
        momentum: float in [0, 1). Defaults to `0.9`.
        nesterov: bool. Defaults to `True`.
        weight_decay: float. Coupled L2 decay of the linear layer. Defaults to `5e-4`.
        batch_norm: bool. BatchNorm before the linear layer (VISSL `eval_mlp`
            head; False is its plain `mlp` head). Defaults to `True`.
        pooling: `"mean"` or `"max"`. Defaults to `"mean"`.
        last_n_layers: int. 1 is VISSL's `lastPOOL`, 4 its `concatPOOL4`.
            Defaults to `1`.
        seed: int. Seed of the linear layer's initial weights. Defaults to `0`.
        verbose: int. Passed to `fit` and `evaluate`. Defaults to `0`.

    Returns:
        A dict with `"protocol": "linear"`, `"variant": "augmented"`, `"top1"`,
        `"top5"` (more than 5 classes), `"train_loss"` (last epoch),
        `"learning_rates"` (per epoch) and the settings used.

    Example:

    >>> import tensorflow as tf
    >>> from keras_flexpredict.data import procedural_shapes_dataset, vissl_train_transform
    >>> encoder = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Reshape((16, 48))])
    >>> train = procedural_shapes_dataset(32, image_size=16, label="color", batch_size=16,
    ...                                   training=True, transform=vissl_train_transform(16))
    >>> test = procedural_shapes_dataset(16, image_size=16, seed=1, label="color", batch_size=16)
    >>> result = augmented_linear_probe(encoder, train, test, num_classes=8, epochs=2)
    >>> result["learning_rates"], 0.0 <= result["top1"] <= 1.0
    ([0.01, 0.01], True)

    References:
        - [Goyal et al., VISSL, 2021](https://github.com/facebookresearch/vissl)
        - [Bar et al., Stochastic positional embeddings improve masked image
          modeling (StoP), 2024](https://arxiv.org/abs/2308.00566)
    """
    epochs = check_int("epochs", epochs, minimum=1)
    lr = check_float("lr", lr, minimum=0, exclusive_minimum=True, allow_string=False)
    milestones = _check_milestones(lr_milestones)
    lr_decay = check_float("lr_decay", lr_decay, minimum=0, maximum=1, exclusive_minimum=True, allow_string=False)
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must be a number in [0, 1). Received: momentum={momentum}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2 (a probe needs two classes). Received: num_classes={num_classes}"
        )

    model = FrozenEncoderClassifier(
        encoder,
        num_classes,
        pooling=pooling,
        last_n_layers=last_n_layers,
        batch_norm=batch_norm,
        weight_decay=weight_decay,
        seed=seed,
    )
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="top1")]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=float(momentum), nesterov=bool(nesterov)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=metrics,
    )
    learning_rates = []

    def schedule(epoch, current_lr=None):
        value = multistep_learning_rate(epoch, lr, milestones, float(lr_decay))
        learning_rates.append(value)
        return value

    history = model.fit(
        train_data,
        epochs=epochs,
        verbose=verbose,
        callbacks=[keras.callbacks.LearningRateScheduler(schedule)],
        shuffle=False,  # the data set shuffles itself (tf.data)
    )
    evaluation = model.evaluate(test_data, verbose=verbose, return_dict=True)
    result = {"protocol": "linear", "variant": "augmented", "top1": float(evaluation["top1"])}
    if num_classes > 5:
        result["top5"] = float(evaluation["top5"])
    result.update(
        train_loss=float(history.history["loss"][-1]),
        learning_rates=learning_rates,
        epochs=epochs,
        lr=lr,
        lr_milestones=list(milestones),
        lr_decay=float(lr_decay),
        momentum=float(momentum),
        nesterov=bool(nesterov),
        weight_decay=float(weight_decay),
        batch_norm=bool(batch_norm),
        pooling=pooling,
        last_n_layers=int(last_n_layers),
        num_classes=num_classes,
    )
    return result
