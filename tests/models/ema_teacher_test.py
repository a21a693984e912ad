"""The EMA teacher: momentum schedule, one-step-late update, defaults in one place."""

import inspect

import keras
import numpy as np

from keras_flexpredict.callbacks import EMATargetCallback
from keras_flexpredict.models import ema_teacher
from keras_flexpredict.testing import TestCase


def _scalar(value, dtype):
    return keras.Variable(value, dtype=dtype, trainable=False)


class EMATeacherTest(TestCase):
    def test_momentum_at__linear_ramp_clipped(self):
        start, end = 0.996, 1.0
        self.assertAllClose(ema_teacher.momentum_at(0, start, end, 10), start)
        self.assertAllClose(ema_teacher.momentum_at(5, start, end, 10), 0.998, atol=1e-7)
        self.assertAllClose(ema_teacher.momentum_at(50, start, end, 10), end)
        # No schedule set yet (total 0): the start value.
        self.assertAllClose(ema_teacher.momentum_at(7, start, end, 0), start)

    def test_apply_owed_update__once_per_optimiser_update(self):
        teacher = keras.Variable(np.zeros((3,), "float32"))
        student = keras.Variable(np.ones((3,), "float32"))
        pairs = [(teacher, student)]
        steps, updates = _scalar(0, "int32"), _scalar(0, "int32")
        start, end, total = _scalar(0.5, "float32"), _scalar(0.5, "float32"), _scalar(10.0, "float32")
        ema_teacher.apply_owed_update(pairs, steps, updates, start, end, total)
        self.assertAllClose(teacher, np.zeros(3))  # nothing owed
        steps.assign(1)
        ema_teacher.apply_owed_update(pairs, steps, updates, start, end, total)
        self.assertAllClose(teacher, np.full(3, 0.5))
        self.assertEqual(int(keras.ops.convert_to_numpy(updates.value)), 1)
        ema_teacher.apply_owed_update(pairs, steps, updates, start, end, total)
        self.assertAllClose(teacher, np.full(3, 0.5))  # up to date: no second update

    def test_apply_owed_update__skips_fixed_tables(self):
        teacher = keras.Variable(np.zeros((2,), "float32"))
        fixed = keras.Variable(np.ones((2,), "float32"), trainable=False)
        steps, updates = _scalar(1, "int32"), _scalar(0, "int32")
        ema_teacher.apply_owed_update(
            [(teacher, fixed)], steps, updates, _scalar(0.0, "float32"), _scalar(0.0, "float32"),
            _scalar(1.0, "float32"),
        )
        self.assertAllClose(teacher, np.zeros(2))

    def test_copy_student___teacher_equals_student(self):
        teacher = keras.Variable(np.zeros((2, 2), "float32"))
        student = keras.Variable(np.arange(4, dtype="float32").reshape(2, 2))
        ema_teacher.copy_student_([(teacher, student)])
        self.assertAllClose(teacher, student)

    def test_defaults__one_place_for_callback_and_model(self):
        self.assertEqual((ema_teacher.DEFAULT_START_MOMENTUM, ema_teacher.DEFAULT_END_MOMENTUM), (0.996, 1.0))
        params = inspect.signature(EMATargetCallback).parameters
        self.assertIs(params["start_momentum"].default, ema_teacher.DEFAULT_START_MOMENTUM)
        self.assertIs(params["end_momentum"].default, ema_teacher.DEFAULT_END_MOMENTUM)
