"""`keras.layers.Conv1D(padding="causal")` as a streamable layer.

This file is all it takes to stream a stock Keras layer: a step function,
the shapes of its states, its deploy cost, and one `register_streaming`
call. `streaming_model`, `keras_mgrade.memory`, quantization-aware
training and the TFLite exporter then handle every causal `Conv1D`
(any `dilation_rate`) without knowing about it. Use it as the template for
a layer of your own.

Per step the layer keeps a FIFO of its last `(kernel_size - 1) *
dilation_rate` inputs (oldest first). The window `[fifo, x_t]` is sampled
every `dilation_rate` steps, which gives the `kernel_size` inputs the
kernel multiplies, and one matrix product computes the output:

    y_t = act(sum_j kernel[j] x[t - (kernel_size - 1 - j) d] + bias)

In a TFLite file: CONCATENATION, STRIDED_SLICE, RESHAPE, FULLY_CONNECTED.

Example:

>>> import numpy as np
>>> from keras_mgrade.core import run_steps
>>> conv = keras.layers.Conv1D(3, 4, padding="causal", dilation_rate=2)
>>> x = np.random.default_rng(0).normal(size=(1, 12, 2)).astype("float32")
>>> expected = keras.ops.convert_to_numpy(conv(x))
>>> [tuple(s) for s in state_shapes(conv)]
[(6, 2)]
>>> y, _ = run_steps(lambda x_t, s: step(conv, x_t, s), x,
...                  [np.zeros((1, 6, 2), "float32")])
>>> bool(np.allclose(y, expected, atol=1e-5))
True
"""

import keras
from keras import ops

from keras_mgrade.core import points
from keras_mgrade.core.registry import LayerCost
from keras_mgrade.core.registry import register_streaming
from keras_mgrade.core.stepping import fold_time
from keras_mgrade.layers import streaming_ops


def check(layer):
    """Raises a ValueError for a Conv1D that cannot stream (not causal,
    strided, grouped or channels-first)."""
    options = {
        "padding": (layer.padding, "causal"),
        "strides": (tuple(layer.strides), (1,)),
        "groups": (layer.groups, 1),
        "data_format": (layer.data_format, "channels_last"),
    }
    for name, (got, wanted) in options.items():
        if got != wanted:
            raise ValueError(
                f"Only a causal, unstrided, ungrouped, channels-last Conv1D "
                f"streams: {name} must be {wanted!r}. Received: {name}="
                f"{got!r} for layer {layer.name!r}"
            )
    streaming_ops.step_activation(layer.activation, f"{layer.name}.activation")


def _span(layer):
    return (layer.kernel_size[0] - 1) * layer.dilation_rate[0]


def state_shapes(layer):
    """`[(span, channels)]`, the FIFO of the last `span = (kernel_size - 1)
    * dilation_rate` inputs; `[]` when the span is 0."""
    span = _span(layer)
    return [(span, int(layer.kernel.shape[1]))] if span else []


def step(layer, inputs, states):
    """One time step of `layer`: `(y_t, [new_fifo])`."""
    span = _span(layer)
    # The input, the FIFO and the window share one quantization range: the
    # int8 FIFO is a copy of int8 samples.
    x = ops.expand_dims(points.state(layer, "fifo", inputs), 1)
    new_states = []
    window = x
    if span:
        fifo = points.state(layer, "fifo", states[0])
        window = ops.concatenate([ops.cast(fifo, x.dtype), x], axis=1)
        window = points.state(layer, "fifo", window)
        new_states = [window[:, 1:]]
    return _window_output(layer, window), new_states


def sequence(layer, inputs, states):
    """`step` over every time step of `inputs` `(batch, timesteps,
    channels)` at once, with the same quantization points: each step's
    window is a slice of `[fifo, inputs]`, folded into the batch."""
    span = _span(layer)
    padded = points.state(layer, "fifo", inputs)
    new_states = []
    if span:
        fifo = points.state(layer, "fifo", states[0])
        padded = ops.concatenate([ops.cast(fifo, padded.dtype), padded], 1)
        padded = points.state(layer, "fifo", padded)
        new_states = [padded[:, -span:]]
    windows = ops.stack(
        [padded[:, k : (k - span) or None] for k in range(span + 1)], axis=2
    )
    windows = points.same_grid(windows, padded)
    y = fold_time(lambda w: _window_output(layer, w), windows)
    return y, new_states


def _window_output(layer, window):
    """The output of the window `[fifo, x_t]` `(batch, span + 1,
    channels)`."""
    d = layer.dilation_rate[0]
    size, channels, filters = (int(n) for n in layer.kernel.shape)
    taps = window[:, ::d] if d > 1 else window
    flat = ops.reshape(taps, (-1, size * channels))
    kernel = points.weight(
        layer,
        "kernel",
        lambda: ops.reshape(
            ops.cast(layer.kernel, flat.dtype), (size * channels, filters)
        ),
        axis=-1,
    )
    y = ops.matmul(flat, kernel)
    if layer.use_bias:
        y = y + ops.cast(layer.bias, y.dtype)
    y = points.requantized(layer, "linear", y, (window, kernel))
    activation = streaming_ops.step_activation(
        layer.activation, f"{layer.name}.activation", owner=layer
    )
    return activation(y)


def cost(layer, nbytes):
    """Deploy cost: the kernel and bias, the FIFO, the window and
    output."""
    size, channels, filters = (int(n) for n in layer.kernel.shape)
    params = size * channels * filters
    pbytes = params * nbytes
    if layer.use_bias:
        params += filters
        pbytes += filters * (4 if nbytes == 1 else nbytes)
    span = _span(layer)
    return LayerCost(
        parameters=params,
        parameter_bytes=pbytes,
        state=span * channels,
        working_set=(span + 1) * channels + size * channels + filters,
    )


register_streaming(
    keras.layers.Conv1D,
    step=step,
    state_shapes=state_shapes,
    cost=cost,
    quantized_inside=True,
    check=check,
    sequence=sequence,
)
