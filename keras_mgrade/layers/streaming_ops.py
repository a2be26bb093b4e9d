"""Per-step forms of standard Keras layers, written with ops that TFLite
Micro runs in int8, and their registration as streamable kinds.

Used by `MGRADE.step` and, through the registry
(`keras_mgrade.core.registry`), by everything that steps a model
(Dense, LayerNormalization, Activation, ...).
"""

import keras
from keras import ops

from keras_mgrade.core import points
from keras_mgrade.core.registry import LayerCost
from keras_mgrade.core.registry import matrix_cost
from keras_mgrade.core.registry import register_streaming
from keras_mgrade.core.registry import size

# Activations with an exact TFLite Micro int8 lowering, written as
# `fn(x, q)`: `q(name, tensor, fixed=None, inputs=None)` marks each tensor
# the int8 graph stores (a quantization point; the identity for float
# streaming); `inputs` names the two factors of a tensor an int8 MUL
# computes (see `points.requantized`).
_SIG = points.SIGMOID_RANGE


def _hard_swish(x, q):
    shifted = q("shift", x + 3.0)
    relu6 = q("relu6", ops.relu6(shifted))
    return q("output", q("product", x * relu6, inputs=(x, relu6)) / 6.0)


def _swish(x, q):
    sig = q("sigmoid", ops.sigmoid(x), _SIG)
    return q("output", x * sig, inputs=(x, sig))


def _sigmoid_gelu(x, q):
    # x * sigmoid(1.702 x), as keras_mgrade.activations.
    sig = q("sigmoid", ops.sigmoid(q("scaled", 1.702 * x)), _SIG)
    return q("output", x * sig, inputs=(x, sig))


_STEP_ACTIVATIONS = {
    "linear": lambda x, q: x,
    "relu": lambda x, q: q("output", ops.relu(x)),
    "relu6": lambda x, q: q("output", ops.relu6(x)),
    "sigmoid": lambda x, q: q("output", ops.sigmoid(x), _SIG),
    "tanh": lambda x, q: q("output", ops.tanh(x), points.TANH_RANGE),
    "softmax": lambda x, q: q("output", ops.softmax(x, axis=-1), _SIG),
    "silu": _swish,
    "swish": _swish,
    "hard_silu": _hard_swish,
    "hard_swish": _hard_swish,
    "sigmoid_gelu": _sigmoid_gelu,
    "leaky_relu": lambda x, q: q("output", ops.leaky_relu(x)),
}


def activation_name(activation):
    """The registered name of a Keras activation function (or None).

    Read with `keras.saving.get_registered_name` rather than
    `keras.activations.serialize`, which imports TensorFlow."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    try:
        name = keras.saving.get_registered_name(activation)
    except AttributeError:  # not a function or class
        return None
    return name.split(">")[-1]


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

    def q(name, x, fixed=None, inputs=None):
        name = f"{where}.{name}"
        if inputs is not None:
            return points.requantized(owner, name, x, inputs)
        return points.activation(owner, name, x, fixed=fixed)

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
            last axis (the feature axis: see `check_norm`).

    Returns:
        The normalised tensor, in the dtype of `x`.
    """
    dtype = x.dtype
    source = x  # the tensor an earlier quantization point returned
    x = ops.cast(x, "float32")
    n = int(x.shape[-1])

    def q(name, value):
        return points.activation(layer, name, value)

    def mul(name, a, b, inputs=None):  # an int8 MUL of points a and b
        inputs = (a, b) if inputs is None else inputs
        return points.requantized(layer, name, a * b, inputs)

    def mean(name, value, inputs):
        value = ops.mean(value, axis=-1, keepdims=True)
        return points.requantized(layer, name, value, inputs, count=n)

    def w(name):
        value = getattr(layer, name)
        return points.operand(layer, name, lambda: ops.cast(value, "float32"))

    if isinstance(layer, keras.layers.RMSNormalization):
        square = mul("square", x, x, (source, source))
        mean_square = mean("mean_square", square, (square,))
        inv = q("rsqrt", _inverse_root(mean_square, layer))
        y = mul("normalized", x, inv, (source, inv))
        y = mul("output", y, w("scale"))
        return ops.cast(y, dtype)
    mu = mean("mean", x, (source,))
    centered = q("centered", x - mu)
    square = mul("square", centered, centered)
    variance = mean("variance", square, (square,))
    inv = q("rsqrt", _inverse_root(variance, layer))
    y = mul("normalized", centered, inv)
    if layer.scale:
        y = mul("scaled", y, w("gamma"))
    if layer.center:
        y = q("output", y + w("beta"))
    return ops.cast(y, dtype)


