import keras
import numpy as np
from keras import ops

from keras_flexpredict.optimizers import WarmupCosineDecay
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from optimizer_test_utils import ReferenceWarmupCosineSchedule
from optimizer_test_utils import jit_compile
from optimizer_test_utils import reference_values

# Float32 schedule against a float64 reference.
RTOL, ATOL = 2e-6, 1e-10


def schedule_values(schedule, steps):
    return to_numpy(schedule(ops.convert_to_tensor(np.asarray(steps, dtype="int32")))).astype(np.float64)


class WarmupCosineDecayTest(TestCase):
    def test_call__matches_reference_at_every_step(self):
        cases = [
            # total, warmup, start, peak, final
            (300, 40, 2e-4, 1e-3, 1e-6),  # ViT-H shape, scaled down
            (600, 15, 2e-4, 8e-4, 1e-4),  # ViT-B / ViT-L shape
            (50, 0, 0.0, 1e-3, 0.0),  # no warm-up
            (50, 1, 1e-4, 1e-3, 1e-5),
            (50, 50, 1e-4, 1e-3, 1e-5),  # warm-up over the whole run
            (37, 5, 5e-4, 1e-3, 2e-3),  # final above peak: the max() clip
        ]
        for total, warmup, start, peak, final in cases:
            with self.subTest(total=total, warmup=warmup):
                schedule = WarmupCosineDecay(total, warmup, start, peak, final)
                expected = reference_values(
                    ReferenceWarmupCosineSchedule(warmup, start, peak, total, final_lr=final), total
                )
                self.assertAllClose(schedule_values(schedule, np.arange(total)), expected, rtol=RTOL, atol=ATOL)

    def test_call__matches_reference_at_paper_scale(self):
        # ViT-B/16 recipe: 600 epochs of 625 steps (batch 2048), 15 warm-up epochs.
        ipe = 625
        total, warmup = 600 * ipe, 15 * ipe
        expected = reference_values(ReferenceWarmupCosineSchedule(warmup, 2e-4, 8e-4, total, final_lr=1e-4), total)
        rng = np.random.default_rng(0)
        steps = np.concatenate(
            [
                [0, 1, 2, warmup - 2, warmup - 1, warmup, warmup + 1, total - 2, total - 1],
                rng.integers(0, total, size=200),
            ]
        )
        schedule = WarmupCosineDecay(total, warmup, 2e-4, 8e-4, 1e-4)
        self.assertAllClose(schedule_values(schedule, steps), expected[steps], rtol=RTOL, atol=ATOL)

    def test_call__documented_off_by_one_conventions(self):
        schedule = WarmupCosineDecay(total_steps=100, warmup_steps=10, start_lr=2e-4, peak_lr=8e-4, final_lr=1e-4)
        values = schedule_values(schedule, [0, 9, 99])
        # The first update already gets one warm-up increment; update 10 (step 9)
        # the peak; update 100 (step 99) the final value.
        self.assertAllClose(values, np.array([2e-4 + 6e-4 / 10, 8e-4, 1e-4]), rtol=RTOL, atol=ATOL)

    def test_call__constant_after_step_matches_stop_const_strategy(self):
        # StoP ViT-H/14: fix_lr_thres = 250 of 300 epochs, here 2 steps an epoch.
        ipe = 2
        total, warmup, fix = 300 * ipe, 40 * ipe, 250 * ipe
        expected = reference_values(
            ReferenceWarmupCosineSchedule(warmup, 2e-4, 1e-3, total, final_lr=1e-6, fix_lr_thres=fix), total
        )
        schedule = WarmupCosineDecay(total, warmup, 2e-4, 1e-3, 1e-6, constant_after_step=fix)
        values = schedule_values(schedule, np.arange(total))
        self.assertAllClose(values, expected, rtol=RTOL, atol=ATOL)
        # Really constant from update `fix` (Keras step fix - 1) on, and above final_lr.
        self.assertEqual(len(set(values[fix - 1 :].tolist())), 1)
        self.assertGreater(values[-1], 1e-5)
        self.assertNotEqual(values[fix - 2], values[fix - 1])

    def test_call__holds_final_lr_after_total_steps(self):
        schedule = WarmupCosineDecay(total_steps=20, warmup_steps=5, start_lr=0.0, peak_lr=1.0, final_lr=0.1)
        self.assertAllClose(schedule_values(schedule, [19, 20, 25, 39, 1000]), np.full(5, 0.1), rtol=RTOL)

    def test_call__under_jit_with_tensor_step(self):
        schedule = WarmupCosineDecay(300, 40, 2e-4, 1e-3, 1e-6, constant_after_step=250)
        compiled = jit_compile(lambda step: schedule(step))
        expected = reference_values(
            ReferenceWarmupCosineSchedule(40, 2e-4, 1e-3, 300, final_lr=1e-6, fix_lr_thres=250), 300
        )
        for step in [0, 38, 39, 120, 248, 249, 299]:
            value = compiled(ops.convert_to_tensor(step, dtype="int32"))
            self.assertAllClose(value, expected[step], rtol=RTOL, atol=ATOL)

    def test_call__drives_keras_optimizer_learning_rate(self):
        schedule = WarmupCosineDecay(total_steps=10, warmup_steps=3, start_lr=0.0, peak_lr=0.3, final_lr=0.0)
        optimizer = keras.optimizers.SGD(learning_rate=schedule)
        variable = keras.Variable(np.zeros((1,), "float32"))
        expected = reference_values(ReferenceWarmupCosineSchedule(3, 0.0, 0.3, 10), 4)
        for step in range(4):
            # SGD with gradient -1 moves the weight by exactly the learning rate.
            optimizer.apply_gradients([(ops.convert_to_tensor([-1.0]), variable)])
            self.assertAllClose(variable, np.array([expected[: step + 1].sum()]), rtol=1e-6)

    def test_get_config__round_trip(self):
        schedule = WarmupCosineDecay(300, 40, 2e-4, 1e-3, 1e-6, constant_after_step=250, name="vit_h")
        clone = self.run_config_round_trip_test(schedule)
        self.assertEqual(
            sorted(schedule.get_config()),
            sorted(
                ["total_steps", "warmup_steps", "start_lr", "peak_lr", "final_lr", "constant_after_step", "name"]
            ),
        )
        steps = np.arange(0, 300, 7)
        self.assertAllClose(schedule_values(clone, steps), schedule_values(schedule, steps))

    def test_init__rejects_bad_values(self):
        good = dict(total_steps=100, warmup_steps=10, start_lr=1e-4, peak_lr=1e-3, final_lr=0.0)
        bad = [
            ("total_steps", 0),
            ("total_steps", 10.5),
            ("warmup_steps", -1),
            ("warmup_steps", 101),
            ("peak_lr", -1e-3),
            ("start_lr", float("nan")),
            ("final_lr", "small"),
            ("constant_after_step", 0),
            ("constant_after_step", True),
        ]
        for name, value in bad:
            with self.subTest(name=name, value=value):
                with self.assertRaisesRegex(ValueError, name):
                    WarmupCosineDecay(**{**good, name: value})
