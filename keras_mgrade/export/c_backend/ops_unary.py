"""Unary int8 operators: their exact TFLite Micro function of one int8
input, from which the generator builds a 256-entry table.

An int8 input has 256 possible values, so a table is bit-exact by
construction, whatever the operator computes inside (gemmlowp fixed-point
exp and reciprocal for LOGISTIC, Newton-Raphson for RSQRT, ...). Chains of
unary operators are composed into one table (see `lowering`).
"""

import math

import numpy as np

from keras_mgrade.export.c_backend import tflm_math as tm
from keras_mgrade.export.c_backend.program import register
from keras_mgrade.export.c_backend.program import unsupported

_F32 = np.float32


def _io(graph, op):
    x = graph.tensors[op.inputs[0]]
    out = graph.tensors[op.outputs[0]]
    if x.dtype != "int8" or out.dtype != "int8":
        return None, None
    return x, out


def _gemmlowp_input(x):
    """Multiplier, shift and radius of the Q4 input of LOGISTIC/TANH."""
    real = float(x.s) * float(1 << 27)
    q, left_shift = math.frexp(real)
    mult = tm.wrap32(tm.tflite_round(q * (1 << 31)))
    radius = math.floor(15.0 * (1 << 27) / (1 << left_shift))
    return mult, left_shift, radius


def _gemmlowp_function(graph, op, q0, rounding_shift, offset):
    """LOGISTIC / TANH (reference_integer_ops): the input rescaled to Q4,
    gemmlowp's fixed-point function `q0`, then rounded to int8."""
    x, out = _io(graph, op)
    if x is None:
        return None
    mult, shift, radius = _gemmlowp_input(x)

    def f(v):
        d = v - x.zp
        if d <= -radius:
            return -128
        if d >= radius:
            return 127
        value = q0(tm.mbqm(d, mult, shift), 4)
        return tm.clamp(tm.rdbpot(value, rounding_shift) + offset, -128, 127)

    return f


def logistic_function(graph, op):
    """LOGISTIC, reference_integer_ops::Logistic (output scale 1/256)."""
    return _gemmlowp_function(graph, op, tm.logistic_q0, 23, -128)


def tanh_function(graph, op):
    """TANH, reference_integer_ops::Tanh (output scale 1/128)."""
    return _gemmlowp_function(graph, op, tm.tanh_q0, 24, 0)


def rsqrt_function(graph, op):
    """RSQRT (elementwise.cc). TFLite Micro rejects inputs below the zero
    point at run time; the table holds the arithmetic's value there."""
    x, out = _io(graph, op)
    if x is None:
        return None
    real = 1.0 / float(np.sqrt(x.s) * out.s)
    mult, shift = tm.quantize_multiplier(real)

    def f(v):
        value = v - x.zp
        if value == 0:
            return 127
        inv, inv_shift = tm.inv_sqrt_multiplier_exp(value)
        data = tm.mbqm(1, inv, inv_shift + 20)
        return tm.clamp(tm.mbqm(data, mult, shift - 20) + out.zp, -128, 127)

    return f


def quantize_function(graph, op):
    """QUANTIZE int8 -> int8 (reference_ops::Requantize)."""
    x, out = _io(graph, op)
    if x is None:
        return None
    mult, shift = tm.quantize_multiplier(float(x.s) / float(out.s))
    return lambda v: tm.clamp(
        tm.mbqm(v - x.zp, mult, shift) + out.zp, -128, 127
    )


def lookup_function(graph, op):
    """A table lookup of `export_tflite(lookup_tables=True)`: QUANTIZE to
    an int32 index and GATHER (`graph.LOOKUP`)."""
    table, offset = op.options["table"], op.options["offset"]
    return lambda v: int(table[v + offset])


def relu_function(graph, op):
    """RELU (requantizing, activations.h ReluQuantized) and RELU6
    (clamping the raw input)."""
    x, out = _io(graph, op)
    if x is None:
        return None
    if op.name == "RELU6":
        six = round(float(_F32(6.0) / x.s)) + x.zp
        six = tm.clamp(six, -128, 127)
        return lambda v: min(max(v, x.zp), six)
    mult, shift = tm.quantize_multiplier(float(x.s / out.s))
    low = max(-128, out.zp)
    return lambda v: tm.clamp(out.zp + tm.mbqm(v - x.zp, mult, shift), low, 127)


