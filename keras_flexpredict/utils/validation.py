"""Argument checks shared across the package.

Each returns the value converted to its plain Python type, or raises a `ValueError`
that names the argument and the value received, before any long work starts.

Example:

>>> check_int("depth", 4, minimum=1)
4
>>> check_float("sigma", "0.25", minimum=0.0)
0.25
>>> check_one_of("loss", "l2", ("smooth_l1", "l2"))
'l2'
>>> check_int("depth", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: `depth` must be an integer >= 1. Received: depth=0
"""

import math
import numbers


def check_int(name, value, minimum=None, maximum=None):
    """`value` as an int within `[minimum, maximum]` (bounds optional; bools refused)."""
    bounds = _bounds_text(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer{bounds}. Received: {name}={value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be an integer{bounds}. Received: {name}={value}")
    return value


def check_float(name, value, minimum=None, maximum=None, exclusive_minimum=False):
    """`value` as a finite float within the bounds (a string that parses is accepted)."""
    lower = "" if minimum is None else (f" > {minimum}" if exclusive_minimum else f" >= {minimum}")
    upper = "" if maximum is None else f" <= {maximum}"
    text = f"a finite number{lower}{' and' if lower and upper else ''}{upper}"
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be {text}. Received: {name}={value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be {text}. Received: {name}={value!r}") from None
    too_low = minimum is not None and (number <= minimum if exclusive_minimum else number < minimum)
    too_high = maximum is not None and number > maximum
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"`{name}` must be {text}. Received: {name}={value!r}")
    return number


def check_one_of(name, value, choices):
    """`value` if it is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}. Received: {name}={value!r}")
    return value


def _bounds_text(minimum, maximum):
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
