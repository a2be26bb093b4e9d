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
    got = stream_file(path, x, "tflm")
    assert np.max(np.abs(got - expected)) <= 1e-4
    # The default file is made for TFLite Micro; LiteRT takes the
    # target="litert" file, and both compute the model.
    with pytest.raises(ValueError, match="target='litert'"):
        stream_file(path, x, "litert")
    lite = str(tmp_path / "f32_litert.tflite")
    export_tflite(model, lite, check_data=x[:1], target="litert", verbose=False)
    for runtime in ("tflm", "litert"):
        got = stream_file(lite, x, runtime)
        assert np.max(np.abs(got - expected)) <= 1e-4, runtime
    assert report["max_abs_deviation"] <= 1e-4
    assert [t["name"] for t in report["inputs"]] == [
        "x_t",
        "state_0",
        "state_1",
        "state_2",
        "state_3",
    ]
    # The FIFOs are declared in the 4-D layout of the convolution.
    assert [t["shape"] for t in report["inputs"]] == [
        [1, 3],
        [1, 1, 11, 16],
        [1, 16],
        [1, 1, 11, 16],
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
        target="litert",  # compared with LiteRT below
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


@tf_only
def test_int8_lean_file_for_tflite_micro(trained, tmp_path):
    """The default int8 file (target "tflm") is the LiteRT file shrunk and
    with TFLite Micro-only graph passes; on TFLite Micro it computes the
    same bytes at every step."""
    model, x, _ = trained
    lite_path = str(tmp_path / "lite.tflite")
    lean_path = str(tmp_path / "lean.tflite")
    common = dict(quantize="int8", representative_data=x[:64], verbose=False)
    lite = export_tflite(model, lite_path, target="litert", **common)
    lean = export_tflite(model, lean_path, **common)
    assert (lite["target"], lean["target"]) == ("litert", "tflm")
    removed = lean["shrink"]["removed_bytes"]
    assert removed["names and signatures"] > 0
    assert removed["per-channel zero points"] > 0
    assert lean["flatbuffer_bytes"] == os.path.getsize(lean_path)
    assert lean["flatbuffer_bytes"] < lite["flatbuffer_bytes"]
    assert lean["flatbuffer_bytes"] < lean["shrink"]["unshrunk_bytes"]
    # Operators are counted per layer and add up to the file's.
    per_layer = lean["operators_per_layer"]
    assert sum(per_layer.values()) == lean["operators"]
    assert 0 < per_layer["mgrade_0"] <= 34
    assert lean["operators"] <= lite["operators"]
    # The arena: measured on this host, and the 32-bit estimate beside it.
    arena = lean["arena"]
    assert arena["host_bytes"] == lean["arena_bytes"]
    assert 0 < arena["cortex_m_estimate_bytes"] < arena["host_bytes"]
    assert "estimate" in arena["cortex_m_estimate"]["note"]
    # Bit-identical on TFLite Micro, every output of every step.
    a = StreamingInterpreter(lite_path, "tflm")
    b = StreamingInterpreter(lean_path, "tflm")
    for sequence in x[500:503]:
        a.reset()
        b.reset()
        for x_t in sequence:
            x_q = a.inputs[0].to_file(x_t[None])
            for u, v in zip(a.step_raw(x_q), b.step_raw(x_q)):
                np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="target='litert'"):
        StreamingInterpreter(lean_path, "litert")


def test_int8_needs_calibration(tmp_path):
    model = _seq2seq()
    with pytest.raises(ValueError, match="representative_data=None"):
        export_tflite(model, str(tmp_path / "a.tflite"), quantize="int8")
    with pytest.raises(ValueError, match="quantize='int4'"):
        export_tflite(model, str(tmp_path / "a.tflite"), quantize="int4")
    with pytest.raises(ValueError, match="state='stack'"):
        export_tflite(model, str(tmp_path / "a.tflite"), state="stack")
    with pytest.raises(ValueError, match="representative_data.shape"):
        export_tflite(
            model,
            str(tmp_path / "a.tflite"),
            quantize="int8",
            representative_data=np.zeros((0, 4, 3)),
        )


