"""Emitters of the elementwise binary operators (ADD, SUB, MUL, MINIMUM,
MAXIMUM, SQUARED_DIFFERENCE) and of the reductions MEAN and SUM.

A binary operator whose second input is a one-element constant (or that
reads the same tensor twice, `x * x`) is a unary function of an int8
input: its `UNARY` entry returns that function, so it is tabulated and
fused with its neighbours instead of computed.
"""

import numpy as np

from keras_mgrade.export.c_backend import tflm_math as tm
from keras_mgrade.export.c_backend.ops_arith import activation_range
from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Step
from keras_mgrade.export.c_backend.program import register
from keras_mgrade.export.c_backend.program import requant
from keras_mgrade.export.c_backend.program import unsupported

_F32 = np.float32


def apply_requant(x, rq):
    """`MultiplyByQuantizedMultiplier` with a `(mult, left, right)`."""
    mult, left, right = rq
    return tm.rdbpot(tm.srdhm(tm.wrap32(int(x) << left), mult), right)


def _rq(real):
    return requant(*tm.quantize_multiplier(real))


# ------------------------------------------------- TFLite Micro Prepare


def add_params(op, a, b, out):
    """ADD and SUB constants, in double arithmetic. (TFLite Micro's
    sub_common.cc divides the scales in float32 before widening; the
    `tflite-micro` runtime computes SUB like ADD, in double: checked on
    all input pairs, see tests/export/test_c_backend.py.)"""
    twice_max = 2.0 * float(max(a.s, b.s))
    r1, r2 = float(a.s) / twice_max, float(b.s) / twice_max
    r_out = twice_max / ((1 << 20) * float(out.s))
    lo, hi = activation_range(op, out)
    return {
        "rq1": _rq(r1),
        "rq2": _rq(r2),
        "rq_out": _rq(r_out),
        "off1": -a.zp,
        "off2": -b.zp,
        "out_zp": out.zp,
        "act_min": lo,
        "act_max": hi,
        "subtract": int(op.name == "SUB"),
    }


def add_one(p, va, vb):
    """One int8 ADD/SUB as TFLite computes it."""
    sa = apply_requant(tm.wrap32((va + p["off1"]) * (1 << 20)), p["rq1"])
    sb = apply_requant(tm.wrap32((vb + p["off2"]) * (1 << 20)), p["rq2"])
    raw = tm.wrap32(sa - sb if p["subtract"] else sa + sb)
    v = apply_requant(raw, p["rq_out"]) + p["out_zp"]
    return tm.clamp(v, p["act_min"], p["act_max"])


def mul_params(op, a, b, out):
    lo, hi = activation_range(op, out)
    real = float(a.s) * float(b.s) / float(out.s)
    return {
        "rq": _rq(real),
        "off1": -a.zp,
        "off2": -b.zp,
        "out_zp": out.zp,
        "act_min": lo,
        "act_max": hi,
    }


def mul_one(p, va, vb):
    prod = tm.wrap32((va + p["off1"]) * (vb + p["off2"]))
    v = apply_requant(prod, p["rq"]) + p["out_zp"]
    return tm.clamp(v, p["act_min"], p["act_max"])


def sqdiff_params(op, a, b, out):
    twice_max = 2.0 * float(max(a.s, b.s))
    r_out = (twice_max * twice_max) / float(_F32(1 << 14) * out.s)
    return {
        "rq1": _rq(float(a.s) / twice_max),
        "rq2": _rq(float(b.s) / twice_max),
        "rq_out": _rq(r_out),
        "off1": -a.zp,
        "off2": -b.zp,
        "out_zp": out.zp,
    }


def sqdiff_one(p, va, vb):
    sa = apply_requant(tm.wrap32((va + p["off1"]) * (1 << 7)), p["rq1"])
    sb = apply_requant(tm.wrap32((vb + p["off2"]) * (1 << 7)), p["rq2"])
    d = tm.wrap32(sa - sb)
    v = apply_requant(tm.wrap32(d * d), p["rq_out"]) + p["out_zp"]
    return tm.clamp(v, -128, 127)


_KINDS = {  # op -> (params, the arithmetic of one pair)
    "ADD": (add_params, add_one),
    "SUB": (add_params, add_one),
    "MUL": (mul_params, mul_one),
    "SQUARED_DIFFERENCE": (sqdiff_params, sqdiff_one),
}


def _minmax_one(op):
    if op.name == "MINIMUM":
        return lambda p, va, vb: min(va, vb)
    return lambda p, va, vb: max(va, vb)


def binary_function(graph, op):
    """`(params, f(va, vb))`: the exact int8 arithmetic of `op`."""
    a, b = (graph.tensors[i] for i in op.inputs[:2])
    out = graph.tensors[op.outputs[0]]
    if op.name in ("MINIMUM", "MAXIMUM"):
        return {}, _minmax_one(op)
    params_fn, one = _KINDS[op.name]
    return params_fn(op, a, b, out), one


# ------------------------------------------------------------- unary use


