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
(`keras_mgrade.export.c_backend.ops_unary`, `tflm_math`), so the file's
outputs are bit-identical to the file without tables; the exporter
checks that on TFLite Micro at every step of its check sequences
(`keras_mgrade.export.verify.identical`).

It costs 256 bytes of flash per table. QUANTIZE to int32 and GATHER are
not NPU operators (Arm Ethos-U runs LOGISTIC itself, as a table), and ST's
code generator has its own LOGISTIC: for those consumers export with
`lookup_tables=False`.
"""

import numpy as np

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
    m}`."""
    from keras_mgrade.export import rewrite

    sub = graph.subgraphs[0]
    groups = find_groups(rewrite.write_graph(graph))
    ops = list(sub.operators)
    replaced = set()
    quantize_code = _opcode(graph, "QUANTIZE")
    gather_code = _opcode(graph, "GATHER")
    for source, sink, indices, table in groups:
        index = _add_tensor(
            graph,
            sub,
            like=sub.tensors[sink],
            suffix="index",
            dtype=_INT32,
            zero_point=int(_zero_point(sub.tensors[source])) + 128,
            scale=float(sub.tensors[source].quantization.scale[0]),
        )
        values = _add_tensor(
            graph,
            sub,
            like=sub.tensors[sink],
            suffix="table",
            dtype=_INT8,
            data=table,
        )
        last = ops[max(indices)]
        last_position = sub.operators.index(last)
        new = [
            _operator(quantize_code, [source], [index], "QUANTIZE"),
            _operator(gather_code, [values, index], [sink], "GATHER"),
        ]
        sub.operators[last_position : last_position + 1] = new
        replaced.update(id(ops[i]) for i in indices if i != max(indices))
    sub.operators = [op for op in sub.operators if id(op) not in replaced]
    return {
        "tables": len(groups),
        "operators_replaced": sum(len(g[2]) for g in groups),
    }


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


def _zero_point(tensor):
    zero = tensor.quantization.zeroPoint
    return 0 if zero is None or len(zero) == 0 else zero[0]


def _opcode(graph, name):
    """The index of builtin `name` in the file's operator codes (added
    if absent)."""
    from tensorflow.lite.python import schema_py_generated as schema

    builtin = getattr(schema.BuiltinOperator, name)
    for i, code in enumerate(graph.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 2  # the int8 versions of QUANTIZE and GATHER
    graph.operatorCodes.append(code)
    return len(graph.operatorCodes) - 1


def _operator(opcode, inputs, outputs, name):
    from tensorflow.lite.python import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.array(inputs, "int32")
    op.outputs = np.array(outputs, "int32")
    if name == "GATHER":
        op.builtinOptionsType = schema.BuiltinOptions.GatherOptions
        op.builtinOptions = schema.GatherOptionsT()
        op.builtinOptions.axis = 0
        op.builtinOptions.batchDims = 0
    else:
        op.builtinOptionsType = schema.BuiltinOptions.QuantizeOptions
        op.builtinOptions = schema.QuantizeOptionsT()
    return op


def _add_tensor(
    graph, sub, like, suffix, dtype, data=None, scale=None, zero_point=None
):
    """A new tensor named after `like`: the int32 index (`like`'s shape,
    the given grid) or the constant table (`data`, on `like`'s grid);
    returns its index."""
    import copy

    from tensorflow.lite.python import schema_py_generated as schema

    tensor = schema.TensorT()
    tensor.name = (like.name or b"") + b"/" + suffix.encode()
    tensor.type = dtype
    tensor.buffer = 0
    if data is None:
        tensor.shape = np.array(like.shape, "int32")
        q = schema.QuantizationParametersT()
        q.scale = np.array([scale], "float32")
        q.zeroPoint = np.array([zero_point], "int64")
        q.quantizedDimension = 0
        tensor.quantization = q
    else:
        tensor.shape = np.array([TABLE_SIZE], "int32")
        tensor.quantization = copy.deepcopy(like.quantization)
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data.astype("int8").tobytes(), "uint8")
        graph.buffers.append(buffer)
        tensor.buffer = len(graph.buffers) - 1
    sub.tensors.append(tensor)
    return len(sub.tensors) - 1
