"""Argument checks shared by the schedules and the optimiser (private)."""

import math
import numbers


def check_int(name, value, minimum):
    """Returns `value` as an int, or raises a `ValueError` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value}")
    return value


def check_non_negative_float(name, value):
    """Returns `value` as a finite float >= 0, or raises a `ValueError` naming it."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a non-negative float. Received: {name}={value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a non-negative float. Received: {name}={value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"`{name}` must be a non-negative float. Received: {name}={value!r}")
    return number
