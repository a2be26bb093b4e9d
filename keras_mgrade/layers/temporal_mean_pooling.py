"""TemporalMeanPooling: the mean over time, streamed as a running mean."""

import keras
from keras import ops

from keras_mgrade.core.contract import StreamingLayer
from keras_mgrade.core.registry import LayerCost
from keras_mgrade.core.registry import register_streaming


@keras.saving.register_keras_serializable(package="keras_mgrade")
class TemporalMeanPooling(StreamingLayer):
    """Mean over the time axis; when streamed, the running mean.

    On a sequence it returns `mean_t x_t` (over unmasked steps when a mask
    is given), like `keras.layers.GlobalAveragePooling1D`. With
    `return_sequences=True` it returns the causal running mean
    `m_t = mean(x_0 … x_t)` at every step. Its streaming state is
    `[m, n]`: the running mean and the number of steps seen, so after the
    last step of a stream `step` gives what `call` gives on the sequence.

    Args:
        return_sequences: bool, return the running mean at every step.
            Defaults to `False`.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: tensor `(batch, timesteps, features)`.
        mask: optional boolean tensor `(batch, timesteps)`.

    Example:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> keras.ops.convert_to_numpy(TemporalMeanPooling()(x)).tolist()
    [[2.0, 3.0]]
    >>> running = TemporalMeanPooling(return_sequences=True)(x)
    >>> keras.ops.convert_to_numpy(running)[0, :, 0].tolist()
    [0.0, 1.0, 2.0]
    """

    def __init__(self, return_sequences=False, **kwargs):
        super().__init__(**kwargs)
        self.return_sequences = bool(return_sequences)
        self.supports_masking = True
        self.features = None

    def build(self, input_shape):
        input_shape = self.check_sequence_shape(input_shape)
        self.features = input_shape[-1]

    @property
    def state_shapes(self):
        """`[(features,), (1,)]`: the running mean and the step count."""
        return [(self.features,), (1,)]

    def call(self, inputs, mask=None):
        x = ops.cast(inputs, "float32")
        if mask is None:
            weights = ops.ones_like(x[..., :1])
        else:
            weights = ops.expand_dims(ops.cast(mask, "float32"), -1)
        if self.return_sequences:
            total = ops.cumsum(x * weights, axis=1)
            count = ops.cumsum(weights, axis=1)
        else:
            total = ops.sum(x * weights, axis=1)
            count = ops.sum(weights, axis=1)
        out = total / ops.maximum(count, 1.0)
        return ops.cast(out, self.compute_dtype)

    def step(self, inputs_t, states, training=False):
        """`m' = m + (x_t - m) / (n + 1)`, `n' = n + 1`.

        Args:
            inputs_t: tensor `(batch, features)`.
            states: `[m, n]`.
            training: unused.

        Returns:
            `(m', [m', n'])`.
        """
        mean, count = self.check_states(states)
        count = count + 1.0
        x = ops.cast(inputs_t, mean.dtype)
        mean = mean + (x - mean) / count
        return ops.cast(mean, self.compute_dtype), [mean, count]

    def compute_output_shape(self, input_shape):
        return self.sequence_output_shape(input_shape, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "return_sequences": self.return_sequences,
        }


def _cost(layer, nbytes):
    return LayerCost(state=layer.features + 1, working_set=2 * layer.features)


register_streaming(
    TemporalMeanPooling, cost=_cost, quantized_inside=True, host_pooling="mean"
)
