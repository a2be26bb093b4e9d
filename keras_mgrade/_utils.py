"""Small helpers shared by the layers: argument checks and concrete values."""

import keras
import numpy as np
from keras import ops


def check_positive_int(name, value, minimum=1):
    """Returns `int(value)` or raises a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_rate(name, value):
    """Returns `float(value)` for a rate in [0, 1) or raises."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        ) from None
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        )
    return value


def check_taps(kernel_taps, max_delay):
    """`(kernel_taps, max_delay)` as ints, or a ValueError: both >= 1, and
    the taps must fit in the window."""
    kernel_taps = check_positive_int("kernel_taps", kernel_taps)
    max_delay = check_positive_int("max_delay", max_delay)
    if kernel_taps > max_delay:
        raise ValueError(
            "kernel_taps cannot exceed max_delay (the taps must fit in the "
            f"window). Received: kernel_taps={kernel_taps}, "
            f"max_delay={max_delay}"
        )
    return kernel_taps, max_delay


def check_positive_float(name, value):
    """Returns `float(value)` for a finite float > 0 or raises a
    ValueError naming `name`."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = float("nan")
    if isinstance(value, bool) or not (result > 0 and np.isfinite(result)):
        raise ValueError(
            f"{name} must be a float > 0. Received: {name}={value!r}"
        )
    return result


def clone_initializer(initializer):
    """A fresh copy of a Keras initializer (same class and config).

    Unlike `keras.initializers.serialize`, which imports TensorFlow when it
    is installed, this stays within the active backend.
    """
    return type(initializer).from_config(initializer.get_config())


# The initializer, regularizer and constraint options of a weighted layer.
WEIGHT_OPTIONS = tuple(
    f"{weight}_{kind}"
    for kind in ("initializer", "regularizer", "constraint")
    for weight in ("kernel", "bias")
)


def serialize_options(layer, names=WEIGHT_OPTIONS):
    """`{name: serialized getattr(layer, name)}` for `get_config` (Keras
    initializers, regularizers, constraints; None stays None)."""
    return {
        name: keras.saving.serialize_keras_object(getattr(layer, name))
        for name in names
    }


def attributes(layer, names):
    """`{name: getattr(layer, name)}` for `get_config`."""
    return {name: getattr(layer, name) for name in names}


def serialize_choice(value):
    """A named choice (a string) as it is, anything else serialized (a
    Keras initializer given in place of a name)."""
    if value is None or isinstance(value, str):
        return value
    return keras.saving.serialize_keras_object(value)


def last_step(x, mask):
    """The output at the last unmasked step of each sequence of `x`
    `(batch, timesteps, ...)`; the last step when `mask` is None."""
    if mask is None:
        return x[:, -1]
    mask = ops.cast(mask, "int32")
    timesteps = ops.shape(mask)[1]
    # Index of the last True: T - 1 - (first True in the reversed mask).
    last = timesteps - 1 - ops.argmax(ops.flip(mask, axis=1), axis=1)
    index = ops.reshape(ops.cast(last, "int32"), (-1, 1, 1))
    return ops.take_along_axis(x, index, axis=1)[:, 0]


def concrete_value(x):
    """Returns `x` as a numpy array when its value is known now (eager),
    or None inside a traced or symbolic computation."""
    if x is None:
        return None
    if isinstance(x, np.ndarray | np.generic | float | int | list):
        return np.asarray(x)
    if isinstance(x, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            if isinstance(x, jax.core.Tracer):
                return None
        elif backend == "tensorflow":
            import tensorflow as tf

            if not tf.executing_eagerly() or not hasattr(x, "numpy"):
                return None
        elif backend == "torch":
            import torch

            if torch.compiler.is_compiling() or x.device.type == "meta":
                return None
        return ops.convert_to_numpy(x)
    except Exception:  # A value that cannot be read now is not concrete.
        return None


def shape_str(shape):
    return str(tuple(shape))


def iter_layers(root):
    """Yields `root` and every layer inside it (models, composite layers),
    each once, depth first. Uses only public attributes: a model's
    `layers` and the layers a layer holds as attributes or in lists."""
    seen = set()
    stack = [root]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        children = []
        if isinstance(layer, keras.Model):
            children.extend(layer.layers)
        for value in vars(layer).values():
            if isinstance(value, keras.layers.Layer):
                children.append(value)
            elif isinstance(value, (list, tuple)):
                children.extend(
                    v for v in value if isinstance(v, keras.layers.Layer)
                )
        stack.extend(reversed(children))