def unary_binary(graph, op):
    """The unary int8 function of a binary op with one scalar constant
    input, or reading one tensor twice; None otherwise."""
    a, b = (graph.tensors[i] for i in op.inputs[:2])
    out = graph.tensors[op.outputs[0]]
    if any(t.dtype != "int8" for t in (a, b, out)):
        return None
    params, one = binary_function(graph, op)
    if op.inputs[0] == op.inputs[1]:
        return lambda v: one(params, v, v)
    if b.is_const and b.size == 1 and not a.is_const and a.size == out.size:
        c = int(b.data.reshape(-1)[0])
        return lambda v: one(params, v, c)
    if a.is_const and a.size == 1 and not b.is_const and b.size == out.size:
        c = int(a.data.reshape(-1)[0])
        return lambda v: one(params, c, v)
    return None


# -------------------------------------------------------- broadcasting


def broadcast(op, shape_a, shape_b, shape_out):
    """The outer x inner iteration (element strides per operand) of a
    numpy-style broadcast, or an error if it needs more than two loops."""
    rank = max(len(shape_a), len(shape_b), len(shape_out))
    shapes = [
        (1,) * (rank - len(s)) + tuple(s) for s in (shape_a, shape_b, shape_out)
    ]
    shape_out = shapes.pop()
    dims = []  # (size, stride_a, stride_b), innermost last
    strides = [1, 1]
    rows = []
    for axis in reversed(range(rank)):
        size = shape_out[axis]
        row = [size]
        for k in range(2):
            row.append(strides[k] if shapes[k][axis] == size else 0)
            strides[k] *= shapes[k][axis]
        rows.append(row)
    for size, sa, sb in reversed(rows):
        if size == 1:
            continue
        if dims:
            last = dims[-1]
            if last[1] == sa * size and last[2] == sb * size:
                dims[-1] = [last[0] * size, sa, sb]
                continue
        dims.append([size, sa, sb])
    if len(dims) > 2:
        raise unsupported(op, "broadcast", (shape_a, shape_b))
    while len(dims) < 2:
        dims.insert(0, [1, 0, 0])
    (outer, ao, bo), (inner, ai, bi) = dims
    return {
        "outer": outer,
        "inner": inner,
        "a_inner": ai,
        "a_outer": ao,
        "b_inner": bi,
        "b_outer": bo,
    }


_HALF = (1 << 30, 0, 0)  # the requantization of multiplier 1/2


def _fits(zp, e):
    return e >= 1 and abs(zp) * 2**e + 2 ** (e - 1) < 2**30


def _add_fields(op, a, b, p):
    """mg_add_q with the operands ordered (big, small): the input whose
    multiplier is exactly 1/2 first. Returns (fields, swapped)."""
    for rq in (p["rq1"], p["rq2"], p["rq_out"]):
        if rq[1]:  # TFLite's Prepare checks all three are below one
            raise unsupported(op, "multiplier above one", rq)
    swapped = p["rq1"] != _HALF and p["rq2"] == _HALF
    big, small = ("2", "1") if swapped else ("1", "2")
    if p["rq" + big] != _HALF:  # the larger scale always gives 1/2
        raise unsupported(op, "input multipliers", (p["rq1"], p["rq2"]))
    sign_small = -1 if p["subtract"] else 1
    sign_big = 1
    if swapped and p["subtract"]:
        sign_big, sign_small = -1, 1
    full = (p["act_min"], p["act_max"]) == (-128, 127)
    fields = {
        "m_small": p["rq" + small][0],
        "m_out": p["rq_out"][0],
        "off_big": p["off" + big],
        "off_small": p["off" + small],
        "e_small": p["rq" + small][2],
        "e_out": p["rq_out"][2],
        "sign_big": sign_big,
        "sign_small": sign_small,
        "out_zp": p["out_zp"],
        "act_min": p["act_min"],
        "act_max": p["act_max"],
        "fast": int(
            full
            and p["rq" + small][2] >= 1
            and _fits(p["out_zp"], p["rq_out"][2])
        ),
    }
    return fields, swapped


def add_q(op, a, b, out):
    """`(mg_add_q fields, swapped)` of an ADD or SUB."""
    return _add_fields(op, a, b, add_params(op, a, b, out))


def mul_q(op, a, b, out):
    """mg_mul_q fields of a MUL."""
    return _mul_fields(op, a, b, mul_params(op, a, b, out))


def _mul_fields(op, a, b, p):
    mult, left, right = p["rq"]
    biggest = (128 + abs(a.zp)) * (128 + abs(b.zp))
    full = (p["act_min"], p["act_max"]) == (-128, 127)
    fast = biggest * 2**left < 2**30 and full and _fits(p["out_zp"], right)
    return {
        "mult": mult,
        "off1": p["off1"],
        "off2": p["off2"],
        "shift": left - right,
        "out_zp": p["out_zp"],
        "act_min": p["act_min"],
        "act_max": p["act_max"],
        "fast": int(fast),
    }


