"""Exact fusions of operator groups into one kernel call.

- A FIFO window: `CONCATENATION(fifo, fresh)` read only by a depthwise
  convolution over the whole window and by the STRIDED_SLICE that keeps
  its last rows as the next FIFO state. The convolution reads the rows
  where they are (no concatenation is copied) and, when the FIFO has no
  other reader, writes the next state over the old one as it reads it.
- A layer norm `MUL(d, RSQRT(MEAN(MUL(d, d))))` with `d = SUB(x,
  MEAN(x))`, or an RMS norm (`d = x`), over the last axis: one pass
  computes d and the sum of squares, a second the output. Every operator
  is still rounded to int8 exactly as TFLite rounds it.

Each `fuse_*` function returns the operators it emitted, or None when the
group does not match (the operators are then emitted one by one).
"""

import numpy as np

from keras_mgrade.export.c_backend import ops_arith
from keras_mgrade.export.c_backend import ops_elementwise
from keras_mgrade.export.c_backend import ops_movement
from keras_mgrade.export.c_backend import ops_unary
from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Step


def _only_reader(graph, tensor, name):
    """The one operator named `name` reading `tensor`, or None."""
    readers = graph.consumers(tensor)
    if tensor in graph.outputs or len(readers) != 1:
        return None
    return readers[0] if readers[0].name == name else None


def _next_fifo(ctx, concat, fifo, fresh, slices):
    """The STRIDED_SLICE of `slices` that keeps the window's last rows as
    the next state of `fifo`, or None."""
    graph = ctx.graph
    if len(slices) != 1 or fifo not in graph.inputs[1:]:
        return None
    if ctx.tensor(fresh).size != ctx.tensor(fifo).shape[-1]:
        return None  # the kernel shifts the FIFO by one row
    if len(graph.consumers(fifo)) != 1:  # the concatenation only
        return None
    out = slices[0].outputs[0]
    k = graph.inputs.index(fifo)
    if graph.outputs[k] != out:
        return None
    source = ops_movement.index_map(ctx, slices[0]).reshape(-1)
    total = ctx.tensor(concat.outputs[0]).size
    keep = ctx.tensor(fifo).size
    if not np.array_equal(source, np.arange(total - keep, total)):
        return None
    return out


def fuse_window(ctx, op):
    """A depthwise window over a FIFO and fresh rows (see the module)."""
    graph = ctx.graph
    if op.name != "CONCATENATION" or len(op.inputs) != 2:
        return None
    fifo, fresh = op.inputs
    cat = ctx.tensor(op.outputs[0])
    parts = [ctx.tensor(i) for i in op.inputs]
    axis = op.options.get("axis", 0) % max(len(cat.shape), 1)
    if len(cat.shape) != 4 or np.prod(cat.shape[:axis]) != 1 or axis == 3:
        return None
    if any(
        t.is_const
        or t.shape[-1] != cat.shape[-1]
        or (t.s, t.zp) != (cat.s, cat.zp)
        for t in parts
    ):
        return None
    readers = graph.consumers(op.outputs[0])
    convs = [r for r in readers if r.name == "DEPTHWISE_CONV_2D"]
    slices = [r for r in readers if r.name == "STRIDED_SLICE"]
    if len(convs) != 1 or len(convs) + len(slices) != len(readers):
        return None
    conv = convs[0]
    w = ctx.tensor(conv.inputs[1])
    if w.data is None or not ops_arith.is_window(
        conv, cat, w, ctx.tensor(conv.outputs[0])
    ):
        return None
    next_fifo = _next_fifo(ctx, op, fifo, fresh, slices)
    if slices and next_fifo is None:
        return None
    ops_arith.emit_window(
        ctx,
        conv,
        (fifo, fresh),
        next_fifo,
        [op.index, *(s.index for s in slices)],
    )
    return [op.index, conv.index, *(s.index for s in slices)]


