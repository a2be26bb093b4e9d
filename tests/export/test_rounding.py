"""weight_rounding="gptq": int8 weights rounded from calibration
statistics, on the converter's own per-channel grid.

The rounding of one channel is checked against plain formulas (nearest
rounding, the output error measured on the inputs themselves); the files
against the nearest-rounded files of the same model: same scales, other
integers, and outputs on TFLite Micro closer to the float model."""

import json

import keras
import numpy as np
import pytest
from helpers import BACKEND

from keras_mgrade import datasets
from keras_mgrade.export import export_tflite
from keras_mgrade.export import rounding
from keras_mgrade.export import stream_file
from keras_mgrade.models import mgrade_seq2seq
from keras_mgrade.quantization import quantize_model

tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="conversion runs on TensorFlow"
)


def _nearest(w):
    scale = np.abs(w).max() / 127.0
    return np.clip(np.round(w / scale), -127, 127), scale


def _correlated_inputs(rng, n=4000, width=16, rank=3):
    """Inputs that move together (few factors plus a little noise), as
    the activations of a trained sequence model do."""
    factors = rng.normal(size=(n, rank))
    mixing = rng.normal(size=(rank, width))
    return factors @ mixing + 0.05 * rng.normal(size=(n, width))


def test_uncorrelated_inputs_round_to_nearest():
    # With a diagonal H no error can be compensated: nearest rounding.
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = rng.normal(size=12)
        h = np.diag(rng.uniform(0.1, 3.0, size=12))
        q, scale = rounding.round_channel(w, h)
        expected, expected_scale = _nearest(w)
        np.testing.assert_array_equal(q, expected)
        assert scale == pytest.approx(expected_scale, rel=1e-12)


def test_correlated_inputs_lower_output_error():
    rng = np.random.default_rng(1)
    x = _correlated_inputs(rng)
    h = x.T @ x / len(x)
    before, after = [], []
    for _ in range(32):
        w = rng.normal(size=x.shape[1])
        q, scale = rounding.round_channel(w, h)
        nearest, _ = _nearest(w)
        # The grid: integers in [-127, 127], the largest weight at +-127
        # (so the converter's max|w| / 127 gives back the same scale).
        assert np.all(np.abs(q) <= 127) and np.abs(q).max() == 127
        assert np.abs(q[np.argmax(np.abs(w))]) == 127
        assert scale == pytest.approx(np.abs(w).max() / 127.0, rel=1e-12)
        # The error of the channel's output, measured on the inputs.
        before.append(np.mean((x @ w - x @ (nearest * scale)) ** 2))
        after.append(np.mean((x @ w - x @ (q * scale)) ** 2))
    before, after = np.array(before), np.array(after)
    assert np.all(after <= before * (1 + 1e-9))
    # Measured: the mean output error 0.07x that of nearest rounding.
    assert after.mean() < 0.5 * before.mean()


def test_degenerate_channels():
    q, scale = rounding.round_channel(np.zeros(5), np.eye(5))
    assert scale == 0.0 and not np.any(q)
    w = np.array([0.3, -1.0, 0.5])
    q, _ = rounding.round_channel(w, np.zeros((3, 3)))  # inputs always 0
    np.testing.assert_array_equal(q, _nearest(w)[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(quantize="int8", weight_rounding="best"), "Invalid"),
        (dict(quantize=None, weight_rounding="gptq"), "float32 file"),
    ],
)
def test_weight_rounding_argument(tmp_path, kwargs, message):
    model = _model()
    with pytest.raises(ValueError, match=message) as error:
        export_tflite(
            model,
            str(tmp_path / "m.tflite"),
            representative_data=_lorenz(4, 32)[0],
            verbose=False,
            **kwargs,
        )
    assert "weight_rounding=" in str(error.value)


def test_weight_rounding_of_a_quantization_aware_model(tmp_path):
    x = _lorenz(4, 32)[0]
    qat = quantize_model(_model(), calibration_data=x)
    with pytest.raises(ValueError, match="quantization-aware model"):
        export_tflite(
            qat,
            str(tmp_path / "m.tflite"),
            quantize="int8",
            weight_rounding="gptq",
            verbose=False,
        )


def _model():
    return mgrade_seq2seq(
        1, 2, units=16, num_layers=1, kernel_taps=4, max_delay=8, seed=2
    )


