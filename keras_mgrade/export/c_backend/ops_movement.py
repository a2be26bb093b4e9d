"""Data movement: RESHAPE, SQUEEZE, EXPAND_DIMS, STRIDED_SLICE,
CONCATENATION, PACK, GATHER, TRANSPOSE.

Each operator is evaluated once at generation time on arrays of element
numbers, which gives the source of every output element. A contiguous
block of one input becomes a view (no code at all); otherwise the
output is made of copied runs, or, when runs are short, of one indexed
gather.
"""

import numpy as np

from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Step
from keras_mgrade.export.c_backend.program import register
from keras_mgrade.export.c_backend.program import unsupported

_STRIDE = 1 << 24  # element number = input slot * _STRIDE + flat index


def _ids(ctx, index, slot):
    t = ctx.tensor(index)
    return (slot * _STRIDE + np.arange(t.size, dtype=np.int64)).reshape(t.shape)


def _strided_slice(ctx, op):
    x = _ids(ctx, op.inputs[0], 0)
    begin, end, strides = (
        ctx.tensor(i).data.reshape(-1).tolist() for i in op.inputs[1:4]
    )
    o = op.options
    if o.get("ellipsisMask", 0) or o.get("newAxisMask", 0) or o.get("offset"):
        raise unsupported(op, "ellipsis/new-axis/offset masks", o)
    index = []
    for axis in range(x.ndim):
        bit = 1 << axis
        if o.get("shrinkAxisMask", 0) & bit:
            index.append(begin[axis] % x.shape[axis])
            continue
        start = None if o.get("beginMask", 0) & bit else begin[axis]
        stop = None if o.get("endMask", 0) & bit else end[axis]
        index.append(slice(start, stop, strides[axis]))
    return x[tuple(index)]


def _concatenation(ctx, op):
    parts = [_ids(ctx, i, k) for k, i in enumerate(op.inputs)]
    return np.concatenate(parts, axis=op.options.get("axis", 0))


def _pack(ctx, op):
    parts = [_ids(ctx, i, k) for k, i in enumerate(op.inputs)]
    return np.stack(parts, axis=op.options.get("axis", 0))


def _gather(ctx, op):
    indices = ctx.tensor(op.inputs[1])
    if indices.data is None or op.options.get("batchDims", 0):
        raise unsupported(op, "indices", "non-constant or batched")
    x = _ids(ctx, op.inputs[0], 0)
    return np.take(x, indices.data, axis=op.options.get("axis", 0))


def _transpose(ctx, op):
    perm = ctx.tensor(op.inputs[1])
    if perm.data is None:
        raise unsupported(op, "permutation", "non-constant")
    return np.transpose(_ids(ctx, op.inputs[0], 0), perm.data.reshape(-1))


_MAPS = {
    "STRIDED_SLICE": (_strided_slice, 1),
    "CONCATENATION": (_concatenation, None),
    "PACK": (_pack, None),
    "GATHER": (_gather, 1),
    "TRANSPOSE": (_transpose, 1),
}


def index_map(ctx, op):
    """The source of every output element of a data movement operator:
    `slot * 2**24 + flat index` in its data input number `slot`."""
    return _MAPS[op.name][0](ctx, op)


def runs(sources):
    """Contiguous runs `(dst, slot, src, length)` of a flat source map."""
    out = []
    for dst, value in enumerate(sources.tolist()):
        slot, src = divmod(value, _STRIDE)
        if out:
            d, s, f, n = out[-1]
            if s == slot and f + n == src and d + n == dst:
                out[-1] = (d, s, f, n + 1)
                continue
        out.append((dst, slot, src, 1))
    return out


def _check_same_quantization(ctx, op, data_inputs):
    out = ctx.tensor(op.outputs[0])
    for i in data_inputs:
        t = ctx.tensor(i)
        if t.dtype != out.dtype or (
            t.dtype == "int8"
            and (t.s, t.zp)
            != (
                out.s,
                out.zp,
            )
        ):
            raise unsupported(op, f"input #{i} quantization", (t.s, t.zp))


@register("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def emit_reshape(ctx, op):
    """A reshape is a view of its input: no code."""
    ctx.alias(op.outputs[0], op.inputs[0], 0)


@register(*_MAPS)
def emit_movement(ctx, op):
    """Copies (or views) computed from the operator's index map."""
    fn, n_data = _MAPS[op.name]
    data_inputs = op.inputs if n_data is None else op.inputs[:n_data]
    _check_same_quantization(ctx, op, data_inputs)
    out = op.outputs[0]
    itemsize = np.dtype(ctx.tensor(out).dtype).itemsize
    pieces = runs(fn(ctx, op).reshape(-1))
    if len(pieces) == 1 and not ctx.tensor(data_inputs[0]).is_const:
        _, slot, src, _ = pieces[0]
        ctx.alias(out, data_inputs[slot], src * itemsize)
        return
    if itemsize != 1:
        raise unsupported(op, "element type", ctx.tensor(out).dtype)
    if len(pieces) > 4 and len(pieces) * 4 > ctx.tensor(out).size:
        _emit_gather(ctx, op, data_inputs, pieces)
        return
    for dst, slot, src, n in pieces:
        ctx.emit(
            Step(
                "mg_copy",
                [Ref(out, dst), Ref(data_inputs[slot], src), n],
                reads=[data_inputs[slot]],
                writes=[out],
                ops=[op.index],
                comment=f"{op.name}: {n} bytes",
                sections=("copy",),
            )
        )


def _emit_gather(ctx, op, data_inputs, pieces):
    slots = {slot for _, slot, _, _ in pieces}
    if len(slots) != 1:
        raise unsupported(op, "gather from several inputs", sorted(slots))
    index = []
    for _, _, src, n in pieces:
        index.extend(range(src, src + n))
    if max(index) >= 1 << 16:
        raise unsupported(op, "input size", max(index) + 1)
    table = ctx.const("uint16_t", index, f"op{op.index}_index")
    source = data_inputs[slots.pop()]
    ctx.emit(
        Step(
            "mg_gather",
            [Ref(op.outputs[0]), Ref(source), table, len(index)],
            reads=[source],
            writes=[op.outputs[0]],
            ops=[op.index],
            comment=f"{op.name}: {len(index)} indexed bytes",
            sections=("gather",),
        )
    )
