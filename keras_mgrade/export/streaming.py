"""A sequence model as a stateful single-step model.

`streaming_model(model)` returns a `keras.Model` mapping
`[x_t, *states] -> [y_t, *new_states]`, batch 1 and static shapes, built
from the `step` of every keras_mgrade layer and the per-step forms of the
standard layers (`keras_mgrade.layers.streaming_ops`). `y_t` is what the
sequence model would output if the sequence ended at `t` (for a
classifier with mean pooling: the running mean of the per-step logits).
"""

import keras
from keras import ops

from keras_mgrade import _utils
from keras_mgrade.layers import streaming_ops
from keras_mgrade.layers.temporal_mean_pooling import TemporalMeanPooling
from keras_mgrade.quantization import points

# Layers applied per step as they are (no time axis, no state).
_AS_IS = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Rescaling,
    keras.layers.Embedding,
)
_IDENTITY = (keras.layers.Dropout, keras.layers.InputLayer)
# Elementwise `keras.ops` operations that appear in functional graphs.
_ELEMENTWISE_OPS = ("Add", "Subtract", "Multiply", "Maximum", "Minimum")

SUPPORTED = (
    "keras_mgrade layers (MGRADE, DCLSConv1D, MinGRU, TemporalMeanPooling, "
    "LastTimestep), Dense, LayerNormalization, RMSNormalization, "
    "Activation, Dropout, Embedding, Add, Subtract, Multiply, Rescaling"
)


def is_stateful(layer):
    """Whether `layer` follows the streaming contract (has `step`)."""
    return hasattr(layer, "step") and hasattr(layer, "state_shapes")


def stateful_layers(model):
    """The layers of `model` that carry state, in `model.layers` order."""
    return [
        layer
        for layer in model.layers
        if is_stateful(layer) and len(layer.state_shapes)
    ]


def state_specs(model):
    """`[(name, shape)]` of the step model's states (no batch axis).

    Names are `"<layer name>/<index>"`; the order is the order of the step
    model's state inputs and outputs.
    """
    specs = []
    for layer in stateful_layers(model):
        for i, shape in enumerate(layer.state_shapes):
            specs.append((f"{layer.name}/{i}", tuple(int(d) for d in shape)))
    return specs


