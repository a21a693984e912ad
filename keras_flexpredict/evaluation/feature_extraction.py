"""Feature extraction from a frozen encoder."""

import keras
import numpy as np
from keras import ops

from keras_flexpredict.evaluation import _checks
from keras_flexpredict.utils.validation import check_int

_POOLINGS = ("mean", "max")


def _encode_and_pool(encoder, images, pooling, last_n_layers):
    """Frozen forward pass (`training=False`) + token pooling of the last n layers,
    concatenated earliest first, as float32 `(batch, n * dim)` (private)."""
    if last_n_layers == 1:
        outputs = [encoder(images, training=False)]
    else:
        outputs = encoder(images, last_n_layers=last_n_layers, training=False)
        if not isinstance(outputs, (list, tuple)) or len(outputs) != last_n_layers:
            raise ValueError(
                f"With `last_n_layers={last_n_layers}` the encoder must return a "
                f"list of {last_n_layers} tensors of shape (batch, tokens, dim). "
                f"Received: {type(outputs).__name__} of length "
                f"{len(outputs) if isinstance(outputs, (list, tuple)) else 'n/a'}"
            )
    for tokens in outputs:
        if len(tokens.shape) != 3:
            raise ValueError(
                "The encoder must return tokens of shape (batch, tokens, dim). "
                f"Received: shape={tuple(tokens.shape)}"
            )
    pooled = []
    for tokens in outputs:
        tokens = ops.cast(tokens, "float32")
        pooled.append(ops.mean(tokens, axis=1) if pooling == "mean" else ops.max(tokens, axis=1))
    return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)


class _PooledEncoder(keras.Model):
    """Frozen encoder + token pooling, run through `predict_on_batch` (private).

    Wrapping the encoder in a Model lets Keras compile the forward pass once per
    input shape on every backend (jit on JAX, tf.function on TensorFlow).
    """

    def __init__(self, encoder, pooling, last_n_layers, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.pooling = pooling
        self.last_n_layers = last_n_layers

    def call(self, images):
        return _encode_and_pool(self.encoder, images, self.pooling, self.last_n_layers)


def _batches(dataset):
    """NumPy `(images, labels)` pairs from a tf.data.Dataset or an iterable."""
    if hasattr(dataset, "as_numpy_iterator"):
        iterator = dataset.as_numpy_iterator()
    else:
        iterator = iter(dataset)
    for batch in iterator:
        if isinstance(batch, dict) or not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                "`dataset` must yield `(images, labels)` pairs. "
                f"Received: a batch of type {type(batch).__name__}"
                + (f" with {len(batch)} elements" if isinstance(batch, (tuple, list)) else "")
            )
        images, labels = batch
        yield np.asarray(images), np.asarray(labels)


def _num_batches(dataset):
    """Number of batches when the dataset knows it, else None."""
    cardinality = getattr(dataset, "cardinality", None)
    if callable(cardinality):
        try:
            n = int(cardinality())
            return n if n >= 0 else None
        except (TypeError, ValueError):
            return None
    try:
        return len(dataset)
    except TypeError:
        return None


def extract_features(
    encoder,
    dataset,
    pooling="mean",
    last_n_layers=1,
    batch_size=None,
    steps=None,
    verbose=1,
):
    """Runs a frozen encoder over a dataset and pools its tokens into features.

    The encoder is called as `encoder(images, training=False)` (tokens of shape
    `(B, N, De)`, after the final LayerNorm) or, for `last_n_layers > 1`, as
    `encoder(images, last_n_layers=n, training=False)` (a list of `n` such tensors,
    earliest first). Each tensor is pooled over its tokens and the pooled vectors
    are concatenated in that order (I-JEPA / DINO evaluation: the mean over tokens
    of the last layer, or the concatenation of the last 4). The weights are never
    changed.

    The forward pass is compiled once: every batch is cut or zero-padded to the
    same `batch_size` (the padding rows are dropped from the output), so jitting
    backends see a single input shape, including for a short last batch. To extract
    several splits with one compilation, use `extract_features_of_splits`.

    Args:
        encoder: a Keras layer or model with the call signature above.
        dataset: a `tf.data.Dataset` or any iterable yielding `(images, labels)`
            batches (NumPy arrays or tensors); images already preprocessed the way
            the encoder expects, labels int class ids of shape `(B,)`.
        pooling: str. `"mean"` (average over tokens, the I-JEPA protocol) or `"max"`.
            Defaults to `"mean"`.
        last_n_layers: int. How many of the last layers to pool and concatenate.
            Defaults to `1`.
        batch_size: int or `None`. Rows per encoder call; `None` uses the size of
            the first batch. Defaults to `None`.
        steps: int or `None`. Stop after this many dataset batches. Defaults to `None`.
        verbose: int. `1` shows a `keras.utils.Progbar`, `0` is silent. Defaults to `1`.

    Returns:
        `(features, labels)`: float32 `(N, F)` with `F = last_n_layers * De`, and
        int64 `(N,)`.

    Example:

    >>> class TinyEncoder(keras.layers.Layer):
    ...     def call(self, images, last_n_layers=None, training=False):
    ...         tokens = ops.reshape(images, (ops.shape(images)[0], -1, 3))
    ...         return tokens if last_n_layers is None else [tokens] * last_n_layers
    >>> data = [(np.ones((4, 8, 8, 3), "float32"), np.arange(4))] * 3
    >>> features, labels = extract_features(TinyEncoder(), data, verbose=0)
    >>> features.shape, labels.shape
    ((12, 3), (12,))

    References:
        - [Assran et al., Self-Supervised Learning from Images with a
          Joint-Embedding Predictive Architecture (I-JEPA), 2023](https://arxiv.org/abs/2301.08243)
        - [Caron et al., Emerging Properties in Self-Supervised Vision Transformers
          (DINO), 2021](https://arxiv.org/abs/2104.14294)
    """
    return extract_features_of_splits(
        encoder,
        [dataset],
        pooling=pooling,
        last_n_layers=last_n_layers,
        batch_size=batch_size,
        steps=steps,
        verbose=verbose,
    )[0]


