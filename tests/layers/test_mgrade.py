"""MGRADE block: sequence call == step loop, its pieces against their own
layers, streaming, masks, serialization, errors."""

import os
import tempfile

import keras
import numpy as np
import pytest
from helpers import ALL_BACKENDS
from helpers import BACKEND
from helpers import max_relative_error
from helpers import run_in_backend
from helpers import run_layer_test
from helpers import to_numpy
from keras import ops

from keras_mgrade.activations import sigmoid_gelu
from keras_mgrade.layers import MGRADE
from keras_mgrade.layers import streaming_ops


def _x(timesteps, units=16, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, timesteps, units)).astype("float32")


def _states(block, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    return [
        rng.uniform(0.0, 1.0, (batch,) + s).astype("float32")
        for s in block.state_shapes
    ]


def _step_loop(block, x, states):
    states = [ops.convert_to_tensor(s) for s in states]
    outs = []
    for t in range(x.shape[1]):
        y, states = block.step(x[:, t], states)
        outs.append(to_numpy(y))
    return np.stack(outs, 1), [to_numpy(s) for s in states]


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


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"norm": "rms"},
        {"norm": None, "mlp_ratio": 0},
        {"use_conv": False},
        {"use_recurrence": False},
        {"max_delay": 1, "kernel_taps": 1},
        {"project_inputs": True},
    ],
)
def test_forward_equals_step_loop_1024(options):
    # The bar: within 1e-5 (float32, T = 1024), non-zero states.
    width = 5 if options.get("project_inputs") else 16
    x = _x(1024, units=width)
    kwargs = {"kernel_taps": 4, "max_delay": 24, **options}
    block = MGRADE(16, return_state=True, **kwargs)
    block.build(x.shape)
    for layer in (block.conv,):
        if layer is not None:
            layer.set_positions(
                np.random.default_rng(2).uniform(
                    0, layer.max_delay - 1, tuple(layer.positions_raw.shape)
                )
            )
    states = _states(block)
    y, *final = block(x, initial_state=states)
    y_ref, final_ref = _step_loop(block, x, states)
    assert max_relative_error(y, y_ref) <= 1e-5
    assert len(final) == len(final_ref) == len(block.state_shapes)
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


def test_stateful_chunks_equal_whole_sequence():
    x = _x(60, batch=2)
    whole = MGRADE(16, kernel_taps=3, max_delay=10)
    expected = to_numpy(whole(x))
    inputs = keras.Input(batch_shape=(2, None, 16))
    block = MGRADE(16, kernel_taps=3, max_delay=10, stateful=True)
    model = keras.Model(inputs, block(inputs))
    trainable = [w.value for w in whole.trainable_weights]
    for w, value in zip(block.trainable_weights, trainable):
        w.assign(value)
    got = np.concatenate(
        [to_numpy(model(x[:, i : i + 20])) for i in range(0, 60, 20)], 1
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    block.reset_state()
    np.testing.assert_allclose(
        to_numpy(model(x[:, :20])), expected[:, :20], rtol=1e-5, atol=1e-5
    )


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


def test_save_load_keras_file():
    x = _x(20)
    inputs = keras.Input((20, 16))
    block = MGRADE(16, kernel_taps=2, max_delay=6, norm="rms", mlp_ratio=1)
    model = keras.Model(inputs, block(inputs))
    block.conv.sigma = 1.7
    expected = to_numpy(model(x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    assert loaded.layers[-1].conv.sigma == pytest.approx(1.7)
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-6)


@pytest.mark.slow
def test_saved_on_this_backend_loads_on_the_others():
    x = _x(25, units=8)
    inputs = keras.Input((25, 8))
    model = keras.Model(inputs, MGRADE(8, kernel_taps=2, max_delay=5)(inputs))
    expected = to_numpy(model(x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        np.save(os.path.join(tmp, "x.npy"), x)
        model.save(path)
        code = (
            "import numpy as np, keras, keras_mgrade\n"
            f"m = keras.saving.load_model({path!r})\n"
            f"x = np.load({os.path.join(tmp, 'x.npy')!r})\n"
            f"np.save({os.path.join(tmp, 'y.npy')!r}, "
            "keras.ops.convert_to_numpy(m(x)))\n"
        )
        for other in ALL_BACKENDS:
            if other != BACKEND:
                run_in_backend(other, code)
                got = np.load(os.path.join(tmp, "y.npy"))
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="units=0"):
        MGRADE(0)
    with pytest.raises(ValueError, match="norm='batch'"):
        MGRADE(8, norm="batch")
    with pytest.raises(ValueError, match="mlp_ratio=-1"):
        MGRADE(8, mlp_ratio=-1)
    with pytest.raises(ValueError, match="use_conv=False, use_recurrence"):
        MGRADE(8, use_conv=False, use_recurrence=False)
    with pytest.raises(ValueError, match="mlp_activation='gelu'"):
        MGRADE(8, mlp_activation="gelu")
    with pytest.raises(ValueError, match="kernel_taps=9, max_delay=8"):
        MGRADE(8, kernel_taps=9, max_delay=8)
    with pytest.raises(ValueError, match=r"differs from units \(8\)"):
        MGRADE(8)(np.zeros((2, 5, 3), "float32"))
    with pytest.raises(ValueError, match=r"inputs.shape=\(2, 5\)"):
        MGRADE(8)(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="initial_state of length 1"):
        MGRADE(8, kernel_taps=2, max_delay=4)(
            np.zeros((2, 5, 8), "float32"), initial_state=[np.zeros((2, 8))]
        )
