"""Per-step forms of standard Keras layers, written with ops that TFLite
Micro runs in int8.

Used by `MGRADE.step` and by `keras_mgrade.export.streaming_model` for the
per-step layers of a model (Dense, LayerNormalization, Activation, ...).
"""

import keras
from keras import ops

from keras_mgrade.quantization import points

# Activations with an exact TFLite Micro int8 lowering, written as
# `fn(x, q)`: `q(name, tensor, fixed=None)` marks each tensor the int8 graph
# stores (a quantization point; the identity for float streaming).
_SIG = points.SIGMOID_RANGE


def _hard_swish(x, q):
    shifted = q("shift", x + 3.0)
    return q("output", q("product", x * q("relu6", ops.relu6(shifted))) / 6.0)


_STEP_ACTIVATIONS = {
    "linear": lambda x, q: x,
    "relu": lambda x, q: q("output", ops.relu(x)),
    "relu6": lambda x, q: q("output", ops.relu6(x)),
    "sigmoid": lambda x, q: q("output", ops.sigmoid(x), _SIG),
    "tanh": lambda x, q: q("output", ops.tanh(x), points.TANH_RANGE),
    "softmax": lambda x, q: q("output", ops.softmax(x, axis=-1), _SIG),
    "silu": lambda x, q: q("output", x * q("sigmoid", ops.sigmoid(x), _SIG)),
    "swish": lambda x, q: q("output", x * q("sigmoid", ops.sigmoid(x), _SIG)),
    "hard_silu": _hard_swish,
    "hard_swish": _hard_swish,
    # sigmoid_gelu: x * sigmoid(1.702 x), as keras_mgrade.activations.
    "sigmoid_gelu": lambda x, q: q(
        "output",
        x * q("sigmoid", ops.sigmoid(q("scaled", 1.702 * x)), _SIG),
    ),
    "leaky_relu": lambda x, q: q("output", ops.leaky_relu(x)),
}


def activation_name(activation):
    """The registered name of a Keras activation function (or None)."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    name = keras.activations.serialize(activation)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    if isinstance(name, str):
        return name.split(">")[-1]
    return getattr(activation, "__name__", None)


def step_activation(activation, where="activation", owner=None):
    """The TFLite-Micro-friendly function for a Keras activation.

    Raises a ValueError naming the activation when it has no exact int8
    lowering on TFLite Micro (e.g. `"gelu"`: use `"sigmoid_gelu"`). Under
    quantization-aware training the function fake-quantizes its
    intermediate tensors as points `"<where>.<name>"` of `owner`.
    """
    name = activation_name(activation)
    fn = _STEP_ACTIVATIONS.get(name)
    if fn is None:
        hint = ' Use "sigmoid_gelu" instead.' if name == "gelu" else ""
        raise ValueError(
            f"{where}={name!r} has no TFLite Micro int8 kernel, so it "
            f"cannot be streamed. Supported: {sorted(_STEP_ACTIVATIONS)}."
            f"{hint}"
        )

    def q(name, x, fixed=None):
        return points.activation(owner, f"{where}.{name}", x, fixed=fixed)

    return lambda x: fn(x, q)


def layer_norm(x, layer):
    """`keras.layers.LayerNormalization` or `keras.layers.RMSNormalization`
    over the last axis, from MEAN, SUB, MUL, RSQRT and ADD, with the
    layer's weights.

    Keras' own LayerNormalization converts with a float island in int8
    TFLite (`DEQUANTIZE -> NEG -> QUANTIZE`); this form stays in int8.

    Args:
        x: tensor `(..., features)`.
        layer: a built `LayerNormalization` or `RMSNormalization` over the
            last axis.

    Returns:
        The normalised tensor, in the dtype of `x`.
    """
    axis = layer.axis
    axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if axis not in ([-1], [len(x.shape) - 1]):
        raise ValueError(
            "Only normalization over the last axis can be streamed. "
            f"Received: axis={layer.axis} for layer {layer.name!r}"
        )
    dtype = x.dtype
    x = ops.cast(x, "float32")

    def q(name, value):
        return points.activation(layer, name, value)

    def w(name):
        value = getattr(layer, name)
        return points.weight(layer, name, lambda: ops.cast(value, "float32"))

    if isinstance(layer, keras.layers.RMSNormalization):
        mean_square = q(
            "mean_square",
            ops.mean(q("square", x * x), axis=-1, keepdims=True),
        )
        inv = q(
            "rsqrt", _rsqrt(q("variance", mean_square + layer.epsilon), layer)
        )
        y = q("normalized", x * inv)
        y = q("output", y * w("scale"))
        return ops.cast(y, dtype)
    if getattr(layer, "rms_scaling", False):
        raise ValueError(
            "LayerNormalization(rms_scaling=True) is deprecated in Keras and "
            "is not streamed; use keras.layers.RMSNormalization. Received: "
            f"layer {layer.name!r}"
        )
    mean = q("mean", ops.mean(x, axis=-1, keepdims=True))
    centered = q("centered", x - mean)
    square = q("square", centered * centered)
    variance = q("variance", ops.mean(square, axis=-1, keepdims=True))
    inv = q("rsqrt", _rsqrt(q("variance_eps", variance + layer.epsilon), layer))
    y = q("normalized", centered * inv)
    if layer.scale:
        y = q("scaled", y * w("gamma"))
    if layer.center:
        y = q("output", y + w("beta"))
    return ops.cast(y, dtype)


def _rsqrt(x, layer):
    # Quantized, `variance + epsilon` can round to 0 (as in the int8
    # file); keep the simulation finite. A no-op on float values.
    if points.quantizing():
        x = ops.maximum(x, layer.epsilon)
    return ops.rsqrt(x)


def dense(x, layer):
    """`keras.layers.Dense` on a `(batch, features)` input, with its
    activation in step form."""
    kernel = points.weight(
        layer, "kernel", lambda: ops.cast(layer.kernel, x.dtype), axis=-1
    )
    y = ops.matmul(x, kernel)
    if layer.use_bias:
        y = y + ops.cast(layer.bias, y.dtype)
    y = points.activation(layer, "linear", y)
    fn = step_activation(
        layer.activation, f"{layer.name}.activation", owner=layer
    )
    return fn(y)
