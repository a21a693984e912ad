"""L2-regularised multinomial logistic regression on frozen features (low-shot protocol)."""

import numbers
import warnings

import numpy as np

from keras_flexpredict.evaluation import _checks
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int

PROTOCOLS = ("official", "search")
# The official low-shot run (StoP README: `logistic_eval.py --lambd 0.0025`) hands
# cyanure `lambd = 0.0025 / N`, N the number of training images.
OFFICIAL_L2_SCALE = 0.0025
DEFAULT_L2_STRENGTHS = (1e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1)
_PREPROCESSING = ("standardize_each_split", "standardize", "center_l2_rows", "none")
_PROTOCOL_DEFAULTS = {
    "official": dict(preprocessing="standardize_each_split", fit_intercept=False, tol=1e-6),
    "search": dict(preprocessing="standardize", fit_intercept=True, tol=1e-4),
}


def _check_strengths(l2_strengths):
    if isinstance(l2_strengths, numbers.Real) and not isinstance(l2_strengths, bool):
        l2_strengths = (l2_strengths,)
    try:
        strengths = tuple(l2_strengths)
    except TypeError:
        raise ValueError(
            "`l2_strengths` must be a positive number or a non-empty sequence of them. "
            f"Received: l2_strengths={l2_strengths}"
        ) from None
    if not strengths or any(
        isinstance(s, bool)
        or not isinstance(s, numbers.Real)
        or not np.isfinite(s)
        or s <= 0
        for s in strengths
    ):
        raise ValueError(
            "`l2_strengths` must be a positive number or a non-empty sequence of them. "
            f"Received: l2_strengths={l2_strengths}"
        )
    return tuple(float(s) for s in strengths)


def _column_statistics(x):
    """Column mean and standard deviation (unbiased, as `torch.std`); constant or
    single-row columns get a scale of 1 instead of a division by zero."""
    mean = x.mean(axis=0, dtype=np.float64)
    if x.shape[0] < 2:
        return mean, np.ones_like(mean)
    std = x.std(axis=0, ddof=1, dtype=np.float64)
    return mean, np.where(std > 1e-12, std, 1.0)


class _Preprocessor:
    """Feature preprocessing fitted on the training rows of one fit."""

    def __init__(self, mode, train_features):
        self.mode = mode
        if mode == "standardize":
            self.mean = train_features.mean(axis=0, dtype=np.float64)
            std = train_features.std(axis=0, dtype=np.float64)
            # Constant features stay at zero instead of dividing by zero.
            self.scale = np.where(std > 1e-12, std, 1.0)

    def __call__(self, x):
        x = x.astype(np.float64)
        if self.mode == "standardize":
            return (x - self.mean) / self.scale
        if self.mode == "standardize_each_split":
            # The official script standardises the training and the test
            # embeddings each with their own column statistics.
            mean, scale = _column_statistics(x)
            return (x - mean) / scale
        if self.mode == "center_l2_rows":
            x = x - x.mean(axis=1, keepdims=True)
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x


def _fit(features, labels, l2_strength, preprocessing, max_iter, tol, fit_intercept=True):
    """Fits one classifier; returns (predict_scores_fn, converged, classifier).

    Minimises `mean_i cross_entropy(W x_i [+ b], y_i) + (l2_strength / 2) ||W||^2`
    (softmax over all classes present in `labels`; the bias is not penalised).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    preprocess = _Preprocessor(preprocessing, features)
    # scikit-learn minimises C * sum loss + 1/2 ||W||^2: the same minimiser as
    # mean loss + (lambda / 2) ||W||^2 when C = 1 / (lambda * n).
    c = 1.0 / (l2_strength * features.shape[0])
    if np.unique(labels).size == 2:
        # Two classes: scikit-learn fits one vector v = w_1 - w_0. The softmax
        # objective's optimum has w_0 = -w_1 = -v / 2, where its penalty is
        # (lambda / 4) ||v||^2: the same minimiser with C doubled.
        c *= 2.0
    classifier = LogisticRegression(
        C=c,
        solver="lbfgs",
        max_iter=max_iter,
        tol=tol,
        fit_intercept=fit_intercept,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(preprocess(features), labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def scores(x, num_classes):
        proba = classifier.predict_proba(preprocess(x))
        # Classes absent from this fit's training rows get score 0 (never predicted).
        full = np.zeros((x.shape[0], num_classes), dtype=np.float64)
        full[:, classifier.classes_] = proba
        return full

    return scores, converged, classifier


def _held_out_split(labels, validation_fraction, seed):
    """Indices (fit, validation), stratified by class when every class allows it."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(labels.shape[0])
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    num_val = int(np.ceil(validation_fraction * labels.shape[0]))
    stratify = (
        labels
        if counts.min() >= 2
        and num_val >= counts.size
        and labels.shape[0] - num_val >= counts.size
        else None
    )
    fit_idx, val_idx = train_test_split(
        indices, test_size=num_val, random_state=seed, shuffle=True, stratify=stratify
    )
    return np.sort(fit_idx), np.sort(val_idx)