def _inverse_root(variance, layer):
    """`rsqrt(variance + epsilon)`. In an int8 graph the epsilon is far
    below half a step of the variance's grid, so the int8 file computes
    `rsqrt(variance)` (the exporter drops the ADD of the epsilon), and so
    does its quantization-aware simulation: there, a variance that rounds
    to 0 gives the largest value, as TFLite Micro's int8 RSQRT does."""
    if not points.quantizing():
        return ops.rsqrt(variance + layer.epsilon)
    if points.exporting():
        return ops.rsqrt(variance)
    return ops.rsqrt(ops.maximum(variance, layer.epsilon))


def dense(
    x,
    layer,
    input_scale=1.0,
    output_scale=1.0,
    input_affine=None,
    output_affine=None,
):
    """`keras.layers.Dense` on a `(batch, features)` input, with its
    activation in step form.

    The scales fold factors into the weights, exactly: the input is
    `input_scale` times the layer's usual input, and the result (before
    the activation) is `output_scale` times the layer's usual result.
    The affines fold per-channel maps into the kernel and the bias. They
    are functions returning `(scale, shift)` (called inside the weight
    hooks, so that an exporter evaluates them into constants): with
    `input_affine` giving `(a, b)` the layer's usual input is
    `(x / input_scale) * a + b`, with `output_affine` giving `(c, d)` the
    result (before the activation) is `(usual_result * c + d) *
    output_scale`. A folded normalisation (`batch_norm_affine`) so costs
    no operator.
    """
    factor = output_scale / input_scale

    def kernel_fn():
        kernel = ops.cast(layer.kernel, "float32")
        if input_affine is not None:
            kernel = kernel * ops.expand_dims(input_affine()[0], -1)
        if output_affine is not None:
            kernel = kernel * output_affine()[0]
        kernel = ops.cast(kernel, x.dtype)
        return kernel if factor == 1.0 else kernel * factor

    kernel = points.weight(layer, "kernel", kernel_fn, axis=-1)
    y = ops.matmul(x, kernel)
    if input_affine is None and output_affine is None:
        if layer.use_bias:
            bias = ops.cast(layer.bias, y.dtype)
            y = y + (bias if output_scale == 1.0 else bias * output_scale)
    else:

        def bias_fn():
            bias = ops.zeros((layer.units,), "float32")
            if layer.use_bias:
                bias = ops.cast(layer.bias, "float32")
            if input_affine is not None:
                kernel = ops.cast(layer.kernel, "float32")
                bias = bias + ops.matmul(input_affine()[1], kernel)
            if output_affine is not None:
                scale, shift = output_affine()
                bias = bias * scale + shift
            return ops.cast(bias * output_scale, y.dtype)

        y = y + points.folded(bias_fn)
    # FULLY_CONNECTED requantizes like MUL (per output channel).
    y = points.requantized(layer, "linear", y, (x, kernel))
    fn = step_activation(
        layer.activation, f"{layer.name}.activation", owner=layer
    )
    return fn(y)


def batch_norm_affine(layer):
    """The inference-time map of a `keras.layers.BatchNormalization` as a
    per-channel affine `x * scale + shift`.

    `scale = gamma / sqrt(moving_variance + epsilon)` and `shift = beta -
    moving_mean * scale` (float32 tensors of the channel width): what the
    layer computes outside training, folded into two constants.
    """
    variance = ops.cast(layer.moving_variance, "float32")
    scale = ops.rsqrt(variance + layer.epsilon)
    if layer.scale:
        scale = scale * ops.cast(layer.gamma, "float32")
    shift = -ops.cast(layer.moving_mean, "float32") * scale
    if layer.center:
        shift = shift + ops.cast(layer.beta, "float32")
    return scale, shift


def batch_norm(x, layer):
    """`keras.layers.BatchNormalization` over the last axis at inference:
    one MUL and one ADD by constants (`batch_norm_affine`), no MEAN or
    RSQRT. The scale is a per-tensor int8 weight (point `"scale"`).

    Args:
        x: tensor `(..., features)`.
        layer: a built `BatchNormalization` over the last axis.

    Returns:
        The normalised tensor, in the dtype of `x`.
    """
    dtype = x.dtype
    x = ops.cast(x, "float32")
    scale = points.weight(layer, "scale", lambda: batch_norm_affine(layer)[0])
    shift = points.folded(lambda: batch_norm_affine(layer)[1])
    y = points.activation(layer, "scaled", x * scale)
    y = points.activation(layer, "output", y + shift)
    return ops.cast(y, dtype)


def _feature_axis_only(layer):
    """Whether `layer.axis` is the last axis of its input, and only it."""
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    try:
        rank = len(layer.input.shape)
    except (AttributeError, ValueError):
        rank = None
    return len(axis) == 1 and axis[0] in (
        [-1] if rank is None else [-1, rank - 1]
    )


