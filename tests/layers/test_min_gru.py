"""MinGRU: float64 references, golden numbers, an outside oracle, masks,
mixed precision, training, errors. The streaming contract (step loop ==
call, stateful chunks, other backends) is checked for every streamable
layer in `test_streaming_contract.py`."""

import os
import tempfile

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import max_relative_error
from helpers import numpy_min_gru
from helpers import run_layer_test
from helpers import to_numpy
from keras import ops

from keras_mgrade.layers import MinGRU
from keras_mgrade.layers import MinGRUCell
from keras_mgrade.layers import TimescaleInitializer

FORMS = ("auto", "sequential", "chunked", "associative", "log")


def _layer(units=8, **kwargs):
    return MinGRU(
        units,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.7, seed=1),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=2),
        **kwargs,
    )


def _data(timesteps, batch=2, features=5, units=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, timesteps, features)).astype("float32")
    h0 = rng.uniform(0.0, 1.5, (batch, units)).astype("float32")
    return x, h0


def test_layer_contract():
    x, _ = _data(6, units=4)
    run_layer_test(
        MinGRU,
        init_kwargs={"units": 4, "return_sequences": True},
        input_data=x,
        expected_output_shape=(2, 6, 4),
        expected_num_trainable_weights=2,
    )
    run_layer_test(
        MinGRU,
        init_kwargs={"units": 3, "use_bias": False, "scan": "log"},
        input_data=x,
        expected_output_shape=(2, 3),
        expected_num_trainable_weights=1,
        run_mixed_precision_check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("scan", ["auto", "log"])
def test_float64_reference_16384(scan):
    # The long-sequence check of the layer: within 1e-4 relative of a
    # float64 computation (minGRU-pytorch's unchunked log-space scan is
    # ~1e-3 off here). Every scan form is checked at this length against
    # a float64 loop in tests/ops/test_scan.py.
    x, h0 = _data(16384, batch=2, features=4, units=6, seed=5)
    layer = _layer(6, return_sequences=True, scan=scan)
    y = layer(x, initial_state=h0)
    kernel, bias = (to_numpy(w) for w in (layer.kernel, layer.bias))
    expected = numpy_min_gru(x, kernel, bias, h0)
    assert max_relative_error(y, expected) <= 1e-4
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-4, atol=1e-6)


def test_golden_numbers():
    # Hand-computed (30-digit arithmetic) for kernel [[0.5, -0.25, 1, 0.75]],
    # bias [0.1, 0.2, -0.3, 0.4], h0 = [0.25, 0], inputs 1, -2, 0.5:
    # step 1: z = sigmoid([0.6, -0.05]), g = [0.7 + 0.5, 1.15 + 0.5],
    # h = h0 + z (g - h0) = [0.863373490915, 0.804379295801].
    expected = np.array(
        [
            [0.863373490915, 0.804379295801],
            [0.640154091149, 0.433776029825],
            [0.675260753307, 0.870153574940],
        ]
    )
    for scan in FORMS:
        layer = MinGRU(
            2,
            return_sequences=True,
            scan=scan,
            kernel_initializer=keras.initializers.Constant(
                [[0.5, -0.25, 1.0, 0.75]]
            ),
            bias_initializer=keras.initializers.Constant([0.1, 0.2, -0.3, 0.4]),
        )
        x = np.array([[[1.0], [-2.0], [0.5]]], "float32")
        y = layer(x, initial_state=np.array([[0.25, 0.0]], "float32"))
        np.testing.assert_allclose(to_numpy(y)[0], expected, rtol=2e-6)


def test_cell_in_keras_rnn_matches_layer():
    x, h0 = _data(40)
    layer = _layer(return_sequences=True)
    y = layer(x, initial_state=h0)
    rnn = keras.layers.RNN(MinGRUCell(8), return_sequences=True)
    rnn(x, initial_state=[h0])
    rnn.cell.set_weights(layer.cell.get_weights())
    y_rnn = rnn(x, initial_state=[h0])
    assert max_relative_error(y, y_rnn) <= 1e-5


def test_matches_mingru_pytorch():
    # Outside oracle: lucidrains/minGRU-pytorch (bias-free, log space).
    torch = pytest.importorskip("torch")
    mingru_pytorch = pytest.importorskip("minGRU_pytorch")
    torch.manual_seed(0)
    dim = 6
    ref = mingru_pytorch.minGRU(dim)
    x, _ = _data(64, features=dim, units=dim, seed=7)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    weight = ref.to_hidden_and_gate.weight.detach().numpy()  # [hidden; gate]
    layer = MinGRU(dim, use_bias=False, return_sequences=True)
    layer.build(x.shape)
    layer.kernel.assign(np.concatenate([weight[dim:], weight[:dim]]).T)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4)


