"""Callbacks for training with learnable delays."""

import math

import keras

from keras_mgrade import _utils
from keras_mgrade.layers.dcls_conv1d import DCLSConv1D


def dcls_layers(model):
    """Every `DCLSConv1D` in `model`, including those inside MGRADE
    blocks."""
    return [
        layer
        for layer in _utils.iter_layers(model)
        if isinstance(layer, DCLSConv1D)
    ]


def round_positions(model):
    """Rounds the delays of every `DCLSConv1D` in `model` to integers and
    switches them to the sparse kernel (see `DCLSConv1D.round_positions`).

    Call it after training (with `sigma` annealed to ~0.25 the output
    barely changes), then fine-tune the weights if you like: compile and
    fit again, the delays stay fixed.

    Args:
        model: a Keras model or layer.

    Returns:
        The number of layers rounded.
    """
    layers = dcls_layers(model)
    for layer in layers:
        layer.round_positions()
    return len(layers)


@keras.saving.register_keras_serializable(package="keras_mgrade")
class SigmaAnnealing(keras.callbacks.Callback):
    """Shrinks the Gaussian width of every `DCLSConv1D` during training.

    As in the SNN-delays recipe (Hammouamri et al. 2024), `sigma` decays
    exponentially from `start` to `end` over the first `fraction` of the
    epochs and then stays at `end`: wide Gaussians let the delays move
    from far away early on, narrow ones make them (nearly) integer, so that
    `round_positions` afterwards costs little. Updated at the start of each
    epoch (on every backend), and logged as `sigma`.

    Args:
        end: float > 0, the final width. Defaults to `0.25`.
        fraction: float in (0, 1], the part of training spent decaying.
            Defaults to `0.25`.
        start: float > 0 or None. None uses each layer's width at the start
            of training. Defaults to `None`.

    Example:

    >>> from keras_mgrade.models import mgrade_classifier
    >>> model = mgrade_classifier(1, 2, units=8, num_layers=1, max_delay=16)
    >>> callback = SigmaAnnealing(end=0.25, fraction=0.5, start=4.0)
    >>> callback.sigma_at(0, epochs=10), callback.sigma_at(5, epochs=10)
    (4.0, 0.25)
    """

    def __init__(self, end=0.25, fraction=0.25, start=None):
        super().__init__()
        self.end = _utils.check_positive_float("end", end)
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = -1.0
        if not 0.0 < fraction <= 1.0:
            raise ValueError(
                "fraction must be a float in (0, 1]. Received: "
                f"fraction={fraction!r}"
            )
        self.fraction = fraction
        self.start = (
            None
            if start is None
            else _utils.check_positive_float("start", start)
        )
        self._starts = {}

    def sigma_at(self, epoch, epochs, start=None):
        """The width at (0-based) `epoch` of `epochs`."""
        start = self.start if start is None else start
        decay_epochs = max(1, round(self.fraction * epochs))
        progress = min(epoch, decay_epochs) / decay_epochs
        return float(start * math.exp(progress * math.log(self.end / start)))

    def on_train_begin(self, logs=None):
        self._layers = dcls_layers(self.model)
        self._starts = {
            id(layer): self.start if self.start is not None else layer.sigma
            for layer in self._layers
        }

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs", 1) if self.params else 1
        for layer in self._layers:
            layer.sigma = self.sigma_at(epoch, epochs, self._starts[id(layer)])

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._layers:
            logs["sigma"] = self._layers[0].sigma

    def get_config(self):
        return {"end": self.end, "fraction": self.fraction, "start": self.start}
