"""Rewrite: the converter's flatbuffer -> the file the export contract
describes.

- inputs `[x_t, *states]` and outputs `[y_t, *new_states]` in that order,
  named `x_t`, `state_i`, `y_t`, `new_state_i` (the converter orders them
  as it likes);
- in int8 and 16x8, each state's output tensor carries its input's scale
  and zero point (where the op producing it requantizes), so firmware
  copies bytes;
- for `state="variables"`, the states moved into resource variables
  (`keras_mgrade.export.variables`);
- with `lookup_tables`, int8 activations as table lookups
  (`keras_mgrade.export.tables`).
"""

import json
import re

import numpy as np

from keras_mgrade.export import passes
from keras_mgrade.export import tables
from keras_mgrade.export import variables
from keras_mgrade.export.arena import METADATA

# Ops whose int8 (and int16) kernel requantizes to its output tensor's
# scale, so the output quantization may be set freely.
REQUANTIZING = frozenset(
    {"ADD", "SUB", "MUL", "FULLY_CONNECTED", "QUANTIZE", "DEPTHWISE_CONV_2D"}
)

TENSOR_TYPES = {
    0: "float32",
    2: "int32",
    3: "uint8",
    4: "int64",
    7: "int16",
    9: "int8",
}


def read_graph(flat):
    """The flatbuffer as the mutable object tree of the TFLite schema; a
    scalar tensor stored without a shape (as the 16x8 converter writes
    its scalar constants) gets the empty shape."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    for sub in graph.subgraphs:
        for tensor in sub.tensors:
            if tensor.shape is None:
                tensor.shape = np.zeros(0, "int32")
    return graph


def write_graph(graph):
    """The object tree back to flatbuffer bytes."""
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(graph))


def op_name(graph, op):
    """The builtin name of operator `op` (e.g. `"FULLY_CONNECTED"`)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.opcode_to_name(graph, op.opcodeIndex)


def op_names(flat):
    """The sorted names of the operators used in the file."""
    graph = read_graph(flat)
    return sorted(
        {op_name(graph, op) for s in graph.subgraphs for op in s.operators}
    )


def graph_counts(flat):
    """`{"operators": ..., "tensors": ...}` of the main subgraph (every
    operator and tensor costs TFLite Micro arena bookkeeping)."""
    sub = read_graph(flat).subgraphs[0]
    return {"operators": len(sub.operators), "tensors": len(sub.tensors)}


def qparams(tensor):
    """`(scale, zero point)` of a quantized tensor (the first channel's),
    or None."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return (float(q.scale[0]), int(q.zeroPoint[0]))


def rewrite(
    flat,
    num_states,
    quantize,
    state="io",
    stream=None,
    layer_names=(),
    lookup_tables=False,
):
    """Applies the export contract to a converted file.

    Args:
        flat: the converter's bytes (signature inputs `x_t`, `state_i`;
            outputs `output_0` (y) and `output_{i+1}` (state i)).
        num_states: the number of states.
        quantize: None, `"int8"` or `"int16x8"`.
        state: `"io"` or `"variables"`.
        stream: dict recorded in the file as the `keras_mgrade` metadata
            (steps per invoke, state kind, host pooling), or None.
        layer_names: the model's layer names, to count the operators of
            each layer (`stats["operators_per_layer"]`).
        lookup_tables: bool, int8 activations as table lookups for
            TFLite Micro (`keras_mgrade.export.tables`).

    Returns:
        `(bytes, layout, graph stats)`: the file; `{"inputs": [...],
        "outputs": [...]}` (plus `"variables"` for `state="variables"`),
        each entry with name, shape, dtype, scale and zero point; and
        what the graph passes removed.
    """
    graph = read_graph(flat)
    _order_io(graph, num_states)
    stats = {"reshapes_folded": passes.fold_io_reshapes(graph, op_name)}
    stats["biases_fused"] = passes.fuse_depthwise_bias(graph, op_name)
    if quantize == "int8":
        stats["negligible_adds"] = passes.drop_negligible_adds(graph, op_name)
    if (stream or {}).get("target") == "tflm":
        stats["reshapes_dropped"] = passes.fold_rank_reshapes(graph, op_name)
    if lookup_tables:
        stats["lookup_tables"] = tables.tabulate(graph, op_name)
    stats["operators_per_layer"] = _operators_per_layer(graph, layer_names)
    stats["constants_shared"] = passes.dedup_constants(graph)
    _name_io(graph, num_states)
    sub = graph.subgraphs[0]
    inputs, outputs = list(sub.inputs), list(sub.outputs)
    if quantize is not None:
        _equal_state_quantization(graph, inputs[1:], outputs[1:])
    passes.prune(graph)
    layout = _layout(graph)
    if stream is not None:
        _add_metadata(graph, dict(stream, state=state))
    flat = write_graph(graph)
    if state == "variables":
        flat, _ = variables.to_variables(flat)
        layout = {
            "inputs": layout["inputs"][:1],
            "outputs": layout["outputs"][:1],
            "variables": layout["inputs"][1:],
        }
    return flat, layout, stats


def _operators_per_layer(graph, layer_names):
    """`{layer name: operators}`: each operator counts for the model layer
    in whose name scope the step graph computed it (the step graph runs
    each layer's step in a name scope of the layer's name): read from its
    output tensor's name, or, for an operator whose output is a graph
    output (named by the converter), from its inputs' names; `"other"`
    for the rest."""
    counts = dict.fromkeys(layer_names, 0)
    counts["other"] = 0
    patterns = [
        (n, re.compile(rf"^{re.escape(n)}(_\d+)?$")) for n in layer_names
    ]
    sub = graph.subgraphs[0]
    outputs = {int(i) for i in sub.outputs}

    def owner(index):
        # A fused tensor's name lists the folded operations first and the
        # operation that computes it last.
        name = _text(sub.tensors[index].name or b"").split(";")[-1]
        return next(
            (
                n
                for part in name.split("/")
                for n, rx in patterns
                if rx.match(part)
            ),
            None,
        )

    for op in sub.operators:
        candidates = [int(op.outputs[0])]
        if candidates[0] in outputs:  # its weights name it best
            inputs = [int(i) for i in op.inputs if i >= 0]
            candidates = sorted(inputs, key=lambda i: not _constant(graph, i))
        found = [owner(i) for i in candidates]
        counts[next((f for f in found if f), "other")] += 1
    return {k: v for k, v in counts.items() if v}


def _constant(graph, index, subgraph=0):
    data = graph.buffers[graph.subgraphs[subgraph].tensors[index].buffer].data
    return data is not None and len(data) > 0


def _add_metadata(graph, info):
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(
        json.dumps(info, sort_keys=True).encode(), "uint8"
    )
    graph.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA.encode()
    entry.buffer = len(graph.buffers) - 1
    graph.metadata = list(graph.metadata or []) + [entry]


def io_names(num_states):
    """`(input names, output names)` of an `io` file."""
    states = range(num_states)
    return (
        ["x_t"] + [f"state_{i}" for i in states],
        ["y_t"] + [f"new_state_{i}" for i in states],
    )


def _order_io(graph, num_states):
    """Orders the subgraph's inputs and outputs as the contract says."""
    sub, sig = graph.subgraphs[0], graph.signatureDefs[0]
    by_name_in = {_text(t.name): t.tensorIndex for t in sig.inputs}
    by_name_out = {_text(t.name): t.tensorIndex for t in sig.outputs}
    in_names, _ = io_names(num_states)
    inputs = [by_name_in[name] for name in in_names]
    outputs = [by_name_out[f"output_{i}"] for i in range(num_states + 1)]
    sub.inputs = np.array(inputs, "int32")
    sub.outputs = np.array(outputs, "int32")