def _lorenz(n, timesteps, seed=0):
    x, y = datasets.lorenz(n, timesteps, seed=seed)
    return x.astype("float32"), y.astype("float32")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A seq2seq model fitted briefly to the Lorenz task, its 16x8 files
    with nearest and with GPTQ rounding, calibrated alike."""
    keras.utils.set_random_seed(0)
    model = _model()
    x, y = _lorenz(64, 64)
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    out = tmp_path_factory.mktemp("rounding")
    found = {}
    for method in ("nearest", "gptq"):
        path = str(out / f"{method}.tflite")
        report = export_tflite(
            model,
            path,
            quantize="int16x8",
            representative_data=x[:32],
            weight_rounding=method,
            verbose=False,
        )
        with open(path, "rb") as f:
            found[method] = (report, f.read())
    return model, found


def _weights(flat):
    """The int8 weights of every FULLY_CONNECTED and DEPTHWISE_CONV_2D,
    in operator order: `(int8 values, per-channel scales)`."""
    from keras_mgrade.export.c_backend.graph import read_graph

    graph = read_graph(flat)
    found = []
    for op in graph.operators:
        if op.name in ("FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
            tensor = graph.tensors[op.inputs[1]]
            found.append((tensor.data.astype(int), np.ravel(tensor.scale)))
    return found


@tf_only
def test_gptq_file_keeps_the_converters_grid(files):
    _, found = files
    nearest = _weights(found["nearest"][1])
    gptq = _weights(found["gptq"][1])
    report = found["gptq"][0]["weight_rounding"]
    assert report["method"] == "gptq"
    assert report["weights"] == len(gptq) == len(nearest) == 7
    assert report["output_mse"] < report["output_mse_nearest"]
    assert found["nearest"][0]["weight_rounding"] == {"method": "nearest"}
    changed = 0
    for (q0, s0), (q1, s1) in zip(nearest, gptq):
        # Same scales (the converter found the same max|w| per channel),
        # every channel reaching 127, other integers.
        np.testing.assert_allclose(s1, s0, rtol=1e-6)
        axis = 0 if q1.ndim == 2 else q1.ndim - 1  # FC (out, in); DW last
        peak = np.abs(np.moveaxis(q1, axis, 0)).reshape(len(s1), -1).max(1)
        np.testing.assert_array_equal(peak[s1 > 0], 127)
        changed += int(np.sum(q0 != q1))
    assert changed > 0


@tf_only
def test_gptq_file_closer_to_the_float_model(files):
    model, found = files
    x, _ = _lorenz(8, 128, seed=7)  # sequences the calibration never saw
    reference = keras.ops.convert_to_numpy(model(x))
    error = {}
    for method, (report, flat) in found.items():
        y = stream_file(flat, x, "tflm", arena_size=report["arena_bytes"])
        error[method] = np.sqrt(np.mean((y - reference) ** 2))
    # Measured: 0.50x the RMS deviation of nearest rounding.
    assert error["gptq"] < 0.7 * error["nearest"]


@tf_only
def test_cli_weight_rounding(tmp_path):
    from keras_mgrade import cli

    model_path, data_path = tmp_path / "m.keras", tmp_path / "x.npy"
    _model().save(model_path)
    np.save(data_path, _lorenz(8, 32)[0])
    out = tmp_path / "int8.tflite"
    args = ["export", str(model_path), "--int8", "--calibration"]
    args += [str(data_path), "--out", str(out), "--weight-rounding", "gptq"]
    assert cli.main(args) == 0
    report = json.loads((tmp_path / "int8.json").read_text())
    assert report["weight_rounding"]["method"] == "gptq"
    assert report["weight_rounding"]["weights"] == 7


@tf_only
def test_weights_gptq_cannot_round_keep_nearest(tmp_path):
    # A dilated causal convolution multiplies every other sample of its
    # window: no product this module rounds; the Dense after it is.
    model = keras.Sequential(
        [
            keras.Input((None, 2)),
            keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2),
            keras.layers.Dense(3),
        ]
    )
    x = np.random.default_rng(0).normal(size=(8, 32, 2)).astype("float32")
    report = export_tflite(
        model,
        str(tmp_path / "dilated.tflite"),
        quantize="int8",
        representative_data=x,
        weight_rounding="gptq",
        verbose=False,
    )
    assert report["weight_rounding"]["weights"] == 1
    assert report["weight_rounding"]["nearest"] == 1
