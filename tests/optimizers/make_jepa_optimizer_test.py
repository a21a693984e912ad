import keras
import numpy as np
from keras import ops

from keras_flexpredict.optimizers import CosineWeightDecay
from keras_flexpredict.optimizers import JEPAAdamW
from keras_flexpredict.optimizers import WarmupCosineDecay
from keras_flexpredict.optimizers import make_jepa_optimizer
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from optimizer_test_utils import ReferenceCosineWDSchedule
from optimizer_test_utils import ReferenceWarmupCosineSchedule
from optimizer_test_utils import reference_values


class MakeJEPAOptimizerTest(TestCase):
    def test_make__reference_defaults(self):
        optimizer = make_jepa_optimizer(
            total_steps=600, warmup_steps=15, start_lr=2e-4, peak_lr=8e-4, final_lr=1e-4
        )
        self.assertIsInstance(optimizer, JEPAAdamW)
        self.assertIsInstance(optimizer._learning_rate, WarmupCosineDecay)
        self.assertIsInstance(optimizer.weight_decay, CosineWeightDecay)
        self.assertEqual(optimizer.weight_decay.start_weight_decay, 0.04)
        self.assertEqual(optimizer.weight_decay.end_weight_decay, 0.4)
        self.assertTrue(optimizer.exclude_1d_from_weight_decay)
        self.assertIsNone(optimizer.clipnorm)
        self.assertIsNone(optimizer.global_clipnorm)
        steps = ops.convert_to_tensor(np.arange(600, dtype="int32"))
        lr = reference_values(ReferenceWarmupCosineSchedule(15, 2e-4, 8e-4, 600, final_lr=1e-4), 600)
        wd = reference_values(ReferenceCosineWDSchedule(0.04, 600, final_wd=0.4), 600)
        self.assertAllClose(optimizer._learning_rate(steps), lr, rtol=2e-6, atol=1e-10)
        self.assertAllClose(optimizer.weight_decay(steps), wd, rtol=2e-6, atol=1e-9)

    def test_make__constant_after_step_freezes_both_schedules(self):
        # StoP ViT-H/14, 2 steps an epoch: fix_lr_thres = fix_wd_thres = 250 of 300 epochs.
        optimizer = make_jepa_optimizer(
            total_steps=600, warmup_steps=80, start_lr=2e-4, peak_lr=1e-3, final_lr=1e-6, constant_after_step=500
        )
        steps = ops.convert_to_tensor(np.arange(600, dtype="int32"))
        lr = reference_values(
            ReferenceWarmupCosineSchedule(80, 2e-4, 1e-3, 600, final_lr=1e-6, fix_lr_thres=500), 600
        )
        wd = reference_values(ReferenceCosineWDSchedule(0.04, 600, final_wd=0.4, fix_wd_thres=500), 600)
        self.assertAllClose(optimizer._learning_rate(steps), lr, rtol=2e-6, atol=1e-10)
        self.assertAllClose(optimizer.weight_decay(steps), wd, rtol=2e-6, atol=1e-9)
        self.assertEqual(len(set(to_numpy(optimizer.weight_decay(steps))[499:].tolist())), 1)

    def test_make__clipping_and_extra_arguments(self):
        optimizer = make_jepa_optimizer(
            total_steps=10, warmup_steps=2, start_lr=0.0, peak_lr=1e-3, final_lr=0.0,
            clipnorm=1.0, epsilon=1e-6, name="jepa_opt",
        )
        self.assertEqual(optimizer.clipnorm, 1.0)
        self.assertEqual(optimizer.epsilon, 1e-6)
        self.assertEqual(optimizer.name, "jepa_opt")
        optimizer = make_jepa_optimizer(
            total_steps=10, warmup_steps=2, start_lr=0.0, peak_lr=1e-3, final_lr=0.0, global_clipnorm=3.0
        )
        self.assertEqual(optimizer.global_clipnorm, 3.0)

    def test_make__trains_a_model(self):
        optimizer = make_jepa_optimizer(total_steps=4, warmup_steps=1, start_lr=1e-3, peak_lr=1e-2, final_lr=1e-3)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse")
        x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
        history = model.fit(x, x.sum(axis=1, keepdims=True), batch_size=4, epochs=2, verbose=0)
        losses = history.history["loss"]
        self.assertTrue(np.all(np.isfinite(losses)))
        self.assertLess(losses[-1], losses[0])

    def test_make__rejects_bad_values_before_building(self):
        with self.assertRaisesRegex(ValueError, "warmup_steps"):
            make_jepa_optimizer(total_steps=10, warmup_steps=20, start_lr=0.0, peak_lr=1e-3, final_lr=0.0)
        with self.assertRaisesRegex(ValueError, "end_weight_decay"):
            make_jepa_optimizer(
                total_steps=10, warmup_steps=2, start_lr=0.0, peak_lr=1e-3, final_lr=0.0, end_weight_decay=-1.0
            )
