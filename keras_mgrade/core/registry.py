"""The registry of streamable layer kinds.

Everything that turns a sequence model into its step graph — the
streaming model, the memory footprint, quantization-aware training and
the exporter — asks this registry what a layer does per time step. One
registration per layer type says:

- `step(layer, inputs, states) -> (outputs, new_states)`: the layer's
  per-step form (TFLite Micro int8 ops only);
- `state_shapes(layer)`: its states, without the batch axis;
- `cost(layer, nbytes) -> LayerCost`: its deploy footprint in elements and
  bytes (`nbytes`: 1 for int8, 4 for float32);
- `quantized_inside`: whether its step marks its own quantization points
  (otherwise its output is quantized as one point);
- `host_pooling`: for a final pooling layer that the host can run instead
  of the file (`"mean"`), or None;
- `check(layer)`: raises a ValueError if this instance cannot stream;
- `sequence(layer, inputs, states) -> (outputs, new_states)`: optionally,
  what `step` computes over all time steps at once (inputs and outputs
  `(batch, timesteps, ...)`), with the same quantization points, for
  quantization-aware training (`keras_mgrade.core.run_sequence`). Without
  it a stateless kind's step runs on the time steps folded into the
  batch, and a stateful kind's step is scanned over time.

A `StreamingLayer` subclass needs none of `step`/`state_shapes`/
`sequence`: its own methods are used (`step_sequence` if it has one; a
subclass that overrides `step` must override `step_sequence` as well).
Lookup follows the class hierarchy (a subclass of a registered type is
registered). Non-layer operations of functional graphs
(`keras.ops.add(x, y)` on Keras tensors) are registered by class name.

Example: the file `keras_mgrade/layers/causal_conv1d.py` makes
`keras.layers.Conv1D(padding="causal")` streamable with one call of
`register_streaming`.
"""

import dataclasses
import math
from collections.abc import Callable

import keras

from keras_mgrade.core.contract import StreamingLayer


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """The deploy footprint of one layer, in elements and bytes.

    Attributes:
        parameters: deployed constants (weights, biases, tables).
        parameter_bytes: their bytes at the precision asked for.
        state: state elements carried between steps.
        working_set: elements alive at once while the layer steps, besides
            the model's states (inputs, outputs, intermediates).
    """

    parameters: int = 0
    parameter_bytes: int = 0
    state: int = 0
    working_set: int = 0


@dataclasses.dataclass(frozen=True)
class StreamKind:
    """How one layer type streams (see the module docstring)."""

    name: str
    step: Callable
    state_shapes: Callable
    cost: Callable | None = None
    quantized_inside: bool = False
    host_pooling: str | None = None
    check: Callable | None = None
    sequence: Callable | None = None


_KINDS = {}


def _own_step(layer, inputs, states):
    return layer.step(inputs, states)


def _own_sequence(layer, inputs, states):
    return layer.step_sequence(inputs, states)


def _own_state_shapes(layer):
    return [tuple(s) for s in layer.state_shapes]


def no_state(layer):
    """The `state_shapes` rule of a kind without state: `[]`."""
    return []


