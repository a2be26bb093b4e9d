"""The registry of streamable kinds: what it answers, its errors, and a
layer registered from outside the library streaming through the step
model, the memory footprint and quantization-aware training."""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from keras import ops

from keras_mgrade import core
from keras_mgrade import memory
from keras_mgrade.export import stream
from keras_mgrade.export import streaming_model
from keras_mgrade.layers import MinGRU
from keras_mgrade.quantization import quantize_model


class Smoother(core.StreamingLayer):
    """A user's layer: `y_t = m_t = m_{t-1} + alpha (x_t - m_{t-1})`."""

    def __init__(self, alpha=0.5, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def build(self, input_shape):
        self.width = input_shape[-1]

    @property
    def state_shapes(self):
        return [(self.width,)]

    def call(self, inputs):
        outputs, m = [], ops.zeros_like(inputs[:, 0])
        for t in range(inputs.shape[1]):
            m = m + self.alpha * (inputs[:, t] - m)
            outputs.append(m)
        return ops.stack(outputs, 1)

    def step(self, inputs_t, states, training=False):
        (m,) = self.check_states(states)
        m = core.points.state(self, "m", m)
        m = core.points.state(self, "m", m + self.alpha * (inputs_t - m))
        return m, [m]


@pytest.fixture(scope="module", autouse=True)
def _register_smoother():
    core.register_streaming(
        Smoother,
        cost=lambda layer, nbytes: core.LayerCost(
            state=layer.width, working_set=2 * layer.width
        ),
        quantized_inside=True,
    )
    yield
    core.unregister_streaming(Smoother)
    assert core.find_kind(Smoother(1.0)) is None


def _model():
    inputs = keras.Input((12, 3))
    x = keras.layers.Dense(4, name="encoder")(inputs)
    x = Smoother(0.25, name="smoother")(x)
    return keras.Model(inputs, MinGRU(2, return_sequences=True)(x))


def test_registered_layer_streams_counts_and_trains():
    model = _model()
    x = np.random.default_rng(0).normal(size=(2, 12, 3)).astype("float32")
    y, states = stream(streaming_model(model, batch_size=2), x)
    np.testing.assert_allclose(y, to_numpy(model(x)), atol=2e-6)
    assert [s.shape for s in states] == [(2, 4), (2, 2)]
    assert core.state_specs(model)[0] == ("smoother/0", (4,))
    row = {r.name: r for r in memory.footprint(model).layers}["smoother"]
    assert (row.state_bytes, row.activation_bytes) == (4, 8)
    qat = quantize_model(model)
    qat.compile("adam", "mse")
    qat.fit(x, np.zeros((2, 12, 2)), epochs=1, verbose=0)
    assert "smoother/smoother/m" in qat.range_table()


def test_unregistered_layer_error_lists_the_registered_kinds():
    layer = keras.layers.SimpleRNN(3, name="rnn")
    with pytest.raises(ValueError) as info:
        core.kind_of(layer)
    message = str(info.value)
    assert "'rnn' of type SimpleRNN cannot be streamed" in message
    for name in ("MGRADE", "MinGRU", "DCLSConv1D", "Conv1D", "Smoother"):
        assert name in message
    assert "register_streaming" in message


def test_lookup_follows_the_class_hierarchy():
    class MyDense(keras.layers.Dense):
        pass

    assert core.kind_of(MyDense(3)) is core.kind_of(keras.layers.Dense(3))
    assert core.find_kind(keras.layers.SimpleRNN(2)) is None


BAD_REGISTRATIONS = [
    ("not_a_type", lambda: core.register_streaming(3), "layer_type=3"),
    (
        "stock_layer_without_step",
        lambda: core.register_streaming(keras.layers.SimpleRNN),
        "step is required .* layer_type=SimpleRNN",
    ),
    (
        "unknown_host_pooling",
        lambda: core.register_streaming(Smoother, host_pooling="max"),
        "host_pooling='max'",
    ),
]


@pytest.mark.parametrize(
    "make, message",
    [case[1:] for case in BAD_REGISTRATIONS],
    ids=[case[0] for case in BAD_REGISTRATIONS],
)
def test_bad_registration(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_step_checks_the_states():
    layer = Smoother()
    layer.build((None, None, 4))
    with pytest.raises(ValueError, match=r"states\[0\].shape=\(1, 3\)"):
        layer.step(np.zeros((1, 4), "float32"), [np.zeros((1, 3))])
    with pytest.raises(ValueError, match="states of length 2"):
        layer.step(np.zeros((1, 4), "float32"), [np.zeros((1, 4))] * 2)
