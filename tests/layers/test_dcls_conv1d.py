"""DCLSConv1D against the Gaussian formula, a numpy convolution, Keras'
DepthwiseConv1D/Conv1D, the `dcls` package and finite differences. The
streaming contract (step loop == call, stateful chunks, other backends)
is checked for every streamable layer in `test_streaming_contract.py`."""

import os
import tempfile

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import run_layer_test
from helpers import to_numpy
from keras import ops

from keras_mgrade.callbacks import SigmaAnnealing
from keras_mgrade.callbacks import dcls_layers
from keras_mgrade.callbacks import round_positions
from keras_mgrade.layers import DCLSConv1D


def _numpy_kernel(w, p, sigma, max_delay, normalize):
    tau = np.arange(max_delay, dtype="float64").reshape((-1,) + (1,) * w.ndim)
    phi = np.exp(-((tau - p[None]) ** 2) / (2 * sigma**2))
    if normalize:
        phi = phi / (phi.sum(axis=0, keepdims=True) + 1e-7)
    return (w[None] * phi).sum(axis=1)


def _numpy_causal_conv(x, kernel, bias=None):
    """y[t] = sum_tau k[tau] x[t - tau]; kernel (G, C) or (G, C, F)."""
    g = kernel.shape[0]
    padded = np.concatenate([np.zeros((x.shape[0], g - 1) + x.shape[2:]), x], 1)
    out = []
    for t in range(x.shape[1]):
        window = padded[:, t : t + g][:, ::-1]  # window[:, tau] = x[t - tau]
        if kernel.ndim == 2:
            out.append(np.einsum("btc,tc->bc", window, kernel))
        else:
            out.append(np.einsum("btc,tcf->bf", window, kernel))
    y = np.stack(out, 1)
    return y if bias is None else y + bias


def _layer(**kwargs):
    kwargs.setdefault("positions_initializer", "uniform")
    kwargs.setdefault("bias_initializer", "random_normal")
    return DCLSConv1D(**kwargs)


def _x(timesteps=40, channels=4, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, timesteps, channels)).astype("float32")


def test_layer_contract():
    x = _x(12, 3)
    run_layer_test(
        DCLSConv1D,
        init_kwargs={"kernel_taps": 2, "max_delay": 5},
        input_data=x,
        expected_output_shape=(2, 12, 3),
        expected_num_trainable_weights=3,  # kernel, positions, bias
        expected_num_non_trainable_weights=1,  # sigma
    )
    run_layer_test(
        DCLSConv1D,
        init_kwargs={"kernel_taps": 3, "max_delay": 6, "filters": 5},
        input_data=x,
        expected_output_shape=(2, 12, 5),
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=1,
    )


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("filters", [None, 3])
def test_dense_kernel_is_the_gaussian_formula(normalize, filters):
    layer = _layer(
        kernel_taps=4,
        max_delay=12,
        filters=filters,
        sigma=1.3,
        normalize_taps=normalize,
    )
    layer.build((None, None, 5))
    w, p = to_numpy(layer.tap_weights), to_numpy(layer.positions)
    expected = _numpy_kernel(w, p, 1.3, 12, normalize)
    np.testing.assert_allclose(
        to_numpy(layer.dense_kernel()), expected, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("filters", [None, 3])
def test_output_is_numpy_causal_convolution(filters):
    x = _x(37, 5)
    layer = _layer(kernel_taps=4, max_delay=12, filters=filters)
    y = layer(x)
    expected = _numpy_causal_conv(
        x, to_numpy(layer.dense_kernel()), to_numpy(layer.bias)
    )
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-5, atol=1e-5)


