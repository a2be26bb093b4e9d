"""`keras.layers.Conv1D(padding="causal")`, registered in its own file
(`keras_mgrade/layers/causal_conv1d.py`) and nowhere else: counted by
`keras_mgrade.memory`, trained with quantization-aware training, exported
to int8 and run on TFLite Micro. Its step loop == call (any dilation) is
in `test_streaming_contract.py`."""

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import to_numpy

from keras_mgrade import memory
from keras_mgrade.export import stream
from keras_mgrade.export import streaming_model
from keras_mgrade.layers import MGRADE
from keras_mgrade.quantization import quantize_model


def _model(dilation=2, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, 3))
    x = keras.layers.Conv1D(
        8, 3, padding="causal", dilation_rate=dilation, name="tcn"
    )(inputs)
    x = MGRADE(8, kernel_taps=2, max_delay=4, norm=None, name="block")(x)
    outputs = keras.layers.Dense(2, name="decoder")(x)
    return keras.Model(inputs, outputs)


def _x(n=8, timesteps=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, timesteps, 3)).astype("float32")


def test_footprint_by_hand():
    fp = memory.footprint(_model(dilation=3), "int8")
    row = {r.name: r for r in fp.layers}["tcn"]
    # Kernel 3 x 3 x 8 int8 + 8 int32 biases; FIFO (3 - 1) * 3 = 6
    # samples of 3 channels; window 7 x 3, the 3 taps x 3 and the output.
    assert (row.parameters, row.parameter_bytes) == (72 + 8, 72 + 32)
    assert row.state_bytes == 6 * 3
    assert row.activation_bytes == 7 * 3 + 9 + 8


def test_step_model_equals_the_model():
    model = _model()
    x = _x(2)
    y, states = stream(streaming_model(model, batch_size=2), x)
    np.testing.assert_allclose(y, to_numpy(model(x)), atol=2e-6)
    assert states[0].shape == (2, 4, 3)  # (3 - 1) * 2 samples of 3


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="conversion test")
def test_int8_file_on_tflite_micro(tmp_path):
    from keras_mgrade.export import export_tflite
    from keras_mgrade.export import stream_file

    model, x = _model(), _x(16, 32)
    target = np.cumsum(x[..., :2], axis=1) / 8.0
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, target, epochs=3, verbose=0)
    report = export_tflite(
        model,
        str(tmp_path / "tcn_f32.tflite"),
        check_data=x[:2],
        verbose=False,
    )
    assert report["max_abs_deviation"] <= 1e-4
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-3), "mse")
    qat.fit(x, target, epochs=1, verbose=0)
    report = export_tflite(
        qat, str(tmp_path / "tcn.tflite"), quantize="int8", verbose=False
    )
    assert {"CONCATENATION", "STRIDED_SLICE"} <= set(report["ops"])
    assert report["inputs"][1]["shape"] == [1, 4, 3]
    got = stream_file(report["path"], x[:4], "tflm")
    expected, _ = stream(streaming_model(qat, batch_size=4), x[:4])
    # As for the other QAT files (tests/quantization): the int8 kernels
    # round a few values differently from the float simulation.
    lsb = np.abs(got - expected) / report["outputs"][0]["scale"]
    assert np.mean(lsb <= 2.0 + 1e-3) >= 0.95, np.mean(lsb <= 2.001)
    assert lsb.max() <= 6.0 + 1e-3, lsb.max()