def _name_io(graph, num_states):
    """Names the inputs and outputs and rewrites the signature to them."""
    from tensorflow.lite.python import schema_py_generated as schema

    sub, sig = graph.subgraphs[0], graph.signatureDefs[0]
    in_names, out_names = io_names(num_states)
    inputs, outputs = (
        [int(i) for i in sub.inputs],
        [int(i) for i in sub.outputs],
    )
    renamed = set()
    named = list(zip(inputs, in_names)) + list(zip(outputs, out_names))
    for index, name in named:
        if index not in renamed:  # a pass-through state keeps one name
            sub.tensors[index].name = name.encode()
            renamed.add(index)
    for entries, order, names in (
        (sig.inputs, inputs, in_names),
        (sig.outputs, outputs, out_names),
    ):
        del entries[:]
        for index, name in zip(order, names):
            entry = schema.TensorMapT()
            entry.name = name.encode()
            entry.tensorIndex = int(index)
            entries.append(entry)


def _equal_state_quantization(graph, state_inputs, state_outputs):
    sub = graph.subgraphs[0]
    producers = {
        int(o): op_name(graph, op) for op in sub.operators for o in op.outputs
    }
    for i, (t_in, t_out) in enumerate(zip(state_inputs, state_outputs)):
        a, b = sub.tensors[t_in], sub.tensors[t_out]
        if qparams(a) == qparams(b):
            continue
        producer = producers.get(int(t_out))
        if producer not in REQUANTIZING and not _same_grid(a, b):
            raise RuntimeError(
                f"State {i}: input and output quantization differ "
                f"({qparams(a)} vs {qparams(b)}) and the op producing it "
                f"({producer}) cannot requantize."
            )
        b.quantization.scale = np.array(a.quantization.scale)
        b.quantization.zeroPoint = np.array(a.quantization.zeroPoint)


def _same_grid(a, b):
    """Whether tensors `a` and `b` carry the same quantization up to the
    float32 rounding of the scale (the 16x8 quantizer derives the scale
    of a pass-through op's output anew, e.g. a STRIDED_SLICE of the
    FIFO): the int16 values are the same."""
    qa, qb = qparams(a), qparams(b)
    if qa is None or qb is None or qa[1] != qb[1]:
        return False
    return abs(qa[0] - qb[0]) <= 1e-6 * abs(qa[0])


def _layout(graph):
    sub = graph.subgraphs[0]
    inputs, outputs = (
        [int(i) for i in sub.inputs],
        [int(i) for i in sub.outputs],
    )
    in_names, out_names = io_names(len(inputs) - 1)

    def entry(index, name):
        t = sub.tensors[index]
        q = qparams(t)
        return {
            "name": name,
            "shape": [int(d) for d in t.shape],
            "dtype": TENSOR_TYPES.get(t.type, str(t.type)),
            "scale": None if q is None else q[0],
            "zero_point": None if q is None else q[1],
        }

    return {
        "inputs": [entry(i, n) for i, n in zip(inputs, in_names)],
        "outputs": [entry(i, n) for i, n in zip(outputs, out_names)],
    }


def _text(name):
    return name.decode() if isinstance(name, bytes) else name
