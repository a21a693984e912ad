"""Deterministic faults for fault-injection tests of the pretraining CLI.

Set `KFP_FAULT_AT=<point>` in the environment of `python -m recipes.pretrain` and the
process kills itself with SIGKILL (no cleanup, no `finally`, as a lost machine) when
it reaches that point:

- `step:K`        after training step K (1-based, counted from the start of the run);
- `checkpoint:E`  while writing the periodic checkpoint of epoch E (1-based): the
                  `.partial.` file is written, the rename has not happened;
- `backup:E`      while writing the backup of epoch E: the new state file is
                  written, the metadata that points at it is not;
- `export:1`      after `final.keras` is written, before `target_encoder.keras`;
- `export:2`      after both exports, before `summary.json`.

or, with `nan:K`, sets the first trainable weight to NaN after training step K (a
divergence at a known step, on every backend).

Unset (the normal case), every hook is a no-op.
"""

import os
import signal

import keras

ENV = "KFP_FAULT_AT"


def requested():
    """The fault point of this process (`KFP_FAULT_AT`), or None."""
    return os.environ.get(ENV) or None


def kill_point(kind, index):
    """SIGKILLs this process if `KFP_FAULT_AT` is `f"{kind}:{index}"`."""
    if requested() == f"{kind}:{int(index)}":
        os.kill(os.getpid(), signal.SIGKILL)


class FaultAtStep(keras.callbacks.Callback):
    """After every training step `k` of the run: `kill_point("step", k)`, and the
    `nan:k` fault (the first trainable weight set to NaN)."""

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        step = self._epoch * int(self.params.get("steps") or 0) + int(batch) + 1
        kill_point("step", step)
        if requested() == f"nan:{step}":
            if hasattr(self.model, "jax_state_sync"):
                self.model.jax_state_sync()  # JAX: the next step reads the variables again
            variable = self.model.trainable_weights[0]
            variable.assign(keras.ops.full(variable.shape, float("nan"), dtype=variable.dtype))
