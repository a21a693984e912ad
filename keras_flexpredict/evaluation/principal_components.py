"""Removing the dominant directions of frozen features before a kNN probe."""

import numpy as np

from keras_flexpredict.evaluation import _checks
from keras_flexpredict.utils.validation import check_int


def remove_top_principal_components(train_features, test_features, num_components):
    """Centres both splits on the training mean and projects out the training split's
    `num_components` largest principal directions.

    A cosine kNN weighs every direction of the features by its variance, so when a few
    directions carry a nuisance factor that varies a lot between images (on the built-in
    procedural data: the background's colour), the neighbours follow that factor and
    the kNN reads nothing else. Removing those few directions ("all-but-the-top", Mu and
    Viswanath, 2018) lets the kNN see the rest. The directions are fitted on the
    training features only, without labels; the test features are projected with them.

    Args:
        train_features: float array `(N_train, F)`.
        test_features: float array `(N_test, F)`.
        num_components: int in `[0, min(N_train, F) - 1]`. `0` only centres.

    Returns:
        `(train, test)`: float32 arrays of the input shapes, centred on the training
        mean and orthogonal to the removed directions.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> signal = np.where(y[:, None] == 1, 1.0, -1.0) * np.eye(4)[2]  # small, on axis 2
    >>> nuisance = 20.0 * rng.normal(size=(200, 4)) * (np.arange(4) < 2)  # large, on axes 0, 1
    >>> x = signal + nuisance + 0.1 * rng.normal(size=(200, 4))
    >>> train, test = remove_top_principal_components(x[:100], x[100:], 2)
    >>> bool(np.abs(test[:, :2]).max() < 0.05)  # the nuisance axes are gone
    True
    >>> from keras_flexpredict.evaluation import knn_classifier
    >>> knn_classifier(x[:100], y[:100], x[100:], y[100:], k=5)["top1"]
    0.68
    >>> knn_classifier(train, y[:100], test, y[100:], k=5)["top1"]
    1.0
    """
    train = _checks.as_features(train_features, "train_features").astype(np.float64)
    test = _checks.as_features(test_features, "test_features").astype(np.float64)
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            "`train_features` and `test_features` must have the same number of features. "
            f"Received: train_features.shape={train.shape}, test_features.shape={test.shape}"
        )
    most = min(train.shape) - 1
    num_components = check_int("num_components", num_components, minimum=0)
    if num_components > most:
        raise ValueError(
            f"`num_components` must leave at least one direction: at most min(N_train, F) - 1 = "
            f"{most} for train_features.shape={train.shape}. Received: num_components={num_components}"
        )
    mean = train.mean(axis=0)
    train, test = train - mean, test - mean
    if num_components:
        top = np.linalg.svd(train, full_matrices=False)[2][:num_components]  # (n, F), orthonormal rows
        train = train - (train @ top.T) @ top
        test = test - (test @ top.T) @ top
    return train.astype(np.float32), test.astype(np.float32)
