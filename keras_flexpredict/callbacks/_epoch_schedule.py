"""When an every-N-epochs callback runs (shared by `TrainingDiagnostics` and `OnlineProbe`)."""


class EpochSchedule:
    """Due every `every_n_epochs` epochs and on the first epoch of each `fit`, so that a
    CSVLogger (whose columns are fixed by its first row) always has the columns.

    Example:
    >>> schedule = EpochSchedule(every_n_epochs=3)
    >>> schedule.start()
    >>> [schedule.due(epoch) for epoch in range(6)]
    [True, False, True, False, False, True]
    """

    def __init__(self, every_n_epochs):
        self.every_n_epochs = every_n_epochs
        self._first_epoch_of_fit = True

    def start(self):
        """Call at the start of each `fit` (`on_train_begin`)."""
        self._first_epoch_of_fit = True

    def due(self, epoch):
        first, self._first_epoch_of_fit = self._first_epoch_of_fit, False
        return first or (epoch + 1) % self.every_n_epochs == 0