def _rq_text(rq):
    return "{{{}, {}, {}}}".format(*rq)


def _sqdiff_fields(p):
    fields = {key: _rq_text(p[key]) for key in ("rq1", "rq2", "rq_out")}
    fields.update({k: p[k] for k in ("off1", "off2", "out_zp")})
    return fields


def emit_binary(ctx, op):
    """ADD, SUB, MUL, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM."""
    a, b = (ctx.tensor(i) for i in op.inputs[:2])
    out = ctx.tensor(op.outputs[0])
    if any(t.dtype != "int8" for t in (a, b, out)):
        raise unsupported(op, "tensor types", (a.dtype, b.dtype, out.dtype))
    name = f"op{op.index}"
    first, second = op.inputs[:2]
    if op.name in ("MINIMUM", "MAXIMUM"):
        call, section, ctype = "mg_minmax", "minmax", "mg_minmax_params"
        fields = {"sign": 1 if op.name == "MINIMUM" else -1}
    elif op.name == "SQUARED_DIFFERENCE":
        call, section, ctype = "mg_sqdiff", "sqdiff", "mg_sqdiff_params"
        fields = _sqdiff_fields(sqdiff_params(op, a, b, out))
    elif op.name == "MUL":
        call, section, ctype = "mg_mul", "mul", "mg_mul_params"
        fields = {"q": mul_q(op, a, b, out)}
    else:
        call, section, ctype = "mg_add", "add", "mg_add_params"
        q, swapped = add_q(op, a, b, out)
        fields = {"q": q}
        if swapped:
            first, second = second, first
    shapes = [ctx.tensor(first).shape, ctx.tensor(second).shape]
    plain = shapes[0] == shapes[1] == out.shape
    shape = "NULL"
    if not plain:
        bc = broadcast(op, shapes[0], shapes[1], out.shape)
        # [1, n] with [n]: the same n elements in the same order
        plain = bc["outer"] == 1 and bc["a_inner"] == bc["b_inner"] == 1
    if not plain:
        shape = "&" + ctx.struct("mg_bcast", bc, f"{name}_shape").name
    fields = {"shape": shape, "n": out.size, **fields}
    params = ctx.struct(ctype, fields, name)
    args = [params, Ref(first), Ref(second), Ref(op.outputs[0])]
    ctx.emit(
        Step(
            call,
            args,
            reads=list(op.inputs[:2]),
            writes=[op.outputs[0]],
            ops=[op.index],
            comment=f"{op.name} {list(a.shape)}, {list(b.shape)}",
            sections=(section,),
            elementwise=plain,
            features=(() if plain else ("MG_BCAST",))
            + (() if fields.get("q", {}).get("fast", 1) else ("MG_EXACT",)),
        )
    )


for _name in ("ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "MINIMUM", "MAXIMUM"):
    register(_name, unary=unary_binary)(emit_binary)


# ----------------------------------------------------------- reductions


def reduce_params(op, x, out, count):
    """MEAN / SUM constants: TFLite's multiplier, and for MEAN its
    1/count folding (QuantizedMeanOrSum)."""
    mult, shift = tm.quantize_multiplier(float(x.s) / float(out.s))
    if op.name == "MEAN":
        n_shift = min(int(count).bit_length() - 1, 32, 31 + shift)
        mult = (mult << n_shift) // count
        shift -= n_shift
    return requant(mult, shift)


def mean_q(op, x, out, count):
    """mg_mean_q fields of a MEAN or SUM over `count` elements."""
    return {
        "rq": _rq_text(reduce_params(op, x, out, count)),
        "zp_sum": x.zp * count,
        "out_zp": out.zp,
    }


@register("MEAN", "SUM")
def emit_reduce(ctx, op):
    """MEAN and SUM over a contiguous group of axes."""
    x, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    axis = ctx.tensor(op.inputs[1])
    if x.dtype != "int8" or out.dtype != "int8" or axis.data is None:
        raise unsupported(op, "tensor types", (x.dtype, out.dtype))
    rank = len(x.shape)
    axes = sorted({int(a) % rank for a in axis.data.reshape(-1)})
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise unsupported(op, "axes", axes)
    outer = int(np.prod(x.shape[: axes[0]], dtype=np.int64))
    count = int(np.prod(x.shape[axes[0] : axes[-1] + 1], dtype=np.int64))
    inner = int(np.prod(x.shape[axes[-1] + 1 :], dtype=np.int64))
    fields = {
        "q": mean_q(op, x, out, count),
        "outer": outer,
        "count": count,
        "inner": inner,
    }
    params = ctx.struct("mg_mean_params", fields, f"op{op.index}")
    ctx.emit(
        Step(
            "mg_reduce",
            [params, Ref(op.inputs[0]), Ref(op.outputs[0])],
            reads=[op.inputs[0]],
            writes=[op.outputs[0]],
            ops=[op.index],
            comment=f"{op.name} over {count} of {list(x.shape)}",
            sections=("mean",),
        )
    )