def test_mask_keeps_state():
    x, h0 = _data(12)
    mask = np.ones((2, 12), bool)
    mask[0, 3:6] = False
    mask[1, 10:] = False
    for scan in FORMS:
        layer = _layer(return_sequences=True, return_state=True, scan=scan)
        y, h = layer(x, initial_state=h0, mask=mask)
        # Reference: step only on unmasked steps, repeat the last output.
        state, outs = [ops.convert_to_tensor(h0)], []
        for t in range(12):
            new_y, new_state = layer.step(x[:, t], state)
            keep = mask[:, t : t + 1]
            state = [ops.where(keep, new_state[0], state[0])]
            outs.append(to_numpy(state[0]))
        np.testing.assert_allclose(to_numpy(y), np.stack(outs, 1), rtol=2e-5)
        np.testing.assert_allclose(to_numpy(h), outs[-1], rtol=2e-5)


def test_masking_layer_in_model():
    x, _ = _data(10)
    x[:, 7:] = 0.0
    inputs = keras.Input((10, 5))
    masked = keras.layers.Masking(0.0)(inputs)
    layer = _layer()
    model = keras.Model(inputs, layer(masked))
    expected = to_numpy(layer(x[:, :7]))
    np.testing.assert_allclose(to_numpy(model(x)), expected, rtol=1e-5)


def test_dynamic_time_axis_model():
    inputs = keras.Input((None, 5))
    layer = _layer(return_sequences=True)
    model = keras.Model(inputs, layer(inputs))
    for t in (7, 33):
        x, _ = _data(t)
        expected = numpy_min_gru(x, *(to_numpy(w) for w in layer.weights))
        got = model.predict(x, verbose=0)
        assert max_relative_error(got, expected) <= 1e-5


def test_fit_learns_a_generated_task():
    # Is the sum of 30 noisy inputs positive? Needs the whole sequence.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 30, 1)).astype("float32")
    y = (x.sum(axis=(1, 2)) > 0).astype("float32")
    inputs = keras.Input((30, 1))
    h = MinGRU(16)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid")(h))
    model.compile(
        keras.optimizers.Adam(0.02), "binary_crossentropy", metrics=["acc"]
    )
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["acc"][-1] > 0.85


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x, h0 = _data(200)
    ref = _layer(return_sequences=True, return_state=True)
    y_ref, h_ref = ref(x, initial_state=h0)
    layer = _layer(return_sequences=True, return_state=True, dtype=policy)
    layer.build(x.shape)
    layer.set_weights(ref.get_weights())
    y, h = layer(x, initial_state=h0)
    dtype = policy.split("_")[1]
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float32"
    # The scan runs in float32: only the projection is in 16 bits.
    tol = 2e-2 if dtype == "float16" else 6e-2
    assert max_relative_error(ops.cast(y, "float32"), y_ref) < tol
    assert max_relative_error(ops.cast(h, "float32"), h_ref) < tol


