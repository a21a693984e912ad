"""Input checks shared by the probes (private).

Every check runs before any training starts and raises a `ValueError` that names
the bad argument and its value (or its shape, for arrays).
"""

import numpy as np

from keras_flexpredict.utils.validation import check_int


def as_features(features, name):
    """`features` as a finite float32 NumPy array of rank 2 `(N, F)`, N >= 1."""
    try:
        array = np.asarray(features, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`{name}` must be a numeric array of shape (num_examples, num_features). "
            f"Received: {name} of type {type(features).__name__} ({e})"
        ) from None
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must have rank 2, shape (num_examples, num_features). "
            f"Received: {name}.shape={array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`{name}` must hold at least one example and one feature. "
            f"Received: {name}.shape={array.shape}"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"`{name}` must be finite. Received: {name} with {bad} NaN or infinite values"
        )
    return array


def as_labels(labels, name):
    """`labels` as an int64 NumPy array of rank 1 of non-negative class ids."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must have rank 1, shape (num_examples,), of integer class ids. "
            f"Received: {name}.shape={array.shape}"
        )
    if array.dtype.kind not in "iub":
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)) or not np.all(
            array == np.round(array)
        ):
            raise ValueError(
                f"`{name}` must hold integer class ids. "
                f"Received: {name} with dtype {array.dtype}"
            )
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(
            f"`{name}` must hold non-negative class ids. "
            f"Received: {name} with minimum {int(array.min())}"
        )
    return array


def check_split(features, labels, features_name, labels_name):
    features = as_features(features, features_name)
    labels = as_labels(labels, labels_name)
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"`{features_name}` and `{labels_name}` must have the same number of examples. "
            f"Received: {features_name}.shape={features.shape}, "
            f"{labels_name}.shape={labels.shape}"
        )
    return features, labels


def check_train_test(train_features, train_labels, test_features, test_labels):
    """Checks both splits, that their feature widths agree and that the training
    labels hold at least two classes.

    Returns `(train_features, train_labels, test_features, test_labels, num_classes)`
    with `num_classes = max label + 1` over both splits.
    """
    train_features, train_labels = check_split(
        train_features, train_labels, "train_features", "train_labels"
    )
    test_features, test_labels = check_split(
        test_features, test_labels, "test_features", "test_labels"
    )
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            "`train_features` and `test_features` must have the same number of features. "
            f"Received: train_features.shape={train_features.shape}, "
            f"test_features.shape={test_features.shape}"
        )
    classes = np.unique(train_labels)
    if classes.size < 2:
        raise ValueError(
            "A probe needs at least two classes in `train_labels` (with one, every prediction is that "
            f"class and the accuracy means nothing). Received: train_labels with the single class {int(classes[0])}"
        )
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    return train_features, train_labels, test_features, test_labels, num_classes


def check_num_classes(num_classes, train_labels, test_labels):
    """Resolves `num_classes` (None = inferred) and checks labels fit in it."""
    inferred = int(max(train_labels.max(), test_labels.max())) + 1
    if num_classes is None:
        return inferred
    num_classes = check_int("num_classes", num_classes, minimum=1)
    if inferred > num_classes:
        raise ValueError(
            f"Labels go up to {inferred - 1}, which does not fit `num_classes`. "
            f"Received: num_classes={num_classes}"
        )
    return int(num_classes)


def top_k_correct(scores, labels, k):
    """Number of rows whose label is among the `k` highest `scores`.

    Ties are broken towards the lower class id (as `np.argmax` does for k=1).
    """
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    if k == 1:
        return int(np.sum(np.argmax(scores, axis=1) == labels))
    # Stable sort of the negated scores: among equal scores the lower class id wins.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return int(np.sum(np.any(top == labels[:, None], axis=1)))


def top_k_accuracy(scores, labels, k):
    """Fraction of rows whose label is among the `k` highest `scores`."""
    return top_k_correct(scores, labels, k) / len(labels)
