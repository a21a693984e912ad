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
>>> check_range("scale", (0.15, 0.2), minimum=0.0, maximum=1.0, exclusive_minimum=True)
(0.15, 0.2)
>>> check_int("batch_size", None, minimum=1, allow_none=True) is None
True
>>> check_int("depth", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: `depth` must be an integer >= 1. Received: depth=0
"""

import math
import numbers


def check_int(name, value, minimum=None, maximum=None, allow_none=False):
    """`value` as an int within `[minimum, maximum]` (bounds optional; bools refused).

    With `allow_none`, None is returned as is.
    """
    if allow_none and value is None:
        return None
    bounds = _bounds_text(minimum, maximum) + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer{bounds}. Received: {name}={value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be an integer{bounds}. Received: {name}={value}")
    return value


def check_float(
    name, value, minimum=None, maximum=None, exclusive_minimum=False, allow_none=False, allow_string=True
):
    """`value` as a finite float within the bounds (a string that parses is accepted
    unless `allow_string=False`).

    With `allow_none`, None is returned as is.
    """
    if allow_none and value is None:
        return None
    lower = "" if minimum is None else (f" > {minimum}" if exclusive_minimum else f" >= {minimum}")
    upper = "" if maximum is None else f" <= {maximum}"
    text = f"a finite number{lower}{' and' if lower and upper else ''}{upper}"
    if allow_none:
        text += " or None"
    if isinstance(value, bool) or (isinstance(value, str) and not allow_string):
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


def check_switch(environ, name):
    """The on/off environment switch `name` in `environ`: True for 1/true/yes/on, False
    for 0/false/no/off (any case, spaces ignored), None when unset or empty; any other
    value raises.

    >>> check_switch({"KFP_X": " Off "}, "KFP_X"), check_switch({}, "KFP_X")
    (False, None)
    """
    value = environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value:
        raise ValueError(f"{name} must be 0 or 1 (or unset for the default). Received: {name}={environ[name]!r}")
    return None


def check_range(name, value, minimum=None, maximum=None, exclusive_minimum=False):
    """`value`, a pair `(lo, hi)` of finite numbers with `lo <= hi` inside the bounds,
    as a tuple of floats."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair of numbers (lo, hi). Received: {name}={value}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"`{name}` must be finite with lo <= hi. Received: {name}={value}")
    too_low = minimum is not None and (lo <= minimum if exclusive_minimum else lo < minimum)
    if too_low or (maximum is not None and hi > maximum):
        left = "" if minimum is None else ("(" if exclusive_minimum else "[") + f"{minimum}, "
        if maximum is None:
            interval = f"{'>' if exclusive_minimum else '>='} {minimum}"
        else:
            interval = f"{left or '(-inf, '}{maximum}]"
        raise ValueError(f"`{name}` must lie in {interval}. Received: {name}={value}")
    return (lo, hi)


def _bounds_text(minimum, maximum):
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