def test_save_load_keras_file():
    x, h0 = _data(20)
    inputs = keras.Input((20, 5))
    state = keras.Input((8,))
    y = _layer(return_sequences=True, scan="log")(inputs, initial_state=state)
    model = keras.Model([inputs, state], y)
    expected = to_numpy(model([x, h0]))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    assert loaded.layers[-1].scan == "log"
    np.testing.assert_allclose(to_numpy(loaded([x, h0])), expected, rtol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow XLA")
def test_tensorflow_jit_compile_fit():
    x, _ = _data(64)
    inputs = keras.Input((64, 5))
    model = keras.Model(inputs, _layer(return_sequences=True)(inputs))
    model.compile("adam", "mse", jit_compile=True)
    model.fit(x, np.ones((2, 64, 8)), epochs=2, verbose=0)
    assert model.jit_compile


@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_timescale_initializer_distribution(spacing):
    init = TimescaleInitializer(4.0, 300.0, spacing=spacing, seed=3)
    b = to_numpy(init((20000,))).astype("float64")
    tau = 1.0 + np.exp(-b)  # 1 / sigmoid(b): the memory at a zero input
    assert tau.min() >= 4.0 - 1e-3 and tau.max() <= 300.0 + 1e-2
    # Uniform in log(tau) or in tau: the quartiles of the matching variable
    # sit at a quarter, a half and three quarters of its range.
    scale = np.log if spacing == "log" else (lambda v: v)
    u = (scale(tau) - scale(4.0)) / (scale(300.0) - scale(4.0))
    np.testing.assert_allclose(
        np.quantile(u, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.02
    )
    again = TimescaleInitializer.from_config(init.get_config())
    np.testing.assert_array_equal(to_numpy(again((20000,))), b)


def test_gate_bias_initializer_sets_the_gate_memories():
    # With a zero kernel the gate is sigmoid(b_z) at every step and the
    # candidate g(b_h) is constant, so h_t - g decays as (1 - z)^t, with
    # 1 - z = 1 - 1 / tau for the initializer's tau.
    layer = MinGRU(
        4,
        return_sequences=True,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(0.3),
        gate_bias_initializer=TimescaleInitializer(seed=0),
    )
    x = np.zeros((1, 50, 3), "float32")
    h0 = np.full((1, 4), 2.0, "float32")
    y = to_numpy(layer(x, initial_state=h0))[0]
    bias = to_numpy(layer.bias)
    np.testing.assert_array_equal(bias[4:], np.float32(0.3))
    tau = 1.0 + np.exp(-bias[:4].astype("float64"))
    assert np.all((tau >= 2.0) & (tau <= 256.0))
    g = 0.3 + 0.5  # g(0.3) = 0.3 + 0.5
    t = np.arange(1, 51)[:, None]
    expected = g + (2.0 - g) * (1.0 - 1.0 / tau) ** t
    np.testing.assert_allclose(y, expected, rtol=1e-5)
    config = layer.get_config()
    assert config["gate_bias_initializer"]["class_name"] == (
        "TimescaleInitializer"
    )
    rebuilt = MinGRU.from_config(config)
    rebuilt.build((1, 50, 3))
    np.testing.assert_array_equal(to_numpy(rebuilt.bias), bias)


@pytest.mark.parametrize(
    "name, spacing", [("timescales", "log"), ("chrono", "linear")]
)
def test_gate_bias_initializer_names(name, spacing):
    layer = MinGRU(3, gate_bias_initializer=name)
    assert layer.cell.gate_bias_initializer.spacing == spacing
    plain = MinGRU(3)
    plain.build((1, 2, 5))
    np.testing.assert_array_equal(to_numpy(plain.bias), 0.0)


_X = np.zeros((2, 3, 5), "float32")

BAD_ARGUMENTS = [
    ("units_zero", lambda: MinGRU(0), "units=0"),
    ("cell_units_negative", lambda: MinGRUCell(-3), "units=-3"),
    ("unknown_scan", lambda: MinGRU(4, scan="fast"), "scan='fast'"),
    ("dropout_above_one", lambda: MinGRU(4, dropout=1.5), "dropout=1.5"),
    (
        "rank_2_inputs",
        lambda: MinGRU(4)(np.zeros((2, 5), "float32")),
        r"inputs.shape=\(2, 5\)",
    ),
    (
        "initial_state_shape",
        lambda: MinGRU(4)(_X, initial_state=np.zeros((2, 3), "float32")),
        r"initial_state\[0\].shape=\(2, 3\)",
    ),
    (
        "initial_state_count",
        lambda: MinGRU(4)(_X, initial_state=[np.zeros((2, 4))] * 2),
        "initial_state of length 2",
    ),
    (
        "negative_initial_state",
        lambda: MinGRU(4)(_X, initial_state=-np.ones((2, 4), "float32")),
        "must be >= 0",
    ),
    (
        "unknown_gate_bias_initializer",
        lambda: MinGRU(4, gate_bias_initializer="chrno"),
        "gate_bias_initializer='chrno'",
    ),
    (
        "timescale_below_two",
        lambda: TimescaleInitializer(min_timescale=1.0),
        "min_timescale=1.0, max_timescale=256",
    ),
    (
        "timescales_reversed",
        lambda: TimescaleInitializer(10.0, 5.0),
        "min_timescale=10.0, max_timescale=5.0",
    ),
    (
        "unknown_spacing",
        lambda: TimescaleInitializer(spacing="geometric"),
        "spacing='geometric'",
    ),
    (
        "stateful_without_batch_size",
        lambda: MinGRU(4, stateful=True)(keras.Input((3, 5))),
        "static batch size",
    ),
    (
        "step_state_shape",
        lambda: _built(MinGRU(4)).step(
            np.zeros((2, 5), "float32"), [np.zeros((2, 3), "float32")]
        ),
        r"states\[0\].shape=\(2, 3\)",
    ),
]


def _built(layer):
    layer.build((2, None, 5))
    return layer


@pytest.mark.parametrize(
    "make, message",
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
