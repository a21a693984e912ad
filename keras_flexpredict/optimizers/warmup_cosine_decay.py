import math

import keras
from keras import ops

from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then cosine decay, step for step as the I-JEPA reference.

    The value for Keras step `s` (`optimizer.iterations`, the number of updates
    already applied) is what the reference `WarmupCosineSchedule.step()`
    (facebookresearch/ijepa, `src/utils/schedulers.py`) returns on its
    `k = s + 1`-th call. The reference calls `step()` *before* each optimiser
    step, so `k` counts the current update, 1-based; all step arguments below
    are in these units. With `W = warmup_steps`, `T = total_steps`:

    - `k < W`: `start_lr + (k / max(1, W)) * (peak_lr - start_lr)`. So `start_lr`
      itself is never used: the first update already gets
      `start_lr + (peak_lr - start_lr) / W`.
    - `k >= W`: `max(final_lr, final_lr + (peak_lr - final_lr) * 0.5 *
      (1 + cos(pi * (k - W) / max(1, T - W))))`: update `W` gets exactly
      `peak_lr`, update `T` (Keras step `T - 1`, the last one) exactly `final_lr`.
    - After `T` the reference cosine would rise again (it never gets there in
      its runs); here the value stays at `final_lr`.

    `T` is the reference's `T_max = int(ipe_scale * epochs * steps_per_epoch)`:
    pass a larger `total_steps` than you train for to mimic `ipe_scale > 1`.

    Args:
        total_steps: int. Update at which the cosine reaches `final_lr`
            (`T_max` in the reference).
        warmup_steps: int. Length of the linear warm-up, in updates (`0`: no
            warm-up).
        start_lr: float. Value the warm-up starts from (at `k = 0`).
        peak_lr: float. Value at the end of the warm-up (`ref_lr` in the
            reference).
        final_lr: float. Value at `total_steps` and after. Defaults to `0.0`.
        constant_after_step: int or `None`. If set, the value is frozen from
            update `constant_after_step` on (1-based, as above): every later
            update uses the value of update `constant_after_step`, i.e.
            `schedule(s) == schedule(constant_after_step - 1)` for all
            `s >= constant_after_step - 1`. This is StoP's `fix_lr_thres` with
            `fix_lr_strategy="const"` (given there as
            `epochs * steps_per_epoch`; the ViT-H/14 recipe uses epoch 250 of
            300). If it falls inside the warm-up, the warm-up value is frozen
            (StoP's code would finish the warm-up, then jump). Defaults to
            `None`.
        name: str. Name of the schedule. Defaults to `"WarmupCosineDecay"`.

    Example:

    >>> schedule = WarmupCosineDecay(
    ...     total_steps=100, warmup_steps=10,
    ...     start_lr=2e-4, peak_lr=8e-4, final_lr=1e-4)
    >>> round(float(schedule(9)), 8)  # update 10: end of warm-up
    0.0008
    >>> round(float(schedule(99)), 8)  # update 100: last one
    0.0001
    >>> optimizer = keras.optimizers.AdamW(learning_rate=schedule)

    References:
    - [Assran et al., 2023, I-JEPA](https://arxiv.org/abs/2301.08243)
    - [Bar et al., 2024, StoP](https://arxiv.org/abs/2308.00566)
    """

    def __init__(
        self,
        total_steps,
        warmup_steps,
        start_lr,
        peak_lr,
        final_lr=0.0,
        constant_after_step=None,
        name="WarmupCosineDecay",
    ):
        super().__init__()
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.start_lr = check_float("start_lr", start_lr, minimum=0)
        self.peak_lr = check_float("peak_lr", peak_lr, minimum=0)
        self.final_lr = check_float("final_lr", final_lr, minimum=0)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                "`warmup_steps` must not exceed `total_steps`. Received: "
                f"warmup_steps={self.warmup_steps}, total_steps={self.total_steps}"
            )
        if constant_after_step is not None:
            constant_after_step = check_int("constant_after_step", constant_after_step, minimum=1)
        self.constant_after_step = constant_after_step
        self.name = name

    def __call__(self, step):
        # `k`: the reference's counter, advanced before each update.
        k = ops.add(ops.cast(step, "float32"), 1.0)
        if self.constant_after_step is not None:
            k = ops.minimum(k, float(self.constant_after_step))
        warmup = float(self.warmup_steps)
        warm_value = ops.add(
            self.start_lr,
            ops.multiply(
                ops.divide(k, float(max(1, self.warmup_steps))),
                self.peak_lr - self.start_lr,
            ),
        )
        progress = ops.divide(
            ops.subtract(k, warmup), float(max(1, self.total_steps - self.warmup_steps))
        )
        progress = ops.minimum(progress, 1.0)
        cosine = ops.multiply(0.5, ops.add(1.0, ops.cos(ops.multiply(math.pi, progress))))
        cos_value = ops.maximum(
            self.final_lr,
            ops.add(self.final_lr, ops.multiply(self.peak_lr - self.final_lr, cosine)),
        )
        return ops.where(ops.less(k, warmup), warm_value, cos_value)

    def get_config(self):
        return {
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start_lr": self.start_lr,
            "peak_lr": self.peak_lr,
            "final_lr": self.final_lr,
            "constant_after_step": self.constant_after_step,
            "name": self.name,
        }
