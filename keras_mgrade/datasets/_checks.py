"""Argument checks shared by the dataset generators (numpy only)."""

import numbers

import numpy as np


def fail(name, value, expected):
    """Raises the ValueError of a bad argument: its name, what was
    expected, and the value received."""
    raise ValueError(
        f"Invalid `{name}`. Expected {expected}. Received: {name}={value!r}"
    )


def check_int(name, value, minimum=1):
    """Returns `int(value)` for an integer `>= minimum`, else raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, value, f"an integer >= {minimum}")
    if value < minimum:
        fail(name, value, f"an integer >= {minimum}")
    return int(value)


def check_float(name, value, low, high, low_open=False, high_open=False):
    """Returns `float(value)` for a finite float in the given interval."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    expected = f"a float in {left}{low}, {high}{right}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, value, expected)
    value_f = float(value)
    if not np.isfinite(value_f):
        fail(name, value, expected)
    if value_f < low or (low_open and value_f == low):
        fail(name, value, expected)
    if value_f > high or (high_open and value_f == high):
        fail(name, value, expected)
    return value_f


def check_seed(seed):
    """Returns a numpy Generator for an integer `seed` (or raises)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        fail("seed", seed, "a non-negative integer")
    if seed < 0:
        fail("seed", seed, "a non-negative integer")
    return np.random.default_rng(int(seed))
