"""A thread-safe count of the images an input pipeline skipped."""

import logging
import threading

import keras

logger = logging.getLogger("keras_flexpredict.data")


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class SkippedImageCounter:
    """Counts unreadable or corrupt images skipped by an input pipeline.

    The pipelines of this package (`image_folder_dataset`,
    `tfds_imagenet_dataset`) drop an image that cannot be read or decoded and
    never end the run for it; each time they do, they add to this counter and
    log a warning with the running total on the `"keras_flexpredict.data"`
    logger. Pass one counter to a pipeline to read the count while or after
    iterating. The count grows on every pass (epoch) that meets the bad file.

    Args:
        name: str. Name used in the warnings, e.g. the data set's path.
            Defaults to `"images"`.

    Example:
    >>> counter = SkippedImageCounter(name="demo")
    >>> counter.add(2)
    2
    >>> counter.count
    2
    """

    def __init__(self, name="images"):
        if not isinstance(name, str):
            raise ValueError(f"`name` must be a str. Received: name={name}")
        self.name = name
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self):
        """Total number of images skipped so far."""
        with self._lock:
            return self._count

    def add(self, n=1):
        """Adds `n` skipped images, logs a warning, returns the new total."""
        n = int(n)
        if n < 0:
            raise ValueError(f"`n` must be >= 0. Received: n={n}")
        with self._lock:
            self._count += n
            total = self._count
        if n:
            logger.warning(
                "Skipped %d unreadable or corrupt image(s) in %s (%d skipped so far).",
                n,
                self.name,
                total,
            )
        return total

    def reset(self):
        """Sets the count back to zero."""
        with self._lock:
            self._count = 0

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"SkippedImageCounter(name={self.name!r}, count={self.count})"
