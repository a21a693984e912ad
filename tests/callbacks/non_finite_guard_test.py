import os

import keras
import numpy as np
import tensorflow as tf

from keras_flexpredict.callbacks import NonFiniteGuard
from keras_flexpredict.callbacks import NonFiniteTrainingError
from keras_flexpredict.callbacks import find_non_finite_weight
from keras_flexpredict.testing import TestCase

EPOCHS, STEPS, BATCH = 3, 4, 2


def small_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def batches(bad_step=None):
    """EPOCHS * STEPS batches; global step `bad_step` (1-based) holds a NaN."""
    x = np.ones((EPOCHS * STEPS * BATCH, 3), "float32")
    if bad_step is not None:
        x[(bad_step - 1) * BATCH] = np.nan
    return tf.data.Dataset.from_tensor_slices((x, np.zeros((len(x), 2), "float32"))).batch(BATCH)


class PoisonWeightAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.get_layer("dense").kernel
            kernel.assign(np.array([[1.0, 1.0], [1.0, 1.0], [np.inf, 1.0]], "float32"))


class NonFiniteGuardTest(TestCase):
    def test_nan_loss__raises_naming_step_and_value_before_anything_saves(self):
        folder = self.get_temp_dir()
        checkpoint = keras.callbacks.ModelCheckpoint(
            os.path.join(folder, "epoch_{epoch}.weights.h5"), save_weights_only=True
        )
        model = small_model()
        with self.assertRaises(NonFiniteTrainingError) as raised:
            model.fit(batches(bad_step=7), epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0, shuffle=False,
                      callbacks=[NonFiniteGuard(), checkpoint])
        error = raised.exception
        self.assertIsInstance(error, FloatingPointError)
        self.assertEqual((error.step, error.epoch, error.batch, error.name), (7, 1, 2, "loss"))
        self.assertTrue(np.isnan(error.value))
        self.assertIn("step 7 (epoch 2, batch 3 of 4)", str(error))
        self.assertIn("The last finite loss was", str(error))
        self.assertIn("at step 6", str(error))
        # The checkpoint of epoch 2 was never written; epoch 1's is finite.
        self.assertEqual(sorted(os.listdir(folder)), ["epoch_1.weights.h5"])
        clone = small_model()
        clone.load_weights(os.path.join(folder, "epoch_1.weights.h5"))
        self.assertIsNone(find_non_finite_weight(clone))

    def test_non_finite_weight__raises_at_epoch_end_naming_the_variable(self):
        model = small_model()
        with self.assertRaises(NonFiniteTrainingError) as raised:
            model.fit(batches(), epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0, shuffle=False,
                      callbacks=[PoisonWeightAtEpochEnd(1), NonFiniteGuard()])
        error = raised.exception
        self.assertEqual((error.step, error.epoch, error.batch), (8, 1, None))
        self.assertEqual(error.value, np.inf)
        self.assertIn("dense/kernel", error.name)
        self.assertIn("the end of epoch 2 (step 8)", str(error))
        self.assertEqual(find_non_finite_weight(model), (error.name, np.inf))

    def test_finite_run__untouched(self):
        model = small_model()
        history = model.fit(batches(), epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0, shuffle=False, callbacks=[NonFiniteGuard()])
        self.assertEqual(len(history.history["loss"]), EPOCHS)
        self.assertIsNone(find_non_finite_weight(model))
