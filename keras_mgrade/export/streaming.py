"""A sequence model as a stateful single-step model.

`streaming_model(model)` returns a `keras.Model` mapping
`[x_t, *states] -> [y_t, *new_states]`, batch 1 and static shapes, built
from the `step` of every keras_mgrade layer and the per-step forms of the
standard layers (`keras_mgrade.layers.streaming_ops`). `y_t` is what the
sequence model would output if the sequence ended at `t` (for a
classifier with mean pooling: the running mean of the per-step logits).
"""

import keras
import numpy as np
from keras import ops

from keras_mgrade import _utils
from keras_mgrade import core
from keras_mgrade import layers as _layers  # noqa: F401  (registrations)
from keras_mgrade.core import points
from keras_mgrade.core import state_specs  # noqa: F401  (public here too)


class StreamingStep(keras.layers.Layer):
    """One (or `steps_per_invoke`) step(s) of a sequence model.

    Called on `[x, *states]`, returns `[y, *new_states]`. Holds the source
    model, so its weights are shared (not copied).

    Args:
        model: the sequence model (see `streaming_model`).
        steps_per_invoke: int, steps unrolled per call; `x` is then
            `(batch, steps_per_invoke, ...)` and `y` is stacked likewise.
        host_pooling: bool, stop before a final pooling layer that the
            host runs (`TemporalMeanPooling`).
        quantized: None, or a `keras_mgrade.core.QuantizedSteps` of
            `model`: fake-quantize every quantization point with its
            learned ranges (the graph the int8 exporter converts).
    """

    def __init__(
        self,
        model,
        steps_per_invoke=1,
        host_pooling=False,
        quantized=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source = model
        self.steps_per_invoke = steps_per_invoke
        self.host_pooling = host_pooling
        self.quantized = quantized
        # Set by the exporter: replaces per-channel weights while the
        # converter traces (rounded weights, `export.rounding`).
        self.substitute = None

    def call(self, inputs):
        x, *flat = inputs
        if self.quantized is not None:
            scope = self.quantized.quantization_scope("export")
        else:
            scope = points.FoldWeights(self.substitute)
        outputs = []
        with points.scope(scope):
            for t in range(self.steps_per_invoke):
                x_t = x if self.steps_per_invoke == 1 else x[:, t]
                y, flat = core.run_step(
                    self.source, x_t, flat, self.host_pooling
                )
                outputs.append(y)
        y = outputs[0] if len(outputs) == 1 else ops.stack(outputs, axis=1)
        return [y] + list(flat)


def streaming_model(
    model,
    steps_per_invoke=1,
    host_pooling=False,
    batch_size=1,
):
    """The single-step streaming form of a sequence model.

    Args:
        model: a built `keras.Model` (Sequential or functional, one input,
            one output) whose every layer is a registered streamable kind
            (`keras_mgrade.core.registry`: the keras_mgrade layers, Dense,
            LayerNormalization, RMSNormalization, BatchNormalization,
            Activation, Dropout, Embedding, Add, Rescaling, causal Conv1D,
            ...). Any other
            layer raises a ValueError naming it and listing the registered
            kinds. A model trained with quantization-aware training
            (`keras_mgrade.quantization`) streams as the step graph of its
            source model with every quantization point fake-quantized at
            its learned range (what its int8 file computes).
        steps_per_invoke: int, time steps per call. Defaults to `1`: the
            input is `x_t` of shape `(batch_size, *features)`; with `k > 1`
            it is `(batch_size, k, *features)` and so is the output.
        host_pooling: bool, for a model ending in `TemporalMeanPooling`
            (the classifier's mean head): output the per-step values the
            pooling would average, and leave the mean to the host. Int8
            files use this (a running mean with an int8 count loses
            precision); the classification is the argmax of the mean.
        batch_size: int, the static batch size. Defaults to `1` (the
            deployed form); a larger value streams several sequences.

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
    quantized = core.quantized_steps(model)
    if quantized is not None:
        model = quantized.source
    core.check_streamable(model, host_pooling)
    step = StreamingStep(
        model,
        steps_per_invoke=steps_per_invoke,
        host_pooling=host_pooling,
        quantized=quantized,
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
    states = [
        keras.Input(
            batch_shape=(batch_size,) + shape,
            dtype="float32",
            name=f"state_{index}",
        )
        for index, (_, shape) in enumerate(
            core.state_specs(model, host_pooling)
        )
    ]
    outputs = step([x] + states)
    return keras.Model([x] + states, outputs, name=f"{model.name}_step")


def initial_states(step_model):
    """Zero initial states for a model from `streaming_model`, as numpy."""
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
    states = initial_states(step_model) if states is None else states
    k = step_model.get_layer("streaming_step").steps_per_invoke
    outputs = []
    for t in range(0, sequence.shape[1], k):
        x = sequence[:, t] if k == 1 else sequence[:, t : t + k]
        y, *states = as_list(
            step_model(
                [ops.convert_to_tensor(v) for v in [x] + list(states)],
                training=False,
            )
        )
        outputs.append(ops.convert_to_numpy(y))
        states = [ops.convert_to_numpy(s) for s in states]
    if k == 1:
        return np.stack(outputs, 1), states
    return np.concatenate(outputs, 1), states


def as_list(outputs):
    """The outputs of a step model as a list (Keras returns a lone tensor
    for a model without states)."""
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]