def test_missing_tensorflow_is_explained(monkeypatch):
    from keras_mgrade.export import convert

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"keras-mgrade\[tflite\]"):
        convert.require_tensorflow()


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
def test_cli_export_c(tmp_path):
    """`keras-mgrade export --int8 --c DIR`: the C step of the exported
    file, computing what TFLite Micro computes on it."""
    import hashlib

    from keras_mgrade import cli
    from keras_mgrade.export.c_backend import toolchain

    model = _seq2seq()
    model_path, data_path = tmp_path / "m.keras", tmp_path / "x.npy"
    model.save(model_path)
    np.save(data_path, _x(batch=8, timesteps=32))
    out, c_dir = tmp_path / "fw", tmp_path / "c"
    args = ["export", str(model_path), "--int8", "--calibration"]
    cli.main(args + [str(data_path), "--out", str(out), "--c", str(c_dir)])
    flat = (out / "model_int8.tflite").read_bytes()
    report = json.loads((c_dir / "mgrade_c.json").read_text())
    assert report["source_sha256"] == hashlib.sha256(flat).hexdigest()
    if not toolchain.available()["host-cc"]:
        pytest.skip("no host C compiler")
    driver = os.path.join(
        os.path.dirname(__file__), "c_driver", "host_driver.c"
    )
    exe = toolchain.build_host(
        str(c_dir), "mgrade", driver, str(tmp_path / "e")
    )
    interp = StreamingInterpreter(str(out / "model_int8.tflite"), "tflm")
    x = _x(batch=1, timesteps=64)[0]
    inputs = np.stack([interp.inputs[0].to_file(x_t[None]) for x_t in x])
    expected = np.stack([interp.step_raw(q)[0].reshape(-1) for q in inputs])
    got, _ = toolchain.run_host(
        exe, inputs.reshape(len(x), -1), output_size=expected.shape[1]
    )
    np.testing.assert_array_equal(got, expected)


@tf_only
def test_step_model_of_int8_export_is_float_reference(trained):
    # The exporter's deviation check compares against the step model.
    model, x, _ = trained
    step = streaming_model(model, batch_size=2, host_pooling=True)
    y, _ = stream(step, x[:2])
    np.testing.assert_allclose(y.mean(1), to_numpy(model(x[:2])), atol=1e-5)


@pytest.fixture(scope="module")
def io_and_variables(tmp_path_factory):
    """The seq2seq model as float32 files with state io and variables."""
    model = _seq2seq()
    x = _x(batch=1, timesteps=48)
    out = tmp_path_factory.mktemp("variables")
    reports = {
        state: export_tflite(
            model,
            str(out / f"{state}.tflite"),
            state=state,
            check_data=x,
            target="litert",  # run on both runtimes below
            verbose=False,
        )
        for state in ("io", "variables")
    }
    return x, reports


@tf_only
def test_variables_file_float(io_and_variables):
    from keras_mgrade.export import tflm_ops
    from keras_mgrade.export import variables

    x, reports = io_and_variables
    io, var = reports["io"], reports["variables"]
    assert var["state"] == "variables"
    assert [t["name"] for t in var["inputs"]] == ["x_t"]
    assert [t["name"] for t in var["outputs"]] == ["y_t"]
    assert var["variables"] == io["inputs"][1:]
    assert set(variables.VARIABLE_OPS) <= set(var["ops"])
    assert set(var["ops"]) <= tflm_ops.TFLM_OPS
    header = c_source.resolver_source(var["ops"], num_variables=4)
    assert "resolver.AddVarHandle()" in header
    assert "kModelNumVariables = 4;" in header
    assert var["max_abs_deviation"] <= 1e-4
    expected = stream_file(io["path"], x)[0]
    for runtime in ("tflm", "litert"):
        interp = StreamingInterpreter(var["path"], runtime)
        assert (interp.state, interp.num_states) == ("variables", 0)
        assert len(interp.inputs) == len(interp.outputs) == 1
        first = interp.run(x[0])
        np.testing.assert_allclose(first, expected, atol=1e-5, rtol=0)
        # Without reset the state carries on; reset() restores zeros.
        assert not np.allclose(interp.run(x[0], reset=False), first)
        interp.reset()
        np.testing.assert_array_equal(interp.run(x[0], reset=False), first)


