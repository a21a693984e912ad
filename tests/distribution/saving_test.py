import os

import keras
import numpy as np

from keras_flexpredict import distribution as kd
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict


class DistributedSavingTest(TestCase):
    def test_save_model__single_process_writes_atomically_and_reloads(self):
        self.assertTrue(kd.is_chief())
        self.assertEqual(kd.process_index(), 0)
        kd.barrier()  # a no-op with one process
        model = tiny_flexpredict()
        directory = self.get_temp_dir()
        path = os.path.join(directory, "sub", "model.keras")
        with kd.host_state(model):  # nothing to gather in one process
            kd.save_model(model, path)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["model.keras"])  # no temp file left
        loaded = keras.saving.load_model(path)
        images = structured_images(2)
        self.assertAllClose(loaded.target_encoder(images), model.target_encoder(images), atol=1e-6)

        weights = os.path.join(directory, "model.weights.h5")
        kd.save_weights(model, weights)
        clone = tiny_flexpredict(seed=1)
        clone.load_weights(weights)
        for a, b in zip(clone.weights, model.weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))

    def test_save_model__bad_suffix_raises_before_writing(self):
        model = tiny_flexpredict()
        directory = self.get_temp_dir()
        with self.assertRaisesRegex(ValueError, "filepath=.*model.h5"):
            kd.save_model(model, os.path.join(directory, "model.h5"))
        with self.assertRaisesRegex(ValueError, "filepath=.*model.keras"):
            kd.save_weights(model, os.path.join(directory, "model.keras"))
        self.assertEqual(os.listdir(directory), [])
