"""Lookup tables for int8 activations on TFLite Micro (`lookup_tables`).

TFLite Micro's int8 LOGISTIC and TANH compute each element with gemmlowp's
fixed-point exponential and reciprocal: a few hundred instructions per
element, about a fifth of an MGRADE step with the reference kernels (the
MinGRU gate and candidate and the MLP's SiLU: 128 elements per block of
32 units). An int8 input has only 256 values, so any group of int8
operators computing one tensor from one input tensor alone is a
function on 256 points: the MinGRU gate `sigmoid(x)`, the candidate
`MAXIMUM(x + 0.5, sigmoid(x))` (LOGISTIC, QUANTIZE, ADD, MAXIMUM), the
MLP's `x * sigmoid(x)` (LOGISTIC, MUL). This pass replaces each such
group that holds a LOGISTIC or TANH, or at least three operators, by two
operators TFLite Micro runs with a few instructions per element:

    index = QUANTIZE(x)           int8 -> int32: x's scale, zero point
                                  z + 128, so index = q + 128 in [0, 255]
    y     = GATHER(table, index)  table: 256 int8 values, y's grid

The table holds, for every int8 value, what TFLite Micro's kernels
compute for the group: the C backend's exact models of them
(`keras_mgrade.export.c_backend.ops_unary`, `tflm_math`), checked
against TFLite Micro itself on all 256 inputs (a file of the group's
operators alone, `kernel_outputs`) before it replaces them; a group whose
table differs keeps its operators (`kept` in the report). So the file's
outputs are bit-identical to the file without tables; the exporter also
checks that on TFLite Micro at every step of its check sequences
(`keras_mgrade.export.verify.identical`).

It costs 256 bytes of flash per table. QUANTIZE to int32 and GATHER are
not NPU operators (Arm Ethos-U runs LOGISTIC itself, as a table), and ST's
code generator has its own LOGISTIC: for those consumers export with
`lookup_tables=False`.
"""

import copy

import numpy as np

from keras_mgrade.export import passes

# Kernels whose int8 cost per element is a fixed-point series: a group
# holding one is always tabulated.
EXPENSIVE = frozenset({"LOGISTIC", "TANH"})
# A group of cheaper operators is tabulated from this many operators on.
MIN_OPERATORS = 3
TABLE_SIZE = 256

_INT32, _INT8 = 2, 9  # TensorType


def tabulate(graph, op_name):
    """Replaces the int8 operator groups described in the module docstring
    by QUANTIZE + GATHER in `graph` (the object tree of the TFLite schema,
    `rewrite.read_graph`); returns `{"tables": n, "operators_replaced":
    m, "kept": groups left as operators}`."""
    from tensorflow.lite.python import schema_py_generated as schema

    from keras_mgrade.export import rewrite

    sub = graph.subgraphs[0]
    found = find_groups(rewrite.write_graph(graph))
    # Each table against TFLite Micro's own kernels on all 256 inputs; a
    # group whose table differs keeps its operators.
    groups = [g for g in found if _verified(graph, g)]
    result = {
        "tables": len(groups),
        "operators_replaced": sum(len(g[2]) for g in groups),
        "kept": len(found) - len(groups),
    }
    if not groups:
        return result
    ops = list(sub.operators)
    replaced = set()
    codes = schema.BuiltinOperator
    quantize = passes.opcode_index(graph, codes.QUANTIZE)
    gather = passes.opcode_index(graph, codes.GATHER)
    options = schema.GatherOptionsT()
    options.axis, options.batchDims = 0, 0
    for source, sink, indices, table in groups:
        name = sub.tensors[sink].name or b""
        index = passes.new_tensor(
            sub,
            name + b"/index",
            sub.tensors[sink].shape,
            _INT32,
            quantization=_index_grid(sub.tensors[source]),
        )
        graph.buffers.append(schema.BufferT())
        graph.buffers[-1].data = np.frombuffer(table.tobytes(), "uint8")
        values = passes.new_tensor(
            sub,
            name + b"/table",
            [TABLE_SIZE],
            _INT8,
            buffer=len(graph.buffers) - 1,
            quantization=copy.deepcopy(sub.tensors[sink].quantization),
        )
        position = sub.operators.index(ops[max(indices)])
        sub.operators[position : position + 1] = [
            passes.new_operator(quantize, [source], [index]),
            passes.new_operator(
                gather,
                [values, index],
                [sink],
                schema.BuiltinOptions.GatherOptions,
                copy.deepcopy(options),
            ),
        ]
        replaced.update(id(ops[i]) for i in indices if i != max(indices))
    sub.operators = [op for op in sub.operators if id(op) not in replaced]
    return result


