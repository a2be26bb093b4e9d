"""Int8 activations as table lookups for TFLite Micro (`lookup_tables`).

References: TFLite Micro's own kernels, on the same file without tables
(every int8 input value of the activations, and whole streams of an
MGRADE model); the C backend runs the tabled files in
`test_c_backend.py`."""

import json

import numpy as np
import pytest
from helpers import BACKEND

from keras_mgrade.export import StreamingInterpreter
from keras_mgrade.export import export_tflite
from keras_mgrade.export import rewrite
from keras_mgrade.export import tables
from keras_mgrade.models import mgrade_classifier

tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="conversion runs on TensorFlow"
)

ALL = np.arange(-128, 128, dtype=np.int8)


def _activations_file():
    """An int8 file computing, from one input of 256 values, the MinGRU
    gate's `tanh`, the candidate `max(x + 0.5, sigmoid(x))` and a GELU-like
    `x * sigmoid(1.702 x)`, concatenated (so no activation is a graph
    output)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 256], tf.float32)])
    def f(x):
        parts = [
            tf.tanh(x),
            tf.maximum(x + 0.5, tf.sigmoid(x)),
            x * tf.sigmoid(1.702 * x),
        ]
        return tf.concat(parts, axis=-1)

    def data():
        for k in range(8):
            yield [np.linspace(-7 - k, 6 + k, 256, dtype="float32")[None]]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function()], f
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _micro(data, x):
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(data, arena_size=1 << 16)
    interp.set_input(x.reshape(1, -1), 0)
    interp.invoke()
    return np.array(interp.get_output(0))


@tf_only
def test_tables_equal_tflite_micro_kernels_on_every_int8_input():
    flat = _activations_file()
    graph = rewrite.read_graph(flat)
    assert {"LOGISTIC", "TANH"} <= set(rewrite.op_names(flat))
    done = tables.tabulate(graph, rewrite.op_name)
    tabled = rewrite.write_graph(graph)
    names = [rewrite.op_name(graph, op) for op in graph.subgraphs[0].operators]
    assert done["tables"] == 3
    assert names.count("GATHER") == names.count("QUANTIZE") == 3
    assert not {"LOGISTIC", "TANH", "MAXIMUM"} & set(names)
    assert done["operators_replaced"] > 3
    # Every int8 value through each table, against the kernels.
    expected = _micro(flat, ALL)
    np.testing.assert_array_equal(_micro(tabled, ALL), expected)
    # The tables are not trivially constant: the outputs vary.
    parts = np.split(expected[0].astype(int), 3)
    assert all(np.ptp(part) > 30 for part in parts)


@tf_only
def test_a_table_that_differs_from_the_kernels_is_not_used(monkeypatch):
    """Each table is checked against TFLite Micro's kernels on all 256
    inputs before it replaces its operators."""
    flat = _activations_file()
    found = tables.find_groups(flat)
    graph = rewrite.read_graph(flat)
    for source, sink, indices, table in found:
        expected = tables.kernel_outputs(graph, source, sink, indices)
        np.testing.assert_array_equal(table, expected)
    source, sink, indices, table = found[1]
    wrong = table.copy()
    wrong[200] = wrong[200] + 1 if wrong[200] < 127 else 0
    corrupted = [*found[:1], (source, sink, indices, wrong), *found[2:]]
    monkeypatch.setattr(tables, "find_groups", lambda flat: corrupted)
    done = tables.tabulate(graph, rewrite.op_name)
    assert (done["tables"], done["kept"]) == (2, 1)
    kept = [rewrite.op_name(graph, op) for op in graph.subgraphs[0].operators]
    assert kept.count("GATHER") == 2
    np.testing.assert_array_equal(
        _micro(rewrite.write_graph(graph), ALL), _micro(flat, ALL)
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    if BACKEND != "tensorflow":
        pytest.skip("conversion runs on TensorFlow")
    model = mgrade_classifier(
        2, 4, units=16, num_layers=2, kernel_taps=4, max_delay=12, seed=0
    )
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(24, 48, 2)) * [1.0, 3.0]).astype("float32")
    out = tmp_path_factory.mktemp("tables")
    reports = {}
    for tables_on in (True, False):
        path = str(out / f"m{int(tables_on)}.tflite")
        kwargs = {} if tables_on else {"lookup_tables": False}
        reports[tables_on] = export_tflite(
            model,
            path,
            quantize="int8",
            representative_data=x[:16],
            verbose=False,
            **kwargs,
        )
    return reports, x[16:]


def test_default_int8_file_looks_activations_up(files):
    reports, _ = files
    on, off = reports[True], reports[False]
    # Per block: the gate, the candidate (LOGISTIC, QUANTIZE, ADD,
    # MAXIMUM) and the MLP's SiLU (LOGISTIC, MUL).
    assert on["lookup_tables"] == {
        "tables": 6,
        "operators_replaced": 14,
        "kept": 0,
    }
    assert off["lookup_tables"] is None
    assert "LOGISTIC" in off["ops"] and "LOGISTIC" not in on["ops"]
    assert {"GATHER", "QUANTIZE"} <= set(on["ops"])
    assert on["operators"] == off["operators"] - 2
    for layer in ("mgrade_0", "mgrade_1"):
        per_layer = on["operators_per_layer"][layer]
        assert per_layer == off["operators_per_layer"][layer] - 1
    # 256 bytes of flash per table; the arena does not grow.
    growth = on["flatbuffer_bytes"] - off["flatbuffer_bytes"]
    assert 6 * 256 <= growth <= 6 * 256 + 600
    assert on["arena_bytes"] <= off["arena_bytes"]
    assert on["max_abs_deviation"] == off["max_abs_deviation"]


def test_tabled_file_streams_bit_identically(files):
    reports, sequences = files
    runs = [StreamingInterpreter(reports[k]["path"], "tflm") for k in (1, 0)]
    steps = 0
    for sequence in sequences:
        for run in runs:
            run.reset()
        for x_t in sequence:
            x_q = runs[0].inputs[0].to_file(x_t[None])
            a, b = (run.step_raw(x_q) for run in runs)
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)
            steps += 1
    assert steps == sequences.shape[0] * sequences.shape[1]


@tf_only
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": "litert"}, "target='litert'"),
        ({"quantize": None}, "quantize=None"),
        ({"quantize": "int16x8"}, "quantize='int16x8'"),
        ({"lookup_tables": "yes"}, "lookup_tables='yes'"),
    ],
)
def test_lookup_tables_argument_errors(kwargs, match, tmp_path):
    model = mgrade_classifier(
        2, 3, units=8, num_layers=1, kernel_taps=2, max_delay=4
    )
    x = np.random.default_rng(0).normal(size=(4, 8, 2)).astype("float32")
    args = dict(quantize="int8", representative_data=x, lookup_tables=True)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        export_tflite(model, str(tmp_path / "m.tflite"), verbose=False, **args)


@tf_only
def test_cli_no_lookup_tables(tmp_path):
    from keras_mgrade import cli

    model = mgrade_classifier(
        2, 3, units=8, num_layers=1, kernel_taps=2, max_delay=4, seed=0
    )
    model_path, data_path = tmp_path / "m.keras", tmp_path / "x.npy"
    model.save(model_path)
    x = np.random.default_rng(0).normal(size=(8, 16, 2)).astype("float32")
    np.save(data_path, x)
    ops = {}
    for flag in ([], ["--no-lookup-tables"]):
        out = tmp_path / f"m{len(flag)}.tflite"
        args = ["export", str(model_path), "--int8", "--calibration"]
        assert cli.main([*args, str(data_path), "--out", str(out), *flag]) == 0
        report = json.loads(out.with_suffix(".json").read_text())
        ops[len(flag)] = (report["ops"], report["lookup_tables"])
    assert "GATHER" in ops[0][0] and "LOGISTIC" not in ops[0][0]
    assert ops[0][1]["tables"] == 3
    assert "LOGISTIC" in ops[1][0] and "GATHER" not in ops[1][0]
    assert ops[1][1] is None
