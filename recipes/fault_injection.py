"""Deterministic kill points for fault-injection tests of the pretraining CLI.

Set `KFP_KILL_AT=<point>` in the environment of `python -m recipes.pretrain` and the
process kills itself with SIGKILL (no cleanup, no `finally`, as a lost machine) when
it reaches that point:

- `step:K`        after training step K (1-based, counted from the start of the run);
- `checkpoint:E`  while writing the periodic checkpoint of epoch E (1-based): the
                  `.partial.` file is written, the rename has not happened;
- `backup:E`      while writing the backup of epoch E: the new state file is
                  written, the metadata that points at it is not;
- `export:1`      after `final.keras` is written, before `target_encoder.keras`;
- `export:2`      after both exports, before `summary.json`.

Unset (the normal case), every hook is a no-op.
"""

import os
import signal

import keras

ENV = "KFP_KILL_AT"


def requested():
    """The kill point of this process (`KFP_KILL_AT`), or None."""
    return os.environ.get(ENV) or None


def kill_point(kind, index):
    """SIGKILLs this process if `KFP_KILL_AT` is `f"{kind}:{index}"`."""
    if requested() == f"{kind}:{int(index)}":
        os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(keras.callbacks.Callback):
    """Calls `kill_point("step", k)` after every training step `k` of the run."""

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        steps = int(self.params.get("steps") or 0)
        kill_point("step", self._epoch * steps + int(batch) + 1)
