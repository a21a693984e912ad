import numpy as np
import pytest
from scipy import optimize
from scipy import special

from evaluation_test_utils import random_label_features
from evaluation_test_utils import separable_features
from keras_flexpredict.evaluation import logistic_regression
from keras_flexpredict.evaluation import logistic_regression_probe
from keras_flexpredict.testing.test_case import TestCase


def overlapping_features(num_classes=3, dim=4, num_train=120, num_test=60, seed=0):
    """Classes that overlap (finite optimum even with a tiny penalty), uneven scales."""
    rng = np.random.default_rng(seed)
    centers = 0.7 * rng.normal(size=(num_classes, dim))
    scales = np.linspace(0.5, 3.0, dim)
    y_train = rng.integers(0, num_classes, num_train)
    y_test = rng.integers(0, num_classes, num_test)
    x_train = (centers[y_train] + rng.normal(size=(num_train, dim))) * scales + 1.5
    x_test = (centers[y_test] + rng.normal(size=(num_test, dim))) * scales + 1.5
    return x_train.astype("float32"), y_train, x_test.astype("float32"), y_test


def standardize_like_official(x):
    """What StoP's logistic_eval.py does to each split: `x -= mean; x /= std` (unbiased)."""
    x = x.astype(np.float64)
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)


def solve_official_objective(x, y, num_classes, lam):
    """Direct minimisation of cyanure's objective without intercept:
    (1/n) sum_i cross_entropy(x_i W, y_i) + (lam / 2) ||W||^2."""
    n, d = x.shape
    onehot = np.eye(num_classes)[y]

    def objective(w):
        w = w.reshape(d, num_classes)
        logits = x @ w
        value = np.mean(special.logsumexp(logits, axis=1) - logits[np.arange(n), y])
        grad = x.T @ (special.softmax(logits, axis=1) - onehot) / n + lam * w
        return value + 0.5 * lam * np.sum(w**2), grad.ravel()

    solution = optimize.minimize(
        objective, np.zeros(d * num_classes), jac=True, method="L-BFGS-B",
        options=dict(maxiter=20000, gtol=1e-12, ftol=1e-15),
    )
    return solution.x.reshape(d, num_classes)


class LogisticRegressionProbeTest(TestCase):
    def test_separable_features__top1_near_one(self):
        result = logistic_regression_probe(*separable_features())
        self.assertGreaterEqual(result["top1"], 0.98)
        self.assertGreaterEqual(result["top5"], result["top1"])
        self.assertEqual(result["protocol"], "logreg")
        self.assertTrue(result["converged"])

    def test_random_labels__top1_near_chance(self):
        result = logistic_regression_probe(*random_label_features(num_classes=10))
        self.assertLess(abs(result["top1"] - 0.1), 0.08)

    def test_strength__picked_from_list_by_validation_accuracy(self):
        x_train, y_train, x_test, y_test = separable_features()
        # Class 0 holds 40 of the 93 training rows: an over-regularised model (weights
        # squashed to ~0) falls back on the unpenalised bias and predicts class 0 only.
        keep = (y_train == 0) | (np.random.default_rng(0).random(len(y_train)) < 0.15)
        strengths = (10.0, 1e-4, 1e-2)
        result = logistic_regression_probe(
            x_train[keep], y_train[keep], x_test, y_test, protocol="search", l2_strengths=strengths
        )
        self.assertIn(result["l2_strength"], strengths)
        self.assertEqual([v["l2_strength"] for v in result["validation"]], list(strengths))
        by_strength = {v["l2_strength"]: v["top1"] for v in result["validation"]}
        self.assertLess(by_strength[10.0], 0.6)
        self.assertEqual(by_strength[result["l2_strength"]], max(by_strength.values()))
        self.assertNotEqual(result["l2_strength"], 10.0)
        self.assertGreaterEqual(result["top1"], 0.98)

    def test_single_strength__skips_selection(self):
        result = logistic_regression_probe(*separable_features(num_classes=4), l2_strengths=2.5e-4)
        self.assertEqual(result["l2_strength"], 2.5e-4)
        self.assertEqual(result["validation"], [])
        self.assertGreaterEqual(result["top1"], 0.98)

    def test_low_shot_and_row_normalisation__still_separates(self):
        # Two examples a class, like the tail of the 1% ImageNet split.
        x_train, y_train, x_test, y_test = separable_features(num_classes=10, num_train=20)
        result = logistic_regression_probe(
            x_train, y_train, x_test, y_test, protocol="search", l2_strengths=(1e-4, 1e-2),
            preprocessing="center_l2_rows",
        )
        self.assertGreaterEqual(result["top1"], 0.98)

    def test_binary_problem__works(self):
        result = logistic_regression_probe(*separable_features(num_classes=2))
        self.assertGreaterEqual(result["top1"], 0.98)
        self.assertNotIn("top5", result)

    def test_bad_input__raises_naming_value(self):
        x_train, y_train, x_test, y_test = separable_features(num_train=20, num_test=10)
        with self.assertRaisesRegex(ValueError, r"train_labels.shape=\(19,\)"):
            logistic_regression_probe(x_train, y_train[:19], x_test, y_test)
        with self.assertRaisesRegex(ValueError, r"test_labels.shape=\(10, 2\)"):
            logistic_regression_probe(x_train, y_train, x_test, y_test.reshape(10, 1).repeat(2, 1))
        with self.assertRaisesRegex(ValueError, r"l2_strengths=\(\)"):
            logistic_regression_probe(x_train, y_train, x_test, y_test, l2_strengths=())
        with self.assertRaisesRegex(ValueError, r"l2_strengths=\(0.1, -1\)"):
            logistic_regression_probe(x_train, y_train, x_test, y_test, l2_strengths=(0.1, -1))
        with self.assertRaisesRegex(ValueError, "validation_fraction=1.5"):
            logistic_regression_probe(x_train, y_train, x_test, y_test, validation_fraction=1.5)
        with self.assertRaisesRegex(ValueError, "preprocessing='whiten'"):
            logistic_regression_probe(x_train, y_train, x_test, y_test, preprocessing="whiten")
        with self.assertRaisesRegex(ValueError, "single class 0"):
            logistic_regression_probe(x_train, 0 * y_train, x_test, y_test)
        with self.assertRaisesRegex(ValueError, "protocol='cyanure'"):
            logistic_regression_probe(x_train, y_train, x_test, y_test, protocol="cyanure")
        with self.assertRaisesRegex(ValueError, r"l2_strengths=\(0.1, 0.2\)"):
            logistic_regression_probe(x_train, y_train, x_test, y_test, l2_strengths=(0.1, 0.2))
        with self.assertRaisesRegex(ValueError, "fit_intercept='no'"):
            logistic_regression_probe(x_train, y_train, x_test, y_test, fit_intercept="no")


