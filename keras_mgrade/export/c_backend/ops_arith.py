"""Emitters of the arithmetic operators: FULLY_CONNECTED,
DEPTHWISE_CONV_2D, the elementwise binary operators and MEAN/SUM.

Each `*_params` function computes, from the file's float32 scales, the
integers that TFLite Micro's `Prepare` computes (same float/double order of
evaluation); the `*_one` functions are the reference int8 arithmetic in
Python, used to tabulate an operator whose other input is a constant.
"""

import numpy as np

from keras_mgrade.export.c_backend import ops_unary
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
    """[rows][cols] -> per group of 4 rows, blocks of 16 columns ([4][16]
    each); then per group of 4 rows the last `cols % 16` columns
    ([4][tail]); then the last `rows % 4` rows row-major. None when there
    are fewer than 4 rows."""
    rows, cols = weights.shape
    if rows < 4:
        return None
    full = cols - cols % 16
    groups = weights[: rows - rows % 4].reshape(rows // 4, 4, cols)
    parts = []
    for group in groups:
        for c in range(0, full, 16):
            parts.append(group[:, c : c + 16].reshape(-1))
    parts.extend(group[:, full:].reshape(-1) for group in groups)
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


def requant_fields(ctx, name, x, w, out, op, channels, bias, rows):
    """mg_channels_q fields (without the table) shared by FULLY_CONNECTED
    and the window convolution, and the kernel variants they need.
    `fast`: every shift is a right shift, the accumulators stay below 2^30
    and the activation range is the whole int8 range."""
    mults, shifts = _channel_requants(ctx, op, x, w, out, channels)
    rq, base, needs = _requant_consts(ctx, name, mults, shifts)
    lo, hi = activation_range(op, out)
    fast = (
        base != 127
        and max(shifts) <= -1
        and (lo, hi) == (-128, 127)
        and not needs_exact64(bias, rows, shifts)
    )
    fields = {
        "rq": rq,
        "table": "NULL",
        "base": base,
        "fast": int(fast),
        "zp": out.zp,
        "act_min": lo,
        "act_max": hi,
    }
    features = needs + (() if fast else ("MG_EXACT",))
    return fields, features + (("MG_CHANNELS_MAX", channels),)


def _fc_table(ctx, op, region):
    """The 256-entry table of the operators after a FULLY_CONNECTED
    (`region`), its fused activation folded into the table."""
    if region is None:
        return "NULL"
    lo, hi = activation_range(op, ctx.tensor(op.outputs[0]))
    table, _, _ = ops_unary.region_table(
        ctx,
        region,
        lambda v: region.function(max(lo, min(hi, v))),
        trimmed=False,
    )
    return table


@register("FULLY_CONNECTED")
def emit_fully_connected(ctx, op, region=None):
    """FULLY_CONNECTED with per-channel (or per-tensor) int8 weights; with
    `region` (a `lowering.Region` reading only this output), the region's
    table is applied to each output."""
    x, w = ctx.tensor(op.inputs[0]), ctx.tensor(op.inputs[1])
    b = _optional(ctx, op, 2)
    _check_int8(ctx, op, [op.inputs[0], op.inputs[1], op.outputs[0]])
    if w.data is None or len(w.shape) != 2:
        raise unsupported(op, "weights", "non-constant or not 2-D")
    rows, cols = w.shape
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
    out = ctx.tensor(op.outputs[0])
    q, features = requant_fields(ctx, name, x, w, out, op, rows, folded, w.data)
    if region is not None:  # the table saturates: full int8 range
        q.update(table=_fc_table(ctx, op, region), act_min=-128, act_max=127)
    fields = {
        "weights": weights,
        "bias": "NULL"
        if folded is None
        else ctx.const("int32_t", folded, f"{name}_bias"),
        "q": q,
        "rows": rows,
        "cols": cols,
        "batches": x.size // cols,
    }
    target = op.outputs[0] if region is None else region.sink
    tail = ("MG_FC_ROWS",) if rows % 4 else ()
    ctx.emit(
        Step(
            "mg_fully_connected",
            [ctx.struct("mg_fc_params", fields, name), Ref(op.inputs[0])]
            + [Ref(target)],
            reads=[op.inputs[0]],
            writes=[target],
            ops=[op.index] + ([] if region is None else region.ops_indices),
            comment=f"FULLY_CONNECTED {cols} -> {rows}"
            + ("" if region is None else ", then a table"),
            sections=("fc",),
            macs=rows * cols * (x.size // cols),
            features=features + tail + (("MG_FC_UNPACK", cols // 16 * 8),),
        )
    )


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


def window_weights(weights, taps, channels):
    """[taps][channels] -> [channels / 4][taps][4], then [taps][channels %
    4]: each group of 4 channels reads its taps in order."""
    w = weights.reshape(taps, channels)
    full = channels - channels % 4
    groups = w[:, :full].reshape(taps, full // 4, 4).transpose(1, 0, 2)
    return np.concatenate([groups.reshape(-1), w[:, full:].reshape(-1)])


def emit_window(ctx, op, sources, next_fifo=None, fused=()):
    """A depthwise convolution whose one output's window is its whole
    input, the input being the rows of `sources = (fifo, fresh)` (fresh
    may be None). With `next_fifo`, the kernel also writes the window's
    last rows (the next FIFO state) over `fifo`."""
    x, w = ctx.tensor(op.inputs[0]), ctx.tensor(op.inputs[1])
    out = ctx.tensor(op.outputs[0])
    b = _optional(ctx, op, 2)
    used = [i for i in (*sources, op.inputs[1], op.outputs[0]) if i is not None]
    _check_int8(ctx, op, used)
    _, _, _, channels = w.shape
    taps = x.size // channels
    fifo, fresh = sources
    split = ctx.tensor(fifo).size // channels
    rows = w.data.reshape(-1, channels).T  # [channels][taps]
    bias = None if b is None else b.data.reshape(-1).astype("int64")
    bias = _folded_bias(op, bias, rows, x.zp)
    name = f"op{op.index}"
    q, features = requant_fields(ctx, name, x, w, out, op, channels, bias, rows)
    fields = {
        "weights": ctx.const(
            "int8_t",
            window_weights(w.data, taps, channels),
            f"{name}_weights",
            f"{taps} taps x {channels} channels, groups of 4 channels",
        ),
        "bias": ctx.const("int32_t", bias, f"{name}_bias"),
        "q": q,
        "channels": channels,
        "taps": taps,
        "split": split,
    }
    if channels % 4:
        features += ("MG_WINDOW_TAIL",)
    reads = [fifo] + ([fresh] if fresh is not None else [])
    writes = [op.outputs[0]] + ([next_fifo] if next_fifo is not None else [])
    args = [ctx.struct("mg_window_params", fields, name)]
    args += [Ref(fifo), Ref(fresh if fresh is not None else fifo)]
    args += [Ref(op.outputs[0]), "NULL" if next_fifo is None else Ref(fifo)]
    ctx.emit(
        Step(
            "mg_dwconv_window",
            args,
            reads=reads,
            writes=writes,
            ops=sorted({op.index, *fused}),
            comment=f"DEPTHWISE_CONV_2D {taps} taps x {channels}"
            + ("" if next_fifo is None else ", FIFO shifted in place"),
            sections=("window",),
            macs=taps * channels,
            features=features,
            overwrites={} if next_fifo is None else {next_fifo: fifo},
        )
    )


def is_window(op, x, w, out):
    """Whether a depthwise convolution has one output whose window is its
    whole input, every tap reading it (see `emit_window`)."""
    return _conv_geometry(op, x, w, out)[2]


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
    if window:
        emit_window(ctx, op, (op.inputs[0], None))
        return
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
        "rq_base": base,
        "out_zp": out.zp, "act_min": lo, "act_max": hi,
    }  # fmt: skip
    params = ctx.struct("mg_dwconv_params", fields, name)
    ctx.emit(
        Step(
            "mg_dwconv_general",
            [params, Ref(op.inputs[0]), Ref(op.outputs[0])],
            reads=[op.inputs[0]],
            writes=[op.outputs[0]],
            ops=[op.index],
            comment=f"DEPTHWISE_CONV_2D {k_h}x{k_w} over {in_h}x{in_w}x{in_c}",
            sections=("dwconv_general",),
            macs=out.shape[1] * out.shape[2] * out_c * k_h * k_w,
            features=needs,
        )
    )