def _verified(graph, group):
    """Whether TFLite Micro computes the group's table (False too where
    the group's operators do not run alone on 256 elements)."""
    source, sink, indices, table = group
    try:
        return np.array_equal(
            kernel_outputs(graph, source, sink, indices), table
        )
    except Exception:  # the runtime refused the file: keep the operators
        return False


def kernel_outputs(graph, source, sink, indices):
    """What TFLite Micro computes at tensor `sink` for each int8 value
    -128..127 of tensor `source` through the operators at `indices` of
    `graph`'s main subgraph: a file of those operators alone, their
    elementwise tensors widened to 256 values, run once."""
    from tflite_micro import runtime

    from keras_mgrade.export import rewrite

    mini = copy.deepcopy(graph)
    mini.subgraphs, mini.signatureDefs, mini.metadata = (
        mini.subgraphs[:1],
        None,
        None,
    )
    sub = mini.subgraphs[0]
    sub.operators = [sub.operators[i] for i in indices]
    sub.inputs = np.array([source], "int32")
    sub.outputs = np.array([sink], "int32")
    for op in sub.operators:
        for i in [*op.inputs, *op.outputs]:
            tensor = sub.tensors[int(i)] if i >= 0 else None
            if tensor is None or len(mini.buffers[tensor.buffer].data or []):
                continue  # absent or constant
            tensor.shape = np.array([1, TABLE_SIZE], "int32")
            tensor.shapeSignature = None
    passes.prune(mini)
    interp = runtime.Interpreter.from_bytes(
        rewrite.write_graph(mini), arena_size=1 << 16
    )
    interp.set_input(np.arange(-128, 128, dtype="int8").reshape(1, -1), 0)
    interp.invoke()
    return np.asarray(interp.get_output(0)).reshape(-1)


def _index_grid(source):
    """The int32 index's quantization: the source's scale (QUANTIZE then
    copies the value) and its zero point + 128."""
    from tensorflow.lite.python import schema_py_generated as schema

    q = schema.QuantizationParametersT()
    q.scale = np.array(source.quantization.scale[:1], "float32")
    zero = source.quantization.zeroPoint
    q.zeroPoint = np.array([int(zero[0]) if len(zero) else 0], "int64") + 128
    q.quantizedDimension = 0
    return q


def find_groups(flat):
    """`[(source, sink, operator indices, table), ...]`: the groups of a
    file to tabulate, with their 256-entry int8 tables (entry `i` for
    the input value `i - 128`)."""
    from keras_mgrade.export.c_backend.graph import read_graph
    from keras_mgrade.export.c_backend.lowering import unary_region

    cgraph = read_graph(flat)
    done, groups, found = set(), [], True
    while found:  # a tensor may start several groups: the largest first
        found = False
        for op in cgraph.operators:
            group = _group_at(cgraph, op, done, unary_region)
            if group is not None:
                groups.append(group)
                done.update(group[2])
                found = True
    return sorted(groups, key=lambda group: min(group[2]))


def _group_at(cgraph, op, done, unary_region):
    """The group to tabulate that holds `op` (none of its operators in
    `done`), or None."""
    if op.index in done:
        return None
    data = {i for i in op.inputs if i >= 0 and not cgraph.tensors[i].is_const}
    if len(data) != 1:
        return None
    source = data.pop()
    if cgraph.tensors[source].dtype != "int8":
        return None
    region = unary_region(cgraph, source, exclude=done)
    if region is None or op.index not in region.ops_indices:
        return None
    sink = cgraph.tensors[region.sink]
    # Not at a graph output: a state output gets its input's grid
    # afterwards (`rewrite`), which only a requantizing kernel honours.
    if (
        not _worth(region)
        or sink.dtype != "int8"
        or {source, region.sink} & set(cgraph.outputs)
        or sink.size != cgraph.tensors[source].size
    ):
        return None
    table = np.array([region.function(v) for v in range(-128, 128)], "int8")
    return source, region.sink, region.ops_indices, table


def _worth(region):
    names = [op.name for op in region.ops]
    return bool(EXPENSIVE & set(names)) or len(names) >= MIN_OPERATORS