def check_norm(layer):
    """Raises a ValueError unless `layer` normalizes over the feature axis
    only (the last axis of its input): over time it would not be causal."""
    if not _feature_axis_only(layer):
        raise ValueError(
            "Only normalization over the feature axis (the last axis) can be "
            "streamed; over the time axis it is not causal. Received: "
            f"axis={layer.axis} for layer {layer.name!r} of type "
            f"{type(layer).__name__}"
        )
    if getattr(layer, "rms_scaling", False):
        raise ValueError(
            "LayerNormalization(rms_scaling=True) is deprecated in Keras and "
            "is not streamed; use keras.layers.RMSNormalization. Received: "
            f"layer {layer.name!r}"
        )


def check_batch_norm(layer):
    """Raises a ValueError unless `layer` normalizes each feature (the last
    axis of its input): its inference map is then one affine per feature."""
    if not _feature_axis_only(layer):
        raise ValueError(
            "Only BatchNormalization of the feature axis (the last axis) can "
            f"be streamed. Received: axis={layer.axis} for layer "
            f"{layer.name!r}"
        )
    if getattr(layer, "renorm", False):
        raise ValueError(
            "BatchNormalization(renorm=True) is not streamed. Received: "
            f"layer {layer.name!r}"
        )


def _width(layer):
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return 0
    return int(shape[-1] or 0)


def _stateless(fn):
    """A registry step for a layer without state: `fn(layer, inputs)`."""
    return lambda layer, inputs, states: (fn(layer, inputs), [])


def _activation_step(layer, inputs):
    fn = step_activation(
        layer.activation, f"{layer.name}.activation", owner=layer
    )
    return fn(inputs)


def _check_activation(layer):
    step_activation(layer.activation, f"{layer.name}.activation")


def _dense_cost(layer, nbytes):
    return matrix_cost(
        layer.kernel,
        layer.bias,
        nbytes,
        working_set=layer.units + layer.kernel.shape[0],
    )


def _norm_cost(layer, nbytes):
    n = sum(size(w.shape) for w in layer.weights)
    width = int(layer.weights[0].shape[-1]) if layer.weights else 0
    # x - mean, its square, and the result.
    return LayerCost(n, n * nbytes, 0, 3 * width)


def _batch_norm_cost(layer, nbytes):
    width = int(layer.moving_mean.shape[-1])
    # The folded scale and shift; x * scale and the result.
    return LayerCost(2 * width, 2 * width * nbytes, 0, 2 * width)


def _embedding_cost(layer, nbytes):
    n = size(layer.embeddings.shape)
    return LayerCost(n, n * nbytes, 0, layer.output_dim)


def _elementwise_cost(layer, nbytes):
    return LayerCost(working_set=2 * _width(layer))


def _identity(layer, inputs):
    return inputs


def _call(layer, inputs):
    return layer(inputs)


def _call_operation(op, inputs):
    return op(*inputs) if isinstance(inputs, list) else op(inputs)


def _embedding(layer, inputs):
    # A plain gather of int32 ids (GATHER in a TFLite file). Keras' own
    # Embedding.call wraps negative ids first, which TensorFlow lowers to
    # LESS and SELECT: TFLite Micro runs neither.
    ids = ops.cast(inputs, "int32")
    table = points.weight(layer, "embeddings", lambda: layer.embeddings)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(table, ids)
    return ops.take(table, ids, axis=0)


register_streaming(
    keras.layers.InputLayer,
    step=_stateless(_identity),
    cost=lambda layer, nbytes: LayerCost(),
    quantized_inside=True,
)
register_streaming(
    keras.layers.Dropout,
    step=_stateless(_identity),
    cost=lambda layer, nbytes: LayerCost(),
    quantized_inside=True,
)
register_streaming(
    keras.layers.Dense,
    step=_stateless(lambda layer, x: dense(x, layer)),
    cost=_dense_cost,
    quantized_inside=True,
)
for _norm in (keras.layers.LayerNormalization, keras.layers.RMSNormalization):
    register_streaming(
        _norm,
        step=_stateless(lambda layer, x: layer_norm(x, layer)),
        cost=_norm_cost,
        quantized_inside=True,
        check=check_norm,
    )
register_streaming(
    keras.layers.BatchNormalization,
    step=_stateless(lambda layer, x: batch_norm(x, layer)),
    cost=_batch_norm_cost,
    quantized_inside=True,
    check=check_batch_norm,
)
register_streaming(
    keras.layers.Activation,
    step=_stateless(_activation_step),
    cost=_elementwise_cost,
    quantized_inside=True,
    check=_check_activation,
)
register_streaming(
    keras.layers.Embedding, step=_stateless(_embedding), cost=_embedding_cost
)
for _layer in (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Rescaling,
):
    register_streaming(_layer, step=_stateless(_call), cost=_elementwise_cost)
# Elementwise `keras.ops` operations of functional graphs (not layers).
for _name in ("Add", "Subtract", "Multiply", "Maximum", "Minimum"):
    register_streaming(_name, step=_stateless(_call_operation))
