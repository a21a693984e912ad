"""Owner of the EMA schedule of FlexPredict's target encoder."""

import keras

from keras_flexpredict.models.ema_teacher import DEFAULT_END_MOMENTUM
from keras_flexpredict.models.ema_teacher import DEFAULT_START_MOMENTUM


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class EMATargetCallback(keras.callbacks.Callback):
    """Drives the EMA of the target encoder: `w_bar <- m w_bar + (1 - m) w`, with `m`
    rising linearly from `start_momentum` to `end_momentum` over `total_steps`.

    The update itself runs inside the compiled train step of `FlexPredict` (a per-batch
    callback would cost a host round trip and a second pass over the weights every
    step); this callback owns the schedule: at the start of `fit` it writes the schedule
    into the model, and at the end it applies the update owed for the last step. The
    momentum of step `k` is computed from the model's step counter (equal to the
    optimiser's iteration count, and saved with the weights), so a resumed run
    continues the same schedule exactly.

    Steps are real optimiser updates: with `gradient_accumulation_steps=k` on the
    optimiser the EMA runs once per `k` batches, and an inferred `total_steps` is
    `epochs * steps_per_epoch // k`.

    Args:
        start_momentum: float in [0, 1]. Defaults to 0.996
            (`keras_flexpredict.models.ema_teacher.DEFAULT_START_MOMENTUM`).
        end_momentum: float in [0, 1]. Defaults to 1.0 (`DEFAULT_END_MOMENTUM`).
        total_steps: int or None. Length of the ramp in optimiser updates; None takes
            `epochs * steps_per_epoch` of the `fit` call (which must then be known),
            divided by the optimiser's `gradient_accumulation_steps` if set.

    Example:
    >>> callback = EMATargetCallback(start_momentum=0.996, end_momentum=1.0)
    >>> # model.fit(dataset, epochs=10, callbacks=[callback])
    """

    def __init__(self, start_momentum=DEFAULT_START_MOMENTUM, end_momentum=DEFAULT_END_MOMENTUM, total_steps=None):
        super().__init__()
        for name, value in (("start_momentum", start_momentum), ("end_momentum", end_momentum)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value}")
        if total_steps is not None and int(total_steps) < 1:
            raise ValueError(f"`total_steps` must be a positive int. Received: total_steps={total_steps}")
        self.start_momentum = float(start_momentum)
        self.end_momentum = float(end_momentum)
        self.total_steps = None if total_steps is None else int(total_steps)

    def resolved_total_steps(self):
        if self.total_steps is not None:
            return self.total_steps
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if not epochs or not steps:
            raise ValueError(
                "EMATargetCallback cannot infer the run length (the dataset has no known "
                f"size). Pass `total_steps`. Received: epochs={epochs}, steps={steps}"
            )
        accumulation = 1
        if hasattr(self.model, "gradient_accumulation_steps"):
            accumulation = self.model.gradient_accumulation_steps()
        return max(1, int(epochs) * int(steps) // accumulation)

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "set_ema_schedule"):
            raise ValueError(
                f"EMATargetCallback drives a FlexPredict model. Received: model={type(self.model).__name__}"
            )
        self.model.set_ema_schedule(self.start_momentum, self.end_momentum, self.resolved_total_steps())
        self.model.sync_accumulation()

    def on_train_end(self, logs=None):
        self.model.update_target_encoder()

    def get_config(self):
        return {
            "start_momentum": self.start_momentum,
            "end_momentum": self.end_momentum,
            "total_steps": self.total_steps,
        }
