"""Quantization points: the places where the int8 step graph quantizes.

The per-step code of the layers (`MinGRUCell.call`, `DCLSConv1D.step`,
`MGRADE.step` and the streaming ops) marks every tensor that the int8
TFLite graph stores in int8:

- `activation(owner, name, x)`: an activation with a learned range (the
  output of a matrix product, an addition, a normalisation step, ...);
  `fixed=` gives a range that the int8 kernel imposes (`LOGISTIC` and
  `SOFTMAX` write scale 1/256, zero point -128; `TANH` scale 1/128, zero
  point 0).
- `state(owner, name, x)`: a recurrent state; its input and its output use
  the same name, hence one shared range (and identical int8 parameters).
- `weight(owner, name, fn, axis)`: a weight, quantized symmetrically per
  output channel (`axis`) or per tensor (`axis=None`).

Outside a quantization scope (`keras_mgrade.quantization`) every hook
returns its input unchanged, so the float model is not affected.
"""

import contextlib
import threading

# The output ranges the int8 kernels impose, as fake-quant ranges.
SIGMOID_RANGE = (0.0, 255.0 / 256.0)  # LOGISTIC, SOFTMAX: 1/256, zp -128
TANH_RANGE = (-1.0, 127.0 / 128.0)  # TANH: 1/128, zp 0

_LOCAL = threading.local()


def current():
    """The active quantization scope, or None."""
    return getattr(_LOCAL, "scope", None)


@contextlib.contextmanager
def scope(quantization_scope):
    """Makes `quantization_scope` the active scope inside the block."""
    previous = current()
    _LOCAL.scope = quantization_scope
    try:
        yield quantization_scope
    finally:
        _LOCAL.scope = previous


@contextlib.contextmanager
def within(name):
    """Names the top-level layer whose step runs inside the block."""
    active = current()
    if active is None:
        yield
        return
    previous = active.prefix
    active.prefix = name
    try:
        yield
    finally:
        active.prefix = previous


def activation(owner, name, x, fixed=None):
    """Fake-quantizes activation `x` of layer `owner` (identity outside a
    scope)."""
    active = current()
    if active is None:
        return x
    return active.activation(owner, name, x, fixed=fixed)


def state(owner, name, x):
    """Fake-quantizes a recurrent state (shared range for input and
    output)."""
    active = current()
    if active is None:
        return x
    return active.activation(owner, name, x, state=True)


def weight(owner, name, fn, axis=None):
    """The weight `fn()`, fake-quantized symmetrically per channel along
    `axis` (per tensor if None) inside a scope."""
    active = current()
    if active is None:
        return fn()
    return active.weight(owner, name, fn, axis)


class FoldWeights:
    """A scope that only evaluates weights eagerly (no quantization).

    The TensorFlow exporter traces the step graph inside it, so that a
    weight computed from other weights (the DCLS kernel, built from the
    delay positions with EXP) reaches the converter as a constant,
    whatever its size.
    """

    prefix = ""
    quantizes = False

    def activation(self, owner, name, x, fixed=None, state=False):
        return x

    def weight(self, owner, name, fn, axis):
        import keras

        if keras.backend.backend() != "tensorflow":
            return fn()
        import tensorflow as tf

        with tf.init_scope():
            value = keras.ops.convert_to_numpy(fn())
        return tf.constant(value)


def quantizing():
    """Whether the active scope fake-quantizes."""
    active = current()
    return active is not None and getattr(active, "quantizes", True)
