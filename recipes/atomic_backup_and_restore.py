"""`keras.callbacks.BackupAndRestore` with atomic backups taken after every other callback."""

import glob
import json
import os

import keras

from keras_flexpredict.utils import keras_internals
from recipes import fault_injection

PARTIAL_PREFIX = ".partial."
METADATA_FILE = "training_metadata.json"


def _write_json_atomically(path, value):
    partial = os.path.join(os.path.dirname(path), PARTIAL_PREFIX + os.path.basename(path))
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backup of epoch `e` is whole, consistent and last.

    Keras's callback overwrites `latest.weights.h5` in place and then writes the
    epoch number in a second file, so a run killed between the two resumes the
    weights of epoch `e` with the epoch count of `e - 1` and trains epoch `e` twice.
    Here the state of epoch `e` goes to its own file (written under a temporary
    name, then renamed) and `training_metadata.json`, rewritten atomically, names
    that file and the previous one: whatever the moment of a kill, the metadata
    names a complete state and its epoch. If that file cannot be read, the previous
    state is restored instead.

    The backup of epoch `e` is taken when epoch `e + 1` begins (or when training
    ends), not in `on_epoch_end`: so every callback has finished epoch `e` (its log
    row, its periodic checkpoint) before the backup says the epoch is done, and a
    run killed in between runs epoch `e` again and writes them all. No training
    happens between the two moments, so the state saved is the state at the end of
    epoch `e`. Put it first in the callback list, so that it restores the state
    before the other callbacks start.

    Args:
        backup_dir: str. Folder of the backups (used by nothing else).
        delete_checkpoint: bool. Remove `backup_dir` when training ends.
            Defaults to `False` (the pretraining CLI removes it after exporting).

    Example:
    >>> backup = AtomicBackupAndRestore("/tmp/backup")
    >>> # model.fit(data, epochs=10, callbacks=[backup, ...])
    """

    def __init__(self, backup_dir, delete_checkpoint=False):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=delete_checkpoint)
        self._metadata_path = os.path.join(backup_dir, METADATA_FILE)
        self._pending_epoch = None

    # ------------------------------------------------------------ restore
    def _read_metadata(self):
        if not os.path.exists(self._metadata_path):
            return None
        with open(self._metadata_path, encoding="utf-8") as f:
            return json.load(f)

    def on_train_begin(self, logs=None):
        self._pending_epoch = None
        if os.path.isdir(self.backup_dir):
            for leftover in glob.glob(os.path.join(glob.escape(self.backup_dir), glob.escape(PARTIAL_PREFIX) + "*")):
                os.remove(leftover)
        metadata = self._read_metadata()
        if metadata is None or "weights" not in metadata:
            # Nothing saved yet, or a backup in Keras's own layout.
            return super().on_train_begin(logs)
        if not self.model.built:
            raise ValueError(f"{type(self).__name__} needs a built model. Received: model={self.model}")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        candidates = [(metadata["epoch"], metadata["weights"])]
        if metadata.get("previous"):
            candidates.append((metadata["previous"]["epoch"], metadata["previous"]["weights"]))
        errors = []
        for epoch, name in candidates:
            try:
                self.model.load_weights(os.path.join(self.backup_dir, name))
            except (OSError, ValueError) as e:
                errors.append(f"{name}: {e}")
                continue
            keras_internals.set_initial_epoch(self.model, epoch)
            return
        raise OSError(f"No backup in {self.backup_dir} can be restored ({'; '.join(errors)}).")

    # --------------------------------------------------------------- save
    def on_epoch_end(self, epoch, logs=None):
        self._pending_epoch = int(epoch) + 1

    def on_epoch_begin(self, epoch, logs=None):
        self._save_pending()

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_train_end(self, logs=None):
        self._save_pending()
        super().on_train_end(logs)

    def _save_pending(self):
        if self._pending_epoch is not None:
            self._save_model()
            self._pending_epoch = None

    def _save_model(self):
        # Shadows Keras's private `_save_model()` (keras_internals.PRIVATE_API).
        epoch = self._pending_epoch
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch_{epoch:06d}.weights.h5"
        partial = os.path.join(self.backup_dir, PARTIAL_PREFIX + name)
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, os.path.join(self.backup_dir, name))
        fault_injection.kill_point("backup", epoch)
        old = self._read_metadata()
        previous = {"epoch": old["epoch"], "weights": old["weights"]} if old and "weights" in old else None
        _write_json_atomically(
            self._metadata_path, {"epoch": epoch, "batch": 0, "weights": name, "previous": previous}
        )
        keep = {name} | ({previous["weights"]} if previous else set())
        for path in glob.glob(os.path.join(glob.escape(self.backup_dir), "epoch_*.weights.h5")):
            if os.path.basename(path) not in keep:
                os.remove(path)

    def get_config(self):
        return {"backup_dir": self.backup_dir, "delete_checkpoint": self.delete_checkpoint}