def leaky_relu_function(graph, op):
    """LEAKY_RELU (reference_ops::QuantizeLeakyRelu)."""
    x, out = _io(graph, op)
    if x is None:
        return None
    alpha = _F32(op.options.get("alpha", 0.2))
    m_alpha, s_alpha = tm.quantize_multiplier(float(x.s * alpha / out.s))
    m_id, s_id = tm.quantize_multiplier(float(x.s / out.s))
    negative = m_alpha < 0

    def f(v):
        d = v - x.zp
        if d >= 0:
            r = out.zp + tm.mbqm(d, m_id, s_id)
        else:
            s = tm.mbqm(d, abs(m_alpha), s_alpha)
            r = out.zp + (-s if negative else s)
        return tm.clamp(r, -128, 127)

    return f


def _srdhm16(a, b):
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    n = ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14))
    return tm.wrap16((n >> 15) if n >= 0 else -((-n) >> 15))


def _sdhm16(a, b):
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    return tm.wrap16((ab >> 15) if ab >= 0 else -((-ab) >> 15))


def _sat_shift16(v, amount):
    return tm.clamp(v * (1 << amount), -(1 << 15), (1 << 15) - 1)


def _downscale16(m):
    return (
        (1 << 15) - 1
        if m >= tm.INT32_MAX - (1 << 15)
        else (m + (1 << 15)) >> 16
    )


def hard_swish_function(graph, op):
    """HARD_SWISH (reference_ops::HardSwish, int16 fixed point)."""
    x, out = _io(graph, op)
    if x is None:
        return None
    hires = _F32(1.0 / 128.0) * x.s
    m_out, e_out = tm.quantize_multiplier(float(hires / out.s))
    m_rel, e_rel = tm.quantize_multiplier(float(hires / _F32(3.0 / 32768.0)))
    m_out, m_rel = _downscale16(m_out), _downscale16(m_rel)

    def f(v):
        hi = tm.wrap16(tm.wrap16(v - x.zp) * 128)
        pre = _srdhm16(hi, m_out)
        rel = hi
        if e_rel > 0:
            rel = _sat_shift16(rel, e_rel - 1)
        rel = _srdhm16(rel, m_rel)
        if e_rel > 0:
            rel = _sat_shift16(rel, 1)
        if e_rel < 0:
            rel = tm.rdbpot(rel, -e_rel)
        rel = tm.wrap16((rel + (1 << 15)) >> 1)
        value = tm.rdbpot(_sdhm16(rel, pre), -e_out)
        return tm.clamp(tm.wrap16(value + out.zp), -128, 127)

    return f


_FUNCTIONS = {
    "LOGISTIC": logistic_function,
    "TANH": tanh_function,
    "RSQRT": rsqrt_function,
    "QUANTIZE": quantize_function,
    "LOOKUP": lookup_function,
    "RELU": relu_function,
    "RELU6": relu_function,
    "LEAKY_RELU": leaky_relu_function,
    "HARD_SWISH": hard_swish_function,
}


def table(function):
    """The 256-entry table of an int8 function in input order: entry `k`
    is `function(k - 128)`."""
    return [function(v) for v in range(-128, 128)]


def trim(values):
    """`(lo, entries)`: an input-order table over the inputs where it
    changes (inputs below lo read entries[0], above the last entry)."""
    first, last = 0, 255
    while first < 255 and values[first + 1] == values[0]:
        first += 1
    while last > first and values[last - 1] == values[255]:
        last -= 1
    return first - 128, values[first : last + 1]


def region_table(ctx, region, function=None, trimmed=True):
    """`(table const, lo, last)`: the table of a `lowering.Region` (or of
    `function`, defaulting to the region's), trimmed or full (lo = -128,
    last = 255)."""
    names = " -> ".join(op.name for op in region.ops)
    values = table(function or region.function)
    lo, entries = trim(values) if trimmed else (-128, values)
    const = ctx.const(
        "int8_t",
        entries,
        f"op{region.ops[0].index}_table",
        f"{names}, inputs {lo} to {lo + len(entries) - 1}",
    )
    return const, lo, len(entries) - 1


def emit_unary(ctx, op):
    """A unary operator that is always tabulated (see `lowering`)."""
    raise unsupported(op, "input or output type", "not int8")


for _name, _fn in _FUNCTIONS.items():
    register(_name, unary=lambda graph, op, _fn=_fn: _fn(graph, op))(emit_unary)
