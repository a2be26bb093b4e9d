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
from keras_mgrade.export.c_backend.program import requant
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
    """Per-channel (mult, left, right): double(s_in) * double(s_w) /
    double(s_out), as TFLite's PopulateConvolutionQuantizationParams."""
    scales = w.scale if w.per_channel else np.repeat(w.scale[:1], channels)
    if w.per_channel and scales.size != channels:
        raise unsupported(op, "number of weight scales", scales.size)
    zeros = w.channel_zero_points(channels)
    if np.any(zeros != 0):
        raise unsupported(op, "weight zero points", zeros.tolist())
    values = []
    for s in scales:
        real = float(x.s) * float(_F32(s)) / float(out.s)
        values.append(requant(*tm.quantize_multiplier(real)))
    return values


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
    batches = x.size // cols
    ops = _fc_outputs(ctx, op)
    name = f"op{op.index}"
    weights = ctx.const(
        "int8_t", w.data.reshape(-1), f"{name}_weights", f"{rows} x {cols}"
    )
    bias_data = None if b is None else b.data.reshape(-1)
    bias = None
    if bias_data is not None or x.zp != 0:
        folded = _folded_bias(op, bias_data, w.data, x.zp)
        bias = ctx.const("int32_t", folded, f"{name}_bias", "zp_in folded")
    rqs, zps, lows, highs = [], [], [], []
    for k, o in enumerate(ops):
        out = ctx.tensor(o.outputs[0])
        values = _channel_requants(ctx, o, x, w, out, rows)
        rqs.append(ctx.const("mg_requant", values, f"op{o.index}_rq"))
        lo, hi = activation_range(o, out)
        zps.append(out.zp)
        lows.append(lo)
        highs.append(hi)
    pad = 2 - len(ops)
    fields = {
        "weights": weights,
        "bias": bias if bias is not None else "NULL",
        "rq": "{%s}" % ", ".join([c.name for c in rqs] + ["NULL"] * pad),
        "rows": rows,
        "cols": cols,
        "batches": batches,
        "outputs": len(ops),
        "out_zp": "{%s}" % ", ".join(map(str, zps + [0] * pad)),
        "act_min": "{%s}" % ", ".join(map(str, lows + [0] * pad)),
        "act_max": "{%s}" % ", ".join(map(str, highs + [0] * pad)),
    }
    params = ctx.struct("mg_fc_params", fields, name)
    outs = [Ref(o.outputs[0]) for o in ops]
    ctx.emit(
        Step(
            "mg_fully_connected",
            [
                params,
                Ref(op.inputs[0]),
                outs[0],
                outs[1] if pad == 0 else "NULL",
            ],
            reads=[op.inputs[0]],
            writes=[o.outputs[0] for o in ops],
            ops=[o.index for o in ops],
            comment=f"FULLY_CONNECTED {cols} -> {rows}"
            + (" (two output quantizations)" if pad == 0 else ""),
            sections=("fc",),
            macs=rows * cols * batches * len(ops),
        )
    )


def _padding(padding, stride, dilation, size, k, out):
    effective = (k - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2 if padding == 0 else 0


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
    _, out_h, out_w, _ = out.shape
    o = op.options
    sh, sw = o.get("strideH", 1), o.get("strideW", 1)
    dh, dw = o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)
    pad_top = _padding(o.get("padding", 1), sh, dh, in_h, k_h, out_h)
    pad_left = _padding(o.get("padding", 1), sw, dw, in_w, k_w, out_w)
    inside = (
        pad_top == 0
        and pad_left == 0
        and (out_h - 1) * sh + (k_h - 1) * dh < in_h
        and (out_w - 1) * sw + (k_w - 1) * dw < in_w
    )
    name = f"op{op.index}"
    rows = w.data.reshape(-1, out_c).T  # [out_c][taps]
    bias_data = None if b is None else b.data.reshape(-1)
    bias = None
    if inside and (bias_data is not None or x.zp != 0):
        folded = _folded_bias(op, bias_data, rows, x.zp)
        bias = ctx.const("int32_t", folded, f"{name}_bias", "zp_in folded")
    elif bias_data is not None:
        bias = ctx.const("int32_t", bias_data, f"{name}_bias")
    rq = ctx.const(
        "mg_requant", _channel_requants(ctx, op, x, w, out, out_c), f"{name}_rq"
    )
    lo, hi = activation_range(op, out)
    fields = {
        "weights": ctx.const(
            "int8_t", w.data.reshape(-1), f"{name}_weights", str(w.shape)
        ),
        "bias": bias if bias is not None else "NULL",
        "rq": rq,
        "in_h": in_h, "in_w": in_w, "in_c": in_c,
        "out_h": out_h, "out_w": out_w,
        "k_h": k_h, "k_w": k_w,
        "mult": out_c // in_c,
        "stride_h": sh, "stride_w": sw,
        "dil_h": dh, "dil_w": dw,
        "pad_top": pad_top, "pad_left": pad_left,
        "folded": int(inside),
        "in_offset": -x.zp,
        "out_zp": out.zp, "act_min": lo, "act_max": hi,
    }  # fmt: skip
    params = ctx.struct("mg_dwconv_params", fields, name)
    ctx.emit(
        Step(
            "mg_depthwise_conv",
            [params, Ref(op.inputs[0]), Ref(op.outputs[0])],
            reads=[op.inputs[0]],
            writes=[op.outputs[0]],
            ops=[op.index],
            comment=f"DEPTHWISE_CONV_2D {k_h}x{k_w} over {in_h}x{in_w}x{in_c}",
            sections=("dwconv",),
            macs=out_h * out_w * out_c * k_h * k_w,
        )
    )