def _norm_ops(graph, op):
    """`(x, d, ops)` of a layer norm starting at its first MEAN or an RMS
    norm starting at its square, ops being [mean, sub] (layer norm) +
    [square, mean of squares, rsqrt, scale]; or None."""
    if op.name == "MEAN":
        x = op.inputs[0]
        sub = _only_reader(graph, op.outputs[0], "SUB")
        if sub is None or sub.inputs[:2] != [x, op.outputs[0]]:
            return None
        head, d = [op, sub], sub.outputs[0]
        readers = graph.consumers(d)
        squares = [r for r in readers if r.inputs[:2] == [d, d]]
        if len(readers) != 2 or len(squares) != 1 or d in graph.outputs:
            return None
        square = squares[0]
    elif op.name == "MUL" and op.inputs[0] == op.inputs[1]:
        head, x, d, square = [], op.inputs[0], op.inputs[0], op
    else:
        return None
    if square.name != "MUL":
        return None
    var = _only_reader(graph, square.outputs[0], "MEAN")
    rsqrt = var and _only_reader(graph, var.outputs[0], "RSQRT")
    scale = rsqrt and _only_reader(graph, rsqrt.outputs[0], "MUL")
    if scale is None or sorted(scale.inputs[:2]) != sorted(
        [d, rsqrt.outputs[0]]
    ):
        return None
    return x, d, head + [square, var, rsqrt, scale]


def _reduces_all(graph, op):
    """Whether a MEAN reduces its whole input to one value."""
    x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return out.size == 1 and x.size == x.shape[-1]


def _norm_fields(ctx, x, d, ops):
    """mg_norm_params fields, or None when a part has no fast path."""
    t = ctx.tensor
    *head, square, var, rsqrt, scale = ops
    r = rsqrt.outputs[0]
    n = t(x).size
    sq = ops_elementwise.mul_q(square, t(d), t(d), t(square.outputs[0]))
    rsqrt_f = ops_unary.rsqrt_function(ctx.graph, rsqrt)
    fields = {
        "rsqrt": ctx.const(
            "int8_t",
            ops_unary.table(rsqrt_f),
            f"op{rsqrt.index}_table",
            "RSQRT",
        ),
        "n": n,
        "centered": int(bool(head)),
    }
    if head:
        mean, sub = head
        fields["mean"] = ops_elementwise.mean_q(
            mean, t(x), t(mean.outputs[0]), n
        )
        q, swapped = ops_elementwise.add_q(sub, t(x), t(mean.outputs[0]), t(d))
        if swapped or not q["fast"]:
            return None
        fields["sub"] = q
    if not sq["fast"]:
        return None
    fields["square"] = sq
    fields["var"] = ops_elementwise.mean_q(
        var, t(square.outputs[0]), t(var.outputs[0]), n
    )
    fields["scale"] = ops_elementwise.mul_q(
        scale, t(d), t(r), t(scale.outputs[0])
    )
    return fields


def fuse_norm(ctx, op):
    """A layer or RMS norm as one `mg_norm` call (see the module)."""
    graph = ctx.graph
    found = _norm_ops(graph, op)
    if found is None:
        return None
    x, d, ops = found
    tensors = [x] + [o.outputs[0] for o in ops]
    if any(graph.tensors[i].dtype != "int8" for i in tensors):
        return None
    if graph.tensors[x].size != graph.tensors[x].shape[-1]:
        return None
    means = [o for o in ops if o.name == "MEAN"]
    if not all(_reduces_all(graph, m) for m in means):
        return None
    inner = [o.outputs[0] for o in ops[:-1]]
    if any(i in graph.outputs for i in inner):
        return None
    fields = _norm_fields(ctx, x, d, ops)
    if fields is None:
        return None
    out = ops[-1].outputs[0]
    ctx.emit(
        Step(
            "mg_norm",
            [
                ctx.struct("mg_norm_params", fields, f"op{op.index}"),
                Ref(x),
                Ref(out),
            ],
            reads=[x],
            writes=[out],
            ops=[o.index for o in ops],
            comment=("layer" if fields["centered"] else "RMS")
            + f" norm over {fields['n']}: "
            + ", ".join(o.name for o in ops),
            sections=("norm",),
            elementwise=True,
            features=() if fields["scale"]["fast"] else ("MG_EXACT",),
        )
    )
    return [o.index for o in ops]
