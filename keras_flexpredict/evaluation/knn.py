"""Cosine-similarity weighted k-nearest-neighbour classifier, as in DINO's kNN eval."""

import numpy as np

from keras_flexpredict.evaluation import _checks
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int

# Test rows per chunk are chosen so one chunk's similarity matrix holds at most
# this many float32 values (64 MiB).
_MAX_SIMILARITY_ELEMENTS = 1 << 24


def _l2_normalize(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def knn_classifier(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k=20,
    temperature=0.07,
    num_classes=None,
    batch_size=None,
):
    """Weighted kNN on frozen features: the DINO protocol, in NumPy.

    Features are L2-normalised; each test row takes its `k` most cosine-similar
    training rows, each neighbour votes for its label with weight
    `exp(similarity / temperature)`, and the class with the largest total vote is
    the prediction (ties go to the lower class id). Test rows are processed in
    chunks so that memory stays bounded whatever the size of the training set.

    Args:
        train_features: float array `(N_train, F)`.
        train_labels: int array `(N_train,)` of class ids.
        test_features: float array `(N_test, F)`.
        test_labels: int array `(N_test,)` of class ids.
        k: int. Number of neighbours; at most `N_train`. Defaults to `20`
            (DINO reports 20 as its best setting).
        temperature: float. Temperature of the vote weights. Defaults to `0.07`.
        num_classes: int or `None`. Number of classes; `None` infers
            `max label + 1` over both splits. Defaults to `None`.
        batch_size: int or `None`. Test rows per chunk; `None` picks the largest
            chunk whose similarity matrix holds at most 2**24 floats (64 MiB).
            Defaults to `None`.

    Returns:
        A dict with `"protocol": "knn"`, `"top1"` (a float in [0, 1]), `"top5"` when
        there are more than 5 classes, and the settings used (`k`, `temperature`,
        `num_train`, `num_test`, `num_classes`).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> centers = 10.0 * rng.normal(size=(3, 8))
    >>> y = np.arange(60) % 3
    >>> x = centers[y] + rng.normal(size=(60, 8))
    >>> knn_classifier(x[:40], y[:40], x[40:], y[40:], k=5)["top1"]
    1.0

    References:
        - [Caron et al., Emerging Properties in Self-Supervised Vision Transformers
          (DINO), 2021](https://arxiv.org/abs/2104.14294)
        - [Wu et al., Unsupervised Feature Learning via Non-Parametric Instance
          Discrimination, 2018](https://arxiv.org/abs/1805.01978)
    """
    train_features, train_labels, test_features, test_labels, _ = _checks.check_train_test(
        train_features, train_labels, test_features, test_labels
    )
    num_classes = _checks.check_num_classes(num_classes, train_labels, test_labels)
    k = check_int("k", k, minimum=1)
    num_train = train_features.shape[0]
    if k > num_train:
        raise ValueError(
            f"`k` must be at most the number of training examples ({num_train}). "
            f"Received: k={k}"
        )
    temperature = check_float("temperature", temperature, minimum=0, exclusive_minimum=True, allow_string=False)
    if batch_size is None:
        batch_size = max(1, _MAX_SIMILARITY_ELEMENTS // num_train)
    batch_size = check_int("batch_size", batch_size, minimum=1)

    train_t = np.ascontiguousarray(_l2_normalize(train_features).T)
    test_features = _l2_normalize(test_features)
    num_test = test_features.shape[0]
    correct_top1 = 0
    correct_top5 = 0
    for start in range(0, test_features.shape[0], batch_size):
        chunk = test_features[start : start + batch_size]
        rows = chunk.shape[0]
        similarity = chunk @ train_t  # (rows, N_train)
        if k < num_train:
            neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        else:
            neighbours = np.broadcast_to(np.arange(num_train), (rows, num_train))
        neighbour_sim = np.take_along_axis(similarity, neighbours, axis=1)
        # exp(s / T) up to a per-row factor, which leaves the vote ranking unchanged
        # and keeps small temperatures from overflowing.
        weights = np.exp(
            (neighbour_sim - neighbour_sim.max(axis=1, keepdims=True)) / temperature
        )
        flat = (np.arange(rows)[:, None] * num_classes + train_labels[neighbours]).ravel()
        votes = np.bincount(
            flat, weights=weights.ravel().astype(np.float64), minlength=rows * num_classes
        ).reshape(rows, num_classes)
        chunk_labels = test_labels[start : start + batch_size]
        correct_top1 += _checks.top_k_correct(votes, chunk_labels, 1)
        if num_classes > 5:
            correct_top5 += _checks.top_k_correct(votes, chunk_labels, 5)

    result = {"protocol": "knn", "top1": float(correct_top1 / num_test)}
    if num_classes > 5:
        result["top5"] = float(correct_top5 / num_test)
    result.update(
        k=k,
        temperature=temperature,
        num_train=int(num_train),
        num_test=int(num_test),
        num_classes=num_classes,
    )
    return result
