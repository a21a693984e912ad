import numpy as np

from evaluation_test_utils import random_label_features
from evaluation_test_utils import separable_features
from keras_flexpredict.evaluation import logistic_regression_probe
from keras_flexpredict.testing.test_case import TestCase


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
        result = logistic_regression_probe(x_train[keep], y_train[keep], x_test, y_test, l2_strengths=strengths)
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
            x_train, y_train, x_test, y_test, l2_strengths=(1e-4, 1e-2), preprocessing="center_l2_rows"
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
