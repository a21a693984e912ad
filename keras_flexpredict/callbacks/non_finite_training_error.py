"""The error `NonFiniteGuard` raises when training diverges."""


class NonFiniteTrainingError(FloatingPointError):
    """Training produced a non-finite loss or weight; raised by `NonFiniteGuard`.

    A `FloatingPointError` that says where: `step` (1-based count of batches since
    the start of the run, resumed epochs included), `epoch` (0-based), `batch`
    (0-based within the epoch, or None for an end-of-epoch check), `name` (`"loss"`
    or the path of the first non-finite variable) and `value` (the bad value).

    Example:
    >>> error = NonFiniteTrainingError("diverged", step=7, epoch=1, batch=2, name="loss", value=float("nan"))
    >>> error.step, error.name
    (7, 'loss')
    """

    def __init__(self, message, step=None, epoch=None, batch=None, name=None, value=None):
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.batch = batch
        self.name = name
        self.value = value
