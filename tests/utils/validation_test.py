import math

import numpy as np
import pytest

from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int
from keras_flexpredict.utils.validation import check_one_of


def test_check_int__accepts_numpy_and_refuses_bool_float_and_out_of_range():
    assert check_int("n", np.int64(3), minimum=1) == 3
    for bad in (True, 2.0, "2"):
        with pytest.raises(ValueError, match=r"`n` must be an integer >= 1. Received: n="):
            check_int("n", bad, minimum=1)
    with pytest.raises(ValueError, match=r"in \[1, 4\]. Received: n=5"):
        check_int("n", 5, minimum=1, maximum=4)


def test_check_float__bounds_and_non_finite():
    assert check_float("s", "0.5", minimum=0.0) == 0.5
    with pytest.raises(ValueError, match=r"`s` must be a finite number > 0.0"):
        check_float("s", 0.0, minimum=0.0, exclusive_minimum=True)
    for bad in (math.nan, math.inf, None, True, 2.0):
        with pytest.raises(ValueError, match="Received: s="):
            check_float("s", bad, minimum=0.0, maximum=1.0)


def test_check_one_of__names_choices():
    with pytest.raises(ValueError, match=r"`loss` must be one of \('a', 'b'\). Received: loss='c'"):
        check_one_of("loss", "c", ("a", "b"))