def test_integer_delays_equal_keras_depthwise_conv1d():
    x = _x(30, 4)
    layer = _layer(kernel_taps=3, max_delay=9)
    layer.build(x.shape)
    layer.set_positions(np.array([[0, 2, 5, 8], [3, 3, 0, 1], [8, 7, 6, 4.0]]))
    layer.round_positions()
    y = to_numpy(layer(x))
    # Keras' kernel index 0 multiplies the oldest sample of the window;
    # the input is padded causally (8 zeros in front), padding "valid".
    keras_conv = keras.layers.DepthwiseConv1D(9, padding="valid")
    padded = np.pad(x, [(0, 0), (8, 0), (0, 0)])
    keras_conv.build(padded.shape)
    kernel = to_numpy(layer.dense_kernel())[::-1]
    keras_conv.set_weights([kernel[:, :, None], to_numpy(layer.bias)])
    np.testing.assert_allclose(
        y, to_numpy(keras_conv(padded)), rtol=1e-5, atol=1e-6
    )


def test_integer_delays_equal_keras_conv1d():
    x = _x(30, 4)
    layer = _layer(kernel_taps=2, max_delay=7, filters=3)
    layer.build(x.shape)
    p = np.random.default_rng(1).integers(0, 7, (2, 4, 3)).astype("float32")
    layer.set_positions(p)
    layer.round_positions()
    keras_conv = keras.layers.Conv1D(3, 7, padding="causal")
    keras_conv.build(x.shape)
    kernel = to_numpy(layer.dense_kernel())[::-1]
    keras_conv.set_weights([kernel, to_numpy(layer.bias)])
    np.testing.assert_allclose(
        to_numpy(layer(x)), to_numpy(keras_conv(x)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("rounded", [True, False])
def test_impulse_comes_out_at_each_delay(rounded):
    # Rounded: exact one-hot taps. Dense with sigma = 0.05: the Gaussian
    # is exp(-200) = 0 one sample away, so also exact.
    layer = DCLSConv1D(3, 16, sigma=0.05, use_bias=False)
    x = np.zeros((1, 20, 2), "float32")
    x[0, 0] = 1.0
    layer.build(x.shape)
    delays = np.array([[0.0, 4.0], [7.0, 9.0], [15.0, 2.0]])
    layer.set_positions(delays)
    if rounded:
        layer.round_positions()
    y = to_numpy(layer(x))[0]
    w = to_numpy(layer.tap_weights)
    expected = np.zeros((20, 2))
    for n in range(3):
        for c in range(2):
            expected[int(delays[n, c]), c] += w[n, c]
    np.testing.assert_array_equal(y, expected.astype("float32"))


def test_matches_dcls_package_kernel():
    # Outside oracle: ConstructKernel1d of the `dcls` package ('gauss',
    # normalised), with its conventions mapped: sigma_eff = |SIG| + 0.27,
    # positions centred (P + span // 2).
    torch = pytest.importorskip("torch")
    modules = pytest.importorskip("DCLS.construct.modules")
    channels, taps, span = 3, 4, 11
    rng = np.random.default_rng(2)
    w = rng.normal(size=(channels, 1, taps)).astype("float32")
    p_centred = rng.uniform(-4, 4, (1, channels, 1, taps)).astype("float32")
    sig = np.full_like(p_centred, 0.5)
    construct = modules.ConstructKernel1d(
        channels, channels, channels, taps, (span,), "gauss"
    )
    with torch.no_grad():
        expected = construct(
            torch.from_numpy(w),
            torch.from_numpy(p_centred),
            torch.from_numpy(sig),
        ).numpy()[:, 0, :]  # (channels, span)
    layer = DCLSConv1D(taps, span, sigma=0.5 + 0.27, normalize_taps=True)
    layer.build((None, None, channels))
    layer.kernel.assign(w[:, 0, :].T)
    layer.set_positions(p_centred[0, :, 0, :].T + span // 2)
    np.testing.assert_allclose(
        to_numpy(layer.dense_kernel()), expected.T, rtol=1e-5, atol=1e-6
    )


def test_position_gradients_match_finite_differences():
    x = _x(25, 3, seed=3)
    weights = np.random.default_rng(4).normal(size=(2, 25, 3)).astype("float32")
    layer = _layer(kernel_taps=2, max_delay=10, sigma=1.1)
    layer.build(x.shape)
    base = to_numpy(layer.positions).astype("float64")

    def loss_at(p):
        layer.set_positions(p)
        return float(np.sum(to_numpy(layer(x)) * weights))

    numeric = np.zeros_like(base)
    eps = 1e-2
    for idx in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (loss_at(plus) - loss_at(minus)) / (2 * eps)
    layer.set_positions(base)

    def fn(p_raw):
        layer.positions_raw.assign(p_raw)
        return layer(x) * ops.convert_to_tensor(weights)

    if BACKEND == "jax":
        # Stateless differentiation: positions as an explicit input.
        import jax

        def loss(p_raw):
            values = [
                p_raw if v is layer.positions_raw else v.value
                for v in layer.trainable_variables
            ]
            out, _ = layer.stateless_call(
                values, [v.value for v in layer.non_trainable_variables], x
            )
            return ops.sum(out * weights)

        (analytic,) = [jax.grad(loss)(layer.positions_raw.value)]
    else:
        (analytic,) = _variable_gradients(layer, x, weights)
    # d/dp = d/dp_raw / multiplier.
    analytic = np.asarray(analytic) / layer.positions_lr_multiplier
    np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=2e-3)


def _variable_gradients(layer, x, weights):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) * weights)
        return [tape.gradient(loss, layer.positions_raw.value).numpy()]
    import torch

    layer.positions_raw.value.grad = None
    loss = (layer(x) * torch.from_numpy(weights)).sum()
    loss.backward()
    return [layer.positions_raw.value.grad.numpy()]


