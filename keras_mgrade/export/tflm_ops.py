"""The TFLite Micro operators a streaming file may use, each with the
`MicroMutableOpResolver` method that registers it.

One table: the exporter refuses a file with an operator that is not
here, and the C sources register exactly the file's operators from it.
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
