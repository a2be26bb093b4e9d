"""Emitters of the arithmetic operators: FULLY_CONNECTED,
DEPTHWISE_CONV_2D, the elementwise binary operators and MEAN/SUM.

Each `*_params` function computes, from the file's float32 scales, the
integers that TFLite Micro's `Prepare` computes (same float/double order of
evaluation); the `*_one` functions are the reference int8 arithmetic in
Python, used to tabulate an operator whose other input is a constant.
"""

import numpy as np

from keras_mgrade.export.c_backend import tflm_math as tm
from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Step
from keras_mgrade.export.c_backend.program import register
from keras_mgrade.export.c_backend.program import unsupported

_F32 = np.float32


def activation_range(op, out):
    """TFLite's `CalculateActivationRangeQuantized` for int8 outputs."""
    fused = op.options.get("fusedActivationFunction", 0) or 0

    def q(f):
        return out.zp + tm.tflite_round(float(_F32(f) / out.s))

    if fused == 0:
        return -128, 127
    if fused == 1:  # RELU
        return max(-128, q(0.0)), 127
    if fused == 2:  # RELU_N1_TO_1
        return max(-128, q(-1.0)), min(127, q(1.0))
    if fused == 3:  # RELU6
        return max(-128, q(0.0)), min(127, q(6.0))
    raise unsupported(op, "fused activation", fused)


def _check_int8(ctx, op, indices):
    for i in indices:
        t = ctx.tensor(i)
        if t.dtype != "int8":
            raise unsupported(op, f"tensor #{i} type", t.dtype)


def _optional(ctx, op, k):
    """Input `k` of `op`, or None when absent (index -1)."""
    if len(op.inputs) <= k or op.inputs[k] < 0:
        return None
    return ctx.tensor(op.inputs[k])


# ---------------------------------------------------------------- products


def _channel_requants(ctx, op, x, w, out, channels):
    """Per-channel `(multipliers, shifts)`: double(s_in) * double(s_w) /
    double(s_out), as TFLite's PopulateConvolutionQuantizationParams."""
    scales = w.scale if w.per_channel else np.repeat(w.scale[:1], channels)
    if w.per_channel and scales.size != channels:
        raise unsupported(op, "number of weight scales", scales.size)
    zeros = w.channel_zero_points(channels)
    if np.any(zeros != 0):
        raise unsupported(op, "weight zero points", zeros.tolist())
    mults, shifts = [], []
    for s in scales:
        real = float(x.s) * float(_F32(s)) / float(out.s)
        m, shift = tm.quantize_multiplier(real)
        mults.append(m)
        shifts.append(shift)
    return mults, shifts


def packed_requant(mults, shifts):
    """`(words, base)`: per channel the multiplier's low 30 bits and
    `shift - base` in the top two bits (see `mg_rq_mult`), or, when the
    channels do not pack, `(multiplier, shift)` pairs and base 127."""
    base = min(shifts)
    if all(m >= 1 << 30 for m in mults) and max(shifts) - base <= 3:
        words = [
            (m & 0x3FFFFFFF) | ((s - base) << 30) for m, s in zip(mults, shifts)
        ]
        return words, base
    words = []
    for m, s in zip(mults, shifts):
        words += [m, s & 0xFFFFFFFF]
    return words, 127


def _requant_consts(ctx, name, mults, shifts):
    """The packed requantization constant, its base, and the kernel
    variants it needs."""
    words, base = packed_requant(mults, shifts)
    rq = ctx.const("uint32_t", words, f"{name}_rq")
    return rq, base, ("MG_RQ_PAIRS",) if base == 127 else ()


def needs_exact64(bias, rows, shifts):
    """Whether a row's accumulator times 2^left can reach 2^30 (then the
    generic 64-bit requantization is used): |bias| + 128 * sum |w|."""
    bound = np.abs(rows.astype("int64")).sum(axis=1) * 128
    if bias is not None:
        bound = bound + np.abs(np.asarray(bias, "int64"))
    left = np.maximum(np.asarray(shifts, "int64"), 0)
    return bool(np.any(bound * (2**left) >= 2**30))


