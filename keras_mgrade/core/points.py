"""Quantization points: the places where the int8 step graph quantizes.

The per-step code of the layers (`MinGRUCell.call`, `DCLSConv1D.step`,
`MGRADE.step` and the per-step forms of the stock layers) marks every
tensor that the int8 TFLite graph stores in int8:

- `activation(owner, name, x)`: an activation with a learned range (the
  output of a matrix product, an addition, a normalisation step, ...);
  `fixed=` gives a range that the int8 kernel imposes (`LOGISTIC` and
  `SOFTMAX` write scale 1/256, zero point -128; `TANH` scale 1/128, zero
  point 0).
- `state(owner, name, x)`: a recurrent state; its input and its output use
  the same name, hence one shared range (and identical int8 parameters).
- `weight(owner, name, fn, axis)`: a weight, quantized symmetrically per
  output channel (`axis`) or per tensor (`axis=None`).
- `requantized(owner, name, x, inputs, count)`: an activation computed
  by an int8 MUL of `inputs` (two tensors returned by earlier points) or
  a MEAN of `inputs[0]` over `count` values; the scope may round it the
  way TFLite Micro's kernel does (see `QuantizationScope`).
- `operand(owner, name, fn)`: a constant operand of an elementwise MUL or
  ADD (the scale and offset of a normalisation), quantized as the
  converter stores such a constant: per tensor, asymmetric, over its
  own `[min, max]` widened to include 0.

A layer whose step is computed over all time steps at once (the
`step_sequence` of the layers, for quantization-aware training) marks the
same points on tensors `(batch, timesteps, ...)`, and runs what is truly
sequential with `scan(fn, states, inputs)`.

The hooks call the active `Scope`. Outside a scope every hook returns its
input unchanged, so the float model is not affected. Quantization-aware
training (`keras_mgrade.quantization`) and the exporter
(`keras_mgrade.export`) each run the step graph inside a scope of their
own: this module is the whole interface between the step code and them.
"""

import contextlib
import threading

# The output ranges the int8 kernels impose, as fake-quant ranges.
SIGMOID_RANGE = (0.0, 255.0 / 256.0)  # LOGISTIC, SOFTMAX: 1/256, zp -128
TANH_RANGE = (-1.0, 127.0 / 128.0)  # TANH: 1/128, zp 0

_LOCAL = threading.local()


class Scope:
    """What a quantization scope implements (the identity here).

    Attributes:
        prefix: the name of the model-level layer whose step runs now (set
            by `within`); scopes key their points by it.
        quantizes: whether the scope fake-quantizes (`quantizing()`).
        exports: whether the step graph is traced for the TFLite converter
            (`exporting()`), rather than computed.
    """

    prefix = ""
    quantizes = True
    exports = False

    def activation(self, owner, name, x, fixed=None, state=False):
        """The activation `x` named `name` of layer `owner` (`fixed`: the
        range an int8 kernel imposes; `state`: a recurrent state)."""
        return x

    def weight(self, owner, name, fn, axis):
        """The weight `fn()` of layer `owner`, per channel along `axis`
        (per tensor if None)."""
        return fn()

    def operand(self, owner, name, fn):
        """The constant `fn()` that layer `owner` multiplies or adds
        elementwise; by default a weight quantized per tensor."""
        return self.weight(owner, name, fn, None)

    def requantized(self, owner, name, x, inputs, count=1):
        """The activation `x` computed by an int8 MUL of the two tensors
        `inputs` (`count=1`) or a MEAN of `inputs[0]` over `count` values;
        by default an ordinary activation."""
        return self.activation(owner, name, x)

    def same_grid(self, new, old):
        """Records that tensor `new` lies on tensor `old`'s grid (nothing
        here)."""

    def scan(self, fn, states, inputs, observe=True):
        """`scan(fn, states, inputs)` with this scope active (see the
        module function)."""
        return scan_time(fn, states, inputs)

    def gradient_mask(self, owner, name, x, fixed=None, state=False):
        """Where the activation point would pass the gradient of `x`
        (1.0) or block it (0.0, clipped): ones here."""
        import keras

        return keras.ops.ones_like(x)


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


