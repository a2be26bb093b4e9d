"""Graph passes on a converted file: fewer operators and tensors, the same
outputs.

Each pass works on the object tree of the TFLite schema
(`rewrite.read_graph`) and keeps what the file computes:

- `fold_io_reshapes`: a RESHAPE that only reshapes a graph input (or
  produces a graph output) is removed and the input (output) declared in
  the reshaped shape. The bytes of the tensor are the same; the step
  graph reshapes each convolution FIFO to the 4-D layout of
  DEPTHWISE_CONV_2D, so its state is declared `(1, 1, span, channels)`.
- `fuse_depthwise_bias`: a per-channel constant ADD after a
  DEPTHWISE_CONV_2D moves into the convolution's bias (int8 and 16x8).
- `drop_negligible_adds` (int8): an ADD of a constant smaller than half a
  step of its other input's grid, read only by RSQRT, is the identity on
  int8 values (the epsilon of a normalisation): RSQRT reads the input.
- `fold_rank_reshapes` (TFLite Micro only): a RESHAPE that only adds or
  drops unit dimensions (`(1, 32)` <-> `(1, 1, 1, 32)`) between the 2-D
  step graph and the 4-D convolution window is removed where TFLite
  Micro's kernels read the tensor in either rank: the producer (a
  FULLY_CONNECTED or an elementwise ADD, SUB or MUL, whose output TFLite
  Micro never resizes) writes the reshaped shape, or the readers (those
  same kernels; elementwise ones then broadcast over the unit
  dimensions) read the unreshaped tensor. LiteRT resizes such outputs
  and would reject the file, so the pass runs for `target="tflm"`; the
  exporter checks the file bit-identical on TFLite Micro to one without
  it.
- `prune`: tensors and buffers that nothing refers to any more.
"""

import numpy as np


def consumers(sub):
    """`{tensor index: [operator, ...]}` of a subgraph."""
    found = {}
    for op in sub.operators:
        for index in op.inputs:
            if index >= 0:
                found.setdefault(int(index), []).append(op)
    return found


def producers(sub):
    """`{tensor index: operator}` of a subgraph."""
    return {int(o): op for op in sub.operators for o in op.outputs}


def fold_io_reshapes(graph, op_name):
    """Removes the RESHAPE operators at the graph's state inputs and
    outputs (see the module docstring; `x_t` and `y_t`, the first input
    and output, keep their shapes); returns how many."""
    sub = graph.subgraphs[0]
    used = consumers(sub)
    made = producers(sub)
    outputs = [int(i) for i in sub.outputs]
    removed = []
    inputs = []
    for k, index in enumerate(int(i) for i in sub.inputs):
        readers = used.get(index, [])
        if (
            k > 0
            and len(readers) == 1
            and op_name(graph, readers[0]) == "RESHAPE"
            and index not in outputs
        ):
            removed.append(readers[0])
            index = int(readers[0].outputs[0])
        inputs.append(index)
    for k, index in enumerate(outputs):
        op = made.get(index) if k > 0 else None
        if op is None or op_name(graph, op) != "RESHAPE":
            continue
        source = int(op.inputs[0])
        if len(used.get(source, [])) == 1 and source not in inputs:
            removed.append(op)
            outputs[k] = source
    sub.operators = [op for op in sub.operators if op not in removed]
    sub.inputs = np.array(inputs, "int32")
    sub.outputs = np.array(outputs, "int32")
    return len(removed)


def drop_negligible_adds(graph, op_name):
    """Removes int8 ADDs of a negligible constant read only by RSQRT (see
    the module docstring); returns how many."""
    sub = graph.subgraphs[0]
    used = consumers(sub)
    removed = []
    for op in sub.operators:
        if op_name(graph, op) != "ADD":
            continue
        readers = used.get(int(op.outputs[0]), [])
        if not readers or any(op_name(graph, r) != "RSQRT" for r in readers):
            continue
        kept = _negligible_addend(graph, sub, op)
        if kept is None:
            continue
        for reader in readers:
            reader.inputs = np.array(
                [kept if i == op.outputs[0] else i for i in reader.inputs],
                "int32",
            )
        removed.append(op)
    sub.operators = [op for op in sub.operators if op not in removed]
    return len(removed)


# Kernels whose TFLite Micro implementation reads their output shape from
# the file and flattens (FULLY_CONNECTED) or broadcasts (elementwise) any
# unit dimensions.
RANK_FREE = ("FULLY_CONNECTED", "ADD", "SUB", "MUL")


