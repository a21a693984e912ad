"""Stops training at the first non-finite loss or weight, before anything saves it."""

import math

import keras
import numpy as np
from keras import ops

from keras_flexpredict.callbacks.non_finite_training_error import NonFiniteTrainingError


def _as_float(value):
    try:
        return float(np.asarray(ops.convert_to_numpy(value)).reshape(()))
    except (TypeError, ValueError):
        return None


def find_non_finite_weight(model):
    """`(path, value)` of the first float variable of `model` holding a NaN or an
    infinity (`value` is the first bad entry), or None when all are finite.

    The test runs on the device (one boolean per variable comes back to the host).
    """
    for variable in model.weights:
        if "float" not in keras.backend.standardize_dtype(variable.dtype):
            continue
        finite = ops.all(ops.isfinite(variable.value))
        if not bool(ops.convert_to_numpy(finite)):
            values = np.asarray(ops.convert_to_numpy(ops.cast(variable.value, "float32"))).ravel()
            return variable.path, float(values[~np.isfinite(values)][0])
    return None


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class NonFiniteGuard(keras.callbacks.TerminateOnNaN):
    """Raises `NonFiniteTrainingError` at the first NaN or infinite loss or weight.

    Keras's `TerminateOnNaN` stops `fit` by default through `stop_training`, after
    which every callback still runs `on_epoch_end` for the broken epoch: a
    `BackupAndRestore` or `ModelCheckpoint` then saves the NaN weights as the state
    to resume from. This guard raises instead, so nothing after the bad step is
    saved and the last backup and checkpoints stay the last good ones; the error
    names the step and the value:

    - after every batch (every `steps_per_execution` batches), the logged `loss`;
    - at the end of every epoch, before the callbacks placed after it save
      anything, the epoch's logs and every float weight of the model (one
      on-device check per variable).

    Place it before the callbacks that write the model (checkpoints, backups).
    Steps are counted from the start of the run (`epoch * steps_per_epoch + batch +
    1`, resumed epochs included). Call `find_non_finite_weight(model)` before
    exporting a model trained elsewhere.

    Example:
    >>> guard = NonFiniteGuard()
    >>> # model.fit(data, epochs=3, callbacks=[guard, keras.callbacks.BackupAndRestore("/tmp/b")])
    """

    def __init__(self):
        super().__init__(raise_error=True)
        self._epoch = 0
        self._last_finite = None

    def _steps(self):
        return (self.params or {}).get("steps")

    def _where(self, batch):
        """`(step, "step 7 (epoch 2, batch 3 of 4)")`; no step count when the
        epoch length is unknown."""
        steps = self._steps()
        position = f"epoch {self._epoch + 1}, batch {batch + 1}" + (f" of {steps}" if steps else "")
        if not steps:
            return None, position
        step = self._epoch * int(steps) + int(batch) + 1
        return step, f"step {step} ({position})"

    def on_train_begin(self, logs=None):
        self._last_finite = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        value = None if loss is None else _as_float(loss)
        if value is None:
            return
        step, where = self._where(batch)
        if math.isfinite(value):
            self._last_finite = (where, value)
            return
        last = (
            f" The last finite loss was {self._last_finite[1]:.6g} at {self._last_finite[0]}."
            if self._last_finite
            else " No step of this run had a finite loss."
        )
        raise NonFiniteTrainingError(
            f"Training diverged: the loss is {value} at {where}.{last} "
            "Training stopped before anything of this epoch was saved.",
            step=step, epoch=self._epoch, batch=int(batch), name="loss", value=value,
        )

    # Keras's TerminateOnNaN checks in `on_batch_end`, which also runs on
    # evaluation and prediction batches: checking training batches is enough.
    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        steps = self._steps()
        step = (int(epoch) + 1) * int(steps) if steps else None
        where = f"the end of epoch {int(epoch) + 1}" + (f" (step {step})" if step else "")
        for name, value in (logs or {}).items():
            number = _as_float(value)
            if number is not None and not math.isfinite(number):
                raise NonFiniteTrainingError(
                    f"Training diverged: the logged `{name}` is {number} at {where}. "
                    "Training stopped before anything of this epoch was saved.",
                    step=step, epoch=int(epoch), name=name, value=number,
                )
        bad = find_non_finite_weight(self.model)
        if bad is not None:
            path, number = bad
            raise NonFiniteTrainingError(
                f"Training diverged: the weight `{path}` holds {number} at {where}. "
                "Training stopped before anything of this epoch was saved.",
                step=step, epoch=int(epoch), name=path, value=number,
            )

    def get_config(self):
        return {}
