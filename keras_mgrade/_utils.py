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
