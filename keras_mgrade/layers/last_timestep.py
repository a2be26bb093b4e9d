"""LastTimestep: the output at the last (unmasked) time step."""

import keras

from keras_mgrade import _utils
from keras_mgrade.core.contract import StreamingLayer
from keras_mgrade.core.registry import LayerCost
from keras_mgrade.core.registry import register_streaming


@keras.saving.register_keras_serializable(package="keras_mgrade")
class LastTimestep(StreamingLayer):
    """Selects the last time step of a sequence (the last unmasked one
    when a mask is given). When streamed it passes each step through: the
    output after the last sample of a stream is the sequence's output.

    Args:
        **kwargs: base layer arguments.

    Call arguments:
        inputs: tensor `(batch, timesteps, features)`.
        mask: optional boolean tensor `(batch, timesteps)`.

    Example:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> keras.ops.convert_to_numpy(LastTimestep()(x)).tolist()
    [[4.0, 5.0]]
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    @property
    def state_shapes(self):
        """`[]`: no state."""
        return []

    def call(self, inputs, mask=None):
        self.check_sequence_shape(inputs.shape)
        return _utils.last_step(inputs, mask)

    def step(self, inputs_t, states, training=False):
        """The current step's input, unchanged (no state)."""
        return inputs_t, []

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def compute_mask(self, inputs, mask=None):
        return None


register_streaming(
    LastTimestep,
    cost=lambda layer, nbytes: LayerCost(),
    quantized_inside=True,
)
