import os

import numpy as np

import keras_flexpredict as kfp
from keras_flexpredict.testing.test_case import TestCase


def tiny_encoder():
    return kfp.models.ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=2, num_heads=2)


class ViTClassifierTest(TestCase):
    def test_fit_save_and_reload(self):
        classifier = kfp.models.ViTClassifier(tiny_encoder(), num_classes=3, last_n_layers=2, dropout=0.1)
        self.run_config_round_trip_test(classifier)
        classifier.compile()
        images = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype("float32")
        labels = np.array([0, 1, 2, 0])
        before = np.array(classifier.encoder.blocks[0].qkv.kernel)
        history = classifier.fit(images, labels, epochs=1, batch_size=4, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertIn("accuracy", history.history)
        self.assertGreater(np.max(np.abs(np.array(classifier.encoder.blocks[0].qkv.kernel) - before)), 0)
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
