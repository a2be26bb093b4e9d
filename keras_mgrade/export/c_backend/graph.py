"""The subgraph of a `.tflite` file as plain Python objects.

Only what the C generator needs: tensors (shape, type, quantization,
constant data) and operators (builtin name, inputs, outputs, options), in
execution order. Tensor names are never used: a file with stripped names
reads the same.
"""

import dataclasses

import numpy as np

# TFLite `TensorType` enum value -> numpy dtype name.
_TYPES = {
    0: "float32",
    1: "float16",
    2: "int32",
    3: "uint8",
    4: "int64",
    6: "bool",
    7: "int16",
    9: "int8",
    10: "float64",
}


@dataclasses.dataclass
class Tensor:
    """One tensor of the subgraph.

    Attributes:
        index: its index in the subgraph.
        shape: tuple of ints.
        dtype: numpy dtype name (`"int8"`, `"int32"`, ...).
        scale: float32 array of scales (empty when not quantized).
        zero_point: int64 array of zero points (length 1 when collapsed).
        quantized_dimension: the per-channel axis.
        data: the constant value (numpy, shaped) or None.
    """

    index: int
    shape: tuple
    dtype: str
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int = 0
    data: np.ndarray | None = None

    @property
    def size(self):
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self):
        """Bytes of its elements."""
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def is_const(self):
        return self.data is not None

    @property
    def per_channel(self):
        return self.scale.size > 1

    @property
    def s(self):
        """The (first) scale as a float32 scalar, as TFLite Micro reads it."""
        return np.float32(self.scale[0]) if self.scale.size else np.float32(0)

    @property
    def zp(self):
        """The (first) zero point as an int."""
        return int(self.zero_point[0]) if self.zero_point.size else 0

    def channel_zero_points(self, channels):
        """Per-channel zero points, a length-1 array expanded as TFLite
        Micro expands it."""
        if self.zero_point.size in (0, 1):
            return np.full(channels, self.zp, "int64")
        return self.zero_point.astype("int64")


@dataclasses.dataclass
class Operator:
    """One operator: builtin name, tensor indices (-1: absent), options."""

    index: int
    name: str
    inputs: list
    outputs: list
    options: dict


@dataclasses.dataclass
class Graph:
    """The first subgraph of a model, with its signature order."""

    tensors: list
    operators: list
    inputs: list
    outputs: list

    def producer(self, index):
        """The operator writing tensor `index`, or None."""
        for op in self.operators:
            if index in op.outputs:
                return op
        return None

    def consumers(self, index):
        """The operators reading tensor `index`, in execution order."""
        return [op for op in self.operators if index in op.inputs]

    @property
    def op_names(self):
        return sorted({op.name for op in self.operators})


def _quantization(t):
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return np.zeros(0, "float32"), np.zeros(0, "int64"), 0
    zeros = q.zeroPoint if q.zeroPoint is not None else [0]
    return (
        np.asarray(q.scale, "float32"),
        np.asarray(zeros, "int64"),
        int(q.quantizedDimension or 0),
    )


def _constant(model, t, dtype):
    buf = (
        model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
    )
    if buf is None or len(buf) == 0:
        return None
    raw = np.asarray(buf, "uint8").tobytes()
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()


def _options(op):
    opts = op.builtinOptions
    if opts is None:
        return {}
    return {k: v for k, v in vars(opts).items() if not k.startswith("_")}


def read_graph(model_bytes):
    """Parses `.tflite` bytes into a `Graph` (first subgraph).

    Args:
        model_bytes: the file's bytes.

    Returns:
        A `Graph`.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> f = tf.function(lambda x: tf.nn.relu(x),
    ...     input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    >>> conv = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [f.get_concrete_function()], f)
    >>> graph = read_graph(conv.convert())
    >>> [op.name for op in graph.operators]
    ['RELU']
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    sub = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sub.tensors):
        dtype = _TYPES.get(t.type)
        if dtype is None:
            raise ValueError(
                "The file has a tensor type the C backend does not know. "
                f"Expected one of {sorted(_TYPES.values())}. Received: "
                f"type={t.type} (tensor {i})"
            )
        scale, zero, axis = _quantization(t)
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        tensors.append(
            Tensor(
                i, shape, dtype, scale, zero, axis, _constant(model, t, dtype)
            )
        )
    operators = []
    for k, op in enumerate(sub.operators):
        name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        operators.append(
            Operator(
                k,
                name,
                [int(i) for i in op.inputs],
                [int(i) for i in op.outputs],
                _options(op),
            )
        )
    return Graph(
        tensors,
        _collapse_lookups(tensors, operators),
        [int(i) for i in sub.inputs],
        [int(i) for i in sub.outputs],
    )


# The pseudo-operator of a table lookup (`keras_mgrade.export.tables`).
LOOKUP = "LOOKUP"


def _collapse_lookups(tensors, operators):
    """The operators with each table lookup of `export_tflite`'s
    `lookup_tables` (QUANTIZE of an int8 tensor to an int32 index on the
    same scale, read only as the indices of GATHERs from constant int8
    tables of 256 entries) read as one `LOOKUP` operator per GATHER, whose
    options hold the table and the index offset; renumbered."""
    readers = {}
    for op in operators:
        for i in op.inputs:
            readers.setdefault(i, []).append(op)
    dropped, lookups = set(), {}
    for op in operators:
        if op.name != "QUANTIZE":
            continue
        x, index = tensors[op.inputs[0]], tensors[op.outputs[0]]
        gathers = readers.get(index.index, [])
        if (
            x.dtype != "int8"
            or index.dtype != "int32"
            or len(x.scale) != 1
            or len(index.scale) != 1
            or x.scale[0] != index.scale[0]
            or not gathers
            or not all(_table_gather(tensors, g, index.index) for g in gathers)
        ):
            continue
        # The same scale: QUANTIZE adds the zero points' difference.
        offset = int(index.zero_point[0]) - int(x.zero_point[0])
        if offset != 128:  # int8 values -> entries 0..255
            continue
        dropped.add(op.index)
        for g in gathers:
            table = tensors[g.inputs[0]].data
            lookups[g.index] = Operator(
                g.index,
                LOOKUP,
                [op.inputs[0]],
                list(g.outputs),
                {"table": table, "offset": offset},
            )
    kept = [lookups.get(op.index, op) for op in operators]
    kept = [op for op in kept if op.index not in dropped]
    for k, op in enumerate(kept):
        op.index = k
    return kept


def _table_gather(tensors, op, index):
    if op.name != "GATHER" or len(op.inputs) != 2 or op.inputs[1] != index:
        return False
    table = tensors[op.inputs[0]]
    out = tensors[op.outputs[0]]
    return (
        table.data is not None
        and table.dtype == "int8"
        and table.shape == (256,)
        and out.dtype == "int8"
        and op.options.get("axis", 0) == 0
        and op.options.get("batchDims", 0) == 0
    )