def fold_rank_reshapes(graph, op_name):
    """Removes the RESHAPEs that only add or drop unit dimensions between
    rank-free kernels (see the module docstring); returns how many."""
    sub = graph.subgraphs[0]
    io = {int(i) for i in sub.inputs} | {int(i) for i in sub.outputs}
    removed = []
    for op in list(sub.operators):
        if op_name(graph, op) != "RESHAPE":
            continue
        source, target = int(op.inputs[0]), int(op.outputs[0])
        if not _unit_reshape(sub, source, target) or {source, target} & io:
            continue
        made, used = producers(sub).get(source), consumers(sub)
        readers = used.get(target, [])
        if (
            made is not None
            and op_name(graph, made) in RANK_FREE
            and used.get(source) == [op]
        ):
            sub.tensors[source].shape = np.array(
                sub.tensors[target].shape, "int32"
            )
            kept = source
        elif readers and all(op_name(graph, r) in RANK_FREE for r in readers):
            kept = source
        else:
            continue
        for reader in readers:
            reader.inputs = np.array(
                [kept if i == target else i for i in reader.inputs], "int32"
            )
        sub.operators.remove(op)
        removed.append(op)
    return len(removed)


def _unit_reshape(sub, source, target):
    """Whether tensors `source` and `target` differ only by unit
    dimensions (and keep the last one)."""
    a = [int(d) for d in sub.tensors[source].shape]
    b = [int(d) for d in sub.tensors[target].shape]
    return (
        bool(a)
        and bool(b)
        and a[-1] == b[-1]
        and [d for d in a if d != 1] == [d for d in b if d != 1]
    )


def _negligible_addend(graph, sub, op):
    """The input of ADD `op` kept when its other input is a constant below
    half a step of the first's int8 grid, else None."""
    for kept, constant in (op.inputs, op.inputs[::-1]):
        t_kept, t_const = sub.tensors[kept], sub.tensors[constant]
        data = graph.buffers[t_const.buffer].data
        if data is None or len(data) != 1 or t_kept.type != 9:
            continue  # not a scalar int8 constant, or not int8
        q_kept, q_const = t_kept.quantization, t_const.quantization
        value = np.frombuffer(bytes(data), "int8")[0] - q_const.zeroPoint[0]
        if abs(value * q_const.scale[0]) < 0.5 * q_kept.scale[0]:
            return int(kept)
    return None


def dedup_constants(graph):
    """Points every operator input at one tensor per distinct constant
    (same shape, type, quantization and data: the axes of the MEANs, the
    bounds of the STRIDED_SLICEs, the shapes of the RESHAPEs, ...);
    returns how many inputs were redirected. `prune` then removes the
    copies (each tensor costs TFLite Micro arena bookkeeping)."""
    redirected = 0
    for sub in graph.subgraphs:
        first = {}
        for op in sub.operators:
            inputs = []
            for index in op.inputs:
                key = (
                    _constant_key(graph, sub, int(index))
                    if index >= 0
                    else None
                )
                if key is not None:
                    kept = first.setdefault(key, int(index))
                    redirected += kept != index
                    index = kept
                inputs.append(index)
            op.inputs = np.array(inputs, "int32")
    return redirected


def _constant_key(graph, sub, index):
    tensor = sub.tensors[index]
    data = graph.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    q = tensor.quantization
    quant = None
    if q is not None and q.scale is not None:
        quant = (
            tuple(np.asarray(q.scale).tolist()),
            tuple(np.asarray(q.zeroPoint).tolist()),
            q.quantizedDimension,
        )
    return (tuple(tensor.shape), tensor.type, bytes(data), quant)


def prune(graph):
    """Removes the tensors no operator, input or output refers to (in
    every subgraph) and the buffers no tensor or metadata refers to;
    returns how many tensors."""
    removed = sum(
        _prune_tensors(graph, k, sub) for k, sub in enumerate(graph.subgraphs)
    )
    used = {0} | {t.buffer for sub in graph.subgraphs for t in sub.tensors}
    used |= {m.buffer for m in graph.metadata or []}
    keep = [i for i in range(len(graph.buffers)) if i in used]
    new_index = {old: new for new, old in enumerate(keep)}
    graph.buffers = [graph.buffers[i] for i in keep]
    for sub in graph.subgraphs:
        for tensor in sub.tensors:
            tensor.buffer = new_index[tensor.buffer]
    for entry in graph.metadata or []:
        entry.buffer = new_index[entry.buffer]
    return removed


