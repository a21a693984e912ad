"""The EMA teacher: momentum schedule and update of the target encoder.

`w_bar <- m w_bar + (1 - m) w`, with `m` rising linearly from `start` to `end` over
the run (I-JEPA / StoP: 0.996 -> 1.0). The defaults below are the one place these
numbers live (`FlexPredict`, `EMATargetCallback` and the recipes read them). The state
(step counters, schedule) is held by the model as non-trainable variables, saved with
its weights; these functions only compute with it.

Example:
>>> round(float(momentum_at(5, DEFAULT_START_MOMENTUM, DEFAULT_END_MOMENTUM, 10)), 6)
0.998
"""

from keras import ops

from keras_flexpredict.utils import backend_adapter
from keras_flexpredict.utils import keras_internals

DEFAULT_START_MOMENTUM = 0.996
DEFAULT_END_MOMENTUM = 1.0


def momentum_at(step, start, end, total_steps):
    """EMA momentum after optimiser step `step` (0-based), as the reference's
    `start + step * (end - start) / total_steps`, clipped at `end`; `start` while
    `total_steps` is 0 (no schedule set). Traceable; returns a float32 scalar.

    Args:
        step: int or int tensor.
        start, end, total_steps: floats or float32 scalars (or `keras.Variable`s).
    """
    start = ops.convert_to_tensor(_value(start), "float32")
    end = ops.convert_to_tensor(_value(end), "float32")
    total = ops.convert_to_tensor(_value(total_steps), "float32")
    progress = ops.where(
        total > 0, ops.minimum(ops.cast(step, "float32") / ops.maximum(total, 1.0), 1.0), 0.0
    )
    return start + (end - start) * progress


def _value(x):
    return getattr(x, "value", x)


def teacher_student_pairs(teacher, student):
    """`(teacher_variable, student_variable)` pairs of two encoders of one architecture."""
    return list(zip(teacher.weights, student.weights))


def copy_student_(pairs):
    """`teacher <- student` for every pair (the teacher's start)."""
    for teacher, student in pairs:
        teacher.assign(ops.copy(student))  # a fresh buffer: JAX donates both


def apply_owed_update(pairs, train_steps, ema_updates, start, end, total_steps):
    """Applies the EMA update owed for the last completed optimiser update, if any.

    The teacher is one update behind when `ema_updates < train_steps`; the update then
    uses the momentum of step `train_steps - 1`, else momentum 1 (a no-op). Students
    that are not trainable (fixed sin-cos tables) are equal already and skipped. Then
    `ema_updates <- train_steps`. Traceable (runs inside the compiled train step).

    Args:
        pairs: `teacher_student_pairs(...)`.
        train_steps, ema_updates: int32 scalar `keras.Variable`s.
        start, end, total_steps: the schedule's float32 scalar `keras.Variable`s.
    """
    # Under a mixed policy Keras would read the float32 weights as bfloat16 here;
    # the EMA must run in the variables' own precision.
    with keras_internals.no_autocast():
        owed = ema_updates < train_steps
        momentum = ops.where(owed, momentum_at(train_steps - 1, start, end, total_steps), 1.0)
        backend_adapter.ema_update_([(t, s) for t, s in pairs if s.trainable], momentum)
        # A copy: on JAX two variables must never share one buffer (donation).
        ema_updates.assign(ops.copy(train_steps.value))
