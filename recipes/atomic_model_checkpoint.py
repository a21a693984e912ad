"""`keras.callbacks.ModelCheckpoint` that never leaves a half-written file under a final name."""

import glob
import os

import keras

from recipes import fault_injection

PARTIAL_PREFIX = ".partial."


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` that writes each file under a temporary name, then renames it.

    Keras writes checkpoints in place, so a run killed while saving leaves a truncated
    file under the final name. Here Keras writes `.partial.<name>` in the same folder
    and the file is renamed (`os.replace`, atomic) to `<name>` once complete: a file
    under a final name is always whole. Leftover `.partial.*` files of a killed run are
    removed when training starts again. `every_n_epochs` saves at the end of every
    n-th epoch (counted from the start of the run, so a resumed run keeps the same
    checkpoint epochs).

    Args:
        filepath: str. As `ModelCheckpoint` (e.g. `"ckpt/epoch_{epoch:04d}.weights.h5"`).
        every_n_epochs: int. Save every n epochs (with `save_freq="epoch"`).
            Defaults to `1`.
        **kwargs: further `ModelCheckpoint` arguments.

    Example:
    >>> checkpoint = AtomicModelCheckpoint(
    ...     "/tmp/ckpt/epoch_{epoch:04d}.weights.h5", save_weights_only=True, every_n_epochs=10)
    """

    def __init__(self, filepath, every_n_epochs=1, **kwargs):
        super().__init__(filepath, **kwargs)
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be a positive int. Received: every_n_epochs={every_n_epochs}")
        if every_n_epochs > 1 and self.save_freq != "epoch":
            raise ValueError(
                "`every_n_epochs` needs `save_freq='epoch'`. "
                f"Received: every_n_epochs={every_n_epochs}, save_freq={self.save_freq}"
            )
        self.every_n_epochs = every_n_epochs
        self._final_path = None

    def _partial_path(self, path):
        folder, name = os.path.split(path)
        return os.path.join(folder, PARTIAL_PREFIX + name)

    def on_train_begin(self, logs=None):
        folder = os.path.dirname(self.filepath) or "."
        for leftover in glob.glob(os.path.join(glob.escape(folder), glob.escape(PARTIAL_PREFIX) + "*")):
            if os.path.isfile(leftover):
                os.remove(leftover)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs == 0:
            super().on_epoch_end(epoch, logs)

    # `_get_file_path` and `_save_model` override private Keras methods, listed in
    # keras_flexpredict.utils.keras_internals.PRIVATE_API (checked against each Keras).
    def _get_file_path(self, epoch, batch, logs):
        self._final_path = super()._get_file_path(epoch, batch, logs)
        return self._partial_path(self._final_path)

    def _save_model(self, epoch, batch, logs):
        self._final_path = None
        super()._save_model(epoch, batch, logs)
        if self._final_path is not None:
            partial = self._partial_path(self._final_path)
            if os.path.exists(partial):
                fault_injection.kill_point("checkpoint", epoch + 1)
                os.replace(partial, self._final_path)

    def get_config(self):
        return {"filepath": self.filepath, "every_n_epochs": self.every_n_epochs}
