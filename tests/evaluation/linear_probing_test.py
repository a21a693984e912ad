import keras

from evaluation_test_utils import random_label_features
from evaluation_test_utils import separable_features
from keras_flexpredict.evaluation import linear_probe
from keras_flexpredict.evaluation import linear_probing
from keras_flexpredict.testing.test_case import TestCase

FAST = dict(epochs=5, batch_size=100, lr=0.1)


class LinearProbeTest(TestCase):
    def test_separable_features__top1_near_one(self):
        result = linear_probe(*separable_features(num_train=200), **FAST)
        self.assertGreaterEqual(result["top1"], 0.98)
        self.assertGreaterEqual(result["top5"], result["top1"])
        self.assertEqual(result["protocol"], "linear")
        self.assertEqual((result["num_train"], result["num_test"], result["num_classes"]), (200, 200, 10))
        self.assertTrue(result["batch_norm"])

    def test_random_labels__top1_near_chance(self):
        result = linear_probe(*random_label_features(num_classes=10, num_train=200), **FAST)
        self.assertLess(abs(result["top1"] - 0.1), 0.08)

    def test_without_batch_norm_and_with_adamw__still_learns(self):
        result = linear_probe(
            *separable_features(num_classes=5, num_train=200), epochs=5, batch_size=100, lr=0.05,
            optimizer="adamw", weight_decay=1e-4, warmup_epochs=1, batch_norm=False,
        )
        self.assertGreaterEqual(result["top1"], 0.98)
        self.assertNotIn("top5", result)  # 5 classes: top-5 would always be 1.

    def test_optimizer_instance__used_as_given(self):
        optimizer = keras.optimizers.Adam(0.05)
        self.assertIs(linear_probing._build_optimizer(optimizer, 0.1, 0.0, 100, 0), optimizer)

    def test_bad_input__raises_naming_value(self):
        x_train, y_train, x_test, y_test = separable_features(num_train=20, num_test=10)
        with self.assertRaisesRegex(ValueError, r"test_labels.shape=\(8,\)"):
            linear_probe(x_train, y_train, x_test, y_test[:8])
        with self.assertRaisesRegex(ValueError, r"train_features.shape=\(20,\)"):
            linear_probe(x_train[:, 0], y_train, x_test, y_test)
        with self.assertRaisesRegex(ValueError, "epochs=0"):
            linear_probe(x_train, y_train, x_test, y_test, epochs=0)
        with self.assertRaisesRegex(ValueError, "lr=-1"):
            linear_probe(x_train, y_train, x_test, y_test, lr=-1)
        with self.assertRaisesRegex(ValueError, "optimizer='lars'"):
            linear_probe(x_train, y_train, x_test, y_test, optimizer="lars")
        with self.assertRaisesRegex(ValueError, "num_classes=3"):
            linear_probe(x_train, y_train, x_test, y_test, num_classes=3)
        # One class: every prediction would be right, which says nothing.
        with self.assertRaisesRegex(ValueError, "at least two classes.*single class 2"):
            linear_probe(x_train, 0 * y_train + 2, x_test, 0 * y_test + 2)
