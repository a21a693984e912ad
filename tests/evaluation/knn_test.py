import numpy as np

from evaluation_test_utils import random_label_features
from evaluation_test_utils import separable_features
from keras_flexpredict.evaluation import knn_classifier
from keras_flexpredict.testing.test_case import TestCase


def brute_force_knn_predictions(x_train, y_train, x_test, k, temperature, num_classes):
    """One test row at a time, full sort, explicit vote loop: the DINO rule."""
    x_train = x_train / np.linalg.norm(x_train, axis=1, keepdims=True)
    x_test = x_test / np.linalg.norm(x_test, axis=1, keepdims=True)
    predictions = []
    for row in x_test.astype(np.float64):
        similarity = x_train.astype(np.float64) @ row
        order = np.argsort(-similarity, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in order:
            votes[y_train[j]] += np.exp(similarity[j] / temperature)
        predictions.append(int(np.argmax(votes)))
    return np.array(predictions)


class KNNClassifierTest(TestCase):
    def test_separable_features__top1_near_one(self):
        result = knn_classifier(*separable_features(), k=20, temperature=0.07)
        self.assertGreaterEqual(result["top1"], 0.98)
        self.assertGreaterEqual(result["top5"], result["top1"])
        self.assertEqual(result["protocol"], "knn")
        self.assertEqual((result["k"], result["num_classes"]), (20, 10))

    def test_random_labels__top1_near_chance(self):
        result = knn_classifier(*random_label_features(num_classes=10), k=20)
        self.assertLess(abs(result["top1"] - 0.1), 0.08)

    def test_predictions__match_brute_force_reference(self):
        x_train, y_train, x_test, _ = random_label_features(num_classes=4, dim=6, num_train=40, num_test=12)
        for k, temperature in ((1, 0.07), (5, 0.07), (7, 1.0), (40, 0.5)):
            expected = brute_force_knn_predictions(x_train, y_train, x_test, k, temperature, 4)
            # The top-1 of a single test row against label c is 1 iff the prediction is c.
            for i in range(len(x_test)):
                for c in range(4):
                    top1 = knn_classifier(
                        x_train, y_train, x_test[i : i + 1], [c],
                        k=k, temperature=temperature, num_classes=4,
                    )["top1"]
                    self.assertEqual(top1, float(expected[i] == c), msg=f"k={k} T={temperature} row {i} class {c}")

    def test_votes__weighted_by_similarity_and_temperature(self):
        # One neighbour of class 1 at cosine 0.99, two of class 0 at cosine 0.5.
        angle = np.arccos(0.99)
        x_train = np.array(
            [[np.cos(angle), np.sin(angle)], [0.5, np.sqrt(0.75)], [0.5, -np.sqrt(0.75)]], "float32"
        )
        y_train = np.array([1, 0, 0])
        x_test = np.array([[1.0, 0.0]], "float32")
        # Sharp weights: exp(0.99 / 0.07) > 2 exp(0.5 / 0.07), the close neighbour wins.
        self.assertEqual(knn_classifier(x_train, y_train, x_test, [1], k=3, temperature=0.07)["top1"], 1.0)
        # Flat weights: the two votes of class 0 win.
        self.assertEqual(knn_classifier(x_train, y_train, x_test, [0], k=3, temperature=10.0)["top1"], 1.0)

    def test_batch_size__chunking_does_not_change_result(self):
        data = random_label_features(num_classes=10, num_train=100, num_test=37)
        whole = knn_classifier(*data, k=10)
        chunked = knn_classifier(*data, k=10, batch_size=4)
        self.assertEqual(whole, chunked)

    def test_top5__only_with_more_than_five_classes(self):
        result = knn_classifier(*separable_features(num_classes=5), k=5)
        self.assertNotIn("top5", result)

    def test_k_larger_than_train_set__raises(self):
        x_train, y_train, x_test, y_test = separable_features(num_train=10, num_test=5)
        with self.assertRaisesRegex(ValueError, "k=11"):
            knn_classifier(x_train, y_train, x_test, y_test, k=11)

    def test_bad_input__raises_naming_value(self):
        x_train, y_train, x_test, y_test = separable_features(num_train=10, num_test=5)
        # One class: every vote would be right, which says nothing.
        with self.assertRaisesRegex(ValueError, "at least two classes.*single class 0"):
            knn_classifier(x_train, 0 * y_train, x_test, 0 * y_test, k=3)
        with self.assertRaisesRegex(ValueError, r"train_labels.shape=\(9,\)"):
            knn_classifier(x_train, y_train[:9], x_test, y_test)
        with self.assertRaisesRegex(ValueError, r"test_features.shape=\(5, 32, 1\)"):
            knn_classifier(x_train, y_train, x_test[..., None], y_test)
        with self.assertRaisesRegex(ValueError, r"test_features.shape=\(5, 31\)"):
            knn_classifier(x_train, y_train, x_test[:, :31], y_test)
        with self.assertRaisesRegex(ValueError, "temperature=0"):
            knn_classifier(x_train, y_train, x_test, y_test, k=3, temperature=0)
        with self.assertRaisesRegex(ValueError, "k=0"):
            knn_classifier(x_train, y_train, x_test, y_test, k=0)
        with self.assertRaisesRegex(ValueError, "minimum -1"):
            knn_classifier(x_train, y_train - 1, x_test, y_test, k=3)
