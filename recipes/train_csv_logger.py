"""`keras.callbacks.CSVLogger` for runs without validation, that resume cleanly."""

import csv
import io
import os

import keras

from keras_flexpredict.utils.atomic_write import atomic_write_text

PARTIAL_PREFIX = ".partial."


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class TrainCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` whose columns are the logged keys, and that a resumed run continues.

    Keras's `CSVLogger` adds an empty `val_<key>` column for every key when the
    first epoch logs no validation metric (in case a later one does); a run without
    validation then carries a column of empty cells per metric. Here the columns
    are exactly the keys of the first epoch logged (or, when appending to an
    existing file, the columns of its header), always in append mode.

    `drop_rows_from(path, epoch)` removes the rows of epochs `>= epoch` (and a last
    line cut short by a kill), so a run resumed at `epoch` does not log an epoch
    twice.

    Args:
        filename: str. The CSV file.
        separator: str. Defaults to `","`.

    Example:
    >>> logger = TrainCSVLogger("/tmp/log.csv")
    """

    def __init__(self, filename, separator=","):
        super().__init__(filename, separator=separator, append=True)

    def _header(self):
        if not os.path.exists(self.filename):
            return None
        with open(self.filename, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f, delimiter=self.sep), None)
        return header or None

    def on_train_begin(self, logs=None):
        header = self._header()
        super().on_train_begin(logs)
        self._columns = None if header is None else [c for c in header if c != "epoch"]

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = self._columns if self._columns else sorted((logs or {}).keys())
        super().on_epoch_end(epoch, logs)

    @staticmethod
    def drop_rows_from(path, epoch, separator=","):
        """Rewrites `path` (atomically) without the rows of epochs `>= epoch`, nor
        a last row left incomplete. Returns the number of rows dropped."""
        if not os.path.exists(path):
            return 0
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter=separator))
        if not rows:
            return 0
        header, body = rows[0], rows[1:]
        keep = []
        for row in body:
            try:
                whole = len(row) == len(header) and int(row[0]) < int(epoch)
            except ValueError:
                whole = False
            if whole:
                keep.append(row)
        if len(keep) == len(body):
            return 0
        text = io.StringIO(newline="")
        writer = csv.writer(text, delimiter=separator)
        writer.writerow(header)
        writer.writerows(keep)
        atomic_write_text(path, text.getvalue())
        return len(body) - len(keep)

    def get_config(self):
        return {"filename": self.filename, "separator": self.sep}
