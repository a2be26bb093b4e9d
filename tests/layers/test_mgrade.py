"""MGRADE block: its pieces against their own layers, masks, dropout,
serialization, errors; one long sequence against the step loop. The
streaming contract of every block option (step loop == call, stateful
chunks, other backends) is in `test_streaming_contract.py`."""

import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from helpers import ROOT
from helpers import max_relative_error
from helpers import run_layer_test
from helpers import to_numpy
from keras import ops

from keras_mgrade import core
from keras_mgrade.activations import sigmoid_gelu
from keras_mgrade.layers import MGRADE
from keras_mgrade.layers import streaming_ops
from keras_mgrade.models import mgrade_seq2seq


def _x(timesteps, units=16, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, timesteps, units)).astype("float32")


def test_layer_contract():
    x = _x(10, units=4)
    run_layer_test(
        MGRADE,
        init_kwargs={"units": 4, "kernel_taps": 2, "max_delay": 4},
        input_data=x,
        expected_output_shape=(2, 10, 4),
        # conv kernel, positions, bias; min_gru kernel, bias; mlp_norm
        # gamma, beta; mlp_in, mlp_out kernel+bias; post_norm gamma, beta.
        expected_num_trainable_weights=13,
        expected_num_non_trainable_weights=1,  # sigma
    )


def test_layer_contract_batch_norm():
    run_layer_test(
        MGRADE,
        init_kwargs={
            "units": 4,
            "kernel_taps": 2,
            "max_delay": 4,
            "norm": "batch",
        },
        input_data=_x(10, units=4),
        expected_output_shape=(2, 10, 4),
        expected_num_trainable_weights=13,
        # sigma; the moving mean and variance of the two norms.
        expected_num_non_trainable_weights=5,
    )


def _random_statistics(block, seed=3):
    rng = np.random.default_rng(seed)
    for norm in (block.mlp_norm, block.post_norm):
        if norm is None:
            continue
        width = norm.moving_mean.shape[-1]
        norm.moving_mean.assign(rng.normal(size=width))
        norm.moving_variance.assign(rng.uniform(0.3, 3.0, width))
        norm.gamma.assign(rng.normal(size=width))
        norm.beta.assign(rng.normal(size=width))