def _prune_tensors(graph, k, sub):
    signatures = [
        sig for sig in graph.signatureDefs or [] if sig.subgraphIndex == k
    ]
    used = {int(i) for i in sub.inputs} | {int(i) for i in sub.outputs}
    for op in sub.operators:
        used |= {int(i) for i in op.inputs if i >= 0}
        used |= {int(i) for i in op.outputs}
    for sig in signatures:
        used |= {int(t.tensorIndex) for t in sig.inputs + sig.outputs}
    keep = [i for i in range(len(sub.tensors)) if i in used]
    new_index = {old: new for new, old in enumerate(keep)}
    removed = len(sub.tensors) - len(keep)
    sub.tensors = [sub.tensors[i] for i in keep]

    def remap(indices):
        return np.array(
            [new_index[int(i)] if i >= 0 else -1 for i in indices], "int32"
        )

    for op in sub.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
    sub.inputs, sub.outputs = remap(sub.inputs), remap(sub.outputs)
    for sig in signatures:
        for entry in sig.inputs + sig.outputs:
            entry.tensorIndex = new_index[int(entry.tensorIndex)]
    return removed


_NUMPY_TYPES = {
    0: "float32",
    2: "int32",
    4: "int64",
    9: "int8",
    7: "int16",
}

# TFLite tensor types of quantized activations: int8, int16 (16x8).
INTEGER_TYPES = (9, 7)


def tensor_array(graph, sub, index):
    """The data of constant tensor `index` as a numpy array (a copy)."""
    tensor = sub.tensors[index]
    data = bytes(graph.buffers[tensor.buffer].data)
    dtype = _NUMPY_TYPES[int(tensor.type)]
    return np.frombuffer(data, dtype).reshape(tuple(tensor.shape)).copy()


def set_input_array(graph, sub, op, position, array):
    """Gives input `position` of `op` the constant data `array`, in a new
    tensor and buffer of its own (the old tensor may be shared)."""
    import copy

    from tensorflow.lite.python import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), "uint8")
    graph.buffers.append(buffer)
    tensor = copy.deepcopy(sub.tensors[int(op.inputs[position])])
    tensor.buffer = len(graph.buffers) - 1
    sub.tensors.append(tensor)
    inputs = [int(i) for i in op.inputs]
    inputs[position] = len(sub.tensors) - 1
    op.inputs = np.array(inputs, "int32")


def fuse_depthwise_bias(graph, op_name):
    """Moves a per-channel constant ADD after a DEPTHWISE_CONV_2D into the
    convolution's bias (see the module docstring); returns how many.

    The converter folds such an addition into the FULLY_CONNECTED ops
    that read the convolution (their biases absorb `W c`) and keeps the
    ADD for the other readers. Here the convolution adds `c` itself, and
    the biases of those FULLY_CONNECTED ops give `W c` back; in int8 the
    convolution then writes on the ADD's output grid, and their biases
    are requantized to it. The same holds in 16x8 (int16 activations,
    int64 biases)."""
    sub = graph.subgraphs[0]
    fused = 0
    for conv in list(sub.operators):
        if op_name(graph, conv) != "DEPTHWISE_CONV_2D":
            continue
        plan = _bias_add_plan(graph, sub, conv, op_name)
        if plan is None:
            continue
        add, constant, fully_connected = plan
        _fuse(graph, sub, conv, add, constant, fully_connected)
        fused += 1
    return fused


def _bias_add_plan(graph, sub, conv, op_name):
    t = int(conv.outputs[0])
    readers = consumers(sub).get(t, [])
    adds = [op for op in readers if op_name(graph, op) == "ADD"]
    others = [op for op in readers if op not in adds]
    if len(adds) != 1 or len(conv.inputs) < 3 or conv.inputs[2] < 0:
        return None
    if any(op_name(graph, op) != "FULLY_CONNECTED" for op in others):
        return None
    add = adds[0]
    constant = [int(i) for i in add.inputs if int(i) != t]
    channels = int(sub.tensors[t].shape[-1])
    if (
        len(constant) != 1
        or graph.buffers[sub.tensors[constant[0]].buffer].data is None
    ):
        return None
    if int(np.prod(sub.tensors[constant[0]].shape)) != channels:
        return None
    return add, constant[0], others


