"""Kept only for the imports of `jepa_adamw.py`; the checks live in
`keras_flexpredict/utils/validation.py`."""

from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int  # noqa: F401 (re-export)


def check_non_negative_float(name, value):
    """`value` as a finite float >= 0, or a `ValueError` naming it."""
    return check_float(name, value, minimum=0)