def check_streamable(model, without_pooling=False):
    """Raises a ValueError naming the first layer that cannot be streamed."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            "Expected a keras.Model. Received: model of type "
            f"{type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"The model must be built before streaming. Received: model "
            f"{model.name!r} (not built)"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "Only models with one input and one output can be streamed. "
            f"Received: {len(model.inputs)} inputs and {len(model.outputs)} "
            f"outputs in model {model.name!r}"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) < 2:
        raise ValueError(
            "The model input must have a time axis, (batch, timesteps, ...)."
            f" Received: input shape {shape}"
        )
    if any(d is None for d in shape[2:]):
        raise ValueError(
            "The per-step input shape must be static to stream. Received: "
            f"input shape {shape} (a None after the time axis)"
        )
    for layer in model.layers:
        _step_fn(layer, {})  # raises for unsupported layers
    if without_pooling and not isinstance(
        model.layers[-1], TemporalMeanPooling
    ):
        raise ValueError(
            "pooling on the host needs a model that ends with "
            f"TemporalMeanPooling. Received: last layer "
            f"{model.layers[-1].name!r}"
        )


def _step_fn(layer, states):
    """The per-step callable of `layer`; `states` maps layer id -> list."""
    if is_stateful(layer):

        def run(x, *args, **kwargs):
            y, new = layer.step(x, states.get(id(layer), []))
            states[id(layer)] = list(new)
            return y

        return run
    if isinstance(layer, _IDENTITY):
        return lambda x, *a, **k: x
    if isinstance(layer, keras.layers.Dense):
        return lambda x, *a, **k: streaming_ops.dense(x, layer)
    if isinstance(
        layer, keras.layers.LayerNormalization | keras.layers.RMSNormalization
    ):
        return lambda x, *a, **k: streaming_ops.layer_norm(x, layer)
    if isinstance(layer, keras.layers.Activation):
        fn = streaming_ops.step_activation(
            layer.activation, f"{layer.name}.activation", owner=layer
        )
        return lambda x, *a, **k: fn(x)
    if isinstance(layer, keras.layers.Embedding):
        return lambda x, *a, **k: layer(ops.cast(x, "int32"))
    if isinstance(layer, _AS_IS):
        return lambda *a, **k: layer(*a)
    if not isinstance(layer, keras.layers.Layer) and (
        type(layer).__name__ in _ELEMENTWISE_OPS
    ):
        return lambda *a, **k: layer(*a)
    raise ValueError(
        f"Layer {layer.name!r} of type {type(layer).__name__} cannot be "
        f"streamed. Supported: {SUPPORTED}."
    )


# Layers whose step has no quantization points of its own: their output
# is quantized as one point (Add, Rescaling, elementwise operations, ...).
_QUANTIZED_INSIDE = (
    keras.layers.Dense,
    keras.layers.LayerNormalization,
    keras.layers.RMSNormalization,
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.InputLayer,
)


def _layers_with_state(model, without_pooling):
    return [
        layer
        for layer in stateful_layers(model)
        if not (without_pooling and layer is model.layers[-1])
    ]


def run_step(model, x_t, flat_states, without_pooling=False):
    """One time step of `model`: `(y_t, new_flat_states)`.

    `flat_states` lists the states of the model's stateful layers in
    `stateful_layers` order (see `state_specs`). Inside a quantization scope
    (`keras_mgrade.quantization`) the step's quantization points are
    fake-quantized; the input is a point of its own.
    """
    layers_with_state = _layers_with_state(model, without_pooling)
    states, i = {}, 0
    for layer in layers_with_state:
        n = len(layer.state_shapes)
        states[id(layer)] = list(flat_states[i : i + n])
        i += n
    if points.quantizing():
        with points.within("inputs"):
            x_t = points.activation(None, "x", x_t)
    last = model.layers[-1]

    def operation_fn(op):
        if op is last and without_pooling:
            return lambda x, *a, **k: x
        fn = _step_fn(op, states)
        if not points.quantizing():
            return fn

        def quantized(*args, **kwargs):
            with points.within(op.name):
                y = fn(*args, **kwargs)
                if not (is_stateful(op) or isinstance(op, _QUANTIZED_INSIDE)):
                    y = points.activation(op, "output", y)
            return y

        return quantized

    if isinstance(model, keras.Sequential):
        y = x_t
        for layer in model.layers:
            if not isinstance(layer, keras.layers.InputLayer):
                y = operation_fn(layer)(y)
    else:
        y = model._run_through_graph([x_t], operation_fn=operation_fn)
        y = y[0] if isinstance(y, list | tuple) else y
    new = [s for layer in layers_with_state for s in states[id(layer)]]
    return y, new


class StreamingStep(keras.layers.Layer):
    """One (or `steps_per_invoke`) step(s) of a sequence model.

    Called on `[x, *states]`, returns `[y, *new_states]`. Holds the source
    model, so its weights are shared (not copied).

    Args:
        model: the sequence model (see `streaming_model`).
        steps_per_invoke: int, steps unrolled per call; `x` is then
            `(batch, steps_per_invoke, ...)` and `y` is stacked likewise.
        without_pooling: bool, stop before a final `TemporalMeanPooling`
            (the host keeps the running mean).
        state_ranges: None, or one `(min, max)` per state: fake-quantize
            each state input and output to that range.
        quantizer: None, or a `keras_mgrade.quantization.QuantizedModel`
            of `model`: fake-quantize every quantization point with its
            learned ranges (the graph the int8 exporter converts).
    """

    def __init__(
        self,
        model,
        steps_per_invoke=1,
        without_pooling=False,
        state_ranges=None,
        quantizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source = model
        self.steps_per_invoke = steps_per_invoke
        self.without_pooling = without_pooling
        self.layers_with_state = _layers_with_state(model, without_pooling)
        self.state_ranges = state_ranges
        self.quantizer = quantizer

    def _fake_quant(self, value, index):
        if self.state_ranges is None:
            return value
        low, high = self.state_ranges[index]
        return keras.quantizers.fake_quant_with_min_max_vars(
            value, low, high, num_bits=8
        )

    def call(self, inputs):
        x, *flat = inputs
        flat = [self._fake_quant(s, i) for i, s in enumerate(flat)]
        if self.quantizer is not None:
            context = points.scope(self.quantizer.quantization_scope("export"))
        else:
            context = points.scope(points.FoldWeights())
        outputs = []
        with context:
            for t in range(self.steps_per_invoke):
                x_t = x if self.steps_per_invoke == 1 else x[:, t]
                y, flat = run_step(self.source, x_t, flat, self.without_pooling)
                outputs.append(y)
        y = outputs[0] if len(outputs) == 1 else ops.stack(outputs, axis=1)
        return [y] + [self._fake_quant(s, i) for i, s in enumerate(flat)]


def streaming_model(
    model,
    steps_per_invoke=1,
    without_pooling=False,
    batch_size=1,
    state_ranges=None,
):
    """The single-step streaming form of a sequence model.

    Args:
        model: a built `keras.Model` (Sequential or functional, one input,
            one output) made of keras_mgrade layers and per-step layers
            (Dense, LayerNormalization, RMSNormalization, Activation,
            Dropout, Embedding, Add, Rescaling, the builders' heads). Any
            other layer raises a ValueError naming it.
        steps_per_invoke: int, time steps per call. Defaults to `1`: the
            input is `x_t` of shape `(batch_size, *features)`; with `k > 1`
            it is `(batch_size, k, *features)` and so is the output.
        without_pooling: bool, for a model ending in `TemporalMeanPooling`
            (the classifier's mean head): output the per-step values the
            pooling would average, and leave the mean to the caller.
            Int8 files use this (a running mean with an int8 count loses
            precision); the classification is the argmax of the mean.
        batch_size: int, the static batch size. Defaults to `1` (the
            deployed form); a larger value streams several sequences.
        state_ranges: None, or one `(min, max)` per state (see
            `StreamingStep`).

    A `keras_mgrade.quantization.QuantizedModel` streams as the step graph
    of its source model with every quantization point fake-quantized at
    its learned range (what its int8 file computes).

    Returns:
        A `keras.Model` with inputs `[x_t, *states]` and outputs
        `[y_t, *new_states]`; state `i` is named as in `state_specs`.
        Initial states are zeros.

    Example:

    >>> import numpy as np
    >>> from keras_mgrade.models import mgrade_classifier
    >>> model = mgrade_classifier(2, 3, units=8, num_layers=1, max_delay=4,
    ...                           kernel_taps=2)
    >>> step = streaming_model(model)
    >>> [tuple(t.shape) for t in step.inputs]
    [(1, 2), (1, 3, 8), (1, 8), (1, 3), (1, 1)]
    """
    steps_per_invoke = _utils.check_positive_int(
        "steps_per_invoke", steps_per_invoke
    )
    batch_size = _utils.check_positive_int("batch_size", batch_size)
    quantizer = None
    if hasattr(model, "quantization_scope"):
        quantizer, model = model, model.source
    check_streamable(model, without_pooling)
    step = StreamingStep(
        model,
        steps_per_invoke=steps_per_invoke,
        without_pooling=without_pooling,
        state_ranges=state_ranges,
        quantizer=quantizer,
        name="streaming_step",
    )
    in_spec = model.inputs[0]
    feature_shape = tuple(in_spec.shape[2:])
    if steps_per_invoke > 1:
        feature_shape = (steps_per_invoke,) + feature_shape
    x = keras.Input(
        batch_shape=(batch_size,) + feature_shape,
        dtype=in_spec.dtype,
        name="x_t",
    )
    states = []
    index = 0
    for layer in step.layers_with_state:
        for shape in layer.state_shapes:
            states.append(
                keras.Input(
                    batch_shape=(batch_size,) + tuple(shape),
                    dtype="float32",
                    name=f"state_{index}",
                )
            )
            index += 1
    outputs = step([x] + states)
    return keras.Model([x] + states, outputs, name=f"{model.name}_step")


def initial_states(step_model):
    """Zero initial states for a model from `streaming_model`, as numpy."""
    import numpy as np

    return [np.zeros(tuple(t.shape), "float32") for t in step_model.inputs[1:]]


def stream(step_model, sequence, states=None):
    """Runs a step model over a whole sequence (a Keras reference loop).

    Args:
        step_model: from `streaming_model` (batch `B`, `k` steps per call).
        sequence: array `(B, T, *features)` with `T` a multiple of `k`.
        states: initial states (default zeros).

    Returns:
        `(outputs (B, T, ...), final states)` as numpy arrays.
    """
    import numpy as np

    states = initial_states(step_model) if states is None else states
    k = 1
    if len(step_model.inputs[0].shape) == len(sequence.shape):
        k = int(step_model.inputs[0].shape[1])
    outputs = []
    for t in range(0, sequence.shape[1], k):
        x = sequence[:, t] if k == 1 else sequence[:, t : t + k]
        y, *states = step_model(
            [ops.convert_to_tensor(v) for v in [x] + list(states)],
            training=False,
        )
        outputs.append(ops.convert_to_numpy(y))
        states = [ops.convert_to_numpy(s) for s in states]
    axis_outputs = (
        np.stack(outputs, 1) if k == 1 else np.concatenate(outputs, 1)
    )
    return axis_outputs, states