@tf_only
def test_variables_file_int8(tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    model = _seq2seq()
    data = _x(batch=8, timesteps=64, seed=1)
    reports = {
        state: export_tflite(
            model,
            str(tmp_path / f"{state}.tflite"),
            quantize="int8",
            state=state,
            representative_data=data,
            check_data=data[:1],
            target="litert",
            verbose=False,
        )
        for state in ("io", "variables")
    }
    io, var = reports["io"], reports["variables"]
    assert [t["dtype"] for t in var["inputs"] + var["outputs"]] == [
        "int8",
        "int8",
    ]
    # int8 variables with the io file's state quantization.
    assert var["variables"] == io["inputs"][1:]
    assert {v["dtype"] for v in var["variables"]} == {"int8"}
    assert "DEQUANTIZE" not in var["ops"]
    flat = open(var["path"], "rb").read()
    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    read_types = set()
    for sub in graph.subgraphs:
        for op in sub.operators:
            name = flatbuffer_utils.opcode_to_name(graph, op.opcodeIndex)
            if name == "READ_VARIABLE":
                read_types.add(int(sub.tensors[op.outputs[0]].type))
            if name == "ASSIGN_VARIABLE":
                read_types.add(int(sub.tensors[op.inputs[1]].type))
    assert read_types == {9}  # TensorType.INT8
    # The same int8 outputs as the io file, on both runtimes.
    x = _x(batch=1, timesteps=64, seed=2)[0]
    for runtime in ("tflm", "litert"):
        a = StreamingInterpreter(io["path"], runtime)
        b = StreamingInterpreter(var["path"], runtime)
        for _ in range(2):  # the second pass checks reset()
            a.reset()
            b.reset()
            for x_t in x:
                x_q = a.inputs[0].to_file(x_t[None])
                np.testing.assert_array_equal(
                    b.step_raw(x_q)[0], a.step_raw(x_q)[0]
                )


def test_state_reaches_cli(tmp_path, monkeypatch):
    from keras_mgrade import cli
    from keras_mgrade.export import tflite

    model = _seq2seq()
    model_path = str(tmp_path / "m.keras")
    model.save(model_path)
    seen = {}

    def fake_export(model, path, **kwargs):
        seen.update(kwargs, path=path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"\0" * 8)
        record = {"head": 0, "tail": 1, "kinds": {}}
        arena = {
            "host_bytes": 1,
            "host_allocations": record,
            "cortex_m_estimate_bytes": 1,
        }
        return {
            "ops": ["ADD"],
            "arena_bytes": 1,
            "flatbuffer_bytes": 8,
            "arena": arena,
        }

    monkeypatch.setattr(tflite, "export_tflite", fake_export)
    out = str(tmp_path / "fw")
    cli.main(["export", model_path, "--out", out, "--state", "variables"])
    assert seen["state"] == "variables"
    assert seen["path"] == os.path.join(out, "model_float32_variables.tflite")


class _Done:
    returncode = 0
    stderr = ""


def test_worker_request_and_errors(tmp_path, monkeypatch):
    # The JAX/PyTorch path: the request reaches the TensorFlow process
    # whole (arrays as .npy), and its errors come back with their type.
    from keras_mgrade.export import worker

    model = _seq2seq()
    data = _x(batch=3, timesteps=8)
    seen = {}

    def fake_run(cmd, **kwargs):
        with open(cmd[-1]) as f:
            request = json.load(f)
        seen.update(request["kwargs"], env=kwargs["env"], cmd=cmd)
        seen["data"] = np.load(request["kwargs"]["representative_data"])
        result = seen.get("result", {"report": {"state": "variables"}})
        with open(request["result"], "w") as f:
            json.dump(result, f)
        return _Done()

    monkeypatch.setattr(worker.subprocess, "run", fake_run)
    path = str(tmp_path / "v.tflite")
    report = worker.export_in_subprocess(
        model, path, state="variables", representative_data=data
    )
    assert report == {"state": "variables"}
    assert seen["cmd"][1:3] == ["-m", "keras_mgrade.export.worker"]
    assert seen["env"]["KERAS_BACKEND"] == "tensorflow"
    assert seen["state"] == "variables"
    np.testing.assert_array_equal(seen["data"], data)
    seen["result"] = {"type": "ValueError", "message": "bad steps_per_invoke=3"}
    with pytest.raises(ValueError, match="bad steps_per_invoke=3"):
        worker.export_in_subprocess(model, path, representative_data=data)


@tf_only
@pytest.mark.skipif(
    shutil.which("arm-none-eabi-g++") is None,
    reason="arm-none-eabi-g++ is not installed",
)
def test_c_array_flash_size_cortex_m4(io_and_variables, tmp_path):
    _, reports = io_and_variables
    flat = open(reports["variables"]["path"], "rb").read()
    paths = c_source.write_c_sources(
        flat, reports["variables"]["ops"], str(tmp_path)
    )
    obj = str(tmp_path / "model_data.o")
    subprocess.run(
        [
            "arm-none-eabi-g++",
            "-mcpu=cortex-m4",
            "-mthumb",
            "-Os",
            "-c",
            paths["source"],
            "-I",
            str(tmp_path),
            "-o",
            obj,
        ],
        check=True,
    )
    sizes = subprocess.run(
        ["arm-none-eabi-size", "-A", obj],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    sections = {
        parts[0]: int(parts[1])
        for parts in (ln.split() for ln in sizes.splitlines())
        if len(parts) >= 2 and parts[0].startswith(".")
    }
    # The flatbuffer, the 4-byte length, and at most 15 bytes of padding
    # before the 16-byte aligned array; no code.
    padding = sections[".rodata"] - len(flat) - 4
    assert 0 <= padding < 16
    assert sections.get(".text", 0) == 0
    assert sections.get(".data", 0) == 0


@pytest.mark.skipif(BACKEND != "tensorflow", reason="conversion test")
def test_large_dcls_kernel_is_folded(tmp_path):
    """A DCLS kernel built from delay positions (EXP, REVERSE) reaches the
    converter as a constant whatever its size (here 8 x 32 x 12)."""
    model = mgrade_seq2seq(
        1, 2, units=12, num_layers=1, kernel_taps=8, max_delay=32
    )
    report = export_tflite(
        model, str(tmp_path / "big.tflite"), check_data=None, verbose=False
    )
    assert not {"EXP", "NEG", "REVERSE_V2"} & set(report["ops"])
    assert report["max_abs_deviation"] <= 1e-4


@pytest.mark.slow
@tf_only
def test_int8_batch_norm_folds_into_constants(tmp_path):
    """norm="batch" on TFLite Micro: no MEAN or RSQRT, and 19 operators
    per block instead of LayerNorm's 30 (each LayerNorm is MEAN, SUB, MUL,
    MEAN, RSQRT, MUL, its gamma and beta folded by the converter; the
    batch norms fold into mlp_in, mlp_out and one MUL; the activations
    are table lookups, `lookup_tables`)."""
    x = _x(8, 48)
    counts, reports = {}, {}
    for norm in ("layer", "batch"):
        model = mgrade_classifier(
            3, 2, units=8, num_layers=2, kernel_taps=2, max_delay=6,
            norm=norm, seed=1,
        )  # fmt: skip
        if norm == "batch":
            for _ in range(5):  # moving statistics off their start
                model(x, training=True)
        reports[norm] = export_tflite(
            model,
            str(tmp_path / f"{norm}.tflite"),
            quantize="int8",
            representative_data=x,
            verbose=False,
        )
        counts[norm] = reports[norm]["operators_per_layer"]
    assert {"MEAN", "RSQRT"} <= set(reports["layer"]["ops"])
    assert not {"MEAN", "RSQRT"} & set(reports["batch"]["ops"])
    for block in ("mgrade_0", "mgrade_1"):
        assert (counts["layer"][block], counts["batch"][block]) == (30, 19)
    # The export's own check on TFLite Micro against the float model, in
    # output steps (measured: 6.0 here, LayerNorm 25.4).
    assert reports["batch"]["max_deviation_output_lsb"] <= 8.0