def _real(graph, sub, index):
    """The real values of constant tensor `index` (dequantized)."""
    values = tensor_array(graph, sub, index).astype("float64")
    q = sub.tensors[index].quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return values
    # Per-channel parameters lie along the quantized dimension.
    shape = [1] * values.ndim
    if len(q.scale) > 1:
        shape[q.quantizedDimension] = -1
    scale = np.asarray(q.scale, "float64").reshape(shape or ())
    zero = np.asarray(q.zeroPoint, "float64")
    zero = zero.reshape(shape or ()) if zero.size > 1 else zero.reshape(())
    return (values - zero) * scale


def _fuse(graph, sub, conv, add, constant, fully_connected):
    t, out = int(conv.outputs[0]), int(add.outputs[0])
    c = _real(graph, sub, constant).reshape(-1)
    integer = sub.tensors[t].type in INTEGER_TYPES
    bias = int(conv.inputs[2])
    if integer:
        s_in = float(sub.tensors[int(conv.inputs[0])].quantization.scale[0])
        s_w = np.asarray(sub.tensors[int(conv.inputs[1])].quantization.scale)
        value = tensor_array(graph, sub, bias) + np.round(c / (s_in * s_w))
        set_input_array(graph, sub, conv, 2, value.astype(_dtype(sub, bias)))
    else:
        value = tensor_array(graph, sub, bias) + c
        set_input_array(graph, sub, conv, 2, value.astype("float32"))
    old_q = sub.tensors[t].quantization
    for op in fully_connected:
        _unfold(graph, sub, op, c, old_q, sub.tensors[out].quantization)
    sub.tensors[t].quantization = sub.tensors[out].quantization
    for op in sub.operators:
        op.inputs = np.array(
            [t if int(i) == out else int(i) for i in op.inputs], "int32"
        )
    sub.outputs = np.array(
        [t if int(i) == out else int(i) for i in sub.outputs], "int32"
    )
    sub.operators = [op for op in sub.operators if op is not add]


def _unfold(graph, sub, op, c, old_q, new_q):
    """The bias of FULLY_CONNECTED `op` without the `W c` the converter
    folded into it, for an input now carrying `c` (and, in int8, the new
    input quantization `new_q`)."""
    weights = _real(graph, sub, int(op.inputs[1]))  # (out, in)
    bias = int(op.inputs[2])
    if old_q is None or old_q.scale is None or len(old_q.scale) == 0:
        value = tensor_array(graph, sub, bias) - weights @ c
        set_input_array(graph, sub, op, 2, value.astype("float32"))
        return
    s_w = np.asarray(sub.tensors[int(op.inputs[1])].quantization.scale)
    real = tensor_array(graph, sub, bias) * float(old_q.scale[0]) * s_w
    real = real - weights @ c
    value = np.round(real / (float(new_q.scale[0]) * s_w))
    set_input_array(graph, sub, op, 2, value.astype(_dtype(sub, bias)))


def _dtype(sub, index):
    """The numpy dtype of tensor `index` (int32 biases in int8, int64 in
    16x8)."""
    return _NUMPY_TYPES[int(sub.tensors[index].type)]


def opcode_index(graph, builtin_code):
    """The index of builtin operator `builtin_code` (a
    `schema.BuiltinOperator` value) in the file's operator codes, added
    if absent."""
    from tensorflow.lite.python import schema_py_generated as schema

    for i, code in enumerate(graph.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin_code:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin_code
    code.deprecatedBuiltinCode = min(
        builtin_code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
    )
    code.version = 1
    graph.operatorCodes.append(code)
    return len(graph.operatorCodes) - 1


def new_operator(opcode, inputs, outputs, options_type=0, options=None):
    """A new operator (not yet in a subgraph)."""
    from tensorflow.lite.python import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.array(inputs, "int32")
    op.outputs = np.array(outputs, "int32")
    op.builtinOptionsType = options_type
    op.builtinOptions = options
    return op


def new_tensor(sub, name, shape, dtype, buffer=0, quantization=None):
    """Appends a tensor to subgraph `sub`; returns its index."""
    from tensorflow.lite.python import schema_py_generated as schema

    t = schema.TensorT()
    t.name = name.encode() if isinstance(name, str) else name
    t.shape = np.array(shape, "int32")
    t.type = dtype
    t.buffer = buffer
    t.quantization = quantization
    t.hasRank = len(shape) > 0
    sub.tensors.append(t)
    return len(sub.tensors) - 1
