"""Resource-variable state (`state="variables"`): the state tensors of an
`io` file moved into the graph.

`to_variables` rewrites a converted `io` flatbuffer (inputs `[x_t,
*states]`, outputs `[y_t, *new_states]`, as `export_tflite` writes it)
into a file whose only input is `x_t` and only output `y_t`:

- one resource variable per state (`VAR_HANDLE`, shared name `state_i`);
- `READ_VARIABLE` at the start of the graph writes each state into the
  tensor that was input `i`, `ASSIGN_VARIABLE` at the end stores the
  tensor that was output `i`;
- a `CALL_ONCE` initialiser subgraph assigns zeros (the zero point in
  int8) on the first invoke, as the TensorFlow converter does for
  `tf.Variable` state (LiteRT needs it: without it the first reads return
  uninitialised memory; TFLite Micro sets a variable's buffer to its zero
  point when it allocates it and again on `Reset()`).

Every other op, tensor and quantization parameter is the `io` file's, so
both files compute the same outputs bit for bit, and an int8 variable has
the state tensors' int8 type and their (identical) scale and zero point.
The TensorFlow converter can produce resource-variable files itself (a
model that reads and assigns `tf.Variable`s); in int8 it keeps the
variables float32 (`DEQUANTIZE`/`QUANTIZE` around every read and assign)
unless the private `converter._experimental_variable_quantization` flag
is set, and it calibrates the states separately from the `io` file. The
rewrite needs neither.
"""

import numpy as np

from keras_mgrade.export import passes

# Ops a variables file adds to the io file's (all in TFLite Micro).
VARIABLE_OPS = ("ASSIGN_VARIABLE", "CALL_ONCE", "READ_VARIABLE", "VAR_HANDLE")


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _var_handle(graph, sub, name):
    schema = _schema()
    handle = passes.new_tensor(
        sub, f"{name}/handle", [], schema.TensorType.RESOURCE
    )
    options = schema.VarHandleOptionsT()
    options.container = b""
    options.sharedName = name.encode()
    op = passes.new_operator(
        passes.opcode_index(graph, schema.BuiltinOperator.VAR_HANDLE),
        [],
        [handle],
        schema.BuiltinOptions.VarHandleOptions,
        options,
    )
    return handle, op