@pytest.mark.slow
def test_delay_is_learned_from_a_wrong_start():
    # y_t = x_{t-17}: one normalised tap, window 32, started at 4 and at
    # 28; sigma annealed 6 -> 0.3 so the tap can find the delay from afar.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 200, 1)).astype("float32")
    y = np.zeros_like(x)
    y[:, 17:] = x[:, :-17]
    for start in (4.0, 28.0):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((200, 1))
        layer = DCLSConv1D(
            1,
            32,
            sigma=6.0,
            normalize_taps=True,
            use_bias=False,
            kernel_initializer="ones",
        )
        model = keras.Model(inputs, layer(inputs))
        layer.set_positions(np.array([[start]]))
        model.compile(keras.optimizers.Adam(0.05), "mse")
        history = model.fit(
            x,
            y,
            epochs=60,
            batch_size=16,
            verbose=0,
            callbacks=[SigmaAnnealing(end=0.3, fraction=0.7)],
        )
        learned = float(to_numpy(layer.positions)[0, 0])
        assert abs(learned - 17.0) <= 0.5, (start, learned)
        assert history.history["loss"][-1] < 0.01
        assert history.history["sigma"][-1] == pytest.approx(0.3, rel=1e-5)


def test_no_state_when_window_is_one():
    x = _x(10, 3)
    layer = DCLSConv1D(1, 1, return_state=True)
    outputs = layer(x)
    assert len(outputs) == 1 and layer.state_shapes == []
    y, states = layer.step(x[:, 0], [])
    assert states == []
    np.testing.assert_allclose(to_numpy(y), to_numpy(outputs[0])[:, 0])
    # The mask follows the outputs: one entry, no state entry.
    assert len(layer.compute_mask(x, np.ones((2, 10), bool))) == 1
    inputs = keras.Input((None, 3))
    masked = keras.layers.Masking()(inputs)
    (y,) = DCLSConv1D(1, 1, return_state=True)(masked)
    model = keras.Model(inputs, y)
    np.testing.assert_allclose(
        to_numpy(model(x)), to_numpy(model.layers[-1](x)[0]), rtol=1e-6
    )


def test_positions_are_clamped_after_updates():
    x = _x(20, 2)
    layer = DCLSConv1D(2, 6, positions_lr_multiplier=50.0)
    inputs = keras.Input((20, 2))
    model = keras.Model(inputs, layer(inputs))
    model.compile(keras.optimizers.SGD(100.0), "mse")
    model.fit(x, 100 * np.ones((2, 20, 2)), epochs=3, verbose=0)
    p = to_numpy(layer.positions)
    assert p.min() >= 0.0 and p.max() <= 5.0


