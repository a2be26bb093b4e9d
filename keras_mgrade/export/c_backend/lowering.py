"""From the TFLite graph to kernel calls.

Operators are visited in the file's order and handed to their registered
emitters, with exact rewrites first (`ops_fused` and the tables below):

- a group of int8 operators that together compute one tensor from one
  input tensor alone (LOGISTIC, QUANTIZE, MUL by a constant, RSQRT, and
  binary operators whose two inputs are such functions of the same
  tensor: the MinGRU candidate `MAXIMUM(x + 0.5, sigmoid(x))`, the MLP's
  `x * sigmoid(x)`) becomes one table lookup, since an int8 input has 256
  values; unless every operator of the group has a cheap run-time kernel
  (arithmetic with a constant, `x * x`): then its flash is saved;
- a table whose input is a FULLY_CONNECTED output read by nothing else
  is looked up by the FULLY_CONNECTED kernel itself;
- a FIFO window (CONCATENATION of a state and new rows, a depthwise
  convolution over it, the slice that becomes the next state) is read in
  place, and a layer or RMS norm is one kernel call (`ops_fused`).
"""

import dataclasses

from keras_mgrade.export.c_backend import ops_arith
from keras_mgrade.export.c_backend import ops_elementwise
from keras_mgrade.export.c_backend import ops_fused
from keras_mgrade.export.c_backend import ops_movement  # noqa: F401
from keras_mgrade.export.c_backend import ops_unary
from keras_mgrade.export.c_backend.program import UNARY
from keras_mgrade.export.c_backend.program import Context
from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Step
from keras_mgrade.export.c_backend.program import emitter_for
from keras_mgrade.export.c_backend.program import unsupported

# Operators computed at run time rather than tabulated (flash over speed).
RUNTIME = {"ADD", "SUB", "MUL", "MINIMUM", "MAXIMUM", "SQUARED_DIFFERENCE"}


@dataclasses.dataclass
class Region:
    """Operators computing `sink` as an int8 function of `source` alone.

    Attributes:
        source: the input tensor.
        sink: the output tensor.
        ops: the operators, in file order.
        function: `f(v)` for an int8 `v` of the source.
    """

    source: int
    sink: int
    ops: list
    function: object

    @property
    def ops_indices(self):
        return [op.index for op in self.ops]

    @property
    def tabulate(self):
        """Whether a table replaces the operators (else they run)."""
        return any(op.name not in RUNTIME for op in self.ops)


def unary_function(graph, op):
    """The exact int8 function of `op` if it is unary here, else None."""
    builder = UNARY.get(op.name)
    return None if builder is None else builder(graph, op)


def _data_inputs(graph, op):
    return [i for i in op.inputs if i >= 0 and not graph.tensors[i].is_const]


def _function_of(graph, op, functions):
    """`op`'s output as an int8 function of the source, or None."""
    data = _data_inputs(graph, op)
    if (
        len(op.outputs) != 1
        or not data
        or any(i not in functions for i in data)
    ):
        return None
    if len(set(data)) == 1:
        f, g = unary_function(graph, op), functions[data[0]]
        return None if f is None else (lambda v: f(g(v)))
    a, b = (graph.tensors[i] for i in op.inputs[:2])
    out = graph.tensors[op.outputs[0]]
    if op.name not in RUNTIME or not a.shape == b.shape == out.shape:
        return None
    if any(t.dtype != "int8" for t in (a, b, out)):
        return None
    params, one = ops_elementwise.binary_function(graph, op)
    fa, fb = functions[op.inputs[0]], functions[op.inputs[1]]
    return lambda v: one(params, fa(v), fb(v))


def _ancestors(graph, by_output, sink, source):
    """The operators of `by_output` that `sink` depends on."""
    found, todo = {}, [sink]
    while todo:
        op = by_output.get(todo.pop())
        if op is None or op.index in found:
            continue
        found[op.index] = op
        todo.extend(i for i in _data_inputs(graph, op) if i != source)
    return sorted(found.values(), key=lambda op: op.index)


def _closed(graph, ops, sink):
    """Whether the tensors inside `ops` (all but `sink`) are read only
    there and are not model outputs."""
    inside = {op.index for op in ops}
    for op in ops:
        out = op.outputs[0]
        if out == sink:
            continue
        if out in graph.outputs:
            return False
        if any(r.index not in inside for r in graph.consumers(out)):
            return False
    return True


def unary_region(graph, source, exclude=()):
    """The largest `Region` computing one tensor from `source` alone, or
    None; without the operators whose indices are in `exclude`."""
    functions, by_output = {source: lambda v: v}, {}
    producer = graph.producer(source)
    start = 0 if producer is None else producer.index + 1
    for op in graph.operators[start:]:
        if op.index in exclude:
            continue
        f = _function_of(graph, op, functions)
        if f is not None:
            functions[op.outputs[0]] = f
            by_output[op.outputs[0]] = op
    best = None
    for sink in reversed(list(by_output)):
        ops = _ancestors(graph, by_output, sink, source)
        if _closed(graph, ops, sink) and (
            best is None or len(ops) > len(best.ops)
        ):
            best = Region(source, sink, ops, functions[sink])
    return best


def emit_table(ctx, region):
    """One table lookup for a region."""
    table, lo, last = ops_unary.region_table(ctx, region)
    n = ctx.tensor(region.sink).size
    fields = {"table": table, "n": n, "lo": lo, "last": last}
    params = ctx.struct("mg_lut_params", fields, f"op{region.ops[0].index}")
    ctx.emit(
        Step(
            "mg_lut",
            [params, Ref(region.source), Ref(region.sink)],
            reads=[region.source],
            writes=[region.sink],
            ops=region.ops_indices,
            comment=" -> ".join(op.name for op in region.ops),
            sections=("lut",),
            elementwise=True,
        )
    )


def _fuse_table(ctx, op):
    """A table for the region `op` starts, or a FULLY_CONNECTED with the
    region after it; returns the operators done, or None."""
    graph = ctx.graph
    if op.name == "FULLY_CONNECTED":
        out = op.outputs[0]
        region = unary_region(graph, out)
        if region is None or not region.tabulate or out in graph.outputs:
            return None
        inside = {o.index for o in region.ops}
        if any(r.index not in inside for r in graph.consumers(out)):
            return None
        ops_arith.emit_fully_connected(ctx, op, region)
        return [op.index, *region.ops_indices]
    data = _data_inputs(graph, op)
    if len(set(data)) != 1:
        return None
    region = unary_region(graph, data[0])
    if region is None or not region.tabulate or op not in region.ops:
        return None
    emit_table(ctx, region)
    return region.ops_indices


FUSERS = (ops_fused.fuse_norm, ops_fused.fuse_window, _fuse_table)


def lower(graph):
    """The `Context` (steps, constants, views) of a graph."""
    for i in graph.inputs + graph.outputs:
        t = graph.tensors[i]
        if t.dtype != "int8":
            raise unsupported(
                graph.producer(i) or graph.operators[0],
                f"model input/output #{i} type",
                t.dtype,
            )
    ctx = Context(graph)
    done = set()
    for op in graph.operators:
        if op.index in done:
            continue
        for fuser in FUSERS:
            fused = fuser(ctx, op)
            if fused:
                done.update(fused)
                break
        else:
            emitter_for(op)(ctx, op)
            done.add(op.index)
    return ctx
