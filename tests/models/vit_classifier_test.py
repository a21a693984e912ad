import os

import keras
import numpy as np

import keras_flexpredict as kfp
from keras_flexpredict.testing.test_case import TestCase


def tiny_encoder():
    return kfp.models.ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=2, num_heads=2)


class ViTClassifierTest(TestCase):
    def test_compile_defaults_save_and_reload(self):
        # Fitting is exercised by tests/recipes/fine_tune_test.py.
        classifier = kfp.models.ViTClassifier(tiny_encoder(), num_classes=3, last_n_layers=2, dropout=0.1)
        self.run_config_round_trip_test(classifier)
        classifier.compile()
        self.assertIsInstance(classifier.optimizer, keras.optimizers.AdamW)
        self.assertTrue(classifier.loss.from_logits)
        images = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype("float32")
        self.assertEqual(tuple(classifier(images).shape), (4, 3))
        self.run_saving_test(classifier, lambda m: m(images, training=False))
        folder = classifier.save_to_preset(os.path.join(self.get_temp_dir(), "clf"))
        reloaded = kfp.models.ViTClassifier.from_preset(folder, num_classes=3)
        self.assertAllClose(reloaded(images), classifier(images), atol=1e-6)

    def test_from_encoder_preset__frozen_encoder(self):
        folder = tiny_encoder().save_to_preset(os.path.join(self.get_temp_dir(), "enc"))
        classifier = kfp.models.ViTClassifier.from_preset(folder, num_classes=2, freeze_encoder=True)
        self.assertEqual([w.path for w in classifier.trainable_weights], ["vit_classifier/head/kernel", "vit_classifier/head/bias"])

    def test_bad_arguments__named(self):
        with self.assertRaisesRegex(ValueError, "Received: pooling='cls'"):
            kfp.models.ViTClassifier(tiny_encoder(), num_classes=2, pooling="cls")
        with self.assertRaisesRegex(ValueError, "Received: last_n_layers=3"):
            kfp.models.ViTClassifier(tiny_encoder(), num_classes=2, last_n_layers=3)