def register_streaming(
    layer_type,
    step=None,
    state_shapes=None,
    cost=None,
    quantized_inside=False,
    host_pooling=None,
    check=None,
    sequence=None,
):
    """Registers how layers of `layer_type` stream; returns `layer_type`.

    Args:
        layer_type: a `keras.layers.Layer` subclass, or the class name of
            a non-layer `keras.ops` operation (e.g. `"Maximum"`).
        step: `step(layer, inputs, states) -> (outputs, new_states)`, one
            time step of `layer` (`inputs`: the tensor, or the list of
            tensors of a multi-input layer). Defaults to the layer's own
            `step` for a `StreamingLayer`.
        state_shapes: `state_shapes(layer) -> [shape, ...]` without the
            batch axis. Defaults to the layer's own `state_shapes` for a
            `StreamingLayer`, else no state.
        cost: `cost(layer, nbytes) -> LayerCost`, the deploy footprint
            (`keras_mgrade.memory`). None: the layer cannot be counted.
        quantized_inside: bool, `step` marks its own quantization points
            (`keras_mgrade.core.points`); otherwise its output is one.
        host_pooling: `"mean"` for a final pooling layer that the host can
            apply to the per-step outputs instead, else None.
        check: `check(layer)` raising a ValueError for an instance that
            cannot stream (a non-causal option, ...), or None.
        sequence: `sequence(layer, inputs, states) -> (outputs,
            new_states)`, the result of `step` over every time step of
            `inputs` `(batch, timesteps, ...)` at once, marking the same
            quantization points. Defaults to the layer's own
            `step_sequence` for a `StreamingLayer` that has one, else None
            (see `keras_mgrade.core.run_sequence`).

    Returns:
        `layer_type`.
    """
    is_name = isinstance(layer_type, str)
    if not is_name and not isinstance(layer_type, type):
        raise ValueError(
            "layer_type must be a layer class or an operation class name. "
            f"Received: layer_type={layer_type!r}"
        )
    own = not is_name and issubclass(layer_type, StreamingLayer)
    if step is None and not own:
        raise ValueError(
            "step is required for a layer that is not a StreamingLayer. "
            f"Received: layer_type={_type_name(layer_type)}, step=None"
        )
    if host_pooling not in (None, "mean"):
        raise ValueError(
            "host_pooling must be None or 'mean'. Received: "
            f"host_pooling={host_pooling!r}"
        )
    if state_shapes is None:
        state_shapes = _own_state_shapes if own else no_state
    if sequence is None and own and hasattr(layer_type, "step_sequence"):
        sequence = _own_sequence
    _KINDS[layer_type] = StreamKind(
        name=_type_name(layer_type),
        step=step or _own_step,
        state_shapes=state_shapes,
        cost=cost,
        quantized_inside=bool(quantized_inside),
        host_pooling=host_pooling,
        check=check,
        sequence=sequence,
    )
    return layer_type


def unregister_streaming(layer_type):
    """Removes the registration of `layer_type` (a no-op if it has
    none)."""
    _KINDS.pop(layer_type, None)


def _type_name(layer_type):
    return layer_type if isinstance(layer_type, str) else layer_type.__name__


def find_kind(layer):
    """The `StreamKind` of `layer`, or None if it is not registered."""
    for cls in type(layer).__mro__:
        kind = _KINDS.get(cls)
        if kind is not None:
            return kind
    if not isinstance(layer, keras.layers.Layer):
        return _KINDS.get(type(layer).__name__)
    return None


def registered():
    """The names of the registered kinds, sorted."""
    return sorted(kind.name for kind in _KINDS.values())


def kinds():
    """Every registered `StreamKind`."""
    return list(_KINDS.values())


def kind_of(layer):
    """The `StreamKind` of `layer`; raises a ValueError that lists the
    registered kinds when there is none, or when `check` rejects it."""
    kind = find_kind(layer)
    name = getattr(layer, "name", type(layer).__name__)
    if kind is None:
        raise ValueError(
            f"Layer {name!r} of type {type(layer).__name__} cannot be "
            f"streamed. Registered: {', '.join(registered())}. A layer "
            "type is made streamable with "
            "keras_mgrade.core.register_streaming."
        )
    if kind.check is not None:
        kind.check(layer)
    return kind


def cost(layer, nbytes):
    """The `LayerCost` of `layer` at `nbytes` per element."""
    kind = kind_of(layer)
    if kind.cost is None:
        raise ValueError(
            f"The deploy footprint of layer {layer.name!r} of type "
            f"{type(layer).__name__} is not known: its registration has no "
            f"cost rule. Registered with one: {', '.join(costed())}."
        )
    return kind.cost(layer, nbytes)


def costed():
    """The names of the registered kinds that have a cost rule."""
    return sorted(k.name for k in _KINDS.values() if k.cost is not None)


def size(shape):
    """The number of elements of `shape`."""
    return int(math.prod(int(d) for d in shape))


def matrix_cost(kernel, bias, nbytes, working_set=0):
    """The `LayerCost` of a matrix product: `kernel`, plus `bias` stored
    as int32 when quantized (`nbytes == 1`)."""
    n = size(kernel.shape)
    b = size(bias.shape) if bias is not None else 0
    bias_bytes = 4 if nbytes == 1 else nbytes
    return LayerCost(
        parameters=n + b,
        parameter_bytes=n * nbytes + b * bias_bytes,
        working_set=working_set,
    )
