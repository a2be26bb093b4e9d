"""export_tflite: float and int8 files against Keras, on TFLite Micro and
LiteRT; the export contract (I/O order, state quantization, ops); C
sources; command line. Conversion runs on the TensorFlow backend; on JAX
and torch the model is exported through the TensorFlow subprocess."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import to_numpy

from keras_mgrade import datasets
from keras_mgrade.export import StreamingInterpreter
from keras_mgrade.export import c_source
from keras_mgrade.export import export_tflite
from keras_mgrade.export import stream
from keras_mgrade.export import stream_file
from keras_mgrade.export import streaming_model
from keras_mgrade.models import mgrade_classifier
from keras_mgrade.models import mgrade_seq2seq

tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="conversion runs on TensorFlow"
)


def _x(batch=2, timesteps=256, features=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, timesteps, features)).astype("float32")


def _seq2seq():
    return mgrade_seq2seq(
        3, 2, units=16, num_layers=2, kernel_taps=4, max_delay=12, seed=3
    )


@pytest.fixture(scope="module")
def trained():
    """A small classifier trained on the multi-timescale task."""
    keras.utils.set_random_seed(0)
    x, y = datasets.multi_timescale(700, timesteps=64, seed=5)
    model = mgrade_classifier(
        2, 4, units=16, num_layers=1, kernel_taps=4, max_delay=12, seed=0
    )
    model.compile(
        optimizer=keras.optimizers.Adam(5e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x[:500], y[:500], epochs=6, batch_size=32, verbose=0)
    return model, x, y


@tf_only
def test_float_file_matches_keras(tmp_path):
    model = _seq2seq()
    x = _x()
    path = str(tmp_path / "f32.tflite")
    report = export_tflite(model, path, check_data=x[:1], verbose=False)
    expected = to_numpy(model(x))
    for runtime in ("tflm", "litert"):
        got = stream_file(path, x, runtime)
        assert np.max(np.abs(got - expected)) <= 1e-4, runtime
    assert report["max_abs_deviation"] <= 1e-4
    assert [t["name"] for t in report["inputs"]] == [
        "x_t",
        "state_0",
        "state_1",
        "state_2",
        "state_3",
    ]
    assert [t["shape"] for t in report["inputs"]] == [
        [1, 3],
        [1, 11, 16],
        [1, 16],
        [1, 11, 16],
        [1, 16],
    ]
    assert report["outputs"][0]["name"] == "y_t"
    assert report["arena_bytes"] > 0
    assert report["flatbuffer_bytes"] == os.path.getsize(path)
    on_disk = json.loads((tmp_path / "f32.json").read_text())
    assert on_disk["ops"] == report["ops"]
    assert not {"SELECT", "SELECT_V2", "WHILE", "GELU", "EXP", "LOG"} & set(
        report["ops"]
    )


@tf_only
def test_steps_per_invoke_and_reset(tmp_path):
    model = _seq2seq()
    x = _x(batch=1, timesteps=32)
    one = str(tmp_path / "one.tflite")
    four = str(tmp_path / "four.tflite")
    export_tflite(model, one, verbose=False, check_data=x)
    report = export_tflite(
        model, four, steps_per_invoke=4, verbose=False, check_data=x
    )
    assert report["inputs"][0]["shape"] == [1, 4, 3]
    a, b = stream_file(one, x), stream_file(four, x)
    np.testing.assert_allclose(b, a, atol=1e-5)
    interp = StreamingInterpreter(one)
    first = interp.run(x[0])
    interp.reset()
    assert all(not np.any(s) for s in interp.states)
    np.testing.assert_array_equal(interp.run(x[0], reset=False), first)


@tf_only
def test_int8_trained_classifier(trained, tmp_path):
    model, x, y = trained
    x_test, y_test = x[500:], y[500:]
    float_acc = np.mean(np.argmax(to_numpy(model(x_test)), -1) == y_test)
    assert float_acc > 0.9  # the task was learned
    path = str(tmp_path / "i8.tflite")
    report = export_tflite(
        model,
        path,
        quantize="int8",
        representative_data=x[:64],
        verbose=False,
    )
    assert report["host_pooling"] == "mean"
    assert {t["dtype"] for t in report["inputs"] + report["outputs"]} == {
        "int8"
    }
    # Each state's input and output share scale and zero point.
    for s_in, s_out in zip(report["inputs"][1:], report["outputs"][1:]):
        assert (s_in["scale"], s_in["zero_point"]) == (
            s_out["scale"],
            s_out["zero_point"],
        )
        assert s_in["shape"] == s_out["shape"]
    micro = stream_file(path, x_test, "tflm")
    micro_acc = np.mean(np.argmax(micro.mean(1), -1) == y_test)
    assert abs(micro_acc - float_acc) <= 0.01
    # LiteRT and TFLite Micro, fed the same int8 inputs and states at every
    # step of whole sequences. Their int8 kernels round differently in a
    # few places (the normalisation's MEAN/RSQRT), so a small share of the
    # outputs differ by more than 1 LSB; run freely, such a difference is
    # fed back through the state.
    tflm = StreamingInterpreter(path, "tflm")
    litert = StreamingInterpreter(path, "litert")
    diffs = []
    for sequence in x_test[:10]:
        tflm.reset()
        for x_t in sequence:
            x_q = tflm.inputs[0].to_file(x_t[None])
            litert.states = list(tflm.states)
            a, b = tflm.step_raw(x_q), litert.step_raw(x_q)
            diffs.extend(
                np.abs(u.astype(int) - v).ravel() for u, v in zip(a, b)
            )
    diffs = np.concatenate(diffs)
    assert np.mean(diffs == 0) >= 0.95
    assert np.mean(diffs <= 1) >= 0.99
    # The raw int8 bytes of the state outputs are fed back unchanged.
    interp = StreamingInterpreter(path)
    out = interp.step_raw(interp.inputs[0].to_file(x_test[0, 0][None]))
    assert all(o.dtype == np.int8 for o in out)
    assert all(np.array_equal(a, b) for a, b in zip(interp.states, out[1:]))


def test_int8_needs_calibration(tmp_path):
    model = _seq2seq()
    with pytest.raises(ValueError, match="representative_data=None"):
        export_tflite(model, str(tmp_path / "a.tflite"), quantize="int8")
    with pytest.raises(ValueError, match="quantize='int4'"):
        export_tflite(model, str(tmp_path / "a.tflite"), quantize="int4")
    with pytest.raises(ValueError, match="state='variables'"):
        export_tflite(model, str(tmp_path / "a.tflite"), state="variables")
    with pytest.raises(ValueError, match="representative_data.shape"):
        export_tflite(
            model,
            str(tmp_path / "a.tflite"),
            quantize="int8",
            representative_data=np.zeros((0, 4, 3)),
        )


def test_missing_tensorflow_is_explained(monkeypatch):
    from keras_mgrade.export import tflite

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"keras-mgrade\[tflite\]"):
        tflite._require_tensorflow()


@pytest.mark.skipif(BACKEND == "tensorflow", reason="other backends")
def test_export_from_jax_or_torch(tmp_path):
    model = _seq2seq()
    x = _x(timesteps=64)
    path = str(tmp_path / "m.tflite")
    report = export_tflite(model, path, check_data=x[:1], verbose=False)
    got = stream_file(path, x, "tflm")
    assert np.max(np.abs(got - to_numpy(model(x)))) <= 1e-4
    assert report["max_abs_deviation"] <= 1e-4


@tf_only
def test_c_sources_compile(tmp_path):
    model = _seq2seq()
    path = str(tmp_path / "m.tflite")
    report = export_tflite(model, path, verbose=False, check_data=_x()[:1])
    flat = open(path, "rb").read()
    paths = c_source.write_c_sources(flat, report["ops"], str(tmp_path))
    ops_header = open(paths["ops"]).read()
    for op in report["ops"]:
        assert f"resolver.{c_source.RESOLVER_METHODS[op]}()" in ops_header
    assert f"NumOps = {len(report['ops'])};" in ops_header
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no g++")
    obj = str(tmp_path / "m.o")
    subprocess.run(
        [compiler, "-c", paths["source"], "-I", str(tmp_path), "-o", obj],
        check=True,
    )
    nm = subprocess.run(
        ["nm", "-S", obj], check=True, capture_output=True, text=True
    ).stdout
    line = next(ln for ln in nm.splitlines() if ln.endswith("g_model_data"))
    assert int(line.split()[1], 16) == len(flat)


def test_cli_report(tmp_path):
    model = mgrade_classifier(
        3, 4, units=8, num_layers=1, kernel_taps=2, max_delay=6
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    out = subprocess.run(
        [sys.executable, "-m", "keras_mgrade.cli", "report", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "| mgrade_0 | MGRADE |" in out
    assert "TinyMLPerf KWS class" in out


@tf_only
def test_step_model_of_int8_export_is_float_reference(trained):
    # The exporter's deviation check compares against the step model.
    model, x, _ = trained
    step = streaming_model(model, batch_size=2, without_pooling=True)
    y, _ = stream(step, x[:2])
    np.testing.assert_allclose(y.mean(1), to_numpy(model(x[:2])), atol=1e-5)
