"""Quantization-aware training over whole sequences equals the step graph
run one time step at a time.

`QuantizedModel.call` runs every position-wise part of the step graph on
all time steps at once and scans only the MinGRU state update;
`QuantizedModel._call_steps` is the reference: the step graph
(`core.run_step`) scanned over time, as the int8 file computes. Both must
give the same outputs, the same gradients and the same range updates
(the batch min/max of every point), for every block option and every
registered kind.
"""

import keras
import numpy as np
import pytest
from helpers import BACKEND

from keras_mgrade.layers import MGRADE
from keras_mgrade.layers import LastTimestep
from keras_mgrade.models import mgrade_classifier
from keras_mgrade.models import mgrade_seq2seq
from keras_mgrade.quantization import quantize_model

T, FEATURES = 8, 2
SMALL = dict(units=8, max_delay=4, kernel_taps=2, timesteps=T, seed=1)


def _sequential(*layers):
    return keras.Sequential([keras.Input((T, FEATURES)), *layers])


MODELS = {
    # LayerNormalization, conv + MinGRU + MLP, 2 blocks, mean pooling.
    "classifier-2-blocks": lambda: mgrade_classifier(
        FEATURES, 3, num_layers=2, norm="layer", **SMALL
    ),
    # One block of each other option: rounded delays with an input
    # projection and no norm, MinGRU only with RMS norm and no MLP,
    # convolution only; a per-step output (seq2seq).
    "block-options": lambda: _sequential(
        MGRADE(
            8,
            kernel_taps=2,
            max_delay=5,
            rounded=True,
            project_inputs=True,
            mlp_activation="relu",
            norm=None,
            seed=2,
        ),
        MGRADE(8, use_conv=False, norm="rms", mlp_ratio=0, seed=3),
        MGRADE(8, kernel_taps=2, max_delay=4, use_recurrence=False, seed=4),
        keras.layers.Dense(2),
    ),
    # The registered Keras kinds, and the last step as output.
    "conv1d-gru-lstm-last-step": lambda: _sequential(
        keras.layers.Conv1D(6, 3, padding="causal", dilation_rate=2),
        keras.layers.GRU(5, return_sequences=True),
        keras.layers.Conv1D(4, 2, padding="causal", activation="relu"),
        keras.layers.LSTM(4, return_sequences=True),
        keras.layers.Dense(2),
        LastTimestep(),
    ),
}


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _compiled(qat, fn):
    """`fn(x, training)` compiled once: a `tf.function` on TensorFlow, a
    `jax.jit` of its stateless form on JAX (their eager runs of the
    reference scan's many small ops are slow); as is on PyTorch."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if BACKEND != "jax":
        return fn
    import jax

    variables = qat.variables

    def pure(values, x, training):
        mapping = list(zip(variables, values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            y = fn(x, training)
        new = [scope.get_current_value(v) for v in variables]
        return y, [v if n is None else n for n, v in zip(new, values)]

    jitted = jax.jit(pure, static_argnums=2)

    def run(x, training=False):
        y, new = jitted([v.value for v in variables], x, training)
        for v, value in zip(variables, new):
            v.assign(value)
        return y

    run.pure = pure
    return run


def _gradients(qat, fn, x, weights):
    """Gradients of `sum(weights * fn(x))` w.r.t. the trainable
    variables of `qat`."""
    variables = qat.trainable_variables
    if BACKEND == "jax":
        import jax

        def loss(values):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return keras.ops.sum(fn(x) * weights)

        values = [v.value for v in variables]
        return [np.asarray(g) for g in jax.jit(jax.grad(loss))(values)]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn(x) * weights)
        return [g.numpy() for g in tape.gradient(loss, variables)]
    for v in variables:
        v.value.grad = None
    keras.ops.sum(fn(x) * keras.ops.convert_to_tensor(weights)).backward()
    return [v.value.grad.numpy() for v in variables]


def _reset_ranges(qat, ranges, initialized):
    qat.ranges.assign(ranges)
    qat.initialized.assign(initialized)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_sequence_equals_steps(name):
    model = MODELS[name]()
    qat = quantize_model(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, T, FEATURES)).astype("float32")
    zeros = np.zeros(tuple(qat.ranges.shape), "float32")

    steps = _compiled(
        qat, lambda x, training=False: qat._call_steps(x, training)
    )
    sequence = _compiled(
        qat, lambda x, training=False: qat(x, training=training)
    )

    # The first training batch sets every range to the batch min/max.
    steps(x, training=True)
    expected = qat.range_table()
    first = _numpy(qat.ranges)
    _reset_ranges(qat, zeros, 0.0)
    sequence(x, training=True)
    got = qat.range_table()
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(
            got[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=key
        )

    # A second batch: fake quantization with these ranges, then the
    # moving-average update.
    x2 = 1.5 * rng.normal(size=x.shape).astype("float32")
    y_steps = _numpy(steps(x2, training=True))
    ema = _numpy(qat.ranges)
    _reset_ranges(qat, first, 1.0)
    y = _numpy(sequence(x2, training=True))
    np.testing.assert_allclose(y, y_steps, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_numpy(qat.ranges), ema, rtol=1e-5, atol=1e-6)
    # The ranges moved, so the fake quantization was active.
    assert np.abs(ema - first).max() > 0

    # Gradients (inference mode: frozen ranges) w.r.t. every weight.
    weights = rng.normal(size=y.shape).astype("float32")
    g_steps = _gradients(qat, steps, x2, weights)
    g = _gradients(qat, sequence, x2, weights)
    assert len(g) == len(qat.trainable_variables) > 0
    for a, b, v in zip(g, g_steps, qat.trainable_variables):
        scale = max(np.abs(b).max(), 1e-3)
        np.testing.assert_allclose(
            a / scale, b / scale, atol=1e-4, err_msg=v.path
        )
    assert any(np.abs(b).max() > 0 for b in g_steps)


def test_fit_trains_with_the_sequence_path():
    """`fit` (compiled where the backend compiles) runs the sequence path
    and learns; its first range update is the batch min/max."""
    model = mgrade_seq2seq(FEATURES, 2, num_layers=1, norm=None, **SMALL)
    qat = quantize_model(model)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, T, FEATURES)).astype("float32")
    y = np.roll(x, 2, axis=1)
    qat.compile(keras.optimizers.Adam(1e-2), "mse")
    losses = qat.fit(x, y, epochs=5, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    low, high = qat.range_table()["inputs/x"]
    assert low == pytest.approx(min(x.min(), 0.0), rel=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's graphs")
def test_xla_loop_equals_the_graph_loop(monkeypatch):
    """In a traced TensorFlow graph the MinGRU state update loop is
    compiled by XLA (`_xla_scan`); it computes what the same loop in the
    graph computes, bit for bit, in training and inference."""
    import tensorflow as tf

    from keras_mgrade.core import points
    from keras_mgrade.quantization import model as qat_module

    model = mgrade_seq2seq(FEATURES, 2, num_layers=1, norm=None, **SMALL)
    qat = quantize_model(model)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, T, FEATURES)).astype("float32")
    qat(x, training=True)  # sets the ranges
    ranges = _numpy(qat.ranges)
    calls = []

    def counted(fn, states, inputs):
        calls.append(1)
        return xla(fn, states, inputs)

    xla = qat_module._xla_scan
    monkeypatch.setattr(qat_module, "_xla_scan", counted)
    compiled = [
        tf.function(lambda x: qat(x, training=True))(x).numpy(),
        _numpy(qat.ranges),
        tf.function(lambda x: qat(x, training=False))(x).numpy(),
    ]
    assert calls  # the compiled loop ran
    monkeypatch.setattr(
        qat_module, "_xla_scan", lambda fn, s, i: points.scan_time(fn, s, i)
    )
    qat.ranges.assign(ranges)
    plain = [
        tf.function(lambda x: qat(x, training=True))(x).numpy(),
        _numpy(qat.ranges),
        tf.function(lambda x: qat(x, training=False))(x).numpy(),
    ]
    for a, b in zip(compiled, plain):
        np.testing.assert_array_equal(a, b)
