"""Activations that run on TFLite Micro in int8."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mgrade")
def sigmoid_gelu(x):
    """GELU in its sigmoid form, `x * sigmoid(1.702 x)`.

    TFLite Micro has no kernel for the `GELU` builtin; this form lowers to
    `MUL` and `LOGISTIC`, which it runs in int8. It is within 0.021 of the
    exact GELU everywhere. The MGRADE block uses it in training and in
    streaming alike, so the two agree exactly.

    Args:
        x: input tensor.

    Returns:
        A tensor of the same shape and dtype.

    Example:

    >>> y = sigmoid_gelu(keras.ops.convert_to_tensor([-1.0, 0.0, 2.0]))
    >>> [round(float(v), 3) for v in keras.ops.convert_to_numpy(y)]
    [-0.154, 0.0, 1.936]

    Reference:
        Hendrycks and Gimpel, "Gaussian Error Linear Units (GELUs)", 2016,
        https://arxiv.org/abs/1606.08415 (section 2: `x sigma(1.702 x)`).
    """
    return x * ops.sigmoid(1.702 * x)


def get(identifier):
    """Like `keras.activations.get`, and also knows `"sigmoid_gelu"`."""
    if identifier == "sigmoid_gelu":
        return sigmoid_gelu
    return keras.activations.get(identifier)
