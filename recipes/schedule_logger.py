"""Adds the schedule values of a FlexPredict run to each epoch's logs."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class ScheduleLogger(keras.callbacks.Callback):
    """Puts `learning_rate`, `weight_decay` and `ema_momentum` into the epoch logs, so
    a `CSVLogger` or `TensorBoard` placed after it records them with the loss.

    The values are those of the next optimiser step, as Keras's `TensorBoard` reports
    the learning rate (`optimizer.learning_rate`). With a `skipped_counter` (the
    `SkippedImageCounter` of the input pipeline) it also logs `skipped_images`, the
    number of unreadable images the pipeline skipped so far in this process.

    Args:
        skipped_counter: `kfp.data.SkippedImageCounter` or None. Defaults to None.

    Example:
    >>> callbacks = [ScheduleLogger(), keras.callbacks.CSVLogger("/tmp/log.csv")]
    """

    def __init__(self, skipped_counter=None):
        super().__init__()
        self.skipped_counter = skipped_counter

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(ops.convert_to_numpy(optimizer.learning_rate))
        if hasattr(optimizer, "current_weight_decay"):
            logs["weight_decay"] = float(ops.convert_to_numpy(optimizer.current_weight_decay()))
        if hasattr(self.model, "momentum_at"):
            momentum = self.model.momentum_at(self.model.train_steps.value)
            logs["ema_momentum"] = float(ops.convert_to_numpy(momentum))
        if self.skipped_counter is not None:
            logs["skipped_images"] = int(self.skipped_counter.count)

    def get_config(self):
        return {}
