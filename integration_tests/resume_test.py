"""A run killed after epoch 1 of 2 and resumed with BackupAndRestore ends with the same
weights as an uninterrupted run: masks, StoP noise, EMA momentum and both optimiser
schedules must all resume."""

import os
import re

import keras
import numpy as np

import keras_flexpredict as kfp
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict

EPOCHS, STEPS, BATCH = 2, 2, 8


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("simulated kill after epoch 1")


def make_model(initial_weights, accumulation=None, steps=STEPS):
    model = tiny_flexpredict()
    model.set_weights(initial_weights)
    total = EPOCHS * steps // (accumulation or 1)
    model.compile(
        optimizer=kfp.optimizers.make_jepa_optimizer(
            total_steps=total, warmup_steps=1, start_lr=1e-3, peak_lr=3e-3, final_lr=1e-4,
            gradient_accumulation_steps=accumulation,
        )
    )
    return model


def state(model):
    """Every variable in order, seed-generator states included, then the optimiser's."""
    variables = list(model.variables) + list(model.optimizer.variables)
    # Paths without Keras's auto-uniquified suffixes (`seed_generator_6` -> `seed_generator`).
    return [(re.sub(r"_\d+", "", v.path), to_numpy(v)) for v in variables]


class ResumeTest(TestCase):
    def test_backup_and_restore__resumed_run_equals_uninterrupted(self):
        images = structured_images(STEPS * BATCH)
        initial = tiny_flexpredict().get_weights()
        tmp = self.get_temp_dir()
        fit_kwargs = dict(batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        ema = lambda: kfp.callbacks.EMATargetCallback(start_momentum=0.9, end_momentum=1.0)

        straight = make_model(initial)
        straight.fit(images, callbacks=[keras.callbacks.BackupAndRestore(os.path.join(tmp, "a")), ema()], **fit_kwargs)

        backup = keras.callbacks.BackupAndRestore(os.path.join(tmp, "b"))
        killed = make_model(initial)
        with self.assertRaises(KeyboardInterrupt):
            killed.fit(images, callbacks=[backup, ema(), Interrupt()], **fit_kwargs)
        resumed = make_model(initial)
        resumed.fit(images, callbacks=[keras.callbacks.BackupAndRestore(os.path.join(tmp, "b")), ema()], **fit_kwargs)

        expected, got = state(straight), state(resumed)
        self.assertEqual([p for p, _ in expected], [p for p, _ in got])
        self.assertTrue(any("seed_generator" in p for p, _ in got))
        self.assertEqual(int(to_numpy(resumed.train_steps)), EPOCHS * STEPS)
        self.assertEqual(int(to_numpy(resumed.optimizer.iterations)), EPOCHS * STEPS)
        # torch CPU kernels are deterministic here too; the bound is 1e-6 everywhere.
        for (path, want), (_, have) in zip(expected, got):
            np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-6, err_msg=path)

    def test_backup_and_restore__gradient_accumulation_resumes_mid_update(self):
        # 3 batches an epoch accumulated in pairs: the kill after epoch 1 falls inside
        # real update 2 (its first batch done, the gradient in the accumulator).
        k, steps = 2, 3
        images = structured_images(steps * BATCH)
        initial = tiny_flexpredict().get_weights()
        tmp = self.get_temp_dir()
        fit_kwargs = dict(batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        ema = lambda: kfp.callbacks.EMATargetCallback(start_momentum=0.9, end_momentum=1.0)

        straight = make_model(initial, k, steps)
        straight.fit(images, callbacks=[ema()], **fit_kwargs)
        killed = make_model(initial, k, steps)
        with self.assertRaises(KeyboardInterrupt):
            killed.fit(images, callbacks=[keras.callbacks.BackupAndRestore(tmp), ema(), Interrupt()], **fit_kwargs)
        self.assertEqual(int(to_numpy(killed.accumulated_batches)), 1)
        resumed = make_model(initial, k, steps)
        resumed.fit(images, callbacks=[keras.callbacks.BackupAndRestore(tmp), ema()], **fit_kwargs)

        real = EPOCHS * steps // k
        for model in (straight, resumed):
            counters = [int(to_numpy(v)) for v in (
                model.optimizer.iterations, model.train_steps, model.ema_updates, model.accumulated_batches)]
            self.assertEqual(counters, [real, real, real, 0])
        self.assertAllClose(straight.ema_total_steps, real)
        for (path, want), (_, have) in zip(state(straight), state(resumed)):
            np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-6, err_msg=path)
