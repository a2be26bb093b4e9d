"""The TFLite Micro operators a streaming file may use, each with the
`MicroMutableOpResolver` method that registers it.

One table: the exporter refuses a file with an operator that is not
here, and the C sources register exactly the file's operators from it.
A second table lists the operators TFLite Micro runs in int8 but not in
int16 (found by running 16x8 files on it), which a 16x8 file must not
use.
"""

# TFLite builtin operator name -> MicroMutableOpResolver method.
RESOLVER_METHODS = {
    "ADD": "AddAdd",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "CALL_ONCE": "AddCallOnce",
    "CONCATENATION": "AddConcatenation",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "HARD_SWISH": "AddHardSwish",
    "LEAKY_RELU": "AddLeakyRelu",
    "LOGISTIC": "AddLogistic",
    "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MUL": "AddMul",
    "PACK": "AddPack",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RSQRT": "AddRsqrt",
    "SOFTMAX": "AddSoftmax",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "TANH": "AddTanh",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
}

TFLM_OPS = frozenset(RESOLVER_METHODS)


def check_ops(ops):
    """Raises a RuntimeError naming the operators of `ops` that TFLite
    Micro (as this exporter knows it) does not run."""
    unknown = sorted(set(ops) - TFLM_OPS)
    if unknown:
        raise RuntimeError(
            "The converted file uses operators outside the TFLite Micro "
            f"operator set of this exporter: {unknown}. Please report the "
            "model."
        )


# Operators with no int16 kernel in TFLite Micro (or no 16x8 form in
# TensorFlow's quantizer), and what avoids each. RSQRT is not one: TFLite
# Micro runs int16 RSQRT (checked on its Python runtime and on a build
# from source).
INT16_MISSING = {
    "GATHER": "an Embedding front end (feed one-hot or float features)",
    "HARD_SWISH": 'activation "hard_swish"/"hard_silu" (use e.g. "silu")',
    "DIV": "a TemporalMeanPooling that is not the model's last layer "
    "(the host pools a last one)",
}


def check_int16_ops(ops):
    """Raises a ValueError naming the operators of `ops` (of a 16x8
    file, or that the 16x8 quantizer refused) that have no int16 form on
    TFLite Micro, and what in the model avoids each."""
    missing = sorted(set(ops) & set(INT16_MISSING))
    if missing:
        causes = "; ".join(f"{op}: {INT16_MISSING[op]}" for op in missing)
        raise ValueError(
            "quantize='int16x8' needs int16 kernels that TFLite Micro (or "
            f"TensorFlow's 16x8 quantizer) lacks for {missing}, which the "
            f"model uses ({causes}). Change those layers or export with "
            "quantize='int8'. Received: quantize='int16x8'"
        )