def test_batch_norm_statistics_over_batch_and_unmasked_time():
    # Training: each channel normalised with the mean and variance over
    # the batch and the unmasked steps; the moving averages move 10 % of
    # the way to them. Inference: the moving statistics.
    x = _x(12, units=6)
    mask = np.ones((2, 12), bool)
    mask[0, 5:] = False
    block = MGRADE(6, kernel_taps=2, max_delay=4, mlp_ratio=0, norm="batch")
    out = to_numpy(block(x, mask=mask, training=True))
    u = x + to_numpy(block.conv(x)[0])
    v = u + to_numpy(block.min_gru(u, mask=mask)[0])
    kept = v[mask]  # (unmasked steps, channels)
    mean, var = kept.mean(0), kept.var(0)
    expected = (v - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(out[mask], expected[mask], atol=1e-4)
    norm = block.post_norm
    np.testing.assert_allclose(
        to_numpy(norm.moving_mean), 0.1 * mean, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        to_numpy(norm.moving_variance), 0.9 + 0.1 * var, rtol=1e-4
    )
    inference = to_numpy(block(x, mask=mask))
    moving = (v - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-5)
    np.testing.assert_allclose(inference, moving, atol=1e-4)


def test_batch_norm_step_is_a_folded_affine():
    # The step form of BatchNormalization against Keras' inference call,
    # and a Dense with a norm folded into its input and one folded into
    # its output against the three layers applied in turn.
    x = ops.convert_to_tensor(_x(1, 16)[:, 0])
    bn_in = keras.layers.BatchNormalization(epsilon=1e-3)
    bn_out = keras.layers.BatchNormalization(epsilon=1e-5)
    linear = keras.layers.Dense(5, bias_initializer="random_normal")
    bn_out(linear(bn_in(x)))  # builds them
    _random_statistics(SimpleNamespace(mlp_norm=bn_in, post_norm=bn_out))
    np.testing.assert_allclose(
        to_numpy(streaming_ops.batch_norm(x, bn_in)),
        to_numpy(bn_in(x)),
        rtol=1e-5,
        atol=1e-5,
    )
    expected = to_numpy(bn_out(linear(bn_in(x))))
    got = streaming_ops.dense(
        2.0 * x,
        linear,
        input_scale=2.0,
        output_scale=3.0,
        input_affine=lambda: streaming_ops.batch_norm_affine(bn_in),
        output_affine=lambda: streaming_ops.batch_norm_affine(bn_out),
    )
    np.testing.assert_allclose(
        to_numpy(got), 3.0 * expected, rtol=1e-4, atol=1e-4
    )


@pytest.mark.slow
def test_long_sequence_equals_step_loop():
    # The one long check: 1024 steps of the default block from non-zero
    # states (the contract test covers every option at shorter lengths).
    x = _x(1024)
    block = MGRADE(16, kernel_taps=4, max_delay=24, return_state=True)
    block.build(x.shape)
    rng = np.random.default_rng(1)
    states = [
        rng.uniform(0.0, 1.0, (2,) + s).astype("float32")
        for s in block.state_shapes
    ]
    y, *final = block(x, initial_state=states)
    y_ref, final_ref = core.run_steps(block.step, x, states)
    assert max_relative_error(y, y_ref) <= 1e-5
    for s, s_ref in zip(final, final_ref):
        np.testing.assert_allclose(to_numpy(s), s_ref, rtol=1e-5, atol=1e-6)


def test_block_is_the_sum_of_its_parts():
    # Recompute u, v, y, out from the sublayers called on their own.
    x = _x(50)
    block = MGRADE(16, kernel_taps=3, max_delay=8)
    out = to_numpy(block(x))
    conv_out = block.conv(x)[0]
    u = x + to_numpy(conv_out)
    v = u + to_numpy(block.min_gru(u)[0])
    hidden = sigmoid_gelu(block.mlp_in(block.mlp_norm(v)))
    y = v + to_numpy(block.mlp_out(hidden))
    expected = to_numpy(block.post_norm(y))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_last_unmasked_step():
    x = _x(12)
    mask = np.ones((2, 12), bool)
    mask[0, 8:] = False
    block = MGRADE(16, kernel_taps=2, max_delay=4, return_sequences=False)
    last = to_numpy(block(x, mask=mask))
    full = MGRADE.from_config({**block.get_config(), "return_sequences": True})
    full.build(x.shape)
    full.set_weights(block.get_weights())
    seq = to_numpy(full(x, mask=mask))
    np.testing.assert_allclose(last[0], seq[0, 7], rtol=1e-6)
    np.testing.assert_allclose(last[1], seq[1, 11], rtol=1e-6)


def test_step_norm_matches_keras_norms():
    x = ops.convert_to_tensor(_x(1, 16)[:, 0])
    for layer in (
        keras.layers.LayerNormalization(
            epsilon=1e-5,
            beta_initializer="random_normal",
            gamma_initializer="random_normal",
        ),
        keras.layers.RMSNormalization(epsilon=1e-5),
    ):
        expected = to_numpy(layer(x))
        got = to_numpy(streaming_ops.layer_norm(x, layer))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_fit_with_dropout():
    x = _x(20, units=8)
    inputs = keras.Input((20, 8))
    model = keras.Model(
        inputs, MGRADE(8, kernel_taps=2, max_delay=4, dropout=0.2)(inputs)
    )
    model.compile("adam", "mse")
    history = model.fit(x, np.zeros_like(x), epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # No dropout at inference: two calls agree.
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(model(x)))


@pytest.mark.parametrize("norm", ["rms", "batch"])
def test_save_load_keras_file(norm):
    x = _x(20)
    inputs = keras.Input((20, 16))
    block = MGRADE(16, kernel_taps=2, max_delay=6, norm=norm, mlp_ratio=1)
    model = keras.Model(inputs, block(inputs))
    block.conv.sigma = 1.7
    if norm == "batch":
        _random_statistics(block)  # the moving statistics are saved too
    expected = to_numpy(model(x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    assert loaded.layers[-1].conv.sigma == pytest.approx(1.7)
    assert loaded.layers[-1].norm == norm
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-6)


def _gate_bias(block):
    return to_numpy(block.min_gru.bias)[: block.units].astype("float64")


def test_gate_bias_auto_gives_long_memories_with_the_convolution():
    x = _x(5)
    auto = dict(gate_bias_initializer="auto")
    with_conv = MGRADE(16, kernel_taps=2, max_delay=4, seed=1, **auto)
    without = MGRADE(16, use_conv=False, **auto)
    default = MGRADE(16, kernel_taps=2, max_delay=4, seed=1)
    chrono = MGRADE(
        16, kernel_taps=2, max_delay=4, gate_bias_initializer="chrono"
    )
    for block in (with_conv, without, default, chrono):
        block(x)
    # "auto": memories 1 / z = 1 + exp(-b) in [2, 256] with the
    # convolution, a zero bias (z = 1/2) without it; the default is zero.
    tau = 1.0 + np.exp(-_gate_bias(with_conv))
    assert np.all((tau >= 2.0) & (tau <= 256.0)) and np.ptp(tau) > 10
    assert with_conv.min_gru.cell.gate_bias_initializer.spacing == "log"
    np.testing.assert_array_equal(_gate_bias(without), 0.0)
    np.testing.assert_array_equal(_gate_bias(default), 0.0)
    assert chrono.min_gru.cell.gate_bias_initializer.spacing == "linear"
    # The candidate half keeps its zero bias.
    np.testing.assert_array_equal(to_numpy(with_conv.min_gru.bias)[16:], 0.0)
    # Seeded blocks repeat; the config keeps the choice.
    again = MGRADE(16, kernel_taps=2, max_delay=4, seed=1, **auto)
    again(x)
    np.testing.assert_array_equal(_gate_bias(again), _gate_bias(with_conv))
    assert with_conv.get_config()["gate_bias_initializer"] == "auto"
    assert default.get_config()["gate_bias_initializer"] is None
    rebuilt = MGRADE.from_config(with_conv.get_config())
    rebuilt(x)
    np.testing.assert_array_equal(_gate_bias(rebuilt), _gate_bias(with_conv))


def test_zero_conv_kernel_starts_as_the_mingru_only_block():
    x = _x(12, units=8)
    options = dict(kernel_taps=3, max_delay=6, seed=2)
    zero = MGRADE(8, conv_kernel_initializer="zeros", **options)
    plain = MGRADE(8, use_conv=False, **options)
    default = MGRADE(8, **options)
    for block in (zero, plain, default):
        block(x)
    np.testing.assert_array_equal(to_numpy(zero.conv.kernel), 0.0)
    assert np.all(to_numpy(default.conv.kernel) != 0.0)
    # Same weights everywhere else: the block is the MinGRU-only block.
    for name in ("min_gru", "mlp_norm", "mlp_in", "mlp_out", "post_norm"):
        getattr(plain, name).set_weights(getattr(zero, name).get_weights())
    np.testing.assert_allclose(
        to_numpy(zero(x)), to_numpy(plain(x)), rtol=1e-6, atol=1e-6
    )
    # The branch grows in training (the taps get a gradient at zero).
    model = keras.Sequential([keras.Input((12, 8)), zero])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, np.roll(x, 3, axis=1), epochs=3, verbose=0)
    assert np.any(to_numpy(zero.conv.kernel) != 0.0)
    # The config keeps the choice; a rebuilt block starts at zero again.
    config = zero.get_config()
    assert config["conv_kernel_initializer"]["class_name"] == "Zeros"
    assert default.get_config()["conv_kernel_initializer"] is None
    rebuilt = MGRADE.from_config(config)
    rebuilt(x)
    np.testing.assert_array_equal(to_numpy(rebuilt.conv.kernel), 0.0)
    # The builders pass it to every block.
    model = mgrade_seq2seq(2, 1, units=8, conv_kernel_initializer="zeros")
    blocks = [layer for layer in model.layers if isinstance(layer, MGRADE)]
    assert len(blocks) == 2
    for block in blocks:
        np.testing.assert_array_equal(to_numpy(block.conv.kernel), 0.0)


def test_building_does_not_import_tensorflow():
    # On JAX and PyTorch, building a model stays within the backend.
    code = (
        "import sys, keras\n"
        "from keras_mgrade.models import mgrade_classifier\n"
        "mgrade_classifier(2, 3, units=8, kernel_taps=2, max_delay=4)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "False"


_X8 = np.zeros((2, 5, 8), "float32")

BAD_ARGUMENTS = [
    ("units_zero", lambda: MGRADE(0), "units=0"),
    (
        "unknown_norm",
        lambda: MGRADE(8, norm="group"),
        r"\('layer', 'rms', 'batch', None\). Received: norm='group'",
    ),
    ("mlp_ratio_negative", lambda: MGRADE(8, mlp_ratio=-1), "mlp_ratio=-1"),
    (
        "no_conv_no_recurrence",
        lambda: MGRADE(8, use_conv=False, use_recurrence=False),
        "use_conv=False, use_recurrence",
    ),
    ("gelu", lambda: MGRADE(8, mlp_activation="gelu"), "mlp_activation='gelu'"),
    (
        "taps_over_window",
        lambda: MGRADE(8, kernel_taps=9, max_delay=8),
        "kernel_taps=9, max_delay=8",
    ),
    (
        "taps_checked_without_conv",
        lambda: MGRADE(8, use_conv=False, kernel_taps=-1),
        "kernel_taps=-1",
    ),
    (
        "window_checked_without_conv",
        lambda: MGRADE(8, use_conv=False, max_delay=-5),
        "max_delay=-5",
    ),
    (
        "norm_epsilon_negative",
        lambda: MGRADE(8, norm_epsilon=-1),
        "norm_epsilon=-1",
    ),
    ("sigma_zero", lambda: MGRADE(8, sigma=0.0), "sigma=0.0"),
    (
        "unknown_gate_bias_initializer",
        lambda: MGRADE(8, gate_bias_initializer="slow"),
        "gate_bias_initializer='slow'",
    ),
    (
        "unknown_conv_kernel_initializer",
        lambda: MGRADE(8, conv_kernel_initializer="slow"),
        "conv_kernel_initializer='slow'",
    ),
    (
        "width_differs",
        lambda: MGRADE(8)(np.zeros((2, 5, 3), "float32")),
        r"differs from units \(8\)",
    ),
    (
        "rank_2_inputs",
        lambda: MGRADE(8)(np.zeros((2, 5), "float32")),
        r"inputs.shape=\(2, 5\)",
    ),
    (
        "initial_state_count",
        lambda: MGRADE(8, kernel_taps=2, max_delay=4)(
            _X8, initial_state=[np.zeros((2, 8))]
        ),
        "initial_state of length 1",
    ),
    (
        "initial_state_shape",
        lambda: MGRADE(8, kernel_taps=2, max_delay=4)(
            _X8, initial_state=[np.zeros((2, 3, 8)), np.zeros((2, 7))]
        ),
        r"initial_state\[1\].shape=\(2, 7\)",
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
