"""streaming_model: the step model equals the sequence model (every
backend), steps_per_invoke, and the errors for what cannot stream."""

import keras
import numpy as np
import pytest
from helpers import to_numpy

from keras_mgrade import memory
from keras_mgrade.export import state_specs
from keras_mgrade.export import stream
from keras_mgrade.export import streaming_model
from keras_mgrade.layers import DCLSConv1D
from keras_mgrade.layers import MinGRU
from keras_mgrade.models import mgrade_classifier
from keras_mgrade.models import mgrade_seq2seq


def _x(batch=2, timesteps=40, features=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, timesteps, features)).astype("float32")


def _classifier(pooling="mean"):
    return mgrade_classifier(
        3,
        4,
        units=8,
        num_layers=2,
        kernel_taps=3,
        max_delay=6,
        pooling=pooling,
        seed=1,
    )


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_classifier_step_equals_call(pooling):
    model = _classifier(pooling)
    x = _x()
    step = streaming_model(model, batch_size=2)
    y, _ = stream(step, x)
    # y_t is the output of the sequence ending at t: check several t.
    for t in (0, 9, 39):
        expected = to_numpy(model(x[:, : t + 1]))
        np.testing.assert_allclose(y[:, t], expected, atol=2e-6)


def test_mean_pooling_left_to_the_host():
    model = _classifier("mean")
    x = _x()
    step = streaming_model(model, batch_size=2, host_pooling=True)
    y, _ = stream(step, x)
    np.testing.assert_allclose(y.mean(1), to_numpy(model(x)), atol=2e-6)
    assert len(step.inputs) == len(streaming_model(model).inputs) - 2


def test_seq2seq_and_sequential():
    x = _x()
    model = mgrade_seq2seq(
        3, 2, units=8, num_layers=1, kernel_taps=2, max_delay=5, seed=2
    )
    y, _ = stream(streaming_model(model, batch_size=2), x)
    np.testing.assert_allclose(y, to_numpy(model(x)), atol=2e-6)
    seq = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.Dense(6, activation="tanh"),
            DCLSConv1D(2, 5),
            keras.layers.LayerNormalization(),
            MinGRU(6, return_sequences=False),
        ]
    )
    y, states = stream(streaming_model(seq, batch_size=2), x)
    np.testing.assert_allclose(y[:, -1], to_numpy(seq(x)), atol=2e-6)
    assert [s.shape for s in states] == [(2, 4, 6), (2, 6)]


def test_batch_normalization_streams_as_an_affine():
    # The stock layer between two others: at inference its moving
    # statistics, one MUL and one ADD per step; counted as the two folded
    # vectors. The MGRADE block with norm="batch" counts its post-norm's
    # scale only (the rest folds into its MLP kernels and biases).
    x = _x()
    bn = keras.layers.BatchNormalization()
    seq = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.Dense(6), bn, MinGRU(6)]
    )
    seq(x, training=True)  # moving statistics off their start
    rng = np.random.default_rng(4)
    bn.gamma.assign(rng.normal(size=6))
    bn.beta.assign(rng.normal(size=6))
    y, _ = stream(streaming_model(seq, batch_size=2), x)
    np.testing.assert_allclose(y[:, -1], to_numpy(seq(x)), atol=2e-6)
    assert memory.footprint(seq).layers[1].parameters == 12
    blocks = {
        norm: mgrade_classifier(3, 2, units=8, num_layers=1, norm=norm)
        for norm in ("batch", None)
    }
    counts = {
        norm: memory.footprint(m).layers[1].parameters
        for norm, m in blocks.items()
    }
    assert counts["batch"] - counts[None] == 8


def test_steps_per_invoke_equals_single_steps():
    model = _classifier()
    x = _x(timesteps=12)
    one, s1 = stream(streaming_model(model, batch_size=2), x)
    four, s4 = stream(
        streaming_model(model, batch_size=2, steps_per_invoke=4), x
    )
    np.testing.assert_allclose(four, one, atol=1e-6)
    for a, b in zip(s4, s1):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_state_names_and_shapes():
    model = _classifier()
    specs = state_specs(model)
    assert [n for n, _ in specs] == [
        "mgrade_0/0",
        "mgrade_0/1",
        "mgrade_1/0",
        "mgrade_1/1",
        "pooling/0",
        "pooling/1",
    ]
    step = streaming_model(model)
    assert [tuple(t.shape[1:]) for t in step.inputs[1:]] == [
        s for _, s in specs
    ]
    assert tuple(step.inputs[0].shape) == (1, 3)


def _model_with(layer):
    inputs = keras.Input((8, 3))
    return keras.Model(inputs, MinGRU(4)(layer(inputs)))


UNSTREAMABLE = [
    (
        "unregistered_layer",
        lambda: keras.layers.SimpleRNN(4, return_sequences=True, name="my_rnn"),
        r"'my_rnn' of type SimpleRNN cannot be streamed. Registered: .*MGRADE",
    ),
    (
        "non_causal_conv1d",
        lambda: keras.layers.Conv1D(4, 3, padding="same", name="my_conv"),
        "padding must be 'causal'. Received: padding='same'",
    ),
    (
        "dilated_strided_conv1d",
        lambda: keras.layers.Conv1D(4, 3, strides=2, padding="causal"),
        r"strides=\(2,\)",
    ),
    (
        "normalization_over_time",
        lambda: keras.layers.LayerNormalization(axis=1, name="over_time"),
        "axis=.1. for layer 'over_time'",
    ),
    (
        "gelu",
        lambda: keras.layers.Dense(4, activation="gelu"),
        "'gelu' has no TFLite Micro int8 kernel",
    ),
]


@pytest.mark.parametrize(
    "make, message",
    [case[1:] for case in UNSTREAMABLE],
    ids=[case[0] for case in UNSTREAMABLE],
)
def test_unstreamable_layer_is_named(make, message):
    with pytest.raises(ValueError, match=message):
        streaming_model(_model_with(make()))


BAD_ARGUMENTS = [
    (
        "steps_per_invoke_zero",
        lambda: streaming_model(_classifier(), steps_per_invoke=0),
        "steps_per_invoke=0",
    ),
    (
        "dynamic_features",
        lambda: streaming_model(
            keras.Sequential(
                [keras.Input((None, None)), keras.layers.Activation("tanh")]
            )
        ),
        r"\(None, None, None\)",
    ),
    (
        "host_pooling_without_pooling",
        lambda: streaming_model(
            mgrade_seq2seq(
                3, 2, units=8, num_layers=1, kernel_taps=2, max_delay=4
            ),
            host_pooling=True,
        ),
        "TemporalMeanPooling",
    ),
    ("not_a_model", lambda: streaming_model("model.keras"), "keras.Model"),
]


@pytest.mark.parametrize(
    "make, message",
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
