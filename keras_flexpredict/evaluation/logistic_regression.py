"""L2-regularised multinomial logistic regression on frozen features (low-shot protocol)."""

import numbers
import warnings

import numpy as np

from keras_flexpredict.evaluation import _checks

DEFAULT_L2_STRENGTHS = (1e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1)
_PREPROCESSING = ("standardize", "center_l2_rows", "none")


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
        if self.mode == "center_l2_rows":
            x = x - x.mean(axis=1, keepdims=True)
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x


def _fit(features, labels, l2_strength, preprocessing, max_iter, tol):
    """Fits one classifier; returns (predict_scores_fn, converged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    preprocess = _Preprocessor(preprocessing, features)
    # Cyanure / MSN objective: mean loss + (lambda / 2) * ||W||^2. scikit-learn
    # minimises C * sum loss + 1/2 ||W||^2: the same minimiser when C = 1 / (lambda * n).
    classifier = LogisticRegression(
        C=1.0 / (l2_strength * features.shape[0]),
        solver="lbfgs",
        max_iter=max_iter,
        tol=tol,
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

    return scores, converged


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
    l2_strengths=DEFAULT_L2_STRENGTHS,
    validation_fraction=0.2,
    preprocessing="standardize",
    max_iter=1000,
    tol=1e-4,
    num_classes=None,
    seed=0,
):
    """L2-regularised multinomial logistic regression on frozen features.

    This is the low-shot protocol of I-JEPA and StoP (the "1% ImageNet" probe:
    12,811 labelled training images, about 13 per class). The papers solve it with
    [cyanure](https://github.com/inria-thoth/cyanure) (the MSN evaluation code);
    here scikit-learn's `LogisticRegression` (lbfgs solver, multinomial loss for
    more than two classes) is used instead, with the same objective:

        mean_i cross_entropy(W x_i + b, y_i) + (l2_strength / 2) * ||W||^2

    i.e. `C = 1 / (l2_strength * n)` in scikit-learn terms (the bias is not
    penalised). When more than one strength is given, each is fitted on a
    held-out split of the training features (`1 - validation_fraction` of them,
    stratified by class when possible), the strength with the best validation
    top-1 is kept (ties go to the stronger regularisation), and the final
    classifier is refitted on all training features with it. Test features are
    never used to choose.

    Args:
        train_features: float array `(N_train, F)`.
        train_labels: int array `(N_train,)` of class ids; at least two classes.
        test_features: float array `(N_test, F)`.
        test_labels: int array `(N_test,)` of class ids.
        l2_strengths: float or sequence of floats. Candidate values of the L2
            strength `lambda` above; a single value skips the selection. Defaults
            to `(1e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1)`.
        validation_fraction: float in (0, 1). Share of the training features held
            out to choose the strength. Defaults to `0.2`.
        preprocessing: str. `"standardize"` (zero mean, unit variance per feature,
            fitted on the training rows), `"center_l2_rows"` (each row centred and
            scaled to unit L2 norm, like cyanure's `preprocess` in the MSN code) or
            `"none"`. Defaults to `"standardize"`.
        max_iter: int. lbfgs iterations per fit. Defaults to `1000`.
        tol: float. lbfgs tolerance. Defaults to `1e-4`.
        num_classes: int or `None`. `None` infers `max label + 1` over both
            splits. Defaults to `None`.
        seed: int. Seed of the held-out split. Defaults to `0`.

    Returns:
        A dict with `"protocol": "logreg"`, `"top1"`, `"top5"` (more than 5
        classes), `"l2_strength"` (the chosen value), `"validation"` (a list of
        `{"l2_strength", "top1"}`, empty when no selection ran), `"converged"`
        (False when lbfgs hit `max_iter` in the final fit) and the settings used.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> centers = 10.0 * rng.normal(size=(3, 8))
    >>> y = np.arange(90) % 3
    >>> x = centers[y] + rng.normal(size=(90, 8))
    >>> result = logistic_regression_probe(x[:60], y[:60], x[60:], y[60:],
    ...                                    l2_strengths=(1e-3, 1e-1))
    >>> result["top1"], result["l2_strength"] in (1e-3, 1e-1)
    (1.0, True)

    References:
        - [Assran et al., Self-Supervised Learning from Images with a
          Joint-Embedding Predictive Architecture (I-JEPA), 2023](https://arxiv.org/abs/2301.08243)
        - [Assran et al., Masked Siamese Networks for Label-Efficient Learning
          (MSN), 2022](https://arxiv.org/abs/2204.07141)
        - [Bar et al., Stochastic positional embeddings improve masked image
          modeling (StoP), 2024](https://arxiv.org/abs/2308.00566)
    """
    train_features, train_labels, test_features, test_labels, _ = _checks.check_train_test(
        train_features, train_labels, test_features, test_labels
    )
    num_classes = _checks.check_num_classes(num_classes, train_labels, test_labels)
    strengths = _check_strengths(l2_strengths)
    if preprocessing not in _PREPROCESSING:
        raise ValueError(
            f"`preprocessing` must be one of {_PREPROCESSING}. "
            f"Received: preprocessing={preprocessing!r}"
        )
    if isinstance(validation_fraction, bool) or not isinstance(
        validation_fraction, numbers.Real
    ) or not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "`validation_fraction` must be a number in (0, 1). "
            f"Received: validation_fraction={validation_fraction}"
        )
    max_iter = _checks.check_positive_int(max_iter, "max_iter")
    tol = _checks.check_positive_float(tol, "tol")
    if np.unique(train_labels).size < 2:
        raise ValueError(
            "`train_labels` must hold at least two classes. "
            f"Received: train_labels with the single class {int(train_labels[0])}"
        )

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
            scores, _ = _fit(
                train_features[fit_idx],
                train_labels[fit_idx],
                strength,
                preprocessing,
                max_iter,
                tol,
            )
            accuracy = _checks.top_k_accuracy(
                scores(train_features[val_idx], num_classes), train_labels[val_idx], 1
            )
            validation.append({"l2_strength": strength, "top1": float(accuracy)})
        best = max(v["top1"] for v in validation)
        chosen = max(v["l2_strength"] for v in validation if v["top1"] == best)

    scores, converged = _fit(
        train_features, train_labels, chosen, preprocessing, max_iter, tol
    )
    test_scores = scores(test_features, num_classes)
    result = {
        "protocol": "logreg",
        "top1": float(_checks.top_k_accuracy(test_scores, test_labels, 1)),
    }
    if num_classes > 5:
        result["top5"] = float(_checks.top_k_accuracy(test_scores, test_labels, 5))
    result.update(
        l2_strength=chosen,
        validation=validation,
        converged=bool(converged),
        preprocessing=preprocessing,
        validation_fraction=float(validation_fraction),
        max_iter=max_iter,
        num_train=int(train_features.shape[0]),
        num_test=int(test_features.shape[0]),
        num_classes=num_classes,
    )
    return result
