import numpy as np
import tensorflow as tf

from evaluation_test_utils import StandInEncoder
from keras_flexpredict.data import add_element_seeds
from keras_flexpredict.data import eval_transform
from keras_flexpredict.data import vissl_train_transform
from keras_flexpredict.evaluation import augmented_linear_probe
from keras_flexpredict.evaluation.augmented_linear_probing import multistep_learning_rate
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy


PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [30, 200, 200], [200, 30, 200]])


def colour_images(num, seed):
    """Noisy solid-colour 20 x 24 images, class = colour."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num) % len(PALETTE)
    images = PALETTE[labels][:, None, None, :] + rng.normal(0, 25, size=(num, 20, 24, 3))
    return np.clip(images, 0, 255).astype("uint8"), labels.astype("int32")


def datasets(num_train=48, num_test=32):
    """Training images through VISSL's augmentation (new crops every epoch), test
    images through its 256/224-style evaluation transform."""
    images, labels = colour_images(num_train, 0)
    train = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(num_train, seed=0)
    augment = vissl_train_transform(16)
    train = add_element_seeds(train, seed=0).map(lambda e, s: (augment(e[0], s), e[1])).batch(16)
    images, labels = colour_images(num_test, 1)
    evaluate = eval_transform(16, interpolation="bicubic")
    test = tf.data.Dataset.from_tensor_slices((images, labels)).map(lambda x, y: (evaluate(x), y)).batch(16)
    return train, test


class AugmentedLinearProbeTest(TestCase):
    def test_fit_through_frozen_encoder__multistep_schedule_and_learns_colour(self):
        encoder = StandInEncoder(image_size=16, patch_size=4, hidden_dim=16, depth=1)
        encoder(np.zeros((1, 16, 16, 3), "float32"))
        before = [to_numpy(w) for w in encoder.weights]
        train, test = datasets()
        result = augmented_linear_probe(
            encoder, train, test, num_classes=6, epochs=4, lr=0.1, lr_milestones=(2, 3)
        )
        self.assertEqual(result["learning_rates"], [0.1, 0.1, 0.01, 0.001])
        self.assertEqual((result["protocol"], result["variant"]), ("linear", "augmented"))
        self.assertTrue(np.isfinite(result["train_loss"]))
        # Six colours, chance 17%: the mean-pooled tokens carry the colour.
        self.assertGreater(result["top1"], 0.8)
        self.assertGreaterEqual(result["top5"], result["top1"])
        for old, new in zip(before, encoder.weights):
            self.assertAllEqual(old, to_numpy(new))

    def test_multistep_learning_rate__vissl_defaults(self):
        rates = [multistep_learning_rate(e, 0.01, (8, 16, 24), 0.1) for e in range(28)]
        self.assertEqual(rates[:8], [0.01] * 8)
        self.assertEqual(rates[8:16], [0.001] * 8)
        self.assertEqual(rates[16:24], [0.0001] * 8)
        self.assertEqual(rates[24:], [1e-05] * 4)

    def test_bad_arguments__raise_naming_value(self):
        train = test = None  # arguments are checked before any data is read
        encoder = StandInEncoder(image_size=16)
        with self.assertRaisesRegex(ValueError, r"lr_milestones=\(8, 4\)"):
            augmented_linear_probe(encoder, train, test, 6, lr_milestones=(8, 4))
        with self.assertRaisesRegex(ValueError, "lr_decay=2"):
            augmented_linear_probe(encoder, train, test, 6, lr_decay=2)
        with self.assertRaisesRegex(ValueError, "momentum=1.0"):
            augmented_linear_probe(encoder, train, test, 6, momentum=1.0)
        with self.assertRaisesRegex(ValueError, "num_classes=0"):
            augmented_linear_probe(encoder, train, test, 0)
        with self.assertRaisesRegex(ValueError, "two classes.*num_classes=1"):
            augmented_linear_probe(encoder, train, test, 1)