def logistic_regression_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    protocol="official",
    l2_strengths=None,
    validation_fraction=0.2,
    preprocessing=None,
    fit_intercept=None,
    max_iter=1000,
    tol=None,
    num_classes=None,
    seed=0,
):
    """L2-regularised multinomial logistic regression on frozen features.

    This is the low-shot protocol of I-JEPA and StoP (the "1% ImageNet" probe:
    12,811 labelled training images, about 13 per class). Both protocols solve

        mean_i cross_entropy(W x_i [+ b], y_i) + (lambda / 2) * ||W||^2

    (cyanure's multinomial logistic objective: mean loss, penalty `lambda/2`
    times the squared Frobenius norm, bias unpenalised) with scikit-learn's
    `LogisticRegression` (lbfgs, softmax over the classes), i.e.
    `C = 1 / (lambda * n)`.

    - `protocol="official"` (default) is StoP's `logistic_eval.py` as its README
      runs it: no intercept; `lambda = 0.0025 / N_train` (`C = 400` whatever
      `N_train`); each split standardised with its *own* column mean and
      unbiased standard deviation (the script standardises the test embeddings
      with the test statistics). The script then multiplies both splits by an
      orthogonal matrix (eigenvectors of `X^T X`); the objective and the
      predictions are invariant under that rotation, so it is skipped here.
      cyanure stops at a relative duality gap of 1e-3 (at most 100 epochs);
      lbfgs here runs to `tol=1e-6`, i.e. to the same minimiser, at least as
      tightly. Images: shorter side resized to 224, centre crop 224 (the
      `"lowshot_eval"` transform of `keras_flexpredict.data`).
    - `protocol="search"` is this library's earlier variant: with intercept,
      features standardised with the training statistics, `lambda` chosen from
      `l2_strengths` on a held-out split (`1 - validation_fraction` of the
      training features, stratified by class when possible; the best validation
      top-1 wins, ties go to the stronger regularisation), then refitted on all
      training features. Test features are never used to choose.

    Args:
        train_features: float array `(N_train, F)`.
        train_labels: int array `(N_train,)` of class ids; at least two classes.
        test_features: float array `(N_test, F)`.
        test_labels: int array `(N_test,)` of class ids.
        protocol: `"official"` or `"search"`, see above. Defaults to `"official"`.
        l2_strengths: float, sequence of floats or `None`. Candidate values of
            `lambda`; a single value skips the selection (the official protocol
            takes a single value only). `None`: `0.0025 / N_train` for
            `"official"`, `(1e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1)` for
            `"search"`. Defaults to `None`.
        validation_fraction: float in (0, 1). Share of the training features held
            out to choose the strength (search only). Defaults to `0.2`.
        preprocessing: str or `None`. `"standardize_each_split"` (every split
            standardised with its own statistics, as the official script),
            `"standardize"` (statistics of the training rows), `"center_l2_rows"`
            (each row centred and scaled to unit L2 norm) or `"none"`. `None`:
            the protocol's. Defaults to `None`.
        fit_intercept: bool or `None`. `None`: the protocol's (False for
            `"official"`, True for `"search"`). Defaults to `None`.
        max_iter: int. lbfgs iterations per fit. Defaults to `1000`.
        tol: float or `None`. lbfgs tolerance; `None`: 1e-6 (official) or 1e-4
            (search). Defaults to `None`.
        num_classes: int or `None`. `None` infers `max label + 1` over both
            splits. Defaults to `None`.
        seed: int. Seed of the held-out split. Defaults to `0`.

    Returns:
        A dict with `"protocol": "logreg"`, `"variant"` (`"official"` or
        `"search"`), `"top1"`, `"top5"` (more than 5 classes), `"l2_strength"`
        (the `lambda` used), `"validation"` (a list of `{"l2_strength", "top1"}`,
        empty when no selection ran), `"converged"` (False when lbfgs hit
        `max_iter` in the final fit) and the settings used.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> centers = 10.0 * rng.normal(size=(3, 8))
    >>> y = np.arange(90) % 3
    >>> x = centers[y] + rng.normal(size=(90, 8))
    >>> logistic_regression_probe(x[:60], y[:60], x[60:], y[60:])["top1"]
    1.0
    >>> result = logistic_regression_probe(x[:60], y[:60], x[60:], y[60:],
    ...                                    protocol="search", l2_strengths=(1e-3, 1e-1))
    >>> result["top1"], result["l2_strength"] in (1e-3, 1e-1)
    (1.0, True)

    References:
        - [Assran et al., Self-Supervised Learning from Images with a
          Joint-Embedding Predictive Architecture (I-JEPA), 2023](https://arxiv.org/abs/2301.08243)
        - [Bar et al., Stochastic positional embeddings improve masked image
          modeling (StoP), 2024](https://arxiv.org/abs/2308.00566)
        - [Mairal, Cyanure: An Open-Source Toolbox for Empirical Risk
          Minimization, 2019](https://arxiv.org/abs/1912.08165)
    """
    return _probe(
        train_features,
        train_labels,
        test_features,
        test_labels,
        protocol=protocol,
        l2_strengths=l2_strengths,
        validation_fraction=validation_fraction,
        preprocessing=preprocessing,
        fit_intercept=fit_intercept,
        max_iter=max_iter,
        tol=tol,
        num_classes=num_classes,
        seed=seed,
    )[0]


