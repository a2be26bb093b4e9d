"""Per-step forms of standard Keras layers, written with ops that TFLite
Micro runs in int8.

Used by `MGRADE.step` and by `keras_mgrade.export.streaming_model` for the
per-step layers of a model (Dense, LayerNormalization, Activation, ...).
"""

import keras
from keras import ops

from keras_mgrade.activations import sigmoid_gelu

# Activations with an exact TFLite Micro int8 lowering.
_STEP_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": ops.relu,
    "relu6": ops.relu6,
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "softmax": lambda x: ops.softmax(x, axis=-1),
    "silu": lambda x: x * ops.sigmoid(x),
    "swish": lambda x: x * ops.sigmoid(x),
    "hard_silu": lambda x: x * ops.relu6(x + 3.0) / 6.0,
    "hard_swish": lambda x: x * ops.relu6(x + 3.0) / 6.0,
    "sigmoid_gelu": sigmoid_gelu,
    "leaky_relu": ops.leaky_relu,
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


def step_activation(activation, where="activation"):
    """The TFLite-Micro-friendly function for a Keras activation.

    Raises a ValueError naming the activation when it has no exact int8
    lowering on TFLite Micro (e.g. `"gelu"`: use `"sigmoid_gelu"`).
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
    return fn


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
    if isinstance(layer, keras.layers.RMSNormalization):
        mean_square = ops.mean(ops.square(x), axis=-1, keepdims=True)
        y = x * ops.rsqrt(mean_square + layer.epsilon)
        y = y * ops.cast(layer.scale, "float32")
        return ops.cast(y, dtype)
    if getattr(layer, "rms_scaling", False):
        raise ValueError(
            "LayerNormalization(rms_scaling=True) is deprecated in Keras and "
            "is not streamed; use keras.layers.RMSNormalization. Received: "
            f"layer {layer.name!r}"
        )
    mean = ops.mean(x, axis=-1, keepdims=True)
    centered = x - mean
    variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
    y = centered * ops.rsqrt(variance + layer.epsilon)
    if layer.scale:
        y = y * ops.cast(layer.gamma, "float32")
    if layer.center:
        y = y + ops.cast(layer.beta, "float32")
    return ops.cast(y, dtype)


def dense(x, layer):
    """`keras.layers.Dense` on a `(batch, features)` input, with its
    activation in step form."""
    y = ops.matmul(x, ops.cast(layer.kernel, x.dtype))
    if layer.use_bias:
        y = y + ops.cast(layer.bias, y.dtype)
    fn = step_activation(layer.activation, f"{layer.name}.activation")
    return fn(y)
