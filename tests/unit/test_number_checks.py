"""The shared number checks behind every numeric option and argument: a bool, NaN, an
infinity, a string or a value out of range is an InvalidInputError; a good value is
returned unchanged."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mizaic_processor import InvalidInputError
from mizaic_processor._validation import real_number, whole_number

NOT_WHOLE = [True, False, 1.0, 2.5, "1", b"1", None, Decimal(1), Fraction(1), [1], math.nan]
NOT_REAL = [True, False, "1", b"1", None, Decimal(1), Fraction(1), [1.0], 1j,
            math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NOT_WHOLE, ids=repr)
def test_whole_number_refuses_what_is_not_an_int(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^days must be 0\.\.366$"):
        whole_number(value, 0, 366, "days must be 0..366")


@pytest.mark.parametrize("value", NOT_REAL, ids=repr)
def test_real_number_refuses_bools_nan_infinities_and_non_numbers(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^ttl$"):
        real_number(value, 0, 3600, "ttl", above_low=True)


@given(st.integers(), st.integers(-5, 5), st.integers(-5, 5))
def test_whole_number_keeps_exactly_the_ints_in_range(value: int, low: int, high: int) -> None:
    if low <= value <= high:
        assert whole_number(value, low, high, "m") == value
    else:
        with pytest.raises(InvalidInputError):
            whole_number(value, low, high, "m")


@given(st.one_of(st.floats(allow_nan=False), st.integers(-10, 10)))
def test_real_number_keeps_exactly_the_numbers_in_range(value: float) -> None:
    for above_low, inside in ((False, 0 <= value <= 5), (True, 0 < value <= 5)):
        if inside:
            assert real_number(value, 0, 5, "m", above_low=above_low) == value
        else:
            with pytest.raises(InvalidInputError):
                real_number(value, 0, 5, "m", above_low=above_low)


def test_the_bounds_are_inclusive_except_an_open_lower_bound() -> None:
    assert whole_number(0, 0, 2, "m") == 0 and whole_number(2, 0, 2, "m") == 2
    assert real_number(0, 0, 60, "m") == 0 and real_number(60.0, 0, 60, "m") == 60.0
    with pytest.raises(InvalidInputError):
        real_number(0, 0, 60, "m", above_low=True)
    assert real_number(1e-9, 0, 60, "m", above_low=True) == 1e-9
