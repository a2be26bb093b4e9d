"""Test helpers: references computed another way, and one layer check.

`run_layer_test` follows keras-hub's `TestCase.run_layer_test`: one call
checks config round-trip, symbolic and eager calls, a `.keras` round-trip,
that a training step changes the weights and lowers the loss, and mixed
precision. Each layer's test file then stays short.
"""

import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
from keras import ops

BACKEND = keras.backend.backend()
ALL_BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def to_numpy(x):
    return ops.convert_to_numpy(x)


def assert_close(actual, expected, rtol, atol=0.0, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(to_numpy(actual), dtype="float64"),
        np.asarray(to_numpy(expected), dtype="float64"),
        rtol=rtol,
        atol=atol,
        err_msg=err_msg,
    )


def max_relative_error(actual, expected):
    """max |actual - expected| / max |expected|."""
    actual = np.asarray(to_numpy(actual), dtype="float64")
    expected = np.asarray(to_numpy(expected), dtype="float64")
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def numpy_linear_recurrence(a, b, h0=None):
    """h_t = a_t h_{t-1} + b_t in float64, a plain loop."""
    a = np.asarray(a, "float64")
    b = np.asarray(b, "float64")
    h = np.zeros(a[:, 0].shape) if h0 is None else np.asarray(h0, "float64")
    out = np.empty_like(a)
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out


def numpy_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_min_gru(x, kernel, bias, h0=None):
    """MinGRU in float64 numpy, step by step (Feng et al., B.3)."""
    x = np.asarray(x, "float64")
    kernel = np.asarray(kernel, "float64")
    units = kernel.shape[1] // 2
    pre = x @ kernel
    if bias is not None:
        pre = pre + np.asarray(bias, "float64")
    z = numpy_sigmoid(pre[..., :units])
    kh = pre[..., units:]
    g = np.where(kh >= 0, kh + 0.5, numpy_sigmoid(kh))
    return numpy_linear_recurrence(1.0 - z, z * g, h0)


def gradients(fn, *args):
    """Gradients of sum(fn(*args)) w.r.t. every arg, on any backend."""
    args = [ops.convert_to_tensor(np.asarray(a)) for a in args]
    if BACKEND == "jax":
        import jax

        return [
            np.asarray(g)
            for g in jax.grad(
                lambda *a: ops.sum(fn(*a)), argnums=tuple(range(len(args)))
            )(*args)
        ]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            for a in args:
                tape.watch(a)
            loss = tf.reduce_sum(fn(*args))
        return [g.numpy() for g in tape.gradient(loss, args)]

    args = [a.detach().clone().requires_grad_(True) for a in args]
    fn(*args).sum().backward()
    return [a.grad.numpy() for a in args]


def run_in_backend(backend, code, timeout=600):
    """Runs python `code` in a fresh process with KERAS_BACKEND=backend and
    returns its stdout. Raises with stderr on failure."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"subprocess on {backend} failed:\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights=0,
    run_training_check=True,
    run_mixed_precision_check=True,
    custom_objects=None,
):
    """Checks one layer the way keras-hub's run_layer_test does."""
    # Config round-trip.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, "get_config/from_config differ"

    # Eager call: output shape and weights.
    layer = layer_cls(**init_kwargs)
    output = layer(input_data)
    assert tuple(output.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert (
        len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    )

    # Symbolic call with an unknown batch size.
    sym = keras.Input(shape=input_data.shape[1:], dtype=input_data.dtype)
    sym_out = layer_cls(**init_kwargs)(sym)
    assert tuple(sym_out.shape)[1:] == tuple(expected_output_shape)[1:]

    # .keras round-trip gives the same numbers.
    inputs = keras.Input(shape=input_data.shape[1:], dtype=input_data.dtype)
    model = keras.Model(inputs, layer(inputs))
    expected = to_numpy(model(input_data))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, custom_objects=custom_objects)
    np.testing.assert_allclose(
        to_numpy(loaded(input_data)), expected, rtol=1e-6, atol=1e-6
    )

    if run_training_check:
        _training_check(layer_cls, init_kwargs, input_data)
    if run_mixed_precision_check:
        _mixed_precision_check(layer_cls, init_kwargs, input_data, expected)


def _training_check(layer_cls, init_kwargs, input_data):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=input_data.shape[1:], dtype=input_data.dtype)
    layer = layer_cls(**init_kwargs)
    model = keras.Model(inputs, layer(inputs))
    target = np.random.default_rng(1).normal(
        size=(input_data.shape[0],) + tuple(model.output.shape[1:])
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    before = [to_numpy(w).copy() for w in layer.trainable_weights]
    history = model.fit(input_data, target, epochs=5, verbose=0)
    after = [to_numpy(w) for w in layer.trainable_weights]
    assert all(not np.array_equal(b, a) for b, a in zip(before, after)), (
        "some trainable weight did not change in training"
    )
    losses = history.history["loss"]
    assert losses[-1] < losses[0], f"loss did not decrease: {losses}"


def _mixed_precision_check(layer_cls, init_kwargs, input_data, expected):
    for policy, dtype in (
        ("mixed_float16", "float16"),
        ("mixed_bfloat16", "bfloat16"),
    ):
        layer = layer_cls(**init_kwargs, dtype=policy)
        output = layer(input_data)
        assert keras.backend.standardize_dtype(output.dtype) == dtype
        for w in layer.weights:
            assert keras.backend.standardize_dtype(w.dtype) == "float32"
        assert np.all(np.isfinite(to_numpy(ops.cast(output, "float32"))))