def extract_features_of_splits(
    encoder, datasets, pooling="mean", last_n_layers=1, batch_size=None, steps=None, verbose=1
):
    """`extract_features` over several datasets (e.g. train and test) with one compiled
    forward pass: a split batched like the previous one compiles nothing new (every
    split is cut/padded to the first split's batch size). Returns a list of
    `(features, labels)`, one per dataset. Arguments as in `extract_features`."""
    if not callable(encoder):
        raise ValueError(f"`encoder` must be a callable Keras layer or model. Received: encoder={encoder!r}")
    if pooling not in _POOLINGS:
        raise ValueError(f"`pooling` must be one of {_POOLINGS}. Received: pooling={pooling!r}")
    last_n_layers = check_int("last_n_layers", last_n_layers, minimum=1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    if steps is not None:
        steps = check_int("steps", steps, minimum=1)
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1 or 2. Received: verbose={verbose}")

    model = _PooledEncoder(encoder, pooling, last_n_layers, name="feature_extractor")
    results = []
    for dataset in datasets:
        features, labels, batch_size = _run(model, dataset, batch_size, steps, verbose)
        results.append((features, labels))
    return results


def _run(model, dataset, batch_size, steps, verbose):
    """Extracts one dataset; returns `(features, labels, batch_size used)`."""
    total = _num_batches(dataset)
    if steps is not None:
        total = steps if total is None else min(total, steps)
    progbar = keras.utils.Progbar(total, verbose=verbose, unit_name="batch") if verbose else None

    features, labels = [], []
    image_shape = None
    for step, (images, batch_labels) in enumerate(_batches(dataset)):
        if steps is not None and step >= steps:
            break
        if images.ndim < 2 or images.shape[0] == 0:
            raise ValueError(
                f"Each batch of images must be non-empty with a leading batch axis. "
                f"Received: images.shape={images.shape} in batch {step}"
            )
        batch_labels = batch_labels.reshape(-1) if batch_labels.ndim == 2 and batch_labels.shape[1] == 1 else batch_labels
        if batch_labels.ndim != 1 or batch_labels.shape[0] != images.shape[0]:
            raise ValueError(
                "Each batch must pair `images` (B, ...) with integer `labels` (B,). "
                f"Received: images.shape={images.shape}, labels.shape={batch_labels.shape} "
                f"in batch {step}"
            )
        if image_shape is None:
            image_shape = images.shape[1:]
            if batch_size is None:
                batch_size = images.shape[0]
        elif images.shape[1:] != image_shape:
            raise ValueError(
                "All batches must hold images of the same shape. "
                f"Received: images.shape={images.shape} in batch {step} after "
                f"{(None,) + tuple(image_shape)}"
            )
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            rows = chunk.shape[0]
            if rows < batch_size:
                padding = np.zeros((batch_size - rows,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, padding], axis=0)
            pooled = model.predict_on_batch(chunk)
            features.append(np.asarray(pooled, dtype=np.float32)[:rows])
        labels.append(_checks.as_labels(batch_labels, "labels"))
        if progbar is not None:
            progbar.update(step + 1)

    if progbar is not None and total is None:
        progbar.update(len(labels), finalize=True)
    if not features:
        raise ValueError("`dataset` yielded no batches. Received: an empty dataset")
    return np.concatenate(features, axis=0), np.concatenate(labels, axis=0), batch_size
