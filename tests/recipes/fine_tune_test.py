import os

import numpy as np
import pytest
from absl import flags

import keras_flexpredict as kfp
from keras_flexpredict.testing.test_case import TestCase
from recipes import fine_tune

pytest.importorskip("torch")  # reads the official checkpoint
pytest.importorskip("tensorflow")  # the procedural data pipeline

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "convert", "fixtures", "official_tiny16.pth.tar")


class FineTuneExampleTest(TestCase):
    def test_official_checkpoint__fine_tunes_and_saves_a_classifier(self):
        fv = flags.FlagValues()
        fine_tune.define_flags(fv)
        output = os.path.join(self.get_temp_dir(), "classifier")
        fv(["fine_tune", f"--encoder={SHARED}", "--num_heads=2", "--num_train=16", "--num_test=8",
            "--epochs=1", "--batch_size=8", f"--output={output}"])
        result = fine_tune.fine_tune(fv)
        self.assertTrue(np.isfinite(result["history"]["loss"][0]))
        self.assertTrue(0.0 <= result["test_accuracy"] <= 1.0)
        classifier = kfp.models.ViTClassifier.from_preset(output, num_classes=3)
        self.assertEqual(classifier.encoder.image_size, (96, 96))
        # The whole encoder was fine-tuned, starting from the checkpoint's target encoder.
        start = kfp.models.ViTEncoder.from_official_checkpoint(SHARED, num_heads=2, verbose=False)
        self.assertGreater(
            np.max(np.abs(np.asarray(classifier.encoder.blocks[0].qkv.kernel) - np.asarray(start.blocks[0].qkv.kernel))), 0
        )