def requantized(owner, name, x, inputs, count=1):
    """Fake-quantizes activation `x`, the output of an int8 MUL of the two
    tensors `inputs` (`count=1`) or of a MEAN of `inputs[0]` over `count`
    values, each input being what an earlier point returned (identity
    outside a scope)."""
    active = current()
    if active is None:
        return x
    return active.requantized(owner, name, x, inputs, count)


def operand(owner, name, fn):
    """The constant elementwise operand `fn()`, fake-quantized per tensor
    and asymmetrically over its own range inside a scope (the grid the
    converter gives a constant operand of MUL and ADD)."""
    active = current()
    if active is None:
        return fn()
    return active.operand(owner, name, fn)


def same_grid(new, old):
    """Returns `new`, a reshape or slice of `old` along the batch or time
    axes, telling the active scope that it lies on `old`'s integer grid
    (read by `requantized`)."""
    active = current()
    if active is not None:
        active.same_grid(new, old)
    return new


def scan(fn, states, inputs, observe=True):
    """Runs a step `fn(x_t, states) -> (y_t, new_states)` over the time
    axis (axis 1) of `inputs` (a tensor or a list of tensors `(batch,
    timesteps, ...)`): `(outputs (batch, timesteps, ...), final states)`.

    Inside a scope the scope runs it: quantization-aware training gathers
    each step's observations of the points `fn` marks, unless `observe` is
    False (the caller marks the same tensors again on whole sequences).
    """
    active = current()
    if active is None:
        return scan_time(fn, states, inputs)
    return active.scan(fn, states, inputs, observe=observe)


def gradient_mask(owner, name, x, fixed=None, state=False):
    """The straight-through gradient of activation point `name` at `x`:
    1.0 where its fake quantization passes the gradient (inside its
    range), 0.0 where it clips; ones outside a quantizing scope. For a
    custom gradient of a recurrence that is not differentiated through
    its loop (`MinGRUCell.sequence`)."""
    active = current()
    if active is None:
        import keras

        return keras.ops.ones_like(x)
    return active.gradient_mask(owner, name, x, fixed=fixed, state=state)


def scan_time(fn, states, inputs):
    """`scan` without a scope hook: `keras.ops.scan` over time (a
    `tf.while_loop` on TensorFlow, whose `ops.scan` needs the outputs to
    match the states; a Python loop on PyTorch); `y_t` may be any
    structure of tensors. The active scope learns that the time-major
    inputs and, on PyTorch, their time steps lie on the inputs' grids
    (`same_grid`)."""
    import keras
    from keras import ops

    def time_major(x):
        return same_grid(ops.moveaxis(x, 1, 0), x)

    xs = keras.tree.map_structure(time_major, inputs)
    states = list(states)
    flat = keras.tree.flatten(xs)
    if keras.backend.backend() == "tensorflow":
        final, ys = _tf_scan(fn, states, xs)
    elif keras.backend.backend() == "torch" and flat[0].shape[0]:
        final, ys = _eager_scan(fn, states, xs, flat)
    else:

        def body(carry, x_t):
            y, new = fn(x_t, carry)
            return list(new), y

        final, ys = ops.scan(body, states, xs)
    return keras.tree.map_structure(time_major, ys), list(final)


def _eager_scan(fn, states, xs, flat):
    # PyTorch runs eagerly: a Python loop (`keras.ops.scan` flattens and
    # packs the structures at every step, a large part of a small step).
    import keras
    import torch

    active = current()
    ys = []
    for t in range(flat[0].shape[0]):
        x_t = [x[t] for x in flat]
        if active is not None:
            for x, x_full in zip(x_t, flat):
                active.same_grid(x, x_full)
        if not isinstance(xs, list) or len(xs) != len(flat):
            x_t = keras.tree.pack_sequence_as(xs, x_t)
        y, states = fn(x_t, states)
        ys.append(y)
    stacked = keras.tree.map_structure(lambda *y: torch.stack(y), *ys)
    return list(states), stacked


