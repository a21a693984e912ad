import math

import keras
from keras import ops

from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class CosineWeightDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine ramp of the weight decay, step for step as the I-JEPA reference.

    Pass it as `weight_decay` of `JEPAAdamW`, which evaluates it from the
    optimiser's iteration count inside the compiled train step. The value for
    Keras step `s` (`optimizer.iterations`, the number of updates already
    applied) is what the reference `CosineWDSchedule.step()`
    (facebookresearch/ijepa, `src/utils/schedulers.py`) returns on its
    `k = s + 1`-th call (it is called before each optimiser step, so `k` counts
    the current update, 1-based):

    `end + (start - end) * 0.5 * (1 + cos(pi * k / total_steps))`, clipped so
    it never passes `end_weight_decay`. There is no warm-up; the first update
    already gets slightly more than `start_weight_decay`, update `total_steps`
    (Keras step `total_steps - 1`) exactly `end_weight_decay`. After
    `total_steps` the reference's cosine would turn back (it never gets there
    in its runs); here the value stays at `end_weight_decay`.

    Args:
        total_steps: int. Update at which `end_weight_decay` is reached
            (`T_max` in the reference, `int(ipe_scale * epochs *
            steps_per_epoch)`).
        start_weight_decay: float. Value at `k = 0` (`ref_wd` in the
            reference). Defaults to `0.04`.
        end_weight_decay: float. Value at `total_steps` and after (`final_wd`
            in the reference). Defaults to `0.4`.
        constant_after_step: int or `None`. If set, the value is frozen from
            update `constant_after_step` on (1-based): `schedule(s) ==
            schedule(constant_after_step - 1)` for all
            `s >= constant_after_step - 1`. This is StoP's `fix_wd_thres` with
            `fix_wd_strategy="const"` (its ViT-H/14 recipe freezes both the
            learning rate and the weight decay after epoch 250 of 300).
            Defaults to `None`.
        name: str. Name of the schedule. Defaults to `"CosineWeightDecay"`.

    Example:

    >>> schedule = CosineWeightDecay(total_steps=100)
    >>> round(float(schedule(49)), 6)  # update 50: half way
    0.22
    >>> round(float(schedule(99)), 6)  # update 100: last one
    0.4

    References:
    - [Assran et al., 2023, I-JEPA](https://arxiv.org/abs/2301.08243)
    - [Bar et al., 2024, StoP](https://arxiv.org/abs/2308.00566)
    """

    def __init__(
        self,
        total_steps,
        start_weight_decay=0.04,
        end_weight_decay=0.4,
        constant_after_step=None,
        name="CosineWeightDecay",
    ):
        super().__init__()
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.start_weight_decay = check_float("start_weight_decay", start_weight_decay, minimum=0)
        self.end_weight_decay = check_float("end_weight_decay", end_weight_decay, minimum=0)
        if constant_after_step is not None:
            constant_after_step = check_int("constant_after_step", constant_after_step, minimum=1)
        self.constant_after_step = constant_after_step
        self.name = name

    def __call__(self, step):
        k = ops.add(ops.cast(step, "float32"), 1.0)
        if self.constant_after_step is not None:
            k = ops.minimum(k, float(self.constant_after_step))
        progress = ops.minimum(ops.divide(k, float(self.total_steps)), 1.0)
        cosine = ops.multiply(0.5, ops.add(1.0, ops.cos(ops.multiply(math.pi, progress))))
        start, end = self.start_weight_decay, self.end_weight_decay
        value = ops.add(end, ops.multiply(start - end, cosine))
        # The reference clips at the end value, on whichever side it lies.
        if end <= start:
            return ops.maximum(end, value)
        return ops.minimum(end, value)

    def get_config(self):
        return {
            "total_steps": self.total_steps,
            "start_weight_decay": self.start_weight_decay,
            "end_weight_decay": self.end_weight_decay,
            "constant_after_step": self.constant_after_step,
            "name": self.name,
        }