def _probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    protocol,
    l2_strengths,
    validation_fraction,
    preprocessing,
    fit_intercept,
    max_iter,
    tol,
    num_classes,
    seed,
):
    """`logistic_regression_probe`, also returning the test scores `(N_test, C)`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}. Received: protocol={protocol!r}")
    train_features, train_labels, test_features, test_labels, _ = _checks.check_train_test(
        train_features, train_labels, test_features, test_labels
    )
    num_classes = _checks.check_num_classes(num_classes, train_labels, test_labels)
    defaults = _PROTOCOL_DEFAULTS[protocol]
    if l2_strengths is None:
        l2_strengths = (
            OFFICIAL_L2_SCALE / train_features.shape[0] if protocol == "official" else DEFAULT_L2_STRENGTHS
        )
    strengths = _check_strengths(l2_strengths)
    if protocol == "official" and len(strengths) != 1:
        raise ValueError(
            "The official protocol fits one fixed strength; use protocol='search' to choose "
            f"among several. Received: l2_strengths={l2_strengths}"
        )
    preprocessing = defaults["preprocessing"] if preprocessing is None else preprocessing
    if preprocessing not in _PREPROCESSING:
        raise ValueError(
            f"`preprocessing` must be one of {_PREPROCESSING}. "
            f"Received: preprocessing={preprocessing!r}"
        )
    fit_intercept = defaults["fit_intercept"] if fit_intercept is None else fit_intercept
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise ValueError(f"`fit_intercept` must be a bool or None. Received: fit_intercept={fit_intercept!r}")
    if isinstance(validation_fraction, bool) or not isinstance(
        validation_fraction, numbers.Real
    ) or not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "`validation_fraction` must be a number in (0, 1). "
            f"Received: validation_fraction={validation_fraction}"
        )
    max_iter = check_int("max_iter", max_iter, minimum=1)
    tol = check_float("tol", defaults["tol"] if tol is None else tol, minimum=0, exclusive_minimum=True, allow_string=False)
    if np.unique(train_labels).size < 2:
        raise ValueError(
            "`train_labels` must hold at least two classes. "
            f"Received: train_labels with the single class {int(train_labels[0])}"
        )
    fit = dict(preprocessing=preprocessing, max_iter=max_iter, tol=tol, fit_intercept=bool(fit_intercept))

    validation = []
    if len(strengths) == 1:
        chosen = strengths[0]
    else:
        fit_idx, val_idx = _held_out_split(train_labels, validation_fraction, seed)
        if np.unique(train_labels[fit_idx]).size < 2:
            raise ValueError(
                "The held-out split leaves fewer than two classes to fit on; give more "
                "training examples or a single strength. "
                f"Received: validation_fraction={validation_fraction}"
            )
        for strength in strengths:
            scores, _, _ = _fit(train_features[fit_idx], train_labels[fit_idx], strength, **fit)
            accuracy = _checks.top_k_accuracy(
                scores(train_features[val_idx], num_classes), train_labels[val_idx], 1
            )
            validation.append({"l2_strength": strength, "top1": float(accuracy)})
        best = max(v["top1"] for v in validation)
        chosen = max(v["l2_strength"] for v in validation if v["top1"] == best)

    scores, converged, _ = _fit(train_features, train_labels, chosen, **fit)
    test_scores = scores(test_features, num_classes)
    result = {
        "protocol": "logreg",
        "variant": protocol,
        "top1": float(_checks.top_k_accuracy(test_scores, test_labels, 1)),
    }
    if num_classes > 5:
        result["top5"] = float(_checks.top_k_accuracy(test_scores, test_labels, 5))
    result.update(
        l2_strength=chosen,
        validation=validation,
        converged=bool(converged),
        preprocessing=preprocessing,
        fit_intercept=bool(fit_intercept),
        validation_fraction=float(validation_fraction),
        max_iter=max_iter,
        tol=tol,
        num_train=int(train_features.shape[0]),
        num_test=int(test_features.shape[0]),
        num_classes=num_classes,
    )
    return result, test_scores
