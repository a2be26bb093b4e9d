"""Shrink a file for its runtime (`target`).

For TFLite Micro (`target="tflm"`, the default of `export_tflite`):

- strings TFLite Micro never reads: tensor and subgraph names, the model
  description, the signature definitions;
- metadata it never reads (the converter's `min_runtime_version` and
  `CONVERSION_METADATA`; the exporter's own `keras_mgrade` entry stays);
- all-zero per-channel zero points of weights and biases, collapsed to
  one value (TFLite Micro expands a length-1 array; LiteRT rejects it);
- the quantization parameters of integer biases (int32 in int8, int64
  in 16x8: TFLite Micro's kernels take their scale from the input and
  weights);
- the shape tensors of RESHAPE (TFLite Micro reshapes to the output
  tensor's shape);
- the min/max arrays of the quantization parameters.

For LiteRT (`target="litert"`) the file is left as converted. The
exporter checks that the shrunk file gives bit-identical outputs on
TFLite Micro (`keras_mgrade.export.verify`).
"""

import numpy as np

from keras_mgrade.export import passes
from keras_mgrade.export import rewrite
from keras_mgrade.export.arena import METADATA


def shrink(flat, target):
    """`(bytes, removed)`: the file for `target`, and the bytes each kind
    of removal saved (`{}` for LiteRT)."""
    if target == "litert":
        return flat, {}
    graph = rewrite.read_graph(flat)
    removed = {}
    size = len(flat)
    for name, step in (
        ("names and signatures", _strip_strings),
        ("unread metadata", _strip_metadata),
        ("per-channel zero points", _collapse_zero_points),
        ("bias quantization parameters", _strip_bias_quantization),
        ("reshape shape tensors", _drop_reshape_shapes),
        ("min/max arrays", _strip_min_max),
    ):
        step(graph)
        flat = rewrite.write_graph(graph)
        removed[name] = size - len(flat)
        size = len(flat)
    return flat, removed


def _strip_strings(graph):
    graph.description = None
    graph.signatureDefs = None
    for sub in graph.subgraphs:
        sub.name = None
        for tensor in sub.tensors:
            tensor.name = None


def _strip_metadata(graph):
    graph.metadata = [
        m
        for m in graph.metadata or []
        if m.name and m.name.decode() == METADATA
    ]
    passes.prune(graph)


def _collapse_zero_points(graph):
    for sub in graph.subgraphs:
        for tensor in sub.tensors:
            q = tensor.quantization
            if q is None or q.zeroPoint is None or len(q.zeroPoint) < 2:
                continue
            if not np.any(q.zeroPoint):
                q.zeroPoint = np.zeros(1, "int64")


# Operators whose third input is an integer bias at the scale of input x
# weights, which TFLite Micro's kernels never read from the file.
_WITH_BIAS = ("FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "CONV_2D")


def _strip_bias_quantization(graph):
    for sub in graph.subgraphs:
        for op in sub.operators:
            if rewrite.op_name(graph, op) not in _WITH_BIAS:
                continue
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                bias = sub.tensors[int(op.inputs[2])]
                if bias.type in (2, 4):  # int32 (int8) or int64 (16x8)
                    bias.quantization = None


def _drop_reshape_shapes(graph):
    # TFLite Micro's RESHAPE takes the shape of its output tensor when it
    # has one input: the shape tensor is only bookkeeping in its arena.
    for sub in graph.subgraphs:
        for op in sub.operators:
            if rewrite.op_name(graph, op) == "RESHAPE" and len(op.inputs) > 1:
                op.inputs = np.array(op.inputs[:1], "int32")
    passes.prune(graph)


def _strip_min_max(graph):
    for sub in graph.subgraphs:
        for tensor in sub.tensors:
            if tensor.quantization is not None:
                tensor.quantization.min = None
                tensor.quantization.max = None