def test_round_positions_freezes_delays_and_saves():
    x = _x(20, 3)
    inputs = keras.Input((20, 3))
    layer = _layer(kernel_taps=2, max_delay=8)
    model = keras.Model(inputs, layer(inputs))
    assert round_positions(model) == 1 and dcls_layers(model) == [layer]
    p = to_numpy(layer.positions)
    np.testing.assert_array_equal(p, np.round(p))
    assert layer.rounded and not layer.positions_raw.trainable
    expected = to_numpy(model(x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    loaded_layer = loaded.layers[-1]
    assert loaded_layer.rounded and not loaded_layer.positions_raw.trainable
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-6)


def test_sigma_setter_and_annealing_schedule():
    layer = DCLSConv1D(2, 8, sigma=3.0)
    layer.build((None, None, 2))
    assert layer.sigma == pytest.approx(3.0)
    layer.sigma = 0.5
    assert layer.sigma == pytest.approx(0.5)
    schedule = SigmaAnnealing(end=0.25, fraction=0.5, start=4.0)
    values = [schedule.sigma_at(e, 10) for e in range(10)]
    assert values[0] == pytest.approx(4.0)
    assert values[5:] == pytest.approx([0.25] * 5)
    ratios = np.array(values[1:6]) / np.array(values[:5])
    np.testing.assert_allclose(ratios, ratios[0])  # exponential decay


def _built(**kwargs):
    layer = DCLSConv1D(2, 8, **kwargs)
    layer.build((None, None, 3))
    return layer


def _set_sigma(value):
    _built().sigma = value


BAD_ARGUMENTS = [
    ("kernel_taps_zero", lambda: DCLSConv1D(0, 8), "kernel_taps=0"),
    ("max_delay_zero", lambda: DCLSConv1D(1, 0), "max_delay=0"),
    (
        "taps_over_window",
        lambda: DCLSConv1D(9, 8),
        "kernel_taps=9, max_delay=8",
    ),
    ("sigma_zero", lambda: DCLSConv1D(2, 8, sigma=0), "sigma=0"),
    ("sigma_negative", lambda: DCLSConv1D(2, 8, sigma=-1.0), "sigma=-1"),
    ("sigma_nan", lambda: DCLSConv1D(2, 8, sigma=float("nan")), "sigma=nan"),
    (
        "unknown_positions_initializer",
        lambda: DCLSConv1D(2, 8, positions_initializer="random"),
        "positions_initializer='random'",
    ),
    (
        "lr_multiplier_zero",
        lambda: DCLSConv1D(2, 8, positions_lr_multiplier=0),
        "positions_lr_multiplier=0",
    ),
    (
        "rank_2_inputs",
        lambda: DCLSConv1D(2, 8)(np.zeros((2, 5), "float32")),
        r"inputs.shape=\(2, 5\)",
    ),
    (
        "positions_above_window",
        lambda: _built().set_positions(np.full((2, 3), 8.0)),
        r"range \[8.0, 8.0\]",
    ),
    (
        "positions_negative",
        lambda: _built().set_positions(np.full((2, 3), -1.0)),
        r"range \[-1.0",
    ),
    (
        "positions_shape",
        lambda: _built().set_positions(np.zeros((3, 3))),
        r"positions.shape=\(3, 3\)",
    ),
    ("sigma_setter_zero", lambda: _set_sigma(0.0), "sigma=0"),
    (
        "initial_state_shape",
        lambda: DCLSConv1D(2, 8)(
            np.zeros((2, 4, 3), "float32"), initial_state=np.zeros((2, 3, 3))
        ),
        r"initial_state\[0\].shape=\(2, 3, 3\)",
    ),
    (
        "step_state_count",
        lambda: _built().step(np.zeros((2, 3), "float32"), []),
        "states of length 0",
    ),
    (
        "stateful_without_batch_size",
        lambda: DCLSConv1D(2, 8, stateful=True)(keras.Input((4, 3))),
        "static batch size",
    ),
]


@pytest.mark.parametrize(
    "make, message",
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
