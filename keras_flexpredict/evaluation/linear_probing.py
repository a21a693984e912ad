"""Linear probe: a Keras linear layer trained with `fit` on frozen features."""

import keras
import numpy as np

from keras_flexpredict.evaluation import _checks
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int

_OPTIMIZERS = ("sgd", "adamw")


def _build_probe(num_features, num_classes, batch_norm, seed):
    layers = [keras.Input(shape=(num_features,), dtype="float32")]
    if batch_norm:
        # MAE's linear probe: BatchNorm1d(affine=False, eps=1e-6), PyTorch momentum
        # 0.1 (= Keras momentum 0.9).
        layers.append(
            keras.layers.BatchNormalization(
                center=False,
                scale=False,
                epsilon=1e-6,
                momentum=0.9,
                dtype="float32",
                name="feature_norm",
            )
        )
    layers.append(
        keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01, seed=seed),
            bias_initializer="zeros",
            dtype="float32",
            name="classifier",
        )
    )
    return keras.Sequential(layers, name="linear_probe")


def _build_optimizer(optimizer, lr, weight_decay, total_steps, warmup_steps):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if warmup_steps > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=lr,
            warmup_steps=warmup_steps,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr, decay_steps=max(1, total_steps)
        )
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(
            learning_rate=schedule, momentum=0.9, weight_decay=weight_decay or None
        )
    else:
        opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    if weight_decay:
        # Weight decay applies to the classifier kernel only, never to the bias.
        opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


def linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    epochs=90,
    batch_size=256,
    lr=0.1,
    weight_decay=0.0,
    warmup_epochs=0,
    optimizer="sgd",
    batch_norm=True,
    num_classes=None,
    seed=0,
    verbose=0,
):
    """Trains a linear classifier on frozen features with `model.fit`.

    The probe is `Dense(num_classes)` on the features, by default preceded by a
    BatchNormalization without affine parameters, as in MAE's linear probe: it
    standardises each feature with batch statistics while training (moving
    statistics at test time) and adds no capacity (the map stays linear), so one
    learning rate suits encoders whose features have very different scales. Set
    `batch_norm=False` for a plain linear layer. The classifier kernel starts from a
    truncated normal (std 0.01), the bias from zeros; the loss is softmax
    cross-entropy; the learning rate follows a cosine decay (after an optional
    linear warm-up) over all steps. This is the "100%" protocol of I-JEPA / StoP
    (there: last-layer features of the whole ImageNet training set).

    Args:
        train_features: float array `(N_train, F)`.
        train_labels: int array `(N_train,)` of class ids.
        test_features: float array `(N_test, F)`.
        test_labels: int array `(N_test,)` of class ids.
        epochs: int. Training epochs. Defaults to `90` (MAE).
        batch_size: int. Defaults to `256`.
        lr: float. Peak learning rate. Defaults to `0.1`.
        weight_decay: float. Decoupled weight decay on the kernel. Defaults to `0.0`.
        warmup_epochs: int. Epochs of linear warm-up from 0 to `lr`.
            Defaults to `0`.
        optimizer: `"sgd"` (momentum 0.9), `"adamw"`, or a `keras.optimizers.Optimizer`
            instance (then `lr`, `weight_decay` and `warmup_epochs` are ignored).
            Defaults to `"sgd"`.
        batch_norm: bool. Whether to put a non-affine BatchNormalization in front
            of the linear layer. Defaults to `True`.
        num_classes: int or `None`. `None` infers `max label + 1` over both
            splits. Defaults to `None`.
        seed: int. Seed of the classifier's initial weights. Shuffling follows
            Keras' global seed (`keras.utils.set_random_seed`). Defaults to `0`.
        verbose: int. Passed to `fit`. Defaults to `0`.

    Returns:
        A dict with `"protocol": "linear"`, `"top1"`, `"top5"` (more than 5 classes),
        `"train_loss"` (the last epoch's mean loss) and the settings used.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> centers = 10.0 * rng.normal(size=(3, 8))
    >>> y = np.arange(90) % 3
    >>> x = centers[y] + rng.normal(size=(90, 8))
    >>> linear_probe(x[:60], y[:60], x[60:], y[60:], epochs=20, batch_size=16)["top1"]
    1.0

    References:
        - [He et al., Masked Autoencoders Are Scalable Vision Learners (MAE),
          2021](https://arxiv.org/abs/2111.06377)
        - [Assran et al., Self-Supervised Learning from Images with a
          Joint-Embedding Predictive Architecture (I-JEPA), 2023](https://arxiv.org/abs/2301.08243)
    """
    train_features, train_labels, test_features, test_labels, _ = _checks.check_train_test(
        train_features, train_labels, test_features, test_labels
    )
    num_classes = _checks.check_num_classes(num_classes, train_labels, test_labels)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_float("lr", lr, minimum=0, exclusive_minimum=True, allow_string=False)
    if isinstance(weight_decay, bool) or not isinstance(
        weight_decay, (int, float, np.number)
    ) or not (np.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(
            f"`weight_decay` must be a non-negative number. Received: weight_decay={weight_decay}"
        )
    if isinstance(warmup_epochs, bool) or not isinstance(
        warmup_epochs, (int, np.integer)
    ) or not 0 <= warmup_epochs < epochs:
        raise ValueError(
            "`warmup_epochs` must be an integer in [0, epochs). "
            f"Received: warmup_epochs={warmup_epochs}"
        )
    if not isinstance(optimizer, keras.optimizers.Optimizer) and optimizer not in _OPTIMIZERS:
        raise ValueError(
            f"`optimizer` must be one of {_OPTIMIZERS} or a keras.optimizers.Optimizer. "
            f"Received: optimizer={optimizer!r}"
        )

    steps_per_epoch = -(-train_features.shape[0] // batch_size)
    model = _build_probe(train_features.shape[1], num_classes, batch_norm, seed)
    model.compile(
        optimizer=_build_optimizer(
            optimizer,
            lr,
            float(weight_decay),
            total_steps=epochs * steps_per_epoch,
            warmup_steps=warmup_epochs * steps_per_epoch,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(
        train_features,
        train_labels,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=verbose,
    )
    # Eager calls in chunks: a Dense layer gains nothing from a compiled predict step.
    logits = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(test_features[i : i + 4096], training=False))
            for i in range(0, test_features.shape[0], 4096)
        ],
        axis=0,
    )

    result = {
        "protocol": "linear",
        "top1": float(_checks.top_k_accuracy(logits, test_labels, 1)),
    }
    if num_classes > 5:
        result["top5"] = float(_checks.top_k_accuracy(logits, test_labels, 5))
    result.update(
        train_loss=float(history.history["loss"][-1]),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=float(weight_decay),
        warmup_epochs=int(warmup_epochs),
        optimizer=optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
        batch_norm=bool(batch_norm),
        num_train=int(train_features.shape[0]),
        num_test=int(test_features.shape[0]),
        num_classes=num_classes,
    )
    return result