class OfficialLowShotProtocolTest(TestCase):
    """The default reproduces StoP's logistic_eval.py objective (cyanure, no intercept,
    lambda = 0.0025 / N, every split standardised with its own statistics)."""

    def assert_matches_direct_solve(self, num_classes):
        x_train, y_train, x_test, y_test = overlapping_features(num_classes=num_classes)
        result, scores = logistic_regression._probe(
            x_train, y_train, x_test, y_test, **self.defaults()
        )
        lam = 0.0025 / len(x_train)
        self.assertEqual(result["l2_strength"], lam)
        self.assertEqual((result["variant"], result["fit_intercept"]), ("official", False))
        self.assertTrue(result["converged"])
        w = solve_official_objective(standardize_like_official(x_train), y_train, num_classes, lam)
        expected = special.softmax(standardize_like_official(x_test) @ w, axis=1)
        self.assertAllClose(scores, expected, atol=2e-4, rtol=0)
        top1 = np.mean(np.argmax(expected, axis=1) == y_test)
        self.assertAllClose(result["top1"], top1, atol=1.5 / len(y_test))

    @staticmethod
    def defaults():
        # Every argument at logistic_regression_probe's default.
        return dict(protocol="official", l2_strengths=None, validation_fraction=0.2, preprocessing=None,
                    fit_intercept=None, max_iter=1000, tol=None, num_classes=None, seed=0)

    def test_default__matches_direct_minimisation_of_official_objective(self):
        self.assert_matches_direct_solve(num_classes=3)

    def test_two_classes__matches_softmax_objective(self):
        # cyanure's multiclass-logistic keeps one weight vector per class, also for two.
        self.assert_matches_direct_solve(num_classes=2)

    def test_test_split__standardised_with_its_own_statistics(self):
        x_train, y_train, x_test, y_test = overlapping_features()
        shifted = x_test * np.array([2.0, 0.5, 3.0, 1.0], "float32") + 7.0
        _, scores = logistic_regression._probe(x_train, y_train, x_test, y_test, **self.defaults())
        _, shifted_scores = logistic_regression._probe(x_train, y_train, shifted, y_test, **self.defaults())
        self.assertAllClose(scores, shifted_scores, atol=1e-6, rtol=0)

    def test_skipped_eigenvector_rotation__changes_nothing(self):
        # The script multiplies both standardised splits by an orthogonal matrix;
        # objective and predictions are invariant, so the probe leaves it out.
        x_train, y_train, x_test, y_test = overlapping_features()
        x_train, x_test = standardize_like_official(x_train), standardize_like_official(x_test)
        q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
        settings = dict(self.defaults(), preprocessing="none", l2_strengths=0.0025 / len(x_train))
        _, scores = logistic_regression._probe(x_train, y_train, x_test, y_test, **settings)
        _, rotated = logistic_regression._probe(x_train @ q, y_train, x_test @ q, y_test, **settings)
        self.assertAllClose(scores, rotated, atol=2e-5, rtol=0)

    def test_agrees_with_cyanure(self):
        estimators = pytest.importorskip("cyanure.estimators")
        x_train, y_train, x_test, y_test = overlapping_features()
        lam = 0.0025 / len(x_train)
        reference = estimators.Classifier(
            loss="multiclass-logistic", penalty="l2", fit_intercept=False, lambda_1=lam,
            tol=1e-9, max_iter=5000, verbose=False,
        )
        reference.fit(standardize_like_official(x_train), y_train)
        expected = special.softmax(standardize_like_official(x_test) @ np.asarray(reference.coef_), axis=1)
        _, scores = logistic_regression._probe(x_train, y_train, x_test, y_test, **self.defaults())
        self.assertAllClose(scores, expected, atol=2e-4, rtol=0)