def _tf_scan(fn, states, xs):
    # Step 0 is traced outside the loop: it gives the dtypes and the
    # structure of the outputs for the TensorArrays of the loop.
    import tensorflow as tf

    flat_xs = tf.nest.flatten(xs)
    n = tf.shape(flat_xs[0])[0]
    inputs = [
        tf.TensorArray(x.dtype, size=n, element_shape=x.shape[1:]).unstack(x)
        for x in flat_xs
    ]

    def read(i):
        return tf.nest.pack_sequence_as(xs, [x.read(i) for x in inputs])

    y0, carry = fn(read(0), states)
    carry = list(carry)
    flat_y0 = tf.nest.flatten(y0)
    outputs = [
        tf.TensorArray(y.dtype, size=n, element_shape=y.shape).write(0, y)
        for y in flat_y0
    ]

    def body(i, carry, outputs):
        y, new = fn(read(i), carry)
        outputs = [o.write(i, v) for o, v in zip(outputs, tf.nest.flatten(y))]
        return i + 1, list(new), outputs

    _, carry, outputs = tf.while_loop(
        lambda i, carry, outputs: i < n, body, (1, carry, outputs)
    )
    ys = tf.nest.pack_sequence_as(y0, [o.stack() for o in outputs])
    return carry, ys


class FoldWeights(Scope):
    """A scope that only evaluates weights eagerly (no quantization).

    The TensorFlow exporter traces the step graph inside it, so that a
    weight computed from other weights (the DCLS kernel, built from the
    delay positions with EXP) reaches the converter as a constant,
    whatever its size. `substitute(prefix, owner, name, value)`, if
    given, returns the constant that replaces a per-channel weight's
    float `value` (the rounded weights of post-training quantization,
    `keras_mgrade.export.rounding`).
    """

    quantizes = False
    exports = True

    def __init__(self, substitute=None):
        self.substitute = substitute

    def weight(self, owner, name, fn, axis):
        if self.substitute is None or axis is None:
            return constant(fn)
        return constant(
            lambda: self.substitute(self.prefix, owner, name, _numpy(fn()))
        )


def _numpy(x):
    import keras

    return keras.ops.convert_to_numpy(x)


def folded(fn):
    """`fn()`, made a constant of the graph when the active scope traces
    it for the converter (`exporting()`): a weight that is not quantized
    on its own, such as a bias the converter fuses into its operator."""
    return constant(fn) if exporting() else fn()


def constant(fn):
    """`fn()` evaluated eagerly, as a constant of the graph being traced
    (on TensorFlow; elsewhere simply `fn()`)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return fn()
    import tensorflow as tf

    with tf.init_scope():
        value = keras.ops.convert_to_numpy(fn())
    return tf.constant(value)


class Recorder(Scope):
    """A scope that records the points a step marks, and changes nothing.

    `points` maps `(owner name, point name)` to `"activation"`, `"state"`
    or `"weight"`. Used to check that a layer marks its quantization
    points (and by `keras_mgrade.quantization` to discover them).
    """

    quantizes = False

    def __init__(self):
        self.points = {}

    def activation(self, owner, name, x, fixed=None, state=False):
        key = (getattr(owner, "name", None), name)
        self.points[key] = "state" if state else "activation"
        return x

    def weight(self, owner, name, fn, axis):
        self.points[(getattr(owner, "name", None), name)] = "weight"
        return fn()


def quantizing():
    """Whether the active scope fake-quantizes."""
    active = current()
    return active is not None and getattr(active, "quantizes", True)


def exporting():
    """Whether the active scope traces the step graph for the converter."""
    active = current()
    return active is not None and getattr(active, "exports", False)
