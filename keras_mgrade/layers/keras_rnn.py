"""`keras.layers.GRU` and `keras.layers.LSTM` as streamable layers.

Their cells (`layer.cell`) are the per-step form: one time step with the
state `[h]` (GRU) or `[h, c]` (LSTM), converted by the standard TFLite
converter into FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD and SUB. With
them registered, a Keras GRU or LSTM model exports to the same kind of
single-step file as an mGRADE model (state as inputs and outputs), and
`keras_mgrade.memory` counts it: the baselines of
`benchmarks/deploy_compare.py` run on the same path.
"""

import keras

from keras_mgrade.core.registry import matrix_cost
from keras_mgrade.core.registry import register_streaming


def check(layer):
    """Raises a ValueError for a recurrent layer that does not stream
    forwards one step at a time."""
    if layer.go_backwards:
        raise ValueError(
            "A recurrent layer that reads its input backwards is not causal "
            f"and cannot stream. Received: go_backwards=True for layer "
            f"{layer.name!r}"
        )


def step(layer, inputs, states):
    """One time step: the cell on `x_t` and the states."""
    outputs, new_states = layer.cell(inputs, list(states), training=False)
    if not isinstance(new_states, (list, tuple)):
        new_states = [new_states]
    return outputs, list(new_states)


def state_shapes(layer):
    """`[(units,)]` (GRU) or `[(units,), (units,)]` (LSTM: h and c)."""
    count = 2 if isinstance(layer, keras.layers.LSTM) else 1
    return [(layer.units,)] * count


def cost(layer, nbytes):
    """The kernel, recurrent kernel and biases; the state; the working
    set of one step: the input, the input and recurrent projections (one
    value per gate each) and the states."""
    cell = layer.cell
    gates = 4 if isinstance(layer, keras.layers.LSTM) else 3
    kernel = matrix_cost(cell.kernel, cell.bias, nbytes)
    recurrent = matrix_cost(cell.recurrent_kernel, None, nbytes)
    states = len(state_shapes(layer)) * layer.units
    working = int(cell.kernel.shape[0]) + 2 * gates * layer.units + states
    return type(kernel)(
        parameters=kernel.parameters + recurrent.parameters,
        parameter_bytes=kernel.parameter_bytes + recurrent.parameter_bytes,
        state=states,
        working_set=working,
    )


for _layer in (keras.layers.GRU, keras.layers.LSTM):
    register_streaming(
        _layer, step=step, state_shapes=state_shapes, cost=cost, check=check
    )
