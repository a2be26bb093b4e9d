"""Test helpers: references computed another way, and the layer checks.

`run_layer_test` follows keras-hub's `TestCase.run_layer_test`: one call
checks config round-trip, symbolic and eager calls, a `.keras` round-trip,
that a training step changes the weights and lowers the loss, and mixed
precision. Each layer's test file then stays short.

`check_streaming_contract` checks the library's own contract for a
streamable layer (`keras_mgrade.core.StreamingLayer`, or any registered
kind): the step loop equals the sequence call at lengths around the
scans' chunk boundaries, from a non-zero initial state; stateful chunked
calls equal one call; the step marks its quantization points.
`check_loads_on_other_backends` loads `.keras` files saved here on the
two other backends.
"""

import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from keras_mgrade import core

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


# Around the chunk boundaries of the scans: the chunked scan's chunk is
# the power of two nearest sqrt(T) (8 at T = 64), the log scan's 64.
CHUNK_LENGTHS = (1, 2, 63, 64, 65, 130)


def _uniform_states(shapes, batch, rng):
    return [
        rng.uniform(0.0, 1.0, (batch,) + tuple(s)).astype("float32")
        for s in shapes
    ]


@dataclasses.dataclass
class StreamingSpec:
    """How to check the streaming contract of one streamable layer.

    Attributes:
        name: the test id.
        make: `make(**extra) -> layer`, a new unbuilt layer whose `call`
            returns the whole output sequence (and, with `returns_state`,
            `[outputs, *final_states]`); `extra` holds `stateful=True` for
            the stateful check.
        features: input features per step.
        returns_state: `call` returns the final states too.
        takes_initial_state: `call` accepts `initial_state=`.
        stateful: the layer has a `stateful=True` mode.
        sequence_output: `call` returns the whole sequence; otherwise its
            output is the last step's (compared with the last step).
        points: the step marks quantization points (weights, states).
        prepare: `prepare(layer)` after building (e.g. set delays).
        initial_states: `initial_states(shapes, batch, rng)`, non-zero
            states to start from.
        lengths: the sequence lengths to compare step loop and call at.
    """

    name: str
    make: Callable
    features: int
    returns_state: bool = True
    takes_initial_state: bool = True
    stateful: bool = True
    sequence_output: bool = True
    points: bool = True
    prepare: Callable | None = None
    initial_states: Callable = _uniform_states
    lengths: tuple = CHUNK_LENGTHS

    def build(self, batch=2, **extra):
        layer = self.make(**extra)
        layer.build((batch, None, self.features))
        if self.prepare is not None:
            self.prepare(layer)
        return layer


def _call_sequence(spec, layer, x, states):
    kwargs = {"initial_state": states} if spec.takes_initial_state else {}
    out = layer(x, **kwargs)
    if not spec.returns_state:
        return to_numpy(out), None
    y, *final = out
    return to_numpy(y), [to_numpy(s) for s in final]


def _step_of(layer):
    kind = core.kind_of(layer)
    return lambda x_t, states: kind.step(layer, x_t, states)


def check_streaming_contract(spec, rtol=1e-5):
    """Checks the streaming contract of `spec`'s layer (see the module
    docstring); `rtol` bounds the relative error of step loop vs call."""
    rng = np.random.default_rng(0)
    layer = spec.build()
    shapes = core.kind_of(layer).state_shapes(layer)
    for timesteps in spec.lengths:
        x = rng.normal(size=(2, timesteps, spec.features)).astype("float32")
        states = spec.initial_states(shapes, 2, rng)
        if not spec.takes_initial_state:
            states = [np.zeros((2,) + tuple(s), "float32") for s in shapes]
        y, final = _call_sequence(spec, layer, x, states)
        y_step, final_step = core.run_steps(_step_of(layer), x, states)
        if not spec.sequence_output:
            y_step = y_step[:, -1]
        scale = max(float(np.max(np.abs(y))), 1e-6)
        np.testing.assert_allclose(
            y_step, y, rtol=rtol, atol=rtol * scale, err_msg=f"T={timesteps}"
        )
        if final is not None:
            assert len(final) == len(shapes), (len(final), shapes)
            for a, b in zip(final_step, final):
                np.testing.assert_allclose(
                    a, b, rtol=rtol, atol=1e-6, err_msg=f"T={timesteps}"
                )
    if spec.stateful:
        _check_stateful_chunks(spec, layer, rng)
    if spec.points:
        _check_points(layer, shapes, spec.features)


def _check_stateful_chunks(spec, reference, rng):
    x = rng.normal(size=(2, 45, spec.features)).astype("float32")
    expected = to_numpy(_first(reference(x)))
    stateful = spec.build(stateful=True)
    inputs = keras.Input(batch_shape=(2, None, spec.features))
    model = keras.Model(inputs, stateful(inputs))
    by_path = {_relative_path(w): w for w in stateful.weights}
    for value in reference.weights:
        by_path[_relative_path(value)].assign(value)

    def run(chunk):
        return to_numpy(_first(model(chunk)))

    got = np.concatenate([run(x[:, i : i + 15]) for i in (0, 15, 30)], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    stateful.reset_state()
    np.testing.assert_allclose(
        run(x[:, :15]), expected[:, :15], rtol=1e-5, atol=1e-5
    )


def _first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _relative_path(variable):
    # "mgrade_3/conv/kernel" -> "conv/kernel": the same weight in two
    # instances of a layer.
    return variable.path.split("/", 1)[-1]


def _check_points(layer, shapes, features):
    recorder = core.points.Recorder()
    x = ops.ones((1, features))
    states = [ops.ones((1,) + tuple(s)) for s in shapes]
    with core.points.scope(recorder):
        _step_of(layer)(x, states)
    kinds = set(recorder.points.values())
    if layer.trainable_weights:
        assert "weight" in kinds, recorder.points
    if shapes:
        assert "state" in kinds, recorder.points
    assert "activation" in kinds or "state" in kinds, recorder.points


def check_loads_on_other_backends(models, inputs):
    """Saves each model of `models` (`{name: model}`) and loads it on the
    two other backends, one process per backend: their outputs on
    `inputs[name]` must equal this backend's."""
    with tempfile.TemporaryDirectory() as tmp:
        expected = {}
        for name, model in models.items():
            model.save(os.path.join(tmp, f"{name}.keras"))
            np.save(os.path.join(tmp, f"{name}_x.npy"), inputs[name])
            expected[name] = to_numpy(model(inputs[name]))
        code = (
            "import glob, os, numpy as np, keras, keras_mgrade\n"
            f"for path in glob.glob(os.path.join({tmp!r}, '*.keras')):\n"
            "    m = keras.saving.load_model(path, compile=False)\n"
            "    x = np.load(path[:-6] + '_x.npy')\n"
            "    y = keras.ops.convert_to_numpy(m(x))\n"
            "    np.save(path[:-6] + '_y.npy', y)\n"
        )
        for other in ALL_BACKENDS:
            if other == BACKEND:
                continue
            run_in_backend(other, code)
            for name, want in expected.items():
                got = np.load(os.path.join(tmp, f"{name}_y.npy"))
                np.testing.assert_allclose(
                    got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {other}"
                )
