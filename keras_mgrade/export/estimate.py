"""An estimate of the TFLite Micro arena on a 32-bit Cortex-M.

The arena measured with the `tflite_micro` Python runtime is that of a
64-bit host, whose interpreter structs are about twice the size of a
Cortex-M's. This module estimates the smallest working arena of a file
on a 32-bit MCU (reference kernels) from counts in the file and the
host's planned head, with the struct sizes of TFLite Micro built by
arm-none-eabi-gcc 12.2 for Cortex-M4/M55 (`TF_LITE_STATIC_MEMORY`).

The arena fills from both ends. Its tail holds the persistent
bookkeeping: the allocator and planner objects, one `TfLiteEvalTensor`
per tensor (12 B), one `NodeAndRegistration` per operator (32 B), each
operator's builtin parameters and OpData (rounded to 16 B), the
per-channel multipliers and shifts of FULLY_CONNECTED and
DEPTHWISE_CONV_2D (`2 * r16(4 C)`), the output shape each GATHER
copies there (`r16(4 + 4 R)`, R its rank), scratch-buffer handles and
variable buffers. The peak comes while `AllocateTensors` plans the memory: the
head then holds the scratch-buffer requests, one 24 B `AllocationInfo`
per tensor and 40 B of planner data per planned tensor; afterwards it
holds the planned activations (equal on 32 and 64 bits), and the tail
gains the input and output tensors. So

    tail  = 132 + 8 S + 12 T + 32 O + sum(params + r16(OpData))
            + sum(2 r16(4 C)) + sum(r16(4 + 4 R)) + 4 N (+ variables)
    plan  = tail + r16(12 (N + 12) + 4 S + 24 (T + N)) + 40 (P + N)
    final = tail + 2 r16(4 io) + 52 io + head
    estimate = max(plan, final)

with `S` subgraphs, `T` tensors, `O` operators, `P` planned tensors
(neither constant nor variable, non-empty), `N` scratch buffers (3 per
MEAN), `io` inputs + outputs, `head` the host's planned head, and
`r16` rounding up to 16 bytes. Checked against TFLite Micro built for
Cortex-M4 and Cortex-M55 and run under QEMU: within 0.3 % of the
smallest working arena on every file tried (`benchmarks/RESULTS.md`).
"""

import numpy as np

# Operator: (OpData bytes, builtin parameter bytes), 32-bit Cortex-M.
OPERATORS = {
    "FULLY_CONNECTED": (48, 5),
    "DEPTHWISE_CONV_2D": (56, 28),
    "ADD": (60, 2),
    "SUB": (52, 2),
    "MUL": (36, 1),
    "LOGISTIC": (16, 0),
    "TANH": (16, 0),
    "MEAN": (44, 1),
    "RSQRT": (28, 0),
    "MINIMUM": (0, 0),
    "MAXIMUM": (0, 0),
    "CONCATENATION": (24, 8),
    "STRIDED_SLICE": (84, 24),
    "RESHAPE": (0, 36),
    "QUANTIZE": (32, 0),
    "GATHER": (0, 8),
    "SQUARED_DIFFERENCE": (112, 0),
    "VAR_HANDLE": (4, 8),
    "ASSIGN_VARIABLE": (0, 0),
    "READ_VARIABLE": (0, 0),
    "CALL_ONCE": (8, 4),
}
# An operator missing above is counted with this (OpData, parameters).
UNKNOWN_OPERATOR = (64, 16)
_RESOURCE = 13  # TensorType.RESOURCE


def _r(value, alignment):
    return (value + alignment - 1) // alignment * alignment


def counts(data):
    """What the estimate reads from a file: `{"S", "T", "O", "P", "io",
    "operators": [(name, per-channel outputs or 0), ...], "dims": [rank
    of each GATHER's output, ...], "variable_bytes": [...]}`."""
    from tflite_micro.tensorflow.lite.micro.python import (
        schema_py_generated as schema,
    )

    graph = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = {
        i: _builtin_name(schema, code)
        for i, code in enumerate(graph.operatorCodes)
    }
    found = {"S": len(graph.subgraphs), "T": 0, "O": 0, "P": 0}
    found["operators"], found["dims"], variables = [], [], {}
    for sub in graph.subgraphs:
        handles = {
            op.outputs[0]: op.builtinOptions.sharedName
            for op in sub.operators or []
            if names[op.opcodeIndex] == "VAR_HANDLE"
        }
        found["T"] += len(sub.tensors or [])
        found["O"] += len(sub.operators or [])
        found["P"] += sum(_planned(graph, t) for t in sub.tensors or [])
        for op in sub.operators or []:
            name = names[op.opcodeIndex]
            found["operators"].append((name, _channels(sub, op, name)))
            if name == "GATHER":  # its output shape, copied to the tail
                found["dims"].append(len(sub.tensors[op.outputs[0]].shape))
            if name == "ASSIGN_VARIABLE":
                variables[handles.get(op.inputs[0])] = _bytes(
                    sub.tensors[op.inputs[1]]
                )
    found["variable_bytes"] = [variables[k] for k in sorted(variables, key=str)]
    main = graph.subgraphs[0]
    found["io"] = len(main.inputs) + len(main.outputs)
    return found


