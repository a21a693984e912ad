import numpy as np
from keras import ops

from keras_flexpredict.optimizers import CosineWeightDecay
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from optimizer_test_utils import ReferenceCosineWDSchedule
from optimizer_test_utils import jit_compile
from optimizer_test_utils import reference_values

RTOL, ATOL = 2e-6, 1e-9


def schedule_values(schedule, steps):
    return to_numpy(schedule(ops.convert_to_tensor(np.asarray(steps, dtype="int32")))).astype(np.float64)


class CosineWeightDecayTest(TestCase):
    def test_call__matches_reference_at_every_step(self):
        cases = [
            # total, start, end
            (300, 0.04, 0.4),  # the I-JEPA ramp
            (7, 0.04, 0.4),
            (1, 0.04, 0.4),
            (100, 0.4, 0.04),  # decreasing: the max() clip side
            (50, 0.05, 0.05),
        ]
        for total, start, end in cases:
            with self.subTest(total=total, start=start, end=end):
                schedule = CosineWeightDecay(total, start_weight_decay=start, end_weight_decay=end)
                expected = reference_values(ReferenceCosineWDSchedule(start, total, final_wd=end), total)
                self.assertAllClose(schedule_values(schedule, np.arange(total)), expected, rtol=RTOL, atol=ATOL)

    def test_call__matches_reference_at_paper_scale(self):
        total = 300 * 625
        expected = reference_values(ReferenceCosineWDSchedule(0.04, total, final_wd=0.4), total)
        rng = np.random.default_rng(1)
        steps = np.concatenate([[0, 1, total // 2 - 1, total - 2, total - 1], rng.integers(0, total, size=200)])
        schedule = CosineWeightDecay(total)
        self.assertAllClose(schedule_values(schedule, steps), expected[steps], rtol=RTOL, atol=ATOL)

    def test_call__documented_off_by_one_conventions(self):
        schedule = CosineWeightDecay(total_steps=100)
        values = schedule_values(schedule, [0, 49, 99])
        # No warm-up: update 1 (step 0) is already past 0.04; update 50 half way;
        # update 100 (step 99) exactly 0.4.
        self.assertGreater(values[0], 0.04)
        self.assertAllClose(values[1:], np.array([0.22, 0.4]), rtol=RTOL, atol=ATOL)

    def test_call__constant_after_step_matches_stop_const_strategy(self):
        total, fix = 600, 500
        expected = reference_values(ReferenceCosineWDSchedule(0.04, total, final_wd=0.4, fix_wd_thres=fix), total)
        schedule = CosineWeightDecay(total, constant_after_step=fix)
        values = schedule_values(schedule, np.arange(total))
        self.assertAllClose(values, expected, rtol=RTOL, atol=ATOL)
        self.assertEqual(len(set(values[fix - 1 :].tolist())), 1)
        self.assertLess(values[-1], 0.39)

    def test_call__holds_end_value_after_total_steps(self):
        schedule = CosineWeightDecay(total_steps=20)
        self.assertAllClose(schedule_values(schedule, [19, 20, 30, 39, 500]), np.full(5, 0.4), rtol=RTOL)

    def test_call__under_jit_with_tensor_step(self):
        schedule = CosineWeightDecay(300, constant_after_step=250)
        compiled = jit_compile(lambda step: schedule(step))
        expected = reference_values(ReferenceCosineWDSchedule(0.04, 300, final_wd=0.4, fix_wd_thres=250), 300)
        for step in [0, 1, 150, 248, 249, 299]:
            value = compiled(ops.convert_to_tensor(step, dtype="int32"))
            self.assertAllClose(value, expected[step], rtol=RTOL, atol=ATOL)

    def test_get_config__round_trip(self):
        schedule = CosineWeightDecay(300, 0.05, 0.3, constant_after_step=250, name="wd")
        clone = self.run_config_round_trip_test(schedule)
        self.assertEqual(
            sorted(schedule.get_config()),
            sorted(["total_steps", "start_weight_decay", "end_weight_decay", "constant_after_step", "name"]),
        )
        steps = np.arange(0, 300, 7)
        self.assertAllClose(schedule_values(clone, steps), schedule_values(schedule, steps))

    def test_init__rejects_bad_values(self):
        bad = [
            ("total_steps", 0),
            ("total_steps", 3.0),
            ("start_weight_decay", -0.1),
            ("end_weight_decay", float("inf")),
            ("constant_after_step", -5),
        ]
        for name, value in bad:
            with self.subTest(name=name, value=value):
                with self.assertRaisesRegex(ValueError, name):
                    CosineWeightDecay(**{"total_steps": 100, name: value})
