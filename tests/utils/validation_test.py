import math

import numpy as np
import pytest

from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int
from keras_flexpredict.utils.validation import check_one_of
from keras_flexpredict.utils.validation import check_range
from keras_flexpredict.utils.validation import check_switch


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


def test_check_int__allow_none():
    assert check_int("k", None, minimum=1, allow_none=True) is None
    with pytest.raises(ValueError, match=r"`k` must be an integer >= 1 or None. Received: k=0"):
        check_int("k", 0, minimum=1, allow_none=True)
    with pytest.raises(ValueError, match="Received: k=None"):
        check_int("k", None, minimum=1)


def test_check_float__allow_none():
    assert check_float("s", None, minimum=0.0, allow_none=True) is None
    with pytest.raises(ValueError, match=r"`s` must be a finite number >= 0.0 or None. Received: s=-1"):
        check_float("s", -1, minimum=0.0, allow_none=True)


def test_check_range__pair_order_and_bounds():
    assert check_range("r", [0.5, 1], minimum=0.0, maximum=1.0, exclusive_minimum=True) == (0.5, 1.0)
    with pytest.raises(ValueError, match=r"`r` must be a pair of numbers \(lo, hi\). Received: r=0.5"):
        check_range("r", 0.5)
    with pytest.raises(ValueError, match=r"`r` must be finite with lo <= hi. Received: r=\(2, 1\)"):
        check_range("r", (2, 1))
    with pytest.raises(ValueError, match=r"`r` must lie in \(0.0, 1.0\]. Received: r=\(0.0, 0.5\)"):
        check_range("r", (0.0, 0.5), minimum=0.0, maximum=1.0, exclusive_minimum=True)
    with pytest.raises(ValueError, match=r"`r` must lie in > 0.0. Received: r=\(0, 2\)"):
        check_range("r", (0, 2), minimum=0.0, exclusive_minimum=True)


def test_check_float__allow_string_false_refuses_numeric_strings():
    assert check_float("s", "0.5") == 0.5
    with pytest.raises(ValueError, match=r"`s` must be a finite number >= 0. Received: s='0.5'"):
        check_float("s", "0.5", minimum=0, allow_string=False)


def test_check_switch__on_off_words_unset_and_bad_values():
    for value in ("1", "true", " YES ", "on"):
        assert check_switch({"KFP_X": value}, "KFP_X") is True
    for value in ("0", "False", "no", "OFF"):
        assert check_switch({"KFP_X": value}, "KFP_X") is False
    assert check_switch({}, "KFP_X") is None
    assert check_switch({"KFP_X": " "}, "KFP_X") is None
    with pytest.raises(ValueError, match="KFP_X must be 0 or 1.*Received: KFP_X='maybe'"):
        check_switch({"KFP_X": "maybe"}, "KFP_X")