def blocked_weights(weights):
    """[rows][cols] -> per group of 4 rows, blocks of 16 columns
    ([4][16] each) then the last `cols % 16` columns ([4][tail]); the last
    `rows % 4` rows follow row-major. None when there are fewer than 4
    rows."""
    rows, cols = weights.shape
    if rows < 4:
        return None
    full = cols - cols % 16
    parts = []
    for group in weights[: rows - rows % 4].reshape(rows // 4, 4, cols):
        for c in range(0, full, 16):
            parts.append(group[:, c : c + 16].reshape(-1))
        parts.append(group[:, full:].reshape(-1))
    parts.append(weights[rows - rows % 4 :].reshape(-1))
    return np.concatenate(parts)


def _folded_bias(op, bias, weights_rows, in_zp):
    """bias - zp_in * sum(w) per output, checked to fit int32."""
    sums = weights_rows.astype("int64").sum(axis=1)
    folded = -in_zp * sums
    if bias is not None:
        folded = folded + bias.astype("int64")
    if np.any(np.abs(folded) >= 2**31):
        raise unsupported(op, "folded bias range", int(np.abs(folded).max()))
    return folded


def _fc_outputs(ctx, op):
    """This FULLY_CONNECTED and a partner computing the same accumulator
    (same input, weights and bias) with another output quantization."""
    partner = ctx.fc_partner.get(op.index)
    return [op] if partner is None else [op, partner]


@register("FULLY_CONNECTED")
def emit_fully_connected(ctx, op):
    """FULLY_CONNECTED with per-channel (or per-tensor) int8 weights."""
    x, w = ctx.tensor(op.inputs[0]), ctx.tensor(op.inputs[1])
    b = _optional(ctx, op, 2)
    _check_int8(ctx, op, [op.inputs[0], op.inputs[1], op.outputs[0]])
    if w.data is None or len(w.shape) != 2:
        raise unsupported(op, "weights", "non-constant or not 2-D")
    rows, cols = w.shape
    ops = _fc_outputs(ctx, op)
    name = f"op{op.index}"
    blocked = blocked_weights(w.data)
    weights = ctx.const(
        "int8_t",
        w.data.reshape(-1) if blocked is None else blocked,
        f"{name}_weights",
        f"{rows} x {cols}" + ("" if blocked is None else ", 4-row blocks"),
    )
    folded = None
    if b is not None or x.zp != 0:
        folded = _folded_bias(op, None if b is None else b.data, w.data, x.zp)
    fields = {"weights": weights, "bias": "NULL"}
    if folded is not None:
        fields["bias"] = ctx.const("int32_t", folded, f"{name}_bias")
    rqs, bases, zps, lows, highs, right = [], [], [], [], [], []
    exact, features = 0, set()
    for o in ops:
        out = ctx.tensor(o.outputs[0])
        m, sh = _channel_requants(ctx, o, x, w, out, rows)
        exact = exact or needs_exact64(folded, w.data, sh)
        rq, base, needs = _requant_consts(ctx, f"op{o.index}", m, sh)
        rqs.append(rq.name)
        bases.append(base)
        features.update(needs)
        lo, hi = activation_range(o, out)
        zps.append(out.zp)
        lows.append(lo)
        highs.append(hi)
        right.append(int(max(sh) < 0 and (lo, hi) == (-128, 127)))
    pad = 2 - len(ops)
    fields.update(
        {
            "rq": _pair(rqs + ["NULL"] * pad),
            "rows": rows,
            "cols": cols,
            "batches": x.size // cols,
            "outputs": len(ops),
            "blocked": int(blocked is not None),
            "exact64": int(exact),
            "rq_base": _pair(bases + [0] * pad),
            "right_only": _pair(right + [0] * pad),
            "out_zp": _pair(zps + [0] * pad),
            "act_min": _pair(lows + [0] * pad),
            "act_max": _pair(highs + [0] * pad),
        }
    )
    params = ctx.struct("mg_fc_params", fields, name)
    outs = [Ref(o.outputs[0]) for o in ops] + ["NULL"] * pad
    ctx.emit(
        Step(
            "mg_fully_connected",
            [params, Ref(op.inputs[0]), *outs],
            reads=[op.inputs[0]],
            writes=[o.outputs[0] for o in ops],
            ops=[o.index for o in ops],
            comment=f"FULLY_CONNECTED {cols} -> {rows}"
            + (" (two output quantizations)" if pad == 0 else ""),
            sections=("fc",),
            macs=rows * cols * (x.size // cols) * len(ops),
            features=tuple(features)
            + (("MG_EXACT",) if exact else ())
            + (
                () if blocked is not None and rows % 4 == 0 else ("MG_FC_ROWS",)
            ),
        )
    )


def _pair(values):
    return "{" + ", ".join(str(v) for v in values) + "}"


def _padding(padding, stride, dilation, size, k, out):
    effective = (k - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2 if padding == 0 else 0


def _conv_geometry(op, x, w, out):
    """Strides, dilations, padding; whether every tap reads the input and
    whether the one output's window is the whole input."""
    _, in_h, in_w, in_c = x.shape
    _, k_h, k_w, out_c = w.shape
    _, out_h, out_w, _ = out.shape
    o = op.options
    g = {
        "stride_h": o.get("strideH", 1),
        "stride_w": o.get("strideW", 1),
        "dil_h": o.get("dilationHFactor", 1),
        "dil_w": o.get("dilationWFactor", 1),
    }
    g["pad_top"] = _padding(
        o.get("padding", 1), g["stride_h"], g["dil_h"], in_h, k_h, out_h
    )
    g["pad_left"] = _padding(
        o.get("padding", 1), g["stride_w"], g["dil_w"], in_w, k_w, out_w
    )
    inside = (
        g["pad_top"] == 0
        and g["pad_left"] == 0
        and (out_h - 1) * g["stride_h"] + (k_h - 1) * g["dil_h"] < in_h
        and (out_w - 1) * g["stride_w"] + (k_w - 1) * g["dil_w"] < in_w
    )
    window = (
        inside
        and out_h == out_w == 1
        and (k_h, k_w) == (in_h, in_w)
        and out_c == in_c
    )
    return g, inside, window


@register("DEPTHWISE_CONV_2D")
def emit_depthwise_conv(ctx, op):
    """DEPTHWISE_CONV_2D (NHWC, batch 1)."""
    x, w = ctx.tensor(op.inputs[0]), ctx.tensor(op.inputs[1])
    out = ctx.tensor(op.outputs[0])
    b = _optional(ctx, op, 2)
    _check_int8(ctx, op, [op.inputs[0], op.inputs[1], op.outputs[0]])
    if len(x.shape) != 4 or x.shape[0] != 1 or w.data is None:
        raise unsupported(op, "input shape", x.shape)
    _, in_h, in_w, in_c = x.shape
    _, k_h, k_w, out_c = w.shape
    geometry, inside, window = _conv_geometry(op, x, w, out)
    name = f"op{op.index}"
    rows = w.data.reshape(-1, out_c).T  # [out_c][taps]
    bias = None if b is None else b.data.reshape(-1).astype("int64")
    if inside:
        bias = _folded_bias(op, bias, rows, x.zp)
    mults, shifts = _channel_requants(ctx, op, x, w, out, out_c)
    rq, base, needs = _requant_consts(ctx, name, mults, shifts)
    lo, hi = activation_range(op, out)
    fields = {
        "weights": ctx.const(
            "int8_t", w.data.reshape(-1), f"{name}_weights", str(w.shape)
        ),
        "bias": "NULL"
        if bias is None
        else ctx.const("int32_t", bias, f"{name}_bias"),
        "rq": rq,
        "in_h": in_h, "in_w": in_w, "in_c": in_c,
        "out_h": out.shape[1], "out_w": out.shape[2],
        "k_h": k_h, "k_w": k_w,
        "in_offset": -x.zp,
        "mult_depth": out_c // in_c,
        **geometry,
        "folded": int(inside),
        "window": int(window),
        "exact64": int(needs_exact64(bias, rows, shifts) or not inside),
        "right_only": int(max(shifts) < 0 and (lo, hi) == (-128, 127)),
        "rq_base": base,
        "out_zp": out.zp, "act_min": lo, "act_max": hi,
    }  # fmt: skip
    params = ctx.struct("mg_dwconv_params", fields, name)
    kind = "dwconv_window" if window else "dwconv_general"
    ctx.emit(
        Step(
            "mg_" + kind,
            [params, Ref(op.inputs[0]), Ref(op.outputs[0])],
            reads=[op.inputs[0]],
            writes=[op.outputs[0]],
            ops=[op.index],
            comment=f"DEPTHWISE_CONV_2D {k_h}x{k_w} over {in_h}x{in_w}x{in_c}",
            sections=("dwconv", kind),
            macs=out.shape[1] * out.shape[2] * out_c * k_h * k_w,
            features=needs + (("MG_EXACT",) if fields["exact64"] else ()),
        )
    )
