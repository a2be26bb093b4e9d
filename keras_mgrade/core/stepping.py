"""Running the step graph: one step of a whole model, a layer stepped
over time, and the check that a model can stream.

`run_step(model, x_t, states)` runs one time step of a sequence model
(Sequential or functional, one input, one output) through the registered
per-step form of each of its layers (`keras_mgrade.core.registry`), with
the states of its stateful layers as one flat list. Inside a quantization
scope (`keras_mgrade.core.points`) every point of the step is
fake-quantized, the model input included. `run_sequence(model, x,
states)` computes the same as `run_step` looped over the time axis, with
every time step at once wherever the step graph allows it (quantization-
aware training).
"""

import keras
import numpy as np
from keras import ops

from keras_mgrade.core import points
from keras_mgrade.core import registry


def host_pooling_of(model):
    """The pooling the host can run in place of the model's last layer
    (`"mean"` for `TemporalMeanPooling`), or None."""
    kind = registry.find_kind(model.layers[-1])
    return None if kind is None else kind.host_pooling


def stateful_layers(model, host_pooling=False):
    """`[(layer, state shapes)]` of the layers of `model` that carry state,
    in `model.layers` order; without the final pooling layer when the host
    pools (`host_pooling=True`)."""
    last = model.layers[-1]
    found = []
    for layer in model.layers:
        if host_pooling and layer is last:
            continue
        shapes = registry.kind_of(layer).state_shapes(layer)
        if shapes:
            found.append((layer, [tuple(int(d) for d in s) for s in shapes]))
    return found


def state_specs(model, host_pooling=False):
    """`[(name, shape)]` of the step model's states (no batch axis).

    Names are `"<layer name>/<index>"`; the order is the order of the step
    model's state inputs and outputs.
    """
    return [
        (f"{layer.name}/{i}", shape)
        for layer, shapes in stateful_layers(model, host_pooling)
        for i, shape in enumerate(shapes)
    ]


def check_streamable(model, host_pooling=False):
    """Raises a ValueError naming what keeps `model` from streaming."""
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
        registry.kind_of(layer)  # raises for what cannot stream
    if host_pooling and host_pooling_of(model) is None:
        raise ValueError(
            "host_pooling=True needs a model whose last layer the host can "
            "pool (TemporalMeanPooling). Received: last layer "
            f"{model.layers[-1].name!r} of type "
            f"{type(model.layers[-1]).__name__}"
        )


def run_step(model, x_t, flat_states, host_pooling=False):
    """One time step of `model`: `(y_t, new_flat_states)`.

    Args:
        model: a streamable sequence model (`check_streamable`).
        x_t: its input at one time step, `(batch, *features)`.
        flat_states: the states of `stateful_layers(model, host_pooling)`,
            in order.
        host_pooling: bool, stop before the final pooling layer (the host
            pools the per-step outputs).

    Returns:
        `(y_t, new_flat_states)`.
    """
    return _walk(model, x_t, flat_states, host_pooling, _step)


def run_sequence(model, x, flat_states, host_pooling=False):
    """Every time step of `model` at once: `(y, new_flat_states)`, what
    `run_step` looped over the time axis of `x` computes, marking the same
    quantization points (on whole sequences).

    Each layer runs its registered `sequence` form; a layer without one
    runs its step on the time steps folded into the batch if it has no
    state, else its step scanned over time (`points.scan`). Stateless and
    position-wise layers (Dense, normalizations, activations) so see all
    time steps in one call, and only what is truly sequential (the MinGRU
    state update) is scanned.

    Args:
        model: a streamable sequence model (`check_streamable`).
        x: its input, `(batch, timesteps, *features)`.
        flat_states: the initial states, as for `run_step`.
        host_pooling: bool, as for `run_step`.

    Returns:
        `(y (batch, timesteps, ...), new_flat_states)`.
    """
    return _walk(model, x, flat_states, host_pooling, _sequence)


def _step(kind, layer, inputs, states):
    return kind.step(layer, inputs, states)


def _walk(model, x, flat_states, host_pooling, run):
    """`model`'s graph on `x` with each layer computed by `run(kind,
    layer, inputs, states) -> (y, new_states)` (`_step` or `_sequence`),
    the states of `stateful_layers` taken from and returned as a flat
    list, every quantization point marked."""
    stateful = stateful_layers(model, host_pooling)
    states, i = {}, 0
    for layer, shapes in stateful:
        states[id(layer)] = list(flat_states[i : i + len(shapes)])
        i += len(shapes)
    if points.quantizing():
        with points.within("inputs"):
            x = points.activation(None, "x", x)
    skipped = model.layers[-1] if host_pooling else None

    def operation_fn(op):
        if op is skipped:
            return lambda x, *args, **kwargs: x
        kind = registry.kind_of(op)

        def fn(*args, **kwargs):
            inputs = args[0] if len(args) == 1 else list(args)
            # The name scope names a converted file's tensors after the
            # layer (the exporter counts each layer's operators by it).
            with keras.name_scope(op.name), points.within(op.name):
                y, new = run(kind, op, inputs, states.get(id(op), []))
                if not kind.quantized_inside:
                    y = points.activation(op, "output", y)
            states[id(op)] = list(new)
            return y

        return fn

    if isinstance(model, keras.Sequential):
        y = x
        for layer in model.layers:
            y = operation_fn(layer)(y)
    else:
        y = model._run_through_graph([x], operation_fn=operation_fn)
        y = y[0] if isinstance(y, list | tuple) else y
    new = [s for layer, _ in stateful for s in states[id(layer)]]
    return y, new


def _sequence(kind, layer, inputs, states):
    if kind.sequence is not None:
        return kind.sequence(layer, inputs, states)
    if not kind.state_shapes(layer):
        return fold_time(lambda x: kind.step(layer, x, [])[0], inputs), []
    return points.scan(
        lambda x_t, s: kind.step(layer, x_t, s), list(states), inputs
    )


def fold_time(fn, inputs):
    """`fn` of a position-wise step on the time steps of `inputs` (a
    tensor or a list of tensors `(batch, timesteps, ...)`) folded into the
    batch: `fn(x (batch * timesteps, ...))` reshaped to `(batch,
    timesteps, ...)`."""
    first = inputs[0] if isinstance(inputs, list) else inputs
    batch, timesteps = ops.shape(first)[0], ops.shape(first)[1]

    def fold(x):
        return points.same_grid(ops.reshape(x, (-1,) + tuple(x.shape[2:])), x)

    def unfold(t):
        shape = (batch, timesteps) + tuple(t.shape[1:])
        return points.same_grid(ops.reshape(t, shape), t)

    folded = keras.tree.map_structure(fold, inputs)
    return keras.tree.map_structure(unfold, fn(folded))


def run_steps(step, inputs, states):
    """Runs `step(x_t, states) -> (y_t, new_states)` over the time axis of
    `inputs` `(batch, timesteps, ...)`, eagerly: the reference loop.

    Returns:
        `(outputs (batch, timesteps, ...), final states)` as numpy arrays.
    """
    states = [ops.convert_to_tensor(s) for s in states]
    outputs = []
    for t in range(inputs.shape[1]):
        y, states = step(ops.convert_to_tensor(inputs[:, t]), states)
        outputs.append(ops.convert_to_numpy(y))
    return np.stack(outputs, 1), [ops.convert_to_numpy(s) for s in states]