def _copy_quantization(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    out = _schema().QuantizationParametersT()
    out.scale = np.array(q.scale, "float32")
    out.zeroPoint = np.array(q.zeroPoint, "int64")
    out.quantizedDimension = q.quantizedDimension
    return out


def _zeros(tensor):
    """Bytes of a real 0.0 tensor shaped and typed as `tensor`."""
    dtypes = {0: "float32", 9: "int8", 2: "int32", 7: "int16"}
    dtype = dtypes.get(int(tensor.type))
    if dtype is None:
        raise ValueError(
            f"Unsupported state tensor type {tensor.type} for a resource "
            f"variable (expected float32, int8, int16 or int32)."
        )
    zero = 0
    q = tensor.quantization
    if q is not None and q.zeroPoint is not None and len(q.zeroPoint):
        zero = int(q.zeroPoint[0])
    values = np.full(tuple(int(d) for d in tensor.shape), zero, dtype)
    return np.frombuffer(values.tobytes(), "uint8")


def to_variables(flat):
    """Rewrites an `io` file into a resource-variable file.

    Args:
        flat: bytes of a file from `export_tflite(..., state="io")`
            (subgraph inputs `[x_t, *states]`, outputs `[y_t,
            *new_states]`, each state's input and output of equal shape,
            type and quantization).

    Returns:
        `(bytes, variables)`: the new file and, per state, its shared name
        (`"state_i"`) in the order of the `io` file's state inputs.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    schema = _schema()
    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    if len(graph.subgraphs) != 1:
        raise ValueError(
            "Expected an io file with one subgraph. Received: "
            f"{len(graph.subgraphs)} subgraphs"
        )
    sub = graph.subgraphs[0]
    inputs = [int(i) for i in sub.inputs]
    outputs = [int(i) for i in sub.outputs]
    if len(inputs) != len(outputs):
        raise ValueError(
            "Expected an io file (inputs [x_t, *states], outputs [y_t, "
            f"*new_states]). Received: {len(inputs)} inputs and "
            f"{len(outputs)} outputs"
        )
    names = [f"state_{i}" for i in range(len(inputs) - 1)]
    _check_states(sub, names, inputs[1:], outputs[1:])
    if not names:
        return bytes(flat), []
    graph.subgraphs.append(_initialiser(graph, sub, names, inputs[1:]))
    options = schema.CallOnceOptionsT()
    options.initSubgraphIndex = len(graph.subgraphs) - 1
    head = [
        passes.new_operator(
            passes.opcode_index(graph, schema.BuiltinOperator.CALL_ONCE),
            [],
            [],
            schema.BuiltinOptions.CallOnceOptions,
            options,
        )
    ]
    read = passes.opcode_index(graph, schema.BuiltinOperator.READ_VARIABLE)
    assign = passes.opcode_index(graph, schema.BuiltinOperator.ASSIGN_VARIABLE)
    tail = []
    for name, t_in, t_out in zip(names, inputs[1:], outputs[1:]):
        handle, op = _var_handle(graph, sub, name)
        head += [op, passes.new_operator(read, [handle], [t_in])]
        tail.append(passes.new_operator(assign, [handle, t_out], []))
    sub.operators = head + list(sub.operators) + tail
    sub.inputs = np.array(inputs[:1], "int32")
    sub.outputs = np.array(outputs[:1], "int32")
    for sig in graph.signatureDefs or []:
        # export_tflite's order: x_t and y_t first.
        sig.inputs, sig.outputs = sig.inputs[:1], sig.outputs[:1]
    flat = bytes(flatbuffer_utils.convert_object_to_bytearray(graph))
    return flat, names


def _initialiser(graph, sub, names, state_inputs):
    """The subgraph that assigns each variable its zero value (its zero
    point in int8); `CALL_ONCE` runs it on the first invoke."""
    schema = _schema()
    init = schema.SubGraphT()
    init.name = b"init_state"
    init.tensors, init.operators = [], []
    init.inputs = np.array([], "int32")
    init.outputs = np.array([], "int32")
    assign = passes.opcode_index(graph, schema.BuiltinOperator.ASSIGN_VARIABLE)
    constants = {}
    for name, t_in in zip(names, state_inputs):
        source = sub.tensors[t_in]
        key = (tuple(source.shape), int(source.type), _qkey(source))
        if key not in constants:
            buffer = schema.BufferT()
            buffer.data = _zeros(source)
            graph.buffers.append(buffer)
            constants[key] = passes.new_tensor(
                init,
                f"{name}/zeros",
                list(source.shape),
                source.type,
                len(graph.buffers) - 1,
                _copy_quantization(source),
            )
        handle, op = _var_handle(graph, init, name)
        write = passes.new_operator(assign, [handle, constants[key]], [])
        init.operators += [op, write]
    return init


def _check_states(sub, names, state_inputs, state_outputs):
    """Each state's input and output tensors must agree in shape, type
    and quantization to become one variable."""
    for name, t_in, t_out in zip(names, state_inputs, state_outputs):
        a, b = sub.tensors[t_in], sub.tensors[t_out]
        same = (
            list(a.shape) == list(b.shape)
            and a.type == b.type
            and _qkey(a) == _qkey(b)
        )
        if not same:
            raise ValueError(
                f"{name}: the state's input and output tensors differ in "
                "shape, type or quantization; a resource variable needs "
                "them equal."
            )


def _qkey(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return (
        tuple(float(s) for s in q.scale),
        tuple(int(z) for z in q.zeroPoint),
    )
