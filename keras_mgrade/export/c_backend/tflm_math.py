"""TFLite Micro's integer arithmetic, in Python, bit for bit.

Two uses: computing at generation time the constants that TFLite Micro's
`Prepare` functions compute at start-up (multipliers and shifts from the
float32 scales of the file, with the same float/double evaluation order),
and tabulating unary int8 operators (all 256 inputs) exactly as TFLite
Micro's reference kernels compute them.

The arithmetic is that of TFLite Micro built the default way (the
`tflite-micro` pip runtime): double-rounding `MultiplyByQuantizedMultiplier`
(gemmlowp's `SaturatingRoundingDoublingHighMul` then `RoundingDivideByPOT`).
Values are Python ints; every int32 intermediate is range-checked or
wrapped exactly where C would be.

References: tflite-micro `tensorflow/lite/kernels/internal/common.h`,
`quantization_util.cc`, `reference/integer_ops/{logistic,tanh}.h`,
`reference/hard_swish.h`, `micro/kernels/elementwise.cc` (RSQRT), and
gemmlowp `fixedpoint/fixedpoint.h`.
"""

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def wrap32(x):
    """`x` as a two's complement int32 (C's wrap-around)."""
    return ((int(x) + (1 << 31)) % (1 << 32)) - (1 << 31)


def wrap16(x):
    """`x` as a two's complement int16."""
    return ((int(x) + (1 << 15)) % (1 << 16)) - (1 << 15)


def tflite_round(x):
    """`std::round`: to nearest, halves away from zero."""
    a = abs(float(x))
    f = math.floor(a)
    r = int(f) + (1 if a - f >= 0.5 else 0)
    return r if x >= 0 else -r


def quantize_multiplier(real):
    """TFLite's `QuantizeMultiplier`: `real ~= m * 2**(shift - 31)`.

    Args:
        real: float (a double).

    Returns:
        `(m, shift)`, `m` in `[2**30, 2**31)` (0 for `real == 0`).

    Example:

    >>> quantize_multiplier(0.5)
    (1073741824, 0)
    >>> quantize_multiplier(3.0)
    (1610612736, 2)
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def srdhm(a, b):
    """gemmlowp `SaturatingRoundingDoublingHighMul` on int32 values."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = int(a) * int(b)
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    n = ab + nudge
    q = abs(n) >> 31
    return q if n >= 0 else -q  # C division truncates toward zero


def rdbpot(x, exponent):
    """gemmlowp `RoundingDivideByPOT`: halves away from zero."""
    x = int(x)
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x, multiplier, shift):
    """TFLite `MultiplyByQuantizedMultiplier(int32 x, m, shift)`."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rdbpot(srdhm(wrap32(int(x) * (1 << left)), multiplier), right)


def srmbpot(x, exponent):
    """gemmlowp `SaturatingRoundingMultiplyByPOT<exponent>` (int32)."""
    if exponent == 0:
        return int(x)
    if exponent < 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return wrap32(int(x) << exponent)


def clamp(x, low, high):
    return max(low, min(high, int(x)))


# ---- gemmlowp fixed point (int32 raw values, integer bits as arguments) ----


def _one(integer_bits):
    return INT32_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = wrap32(a + (1 << 28))  # + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = srmbpot(x4, -2)
    poly = srmbpot(
        wrap32(srdhm(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), -1
    )
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_EXP_BARREL = (
    (-2, 1672461947),
    (-1, 1302514674),
    (0, 790015084),
    (1, 290630308),
    (2, 39332535),
    (3, 720401),
    (4, 242),
)


def exp_on_negative_values(a, integer_bits):
    """gemmlowp `exp_on_negative_values` of a Q`integer_bits` raw value;
    returns a Q0 raw value."""
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    a_mod = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        srmbpot(a_mod, integer_bits)
    )
    remainder = wrap32(a_mod - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            if remainder & (1 << (frac + exponent)):
                result = srdhm(result, multiplier)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _newton_reciprocal(a):
    """The Newton-Raphson core of gemmlowp's `one_over_one_plus_x_...`:
    returns `x` (Q2) ~ 1 / ((1 + a) / 2) and the half denominator."""
    half_denominator = (a + INT32_MAX + 1) // 2  # RoundingHalfSum(a, One)
    x = wrap32(1515870810 + srdhm(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = wrap32((1 << 29) - srdhm(half_denominator, x))
        x = wrap32(x + srmbpot(srdhm(x, one_minus), 2))
    return x


def logistic_q0(a, integer_bits):
    """gemmlowp `logistic` of a Q`integer_bits` raw value (Q0 result)."""
    if a == 0:
        return 1 << 30
    abs_input = a if a > 0 else wrap32(-a)
    e = exp_on_negative_values(wrap32(-abs_input), integer_bits)
    positive = srmbpot(_newton_reciprocal(e), 1)  # Rescale<0>(x / 2)
    return positive if a > 0 else wrap32(INT32_MAX - positive)


def tanh_q0(a, integer_bits):
    """gemmlowp `tanh` of a Q`integer_bits` raw value (Q0 result)."""
    if a == 0:
        return 0
    n = a if a < 0 else wrap32(-a)
    e = exp_on_negative_values(n, integer_bits + 1)
    t = srmbpot(wrap32(_newton_reciprocal(e) - (1 << 29)), 2)
    return wrap32(-t) if a < 0 else t


def inv_sqrt_multiplier_exp(value, reverse_shift=-1):
    """TFLite `GetInvSqrtQuantizedMultiplierExp`."""
    if value <= 1:
        return INT32_MAX, 0
    shift = 11
    while value >= (1 << 29):
        value //= 4
        shift += 1
    leading_zeros = 32 - int(value).bit_length()
    left_shift_bit_pairs = (leading_zeros - 1) // 2 - 1
    shift -= left_shift_bit_pairs
    value <<= 2 * left_shift_bit_pairs
    fixed_input = value >> 1  # Q3
    half_input = srmbpot(fixed_input, -1)
    half_three = (1 << 28) + (1 << 27)
    x = 1 << 28  # One() in Q3
    for _ in range(5):
        x3 = srmbpot(srdhm(srdhm(x, x), x), 6)  # Rescale<3>(Q9)
        x = srmbpot(
            wrap32(srdhm(half_three, x) - srdhm(half_input, x3)), 3
        )  # Rescale<3>(Q6)
    x = srdhm(x, 1518500250)  # * sqrt(2)/2, Q3
    if shift < 0:
        x = wrap32(x << -shift)
        shift = 0
    return x, shift * reverse_shift


def int8_table(function):
    """The int8 table `function(x)` for `x = -128 ... 127` (index x+128)."""
    values = [function(x) for x in range(-128, 128)]
    return np.asarray(values, "int64")
