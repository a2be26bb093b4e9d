"""The streaming contract, declared once.

Every layer that carries time context derives from `StreamingLayer` and
defines two things:

- `state_shapes`: the shape of each state tensor without the batch axis;
- `step(inputs_t, states, training=False) -> (outputs_t, new_states)`:
  one time step, written only with ops that lower to TFLite builtins that
  TFLite Micro runs in int8 (no `where`/`SELECT`, `exp`, `log`, loops).

The base class gives the rest of the contract: `get_initial_state`,
`reset_state` (for `stateful=True` layers), and one validation of states
(`check_states`) used by `step` and by `call(..., initial_state=...)`.
The invariant, checked by the test suite on every backend: `step` looped
over `t = 0 … T-1` equals `call` on the whole sequence.
"""

import keras
from keras import ops

from keras_mgrade import _utils


class StreamingLayer(keras.layers.Layer):
    """Base class of the layers that stream one time step at a time.

    Subclasses define `state_shapes` and `step`; stateful subclasses keep
    their carried states in `self.state_variables` (created with
    `add_state_variable`).
    """

    state_variables = ()

    @property
    def state_shapes(self):
        """Shapes of the streaming states, without the batch axis."""
        raise NotImplementedError(
            f"{type(self).__name__} must define `state_shapes`."
        )

    def step(self, inputs_t, states, training=False):
        """Runs one time step: `(outputs_t, new_states)`."""
        raise NotImplementedError(f"{type(self).__name__} must define `step`.")

    def check_sequence_shape(self, shape):
        """Returns `shape` as a tuple, or raises unless it is `(batch,
        timesteps, features)` (rank 3)."""
        shape = tuple(shape)
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank 3 (batch, "
                f"timesteps, features). Received: inputs.shape={shape}"
            )
        return shape

    def check_inputs(self, inputs, mask=None):
        """Raises unless `inputs` is a float sequence `(batch, timesteps,
        features)` and `mask` (if any) is `(batch, timesteps)`."""
        shape = self.check_sequence_shape(inputs.shape)
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if "float" not in dtype:
            raise ValueError(
                f"{type(self).__name__} expects floating-point inputs (feed "
                "integer tokens through an Embedding layer first). Received: "
                f"inputs.dtype={dtype}"
            )
        if mask is not None:
            got = tuple(mask.shape)
            known = [
                (a, b) for a, b in zip(got, shape[:2]) if None not in (a, b)
            ]
            if len(got) != 2 or any(a != b for a, b in known):
                raise ValueError(
                    f"The mask of {type(self).__name__} must have shape "
                    f"(batch, timesteps) = {shape[:2]}. Received: "
                    f"mask.shape={got}"
                )

    def sequence_output_shape(self, inputs_shape, width):
        """The output shape for `width` outputs per step, after
        `return_sequences` (default True) and `return_state` (default
        False): `[output, *states]` when the states are returned."""
        batch, timesteps = inputs_shape[0], inputs_shape[1]
        if getattr(self, "return_sequences", True):
            out = (batch, timesteps, width)
        else:
            out = (batch, width)
        if getattr(self, "return_state", False):
            return [out] + [(batch,) + tuple(s) for s in self.state_shapes]
        return out

    def compute_mask(self, inputs, mask=None):
        """The mask follows the time axis of the output (none after
        `return_sequences=False`); the returned states have none."""
        out = mask if getattr(self, "return_sequences", True) else None
        if getattr(self, "return_state", False):
            return [out] + [None] * len(self.state_shapes)
        return out

    def get_initial_state(self, batch_size):
        """Zero states `[(batch_size, *shape) for shape in state_shapes]`
        (float32) for `step`."""
        return [
            ops.zeros((batch_size,) + tuple(shape), "float32")
            for shape in self.state_shapes
        ]

    def add_state_variable(self, shape, input_shape, name):
        """The non-trainable variable `(batch, *shape)` that a stateful
        layer carries between calls; needs a static batch size."""
        if input_shape[0] is None:
            raise ValueError(
                f"A stateful {type(self).__name__} needs a static batch size "
                "(use keras.Input(batch_size=...) or batch_shape). Received: "
                f"inputs.shape={_utils.shape_str(input_shape)}"
            )
        variable = self.add_weight(
            shape=(input_shape[0],) + tuple(shape),
            initializer="zeros",
            trainable=False,
            dtype="float32",
            name=name,
        )
        self.state_variables = tuple(self.state_variables) + (variable,)
        return variable

    def reset_state(self):
        """Clears the carried states of a stateful layer (and of the
        streaming layers inside it)."""
        for variable in self.state_variables:
            variable.assign(ops.zeros_like(variable.value))
        for layer in _utils.iter_layers(self):
            if layer is not self and isinstance(layer, StreamingLayer):
                for variable in layer.state_variables:
                    variable.assign(ops.zeros_like(variable.value))

    def reset_states(self):
        """Alias of `reset_state` (Keras 2 name)."""
        self.reset_state()

    def carried_states(self, batch_size=None):
        """The states carried by a stateful layer, as tensors; raises if
        the batch size is not the one they were created for."""
        states = [ops.convert_to_tensor(v.value) for v in self.state_variables]
        carried = states[0].shape[0] if states else None
        if (
            batch_size is not None
            and carried is not None
            and (batch_size != carried)
        ):
            raise ValueError(
                f"A stateful {type(self).__name__} carries its states for "
                f"batch size {carried}; every batch must have that size "
                "(reset_state() does not change it). Received: a batch of "
                f"{batch_size}"
            )
        return states

    def check_states(self, states, batch_size=None, name="states"):
        """Validates states against `state_shapes`.

        Args:
            states: a tensor (one state) or a list of tensors.
            batch_size: the expected batch size, or None (not checked).
            name: the argument name to use in the error message.

        Returns:
            The states as a list of tensors.
        """
        if not isinstance(states, (list, tuple)):
            states = [states]
        shapes = [tuple(s) for s in self.state_shapes]
        if len(states) != len(shapes):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} has {len(shapes)} "
                f"state(s) of shapes {[(None,) + s for s in shapes]}. "
                f"Received: {name} of length {len(states)}"
            )
        checked = []
        for i, (state, shape) in enumerate(zip(states, shapes)):
            state = ops.convert_to_tensor(state)
            got = tuple(state.shape)
            batch_ok = batch_size is None or got[:1] in ((None,), (batch_size,))
            if len(got) != len(shape) + 1 or got[1:] != shape or not batch_ok:
                raise ValueError(
                    f"{name}[{i}] of {type(self).__name__} {self.name!r} "
                    f"must have shape {(batch_size,) + shape}. Received: "
                    f"{name}[{i}].shape={got}"
                )
            checked.append(state)
        return checked
