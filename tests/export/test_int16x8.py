"""quantize="int16x8": int16 activations and states, int8 weights.

The files stream on TFLite Micro and LiteRT, keep each state's
quantization equal in and out, and are checked against the Keras float
model over whole sequences: a 16x8 file of a norm-free model is much
closer to it than the int8 file of the same model."""

import json

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import to_numpy

from keras_mgrade.export import StreamingInterpreter
from keras_mgrade.export import export_c
from keras_mgrade.export import export_tflite
from keras_mgrade.export import stream_file
from keras_mgrade.models import mgrade_seq2seq
from keras_mgrade.quantization import QuantizeConfig
from keras_mgrade.quantization import quantize_model

tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="conversion runs on TensorFlow"
)


def _x(batch, timesteps, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, timesteps, 2)).astype("float32")


def _model(norm=None):
    return mgrade_seq2seq(
        2, 2, units=16, num_layers=2, kernel_taps=4, max_delay=8, norm=norm,
        seed=3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A norm-free model, its int8 file and its 16x8 files for TFLite
    Micro and for LiteRT, calibrated on the same sequences."""
    keras.utils.set_random_seed(0)
    model = _model()
    data = _x(16, 64)
    out = tmp_path_factory.mktemp("int16x8")
    reports = {}
    for quantize, target in (
        ("int8", "tflm"),
        ("int16x8", "tflm"),
        ("int16x8", "litert"),
    ):
        path = str(out / f"{quantize}_{target}.tflite")
        reports[quantize, target] = export_tflite(
            model,
            path,
            quantize=quantize,
            representative_data=data,
            target=target,
            verbose=False,
        )
    return model, reports, data


@tf_only
def test_int16x8_file_contract(files):
    _, reports, _ = files
    for target in ("tflm", "litert"):
        report = reports["int16x8", target]
        assert report["quantize"] == "int16x8"
        entries = report["inputs"] + report["outputs"]
        assert {e["dtype"] for e in entries} == {"int16"}
        assert {e["zero_point"] for e in entries} == {0}
        states_in = report["inputs"][1:]
        states_out = report["outputs"][1:]
        assert len(states_in) == 4
        for a, b in zip(states_in, states_out):
            assert (a["scale"], a["shape"]) == (b["scale"], b["shape"])
        assert report["warnings"] == []
    # The shrunk TFLite Micro file is the LiteRT file's arithmetic.
    assert reports["int16x8", "tflm"]["shrink"]["removed_bytes"]


@tf_only
def test_int16x8_streams_on_tflite_micro_and_litert(files):
    model, reports, _ = files
    x = _x(2, 96, seed=1)
    litert_path = reports["int16x8", "litert"]["path"]
    on_litert = stream_file(litert_path, x, "litert")
    on_tflm = stream_file(litert_path, x, "tflm")
    shrunk = stream_file(reports["int16x8", "tflm"]["path"], x, "tflm")
    np.testing.assert_array_equal(shrunk, on_tflm)
    scale = reports["int16x8", "litert"]["outputs"][0]["scale"]
    # Kernels round differently; the recurrence carries it along.
    assert np.max(np.abs(on_tflm - on_litert)) <= 16 * scale
    expected = to_numpy(model(x))
    assert np.max(np.abs(on_tflm - expected)) < 0.1 * np.max(np.abs(expected))


@tf_only
def test_int16x8_five_times_closer_than_int8(files):
    """Dequantized outputs on TFLite Micro vs the Keras float model over
    whole sequences: the 16x8 file at least 5x closer than the int8."""
    model, reports, data = files
    x = data[:8]  # within the calibrated ranges: no saturation
    expected = to_numpy(model(x))
    deviation = {}
    for quantize in ("int8", "int16x8"):
        got = stream_file(reports[quantize, "tflm"]["path"], x, "tflm")
        error = np.abs(got - expected)
        deviation[quantize] = (float(error.mean()), float(error.max()))
    ratio_mean = deviation["int8"][0] / deviation["int16x8"][0]
    ratio_max = deviation["int8"][1] / deviation["int16x8"][1]
    print(f"mean/max |file - keras|: {deviation}; ratios {ratio_mean:.1f}, "
          f"{ratio_max:.1f}")  # fmt: skip
    assert ratio_mean >= 5.0
    assert ratio_max >= 2.0
    report = reports["int16x8", "tflm"]
    assert report["max_abs_deviation"] < reports["int8", "tflm"][
        "max_abs_deviation"
    ] / 3  # fmt: skip
    scale = report["outputs"][0]["scale"]
    assert report["max_deviation_output_lsb"] == pytest.approx(
        report["max_abs_deviation_step"] / scale, rel=1e-3
    )


@tf_only
@pytest.mark.slow
def test_int16x8_rsqrt_runs_on_tflite_micro(tmp_path):
    """RMS normalisation (RSQRT) in int16 runs on TFLite Micro."""
    model = _model(norm="rms")
    data = _x(8, 64)
    path = str(tmp_path / "rms.tflite")
    report = export_tflite(
        model, path, quantize="int16x8", representative_data=data,
        target="litert", verbose=False,
    )  # fmt: skip
    assert "RSQRT" in report["ops"]
    x = data[:2]
    expected = to_numpy(model(x))
    on_tflm = stream_file(path, x, "tflm")
    on_litert = stream_file(path, x, "litert")
    assert np.max(np.abs(on_tflm - expected)) < 0.05 * np.max(abs(expected))
    assert np.max(np.abs(on_tflm - on_litert)) < 0.01 * np.max(abs(expected))


@tf_only
@pytest.mark.slow
def test_qat_16bit_model_to_int16x8(tmp_path):
    """A model trained with 16-bit activations exports to 16x8 from its
    learned ranges, without calibration data, within a few output LSB of
    the quantization-aware model."""
    keras.utils.set_random_seed(0)
    model = mgrade_seq2seq(
        2, 2, units=8, num_layers=1, kernel_taps=2, max_delay=4, norm=None,
        seed=1,
    )  # fmt: skip
    qat = quantize_model(model, QuantizeConfig(activation_bits=16))
    qat.compile("adam", "mse")
    x = _x(16, 32)
    qat.fit(x, np.cumsum(x, axis=1) * 0.1, epochs=1, verbose=0)
    path = str(tmp_path / "qat16.tflite")
    report = export_tflite(qat, path, quantize="int16x8", verbose=False)
    assert report["quantization"] == "qat"
    # The file's grids are the learned ranges: scale m / 32767.
    table = qat.range_table()
    low, high = table["decoder/decoder/linear"]
    scale = report["outputs"][0]["scale"]
    assert scale == pytest.approx(max(-low, high) / 32767, rel=1e-5)
    low, high = table["mgrade_0/min_gru_cell/h"]
    assert report["inputs"][2]["scale"] == pytest.approx(
        max(-low, high) / 32767, rel=1e-5
    )
    got = stream_file(path, x[:4], "tflm")
    expected = to_numpy(qat(x[:4]))
    lsb = np.max(np.abs(got - expected)) / scale
    float_lsb = np.max(np.abs(got - to_numpy(model(x[:4])))) / scale
    print(f"16x8 file vs QAT model: {lsb:.1f} output LSB (report: "
          f"{report['max_deviation_output_lsb']}), vs float "
          f"{float_lsb:.1f}")  # fmt: skip
    assert lsb <= 8
    assert report["max_deviation_output_lsb"] <= 8
    with pytest.raises(ValueError, match="16-bit activations"):
        quantize_model(model).check_exportable("int16x8")


@tf_only
def test_cli_int16x8(tmp_path, capsys):
    from keras_mgrade import cli

    model = _model()
    model_path, data_path = tmp_path / "m.keras", tmp_path / "x.npy"
    model.save(model_path)
    np.save(data_path, _x(8, 32))
    out = tmp_path / "fw"
    args = ["export", str(model_path), "--int16x8", "--calibration"]
    assert cli.main(args + [str(data_path), "--out", str(out)]) == 0
    report = json.loads((out / "model_int16x8.json").read_text())
    assert report["inputs"][0]["dtype"] == "int16"
    assert report["weight_rounding"]["method"] == "gptq"  # the default
    interp = StreamingInterpreter(str(out / "model_int16x8.tflite"), "tflm")
    assert interp.inputs[0].dtype == np.int16
    with pytest.raises(ValueError, match="int8 files only.*int16"):
        export_c(str(out / "model_int16x8.tflite"), str(tmp_path / "c"))


@pytest.mark.skipif(BACKEND == "tensorflow", reason="other backends")
@pytest.mark.slow
def test_int16x8_from_jax_or_torch(tmp_path):
    """Exported through the TensorFlow process, same contract."""
    model = mgrade_seq2seq(
        2, 2, units=8, num_layers=1, kernel_taps=2, max_delay=4, norm=None,
        seed=1,
    )  # fmt: skip
    data = _x(8, 32)
    path = str(tmp_path / "m.tflite")
    report = export_tflite(
        model, path, quantize="int16x8", representative_data=data,
        verbose=False,
    )  # fmt: skip
    assert {e["dtype"] for e in report["inputs"]} == {"int16"}
    assert report["weight_rounding"]["method"] == "gptq"
    assert report["weight_rounding"]["nearest"] == 0
    got = stream_file(path, data[:2], "tflm")
    expected = to_numpy(model(data[:2]))
    assert np.max(np.abs(got - expected)) < 0.05 * np.max(np.abs(expected))


@tf_only
@pytest.mark.slow
def test_int16x8_state_in_variables(files, tmp_path):
    """`state="variables"`: int16 variables, the io file's outputs."""
    model, reports, data = files
    path = str(tmp_path / "v.tflite")
    report = export_tflite(
        model, path, quantize="int16x8", state="variables",
        representative_data=data, verbose=False,
    )  # fmt: skip
    io_states = reports["int16x8", "tflm"]["inputs"][1:]
    assert [v["dtype"] for v in report["variables"]] == ["int16"] * 4
    assert [v["scale"] for v in report["variables"]] == [
        s["scale"] for s in io_states
    ]
    x = data[:2]
    np.testing.assert_array_equal(
        stream_file(path, x, "tflm"),
        stream_file(reports["int16x8", "tflm"]["path"], x, "tflm"),
    )
