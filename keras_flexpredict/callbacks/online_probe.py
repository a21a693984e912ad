"""A logistic-regression (and optionally kNN) probe of the frozen target encoder,
run every few epochs during pretraining."""

import time

import keras
import numpy as np

from keras_flexpredict.callbacks._epoch_schedule import EpochSchedule
from keras_flexpredict.evaluation.feature_extraction import extract_features_of_splits
from keras_flexpredict.evaluation.knn import knn_classifier
from keras_flexpredict.evaluation.logistic_regression import logistic_regression_probe
from keras_flexpredict.evaluation.principal_components import remove_top_principal_components
from keras_flexpredict.utils.validation import check_int


def _as_split(data, name, batch_size):
    """`(batches, {label name: labels} or None)` of `data` (arrays or batches)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], np.ndarray):
        images, labels = data
        if images.ndim != 4:
            raise ValueError(f"`{name}` images must be (N, H, W, C). Received: shape={images.shape}")
        if not isinstance(labels, dict):
            labels = {"": labels}
        if not labels:
            raise ValueError(f"`{name}` needs at least one label array. Received: labels={labels!r}")
        checked = {}
        for key, value in labels.items():
            value = np.asarray(value)
            if value.shape != (images.shape[0],) or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(
                    f"`{name}` labels must be int arrays of shape ({images.shape[0]},). "
                    f"Received: {key or 'labels'} with shape={value.shape}, dtype={value.dtype}"
                )
            checked[key] = value
        first = next(iter(checked.values()))
        batches = [(images[i : i + batch_size], first[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return batches, checked
    if data is None or isinstance(data, (str, bytes, np.ndarray)) or not hasattr(data, "__iter__"):
        raise ValueError(
            f"`{name}` must be `(images, labels)` arrays or a dataset of `(images, labels)` batches. "
            f"Received: {name}={data!r}"
        )
    return data, None


class OnlineProbe(keras.callbacks.Callback):
    """Probes the frozen target encoder on a held-out labelled set every few epochs.

    At the end of the first epoch of each `fit` and of every `every_n_epochs`-th epoch
    it extracts features of both splits
    with `kfp.evaluation.extract_features_of_splits(model.target_encoder, ...)` (mean
    over tokens of the last layer), fits `kfp.evaluation.logistic_regression_probe`
    on the training split, scores the test split, and adds the top-1 accuracy to the
    epoch's `logs` (progress bar, `CSVLogger`, `TensorBoard` when they come after it)
    as `probe_logreg` (or `probe_<label>_logreg` for a dict of labels), plus
    `probe_knn` / `probe_<label>_knn` (`kfp.evaluation.knn_classifier`) when
    `knn_k` is set, and `probe_time_s`. The numbers are exactly those of the offline
    functions on the same encoder and data. The target encoder is read, never changed
    (during `fit` it lags the student by the one EMA update that the next step applies).

    Args:
        train_data: `(images, labels)` NumPy arrays, `labels` an int array `(N,)` or a
            dict `{name: int array (N,)}` (one probe per label); or an iterable /
            `tf.data.Dataset` of `(images, labels)` batches. Images preprocessed as for
            the encoder.
        test_data: the held-out split, in the same form.
        every_n_epochs: int >= 1. Defaults to 1.
        protocol: `logistic_regression_probe`'s protocol. Defaults to `"search"`.
        l2_strengths: its `l2_strengths`. Defaults to `None` (the protocol's).
        max_iter: its `max_iter`. Defaults to 1000.
        knn_k: int or None. Also a cosine kNN probe with this `k`. Defaults to None.
        knn_removed_components: int >= 0. The kNN runs on the features without their
            this many largest principal directions (`kfp.evaluation.
            remove_top_principal_components`, fitted on the training split), as the
            demo's kNN does with 8. Defaults to 0 (the raw features).
        batch_size: int. Images per encoder call for array inputs. Defaults to 256.
        seed: int. Seed of the strength search's held-out split. Defaults to 0.

    Example:
    >>> from keras_flexpredict.testing.tiny_models import tiny_flexpredict
    >>> model = tiny_flexpredict()
    >>> model.compile(optimizer="adamw")
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((24, 32, 32, 3)).astype("float32")
    >>> labels = np.arange(24) % 2
    >>> probe = OnlineProbe((images[:16], labels[:16]), (images[16:], labels[16:]),
    ...                     protocol="search", l2_strengths=(1e-2,))
    >>> # Skipped when the docstrings run as tests: a training step compiles for tens of
    >>> # seconds; tests/callbacks/ runs the same fit.
    >>> history = model.fit(images, batch_size=8, epochs=1, verbose=0, callbacks=[probe])  # doctest: +SKIP
    >>> 0.0 <= history.history["probe_logreg"][0] <= 1.0  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        train_data,
        test_data,
        every_n_epochs=1,
        protocol="search",
        l2_strengths=None,
        max_iter=1000,
        knn_k=None,
        batch_size=256,
        seed=0,
        knn_removed_components=0,
    ):
        super().__init__()
        every_n_epochs = check_int("every_n_epochs", every_n_epochs, minimum=1)
        knn_k = check_int("knn_k", knn_k, minimum=1, allow_none=True)
        knn_removed_components = check_int("knn_removed_components", knn_removed_components, minimum=0)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        self.train_batches, self.train_labels = _as_split(train_data, "train_data", batch_size)
        self.test_batches, self.test_labels = _as_split(test_data, "test_data", batch_size)
        # A dataset or a plain label array: one unnamed label ("").
        train_names = sorted(self.train_labels or [""])
        test_names = sorted(self.test_labels or [""])
        if train_names != test_names:
            raise ValueError(
                "`train_data` and `test_data` must have the same label names. "
                f"Received: {train_names} and {test_names}"
            )
        self.label_names = train_names
        self.every_n_epochs = int(every_n_epochs)
        self._schedule = EpochSchedule(self.every_n_epochs)
        self.protocol = protocol
        self.l2_strengths = l2_strengths
        self.max_iter = max_iter
        self.knn_k = None if knn_k is None else int(knn_k)
        self.knn_removed_components = knn_removed_components
        self.seed = int(seed)

    def evaluate(self, encoder):
        """The probe's logs for `encoder` (e.g. `model.target_encoder`): a dict of floats."""
        start = time.perf_counter()
        (x_train, y_train), (x_test, y_test) = extract_features_of_splits(
            encoder, [self.train_batches, self.test_batches], verbose=0
        )
        # The unnamed label is the one the batches carry.
        labels = {
            k: (y_train, y_test) if k == "" else (self.train_labels[k], self.test_labels[k]) for k in self.label_names
        }
        logs = {}
        if self.knn_k is not None and self.knn_removed_components:
            knn_train, knn_test = remove_top_principal_components(x_train, x_test, self.knn_removed_components)
        else:
            knn_train, knn_test = x_train, x_test
        for key, (train_y, test_y) in labels.items():
            name = f"probe_{key}_" if key else "probe_"
            result = logistic_regression_probe(
                x_train, train_y, x_test, test_y, protocol=self.protocol, l2_strengths=self.l2_strengths,
                max_iter=self.max_iter, seed=self.seed,
            )
            logs[name + "logreg"] = result["top1"]
            if self.knn_k is not None:
                logs[name + "knn"] = knn_classifier(knn_train, train_y, knn_test, test_y, k=self.knn_k)["top1"]
        logs["probe_time_s"] = time.perf_counter() - start
        return logs

    def on_train_begin(self, logs=None):
        self._schedule.start()
        if self.knn_k is not None and self.knn_removed_components:
            # Refused now, not after the first epoch: the features are (N_train, width).
            width = getattr(getattr(self.model, "target_encoder", None), "hidden_dim", None)
            num_train = len(next(iter(self.train_labels.values()))) if self.train_labels else None
            sizes = [v for v in (width, num_train) if v is not None]
            if sizes and min(sizes) - 1 < self.knn_removed_components:
                raise ValueError(
                    "`knn_removed_components` must leave at least one feature direction: at most "
                    f"min(encoder width, training examples) - 1 = {min(sizes) - 1} (width {width}, "
                    f"{num_train} training examples). Received: knn_removed_components={self.knn_removed_components}"
                )

    def on_epoch_end(self, epoch, logs=None):
        if not self._schedule.due(epoch):
            return
        encoder = getattr(self.model, "target_encoder", None)
        if encoder is None:
            raise ValueError(f"OnlineProbe needs a FlexPredict model. Received: model={type(self.model).__name__}")
        values = self.evaluate(encoder)
        if logs is not None:
            logs.update(values)
