"""Graph passes on a converted file: fewer operators and tensors, the same
outputs.

Each pass works on the object tree of the TFLite schema
(`rewrite.read_graph`) and keeps what the file computes:

- `fold_io_reshapes`: a RESHAPE that only reshapes a graph input (or
  produces a graph output) is removed and the input (output) declared in
  the reshaped shape. The bytes of the tensor are the same; the step
  graph reshapes each convolution FIFO to the 4-D layout of
  DEPTHWISE_CONV_2D, so its state is declared `(1, 1, span, channels)`.
- `drop_negligible_adds` (int8): an ADD of a constant smaller than half a
  step of its other input's grid, read only by RSQRT, is the identity on
  int8 values (the epsilon of a normalisation): RSQRT reads the input.
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
