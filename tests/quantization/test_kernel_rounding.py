"""The quantization-aware model rounds as TFLite Micro's int8 kernels do.

TFLite Micro requantizes MUL, MEAN, FULLY_CONNECTED and DEPTHWISE_CONV_2D
results with `MultiplyByQuantizedMultiplier`, which rounds twice; the
normalisations (MEAN, SUB, MUL, RSQRT, MUL, ADD) amplify a one-step
difference of a small variance into many output steps. References: the
TFLite Micro interpreter running the exported int8 file, fed the same
sequences, and the same check with the rounding turned off (it must then
fail, so the test can fail).
"""

import keras
import numpy as np
import pytest
from helpers import BACKEND

from keras_mgrade.export import export_tflite
from keras_mgrade.export import stream
from keras_mgrade.export import stream_file
from keras_mgrade.export import streaming_model
from keras_mgrade.models import mgrade_classifier
from keras_mgrade.quantization import quantize_model
from keras_mgrade.quantization.model import QuantizationScope


def _norm_model(kind):
    norm = {
        "layer": keras.layers.LayerNormalization,
        "rms": keras.layers.RMSNormalization,
    }[kind]
    inputs = keras.Input((None, 16))
    y = norm()(keras.layers.Dense(16)(inputs))
    model = keras.Model(inputs, y)
    rng = np.random.default_rng(1)
    layer = model.layers[-1]
    layer.set_weights(
        [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in
         layer.get_weights()[:1]]
        + [rng.normal(0, 0.3, w.shape).astype("float32") for w in
           layer.get_weights()[1:]]
    )  # fmt: skip
    return model


def _norm_data(n=48, timesteps=8):
    # Vectors with a spread of variances, some tiny: where the int8
    # RSQRT is most sensitive.
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.02, 2.0, (n, timesteps, 1))
    x = rng.normal(size=(n, timesteps, 16)) * scale
    return (x + rng.normal(size=(n, timesteps, 1))).astype("float32")


def _deviation_lsb(qat, path, x, host_pooling=False):
    """|file on TFLite Micro - QAT step model| in output steps, every
    step of every sequence."""
    report = export_tflite(
        qat, path, quantize="int8", check_data=x[:2], verbose=False
    )
    got = stream_file(path, x, "tflm", arena_size=report["arena_bytes"] + 1024)
    step = streaming_model(qat, host_pooling=host_pooling, batch_size=len(x))
    expected, _ = stream(step, x)
    return np.abs(got - expected) / report["outputs"][0]["scale"]


@pytest.fixture
def single_rounding(monkeypatch):
    """The QAT model with plain fake quantization (one rounding)."""
    monkeypatch.setattr(
        QuantizationScope,
        "requantized",
        lambda self, owner, name, x, inputs, count=1: self.activation(
            owner, name, x
        ),
    )


def _trained_norm(kind):
    x = _norm_data()
    qat = quantize_model(_norm_model(kind))
    qat.compile(keras.optimizers.Adam(1e-3), "mse")
    qat.fit(x, np.zeros_like(x), epochs=1, batch_size=32, verbose=0)
    return qat, x


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "layer",
        pytest.param(
            "rms",
            marks=pytest.mark.skipif(
                BACKEND != "tensorflow", reason="the same code on every backend"
            ),
        ),
    ],
)
def test_norm_file_equals_qat_model(kind, tmp_path):
    qat, x = _trained_norm(kind)
    lsb = _deviation_lsb(qat, str(tmp_path / "norm.tflite"), x)
    # Dense -> norm: the int8 values as TFLite Micro computes them (a
    # float32 near-tie in the simulation can move one small-variance
    # vector by a few steps).
    assert np.mean(lsb < 1e-3) >= 0.999, np.mean(lsb < 1e-3)
    assert lsb.max() <= 4.0 + 1e-3, lsb.max()


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="one backend suffices")
def test_norm_file_differs_with_one_rounding(single_rounding, tmp_path):
    # The reference check: rounding once, as the float fake quantization
    # does, the same model is many steps off on some vectors.
    qat, x = _trained_norm("layer")
    lsb = _deviation_lsb(qat, str(tmp_path / "norm.tflite"), x)
    assert np.mean(lsb < 1e-3) < 0.99
    assert lsb.max() > 4.0


@pytest.mark.slow
def test_layer_norm_classifier_file_within_2_steps(tmp_path):
    # The whole step graph (convolution, MinGRU, MLP, two LayerNorms per
    # block): every op rounds as on TFLite Micro, so the file follows
    # the QAT model over whole sequences.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12, 4)).astype("float32")
    y = (x[:, 2:6, 0].sum(1) > 0).astype("int32")
    model = mgrade_classifier(
        4, 2, units=8, num_layers=1, max_delay=4, kernel_taps=2,
        timesteps=12, norm="layer", seed=1,
    )  # fmt: skip
    qat = quantize_model(model)
    qat.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    qat.fit(x, y, epochs=2, batch_size=16, verbose=0)
    lsb = _deviation_lsb(qat, str(tmp_path / "c.tflite"), x, host_pooling=True)
    assert np.mean(lsb <= 2.0 + 1e-3) >= 0.999, np.mean(lsb <= 2.001)
    assert lsb.max() <= 4.0 + 1e-3, lsb.max()