def _builtin_name(schema, code):
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    for name, number in vars(schema.BuiltinOperator).items():
        if number == value and not name.startswith("_"):
            return name
    return str(value)


def _planned(graph, tensor):
    data = graph.buffers[tensor.buffer].data
    constant = data is not None and len(data) > 0
    shape = tensor.shape if tensor.shape is not None else []
    return not (
        constant
        or tensor.isVariable
        or tensor.type == _RESOURCE
        or int(np.prod(shape)) == 0
    )


def _channels(sub, op, name):
    """Output channels with per-channel requantization arrays, or 0."""
    if name not in ("FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
        return 0
    weights = sub.tensors[op.inputs[1]]
    q = weights.quantization
    per_channel = q is not None and q.scale is not None and len(q.scale) > 1
    if name == "FULLY_CONNECTED" and not per_channel:
        return 0
    return int(weights.shape[0 if name == "FULLY_CONNECTED" else -1])


def _bytes(tensor):
    size = {9: 1, 7: 2, 3: 1}.get(int(tensor.type), 4)
    return int(np.prod(tensor.shape)) * size


def cortex_m_arena(data, head):
    """The estimated smallest arena (bytes) of a file on a 32-bit
    Cortex-M with TFLite Micro's reference kernels.

    Args:
        data: the file's bytes.
        head: the planned head of the host runtime (`allocations`'s
            `"head"`): the activations, equal on 32 and 64 bits.

    Returns:
        `(bytes, parts)`: the estimate and its terms (`tail`, `plan`,
        `final`) as a dict.
    """
    c = counts(data)
    scratch = 3 * sum(name == "MEAN" for name, _ in c["operators"])
    tail = 132 + 8 * c["S"] + 12 * c["T"] + 32 * c["O"] + 4 * scratch
    for name, channels in c["operators"]:
        opdata, params = OPERATORS.get(name, UNKNOWN_OPERATOR)
        tail += params
        tail += _r(opdata, 16) + 2 * _r(4 * channels, 16) * (channels > 0)
    tail += sum(_r(4 + 4 * rank, 16) for rank in c["dims"])
    variables = c["variable_bytes"]
    if variables:
        tail += 16 + _r(20 * len(variables), 16)
        tail += sum(_r(b, 16) for b in variables)
    plan = _r(12 * (scratch + 12) + 4 * c["S"] + 24 * (c["T"] + scratch), 16)
    plan = tail + plan + 40 * (c["P"] + scratch)
    final = tail + 2 * _r(4 * c["io"], 16) + 52 * c["io"] + head
    parts = {"tail": tail, "plan": plan, "final": final}
    return _r(max(plan, final), 4), parts


FORMULA = (
    "max(tail + r16(12 (N + 12) + 4 S + 24 (T + N)) + 40 (P + N), "
    "tail + 2 r16(4 io) + 52 io + head), tail = 132 + 8 S + 12 T + 32 O "
    "+ sum(params + r16(OpData)) + sum(2 r16(4 C)) + sum(r16(4 + 4 R)) "
    "+ 4 N (+ variables)"
)


def arena_report(data, host_bytes):
    """The report's `arena`: the host-measured smallest arena, the host
    interpreter's allocation record (`arena.allocations`), and the
    32-bit Cortex-M estimate with its formula and terms.

    Args:
        data: the file's bytes.
        host_bytes: the smallest arena measured on the host
            (`arena.find_arena_size`).
    """
    from keras_mgrade.export import arena

    record = arena.allocations(data, 2 * host_bytes)
    estimate, parts = cortex_m_arena(data, record["head"])
    return {
        "host_bytes": int(host_bytes),
        "host_allocations": record,
        "cortex_m_estimate_bytes": int(estimate),
        "cortex_m_estimate": {
            "formula": FORMULA,
            **parts,
            "head": record["head"],
            "note": "estimate for a 32-bit Cortex-M (TFLite Micro "
            "reference kernels); the host runtime is 64-bit",
        },
    }
