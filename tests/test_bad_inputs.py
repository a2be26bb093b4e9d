"""Misuse across the public API, one case per test id: every bad input
gives a clear error that names the argument and the value received, or
(where the input is legitimate) the right result; none crashes the
process or passes silently.

Cases that could reach native code with a bad value (the converter, the
TFLite Micro interpreter) run in a separate process, so that a crash
fails one test and not the run. Cases that need a converted file run on
the TensorFlow backend (on the others the export runs in a TensorFlow
process anyway); everything else runs on every backend.
"""

import dataclasses
import functools
import os
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import ROOT
from helpers import to_numpy

from keras_mgrade import callbacks
from keras_mgrade import core
from keras_mgrade import datasets
from keras_mgrade import memory
from keras_mgrade.export import StreamingInterpreter
from keras_mgrade.export import export_tflite
from keras_mgrade.export import find_arena_size
from keras_mgrade.export import stream
from keras_mgrade.export import stream_file
from keras_mgrade.export import streaming_model
from keras_mgrade.layers import MGRADE
from keras_mgrade.layers import DCLSConv1D
from keras_mgrade.layers import MinGRU
from keras_mgrade.layers import TemporalMeanPooling
from keras_mgrade.models import mgrade_classifier
from keras_mgrade.models import mgrade_seq2seq
from keras_mgrade.quantization import QuantizeConfig
from keras_mgrade.quantization import quantize_model

X = np.random.default_rng(0).normal(size=(8, 16, 3)).astype("float32")
TMP = tempfile.mkdtemp(prefix="bad_inputs_")


@dataclasses.dataclass
class Case:
    """One misuse: `run()` must raise `error` with a message matching
    `match` (None: `run` checks the result itself)."""

    id: str
    run: Callable
    match: str | None = None
    error: type = ValueError
    tensorflow_only: bool = False


def classifier(**kwargs):
    keras.utils.set_random_seed(0)
    options = {"units": 8, "num_layers": 1, "kernel_taps": 2, "max_delay": 4}
    return mgrade_classifier(3, 2, **{**options, **kwargs})


def seq2seq():
    keras.utils.set_random_seed(0)
    return mgrade_seq2seq(
        3, 2, units=8, num_layers=1, kernel_taps=2, max_delay=4
    )


def tokens():
    keras.utils.set_random_seed(0)
    return mgrade_classifier(
        None, 3, units=8, num_layers=1, kernel_taps=2, max_delay=4,
        vocabulary_size=10,
    )  # fmt: skip


def path(name):
    return os.path.join(TMP, name)


def export(model, name="m.tflite", **kwargs):
    return export_tflite(model, path(name), verbose=False, **kwargs)


@functools.cache
def float_file():
    """A float32 seq2seq file (and its model), exported once."""
    model = seq2seq()
    report = export(model, "seq2seq.tflite", check_data=X[:1])
    return model, report["path"]


@functools.cache
def four_step_file():
    report = export(seq2seq(), "k4.tflite", steps_per_invoke=4)
    return report["path"]


def run_python(code, backend="tensorflow"):
    """Runs `code` in a fresh process; returns (exit code, output)."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def in_process(code, expected):
    """`code` must print `expected` and exit normally in its own process
    (a crash would show as a signal exit code)."""

    def run():
        code_, output = run_python(code)
        assert code_ == 0, output[-3000:]
        assert expected in output, output[-3000:]

    return run


def cli(*args):
    return run_python(
        "import sys; from keras_mgrade import cli; "
        f"sys.exit(cli.main({list(args)!r}))"
    )


def cli_error(args, expected, setup=None):
    """The CLI must exit 2 with one error line containing `expected`."""

    def run():
        if setup is not None:
            setup()
        code, output = cli(*args)
        assert code == 2, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        assert "keras-mgrade: error: " in output, output[-3000:]
        assert expected in output, output[-3000:]

    return run


# ----------------------------------------------------------------------
# Results that were silently wrong.


def _dcls_empty_time():
    layer = DCLSConv1D(2, 5, return_state=True)
    fifo = np.random.default_rng(1).normal(size=(2, 4, 3)).astype("float32")
    y, final = layer(np.zeros((2, 0, 3), "float32"), initial_state=fifo)
    assert tuple(y.shape) == (2, 0, 3)
    np.testing.assert_array_equal(to_numpy(final), fifo)


def _dcls_empty_batch():
    y, final = DCLSConv1D(2, 5, return_state=True)(np.zeros((0, 5, 3)))
    assert tuple(y.shape) == (0, 5, 3) and tuple(final.shape) == (0, 4, 3)


def _min_gru_empty_time():
    h0 = np.full((2, 4), 0.5, "float32")
    layer = MinGRU(4, return_sequences=True, return_state=True)
    y, h = layer(np.zeros((2, 0, 3), "float32"), initial_state=h0)
    assert tuple(y.shape) == (2, 0, 4)
    np.testing.assert_array_equal(to_numpy(h), h0)


def _mgrade_empty_time():
    block = MGRADE(3, kernel_taps=2, max_delay=4, return_state=True)
    y, fifo, h = block(np.zeros((2, 0, 3), "float32"))
    assert tuple(y.shape) == (2, 0, 3)
    assert not np.any(to_numpy(fifo)) and not np.any(to_numpy(h))


def _round_positions_survive_saving():
    model = classifier()
    callbacks.round_positions(model)
    expected = to_numpy(model(X))
    model.save(path("rounded.keras"))
    loaded = keras.saving.load_model(path("rounded.keras"))
    assert loaded.get_layer("mgrade_0").conv.rounded
    assert loaded.get_layer("mgrade_0").get_config()["rounded"]
    np.testing.assert_allclose(to_numpy(loaded(X)), expected, atol=1e-6)


def _sigma_survives_saving():
    model = classifier()
    model.get_layer("mgrade_0").conv.sigma = 0.3
    model.save(path("sigma.keras"))
    loaded = keras.saving.load_model(path("sigma.keras"))
    assert abs(loaded.get_layer("mgrade_0").conv.sigma - 0.3) < 1e-6


def _stateless_streams():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.Dense(2)])
    y, states = stream(streaming_model(model, batch_size=8), X)
    np.testing.assert_allclose(y, to_numpy(model(X)), atol=1e-6)
    assert states == []


def _nan_batch_keeps_qat_ranges():
    model = classifier(timesteps=16)
    qat = quantize_model(model)
    qat.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    y = np.zeros(8, "int32")
    qat.fit(X, y, epochs=1, batch_size=8, verbose=0)
    before = qat.range_table()
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    qat.fit(bad, y, epochs=1, batch_size=8, verbose=0)
    after = qat.range_table()
    assert all(np.isfinite(after[k]).all() for k in after), after
    assert after["inputs/x"] == before["inputs/x"]


# ----------------------------------------------------------------------
# Export results (TensorFlow: conversion).


def _report_checks_the_model_itself():
    model = classifier()
    report = export(model, "pooled.tflite", check_data=X[:2])
    logits = stream_file(report["path"], X[:2])[:, -1]  # in-file mean
    expected = to_numpy(model(X[:2]))
    assert (
        abs(report["max_abs_deviation"] - np.abs(logits - expected).max())
        < 1e-6
    )
    assert report["max_abs_deviation"] <= 1e-4


def _stateless_exports():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.Dense(2)])
    for quantize in (None, "int8"):
        report = export(
            model, f"dense_{quantize}.tflite", quantize=quantize,
            representative_data=X,
        )  # fmt: skip
        assert report["inputs"][1:] == [] and report["ops"] == [
            "FULLY_CONNECTED"
        ]
        assert report["max_abs_deviation"] < 0.05


def _token_classifier_exports():
    model = tokens()
    ids = np.random.default_rng(0).integers(0, 10, (8, 16)).astype("int32")
    report = export(model, "tokens.tflite", check_data=ids[:2])
    assert "GATHER" in report["ops"] and report["max_abs_deviation"] <= 1e-4
    report = export(
        model, "tokens8.tflite", quantize="int8", representative_data=ids
    )
    # Post-training int8 of an untrained model: the mean logits of the
    # file stay within a quarter of their range of the model's.
    logits = to_numpy(model(ids[:4]))
    assert report["max_abs_deviation"] <= 0.25 * np.ptp(logits)


def _mixed_precision_exports():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = classifier()
    finally:
        keras.config.set_dtype_policy("float32")
    report = export(model, "mixed.tflite", check_data=X[:2])
    assert report["max_abs_deviation"] <= 1e-2  # float16 vs float32
    assert report["max_abs_deviation_step"] <= 1e-4


def _saturation_is_reported():
    model = seq2seq()
    report = export(
        model, "narrow.tflite", quantize="int8",
        representative_data=0.05 * X, check_data=X[:2],
    )  # fmt: skip
    assert any(w.startswith("x_t saturates") for w in report["warnings"])


# ----------------------------------------------------------------------
# Files.


def _write_corrupt_files():
    _, good = float_file()
    data = open(good, "rb").read()
    with open(path("truncated.tflite"), "wb") as f:
        f.write(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[64:160] = b"\xff" * 96
    with open(path("corrupt.tflite"), "wb") as f:
        f.write(bytes(corrupt))
    with open(path("text.keras"), "w") as f:
        f.write("not a model")
    np.save(path("rank2.npy"), X[:, :, 0])
    seq2seq().save(path("seq2seq.keras"))


def _interpreter_code(file, call):
    return (
        "from keras_mgrade.export import StreamingInterpreter\n"
        "from keras_mgrade.export import find_arena_size\n"
        "try:\n"
        f"    {call.format(file=path(file))}\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e)\n"
    )


def _truncated_wav():
    folder = path("speech")
    os.makedirs(os.path.join(folder, "yes"), exist_ok=True)
    file = os.path.join(folder, "yes", "a.wav")
    with wave.open(file, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(100)
        f.writeframes(np.zeros(100, "<i2").tobytes())
    with open(file, "r+b") as f:  # cut the data, keep the header
        f.truncate(44 + 60)
    datasets.speech_commands(folder, sample_rate=100)


def _fit_then(model_fn, *args):
    def run():
        model = model_fn()
        return args[0](model)

    return run


def _stateful(layer, batch=2):
    inputs = keras.Input(batch_shape=(batch, None, 3))
    model = keras.Model(inputs, layer(inputs))
    return model


def _qat_untrained():
    export(quantize_model(classifier()), "qat.tflite", quantize="int8")


def _qat_four_bits():
    qat = quantize_model(classifier(), QuantizeConfig(weight_bits=4))
    qat.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    qat.fit(X, np.zeros(8), epochs=1, verbose=0)
    export(qat, "qat4.tflite", quantize="int8")


def _batch_norm_over_time():
    inputs = keras.Input((16, 3))
    x = keras.layers.BatchNormalization(axis=1, name="bn_over_time")(inputs)
    return keras.Model(inputs, MinGRU(2)(x))


def _layer_norm_over_time():
    inputs = keras.Input((16, 3))
    x = keras.layers.LayerNormalization(axis=1, name="over_time")(inputs)
    return keras.Model(inputs, MinGRU(2)(x))


CASES = [
    # --- layers and builders: results -------------------------------
    Case("dcls_empty_time_axis", _dcls_empty_time),
    Case("dcls_empty_batch", _dcls_empty_batch),
    Case("min_gru_empty_time_axis", _min_gru_empty_time),
    Case("mgrade_empty_time_axis", _mgrade_empty_time),
    Case("round_positions_survive_saving", _round_positions_survive_saving),
    Case("sigma_survives_saving", _sigma_survives_saving),
    Case("stateless_model_streams", _stateless_streams),
    Case("nan_batch_keeps_qat_ranges", _nan_batch_keeps_qat_ranges),
    # --- layers and builders: errors --------------------------------
    Case(
        "min_gru_last_step_of_empty_sequence",
        lambda: MinGRU(4)(np.zeros((2, 0, 3), "float32")),
        r"return_sequences=False.*inputs.shape=\(2, 0, 3\)",
    ),
    Case(
        "mgrade_unknown_norm",
        lambda: MGRADE(8, norm="group"),
        r"\('layer', 'rms', 'batch', None\). Received: norm='group'",
    ),
    Case(
        "classifier_unknown_norm",
        lambda: mgrade_classifier(3, 2, units=8, norm="BatchNorm"),
        r"'batch', None\). Received: norm='BatchNorm'",
    ),
    Case(
        "mgrade_norm_epsilon_negative",
        lambda: MGRADE(8, norm_epsilon=-1),
        "norm_epsilon=-1",
    ),
    Case(
        "mgrade_norm_epsilon_nan",
        lambda: MGRADE(8, norm_epsilon=float("nan")),
        "norm_epsilon=nan",
    ),
    Case(
        "mgrade_bad_taps_without_conv",
        lambda: MGRADE(8, use_conv=False, kernel_taps=-1, max_delay=-5),
        "kernel_taps=-1",
    ),
    Case(
        "mgrade_bad_window_without_conv",
        lambda: MGRADE(8, use_conv=False, kernel_taps=1, max_delay=-5),
        "max_delay=-5",
    ),
    Case(
        "dcls_kernel_taps_bool",
        lambda: DCLSConv1D(True, 4),
        "kernel_taps=True",
    ),
    Case(
        "dcls_sigma_text",
        lambda: DCLSConv1D(2, 4, sigma="wide"),
        "sigma='wide'",
    ),
    Case(
        "min_gru_integer_inputs",
        lambda: MinGRU(4)(np.zeros((2, 5, 3), "int32")),
        "inputs.dtype=int32",
    ),
    Case(
        "mgrade_integer_inputs",
        lambda: MGRADE(3, kernel_taps=2, max_delay=4)(
            np.zeros((2, 5, 3), "int32")
        ),
        "inputs.dtype=int32",
    ),
    Case(
        "dcls_integer_inputs",
        lambda: DCLSConv1D(2, 4)(np.zeros((2, 5, 3), "int32")),
        "inputs.dtype=int32",
    ),
    Case(
        "min_gru_mask_shape",
        lambda: MinGRU(4)(X[:2], mask=np.ones((2, 4), bool)),
        r"mask.shape=\(2, 4\)",
    ),
    Case(
        "mgrade_mask_shape",
        lambda: MGRADE(3, kernel_taps=2, max_delay=4)(
            X[:2], mask=np.ones((3, 16), bool)
        ),
        r"mask.shape=\(3, 16\)",
    ),
    Case(
        "min_gru_stateful_batch_changed",
        lambda: _stateful(MinGRU(4, stateful=True)).layers[-1](X[:3]),
        "batch size 2.*a batch of 3",
    ),
    Case(
        "dcls_stateful_batch_changed",
        lambda: _stateful(DCLSConv1D(2, 4, stateful=True)).layers[-1](X[:3]),
        "batch size 2.*a batch of 3",
    ),
    Case(
        "mgrade_step_state_shape",
        lambda: MGRADE(3, kernel_taps=2, max_delay=4).step(
            X[:2, 0], [np.zeros((2, 3, 3)), np.zeros((2, 4))]
        ),
        r"states\[1\].shape=\(2, 4\)",
    ),
    Case(
        "mgrade_step_state_count",
        lambda: MGRADE(3, kernel_taps=2, max_delay=4).step(X[:2, 0], []),
        "states of length 0",
    ),
    Case(
        "pooling_step_states",
        lambda: _built_pooling().step(X[:2, 0], [np.zeros((2, 3))]),
        "states of length 1",
    ),
    Case(
        "classifier_pooling",
        lambda: classifier(pooling="max"),
        "pooling='max'",
    ),
    Case(
        "classifier_zero_classes",
        lambda: mgrade_classifier(3, 0),
        "num_classes=0",
    ),
    Case(
        "classifier_tokens_and_features",
        lambda: mgrade_classifier(3, 2, vocabulary_size=10),
        "input_features=3, vocabulary_size=10",
    ),
    Case(
        "classifier_no_features",
        lambda: mgrade_classifier(None, 2),
        "input_features=None",
    ),
    Case(
        "seq2seq_zero_outputs",
        lambda: mgrade_seq2seq(3, 0),
        "output_features=0",
    ),
    Case(
        "sigma_annealing_end",
        lambda: callbacks.SigmaAnnealing(end=0),
        "end=0",
    ),
    Case(
        "sigma_annealing_fraction",
        lambda: callbacks.SigmaAnnealing(fraction=2),
        "fraction=2",
    ),
    Case(
        "footprint_precision",
        lambda: memory.footprint(classifier(), "int4"),
        "precision='int4'",
    ),
    Case(
        "footprint_unregistered_layer",
        lambda: memory.footprint(
            keras.Sequential(
                [keras.Input((None, 3)), keras.layers.SimpleRNN(2)]
            )
        ),
        "of type SimpleRNN cannot be streamed. Registered:",
    ),
    # --- streaming_model and the registry ---------------------------
    Case(
        "streaming_model_not_a_model",
        lambda: streaming_model("model.keras"),
        "model of type str",
    ),
    Case(
        "streaming_model_unbuilt",
        lambda: streaming_model(keras.Sequential([MinGRU(2)])),
        "not built",
    ),
    Case(
        "streaming_model_unregistered_layer",
        lambda: streaming_model(
            keras.Sequential(
                [
                    keras.Input((None, 3)),
                    keras.layers.Bidirectional(keras.layers.LSTM(2)),
                ]
            )
        ),
        "of type Bidirectional cannot be streamed. Registered: .*MinGRU",
    ),
    Case(
        "streaming_model_norm_over_time",
        lambda: streaming_model(_layer_norm_over_time()),
        r"axis=\[1\] for layer 'over_time'",
    ),
    Case(
        "streaming_model_batch_norm_over_time",
        lambda: streaming_model(_batch_norm_over_time()),
        r"axis=1 for layer 'bn_over_time'",
    ),
    Case(
        "streaming_model_batch_size",
        lambda: streaming_model(classifier(), batch_size=0),
        "batch_size=0",
    ),
    Case(
        "register_not_a_type",
        lambda: core.register_streaming("not a class", step=None),
        "step is required.*layer_type=not a class",
    ),
    # --- export_tflite: arguments (checked before any conversion) ---
    Case(
        "export_quantize",
        lambda: export(seq2seq(), quantize="int4"),
        "quantize='int4'",
    ),
    Case("export_state", lambda: export(seq2seq(), state="ram"), "state='ram'"),
    Case(
        "export_steps_per_invoke",
        lambda: export(seq2seq(), steps_per_invoke=0),
        "steps_per_invoke=0",
    ),
    Case(
        "export_max_calibration_negative",
        lambda: export(
            seq2seq(),
            quantize="int8",
            representative_data=X,
            max_calibration_sequences=-1,
        ),  # fmt: skip
        "max_calibration_sequences=-1",
    ),
    Case(
        "export_max_calibration_float",
        lambda: export(seq2seq(), max_calibration_sequences=2.5),
        "max_calibration_sequences=2.5",
    ),
    Case(
        "export_calibration_rank_2",
        lambda: export(
            seq2seq(), quantize="int8", representative_data=X[:, :, 0]
        ),
        r"representative_data.shape=\(8, 16\)",
    ),
    Case(
        "export_calibration_features",
        lambda: export(
            seq2seq(), quantize="int8", representative_data=X[..., :2]
        ),
        r"\(n, timesteps, 3\).*representative_data.shape=\(8, 16, 2\)",
    ),
    Case(
        "export_calibration_zeros",
        lambda: export(seq2seq(), quantize="int8", representative_data=0 * X),
        "every value is 0.0",
    ),
    Case(
        "export_calibration_nan",
        lambda: export(
            seq2seq(),
            quantize="int8",
            representative_data=np.where(X > 2.5, np.nan, X),
        ),  # fmt: skip
        "representative_data with .* NaN or infinite value",
    ),
    Case(
        "export_calibration_no_time",
        lambda: export(
            seq2seq(), quantize="int8", representative_data=X[:, :0]
        ),
        r"at least one step. Received: representative_data.shape=\(8, 0, 3\)",
    ),
    Case(
        "export_calibration_no_sequence",
        lambda: export(seq2seq(), quantize="int8", representative_data=X[:0]),
        r"representative_data.shape=\(0, 16, 3\)",
    ),
    Case(
        "export_calibration_text",
        lambda: export(
            seq2seq(),
            quantize="int8",
            representative_data=np.full((2, 4, 3), "a"),
        ),  # fmt: skip
        "representative_data.dtype=<U1",
    ),
    Case(
        "export_calibration_not_arrays",
        lambda: export(seq2seq(), quantize="int8", representative_data=3),
        "representative_data of type int",
    ),
    Case(
        "export_steps_do_not_divide",
        lambda: export(
            seq2seq(),
            quantize="int8",
            representative_data=X[:, :10],
            steps_per_invoke=4,
        ),  # fmt: skip
        "multiple of steps_per_invoke.*steps_per_invoke=4",
    ),
    Case(
        "export_check_data_nan",
        lambda: export(seq2seq(), check_data=np.full((1, 4, 3), np.nan)),
        "check_data with 12 NaN",
    ),
    Case(
        "export_check_data_features",
        lambda: export(seq2seq(), check_data=X[..., :1]),
        r"check_data.shape=\(8, 16, 1\)",
    ),
    Case(
        "export_int8_without_calibration",
        lambda: export(seq2seq(), quantize="int8"),
        "representative_data=None",
    ),
    Case(
        "export_not_a_model",
        lambda: export_tflite("model.keras", path("x.tflite")),
        "model of type str",
    ),
    Case(
        "export_path_is_a_folder",
        lambda: export_tflite(seq2seq(), TMP),
        "path=",
    ),
    Case("export_qat_untrained", _qat_untrained, "no learned ranges"),
    Case("export_qat_four_bits", _qat_four_bits, "weight_bits=4"),
    Case(
        "export_tokens_as_floats",
        lambda: export(
            tokens(), quantize="int8", representative_data=X[..., 0]
        ),
        "must be integer tokens .* representative_data.dtype=float32",
    ),
    Case(
        "export_tokens_out_of_vocabulary",
        lambda: export(
            tokens(),
            quantize="int8",
            representative_data=np.full((2, 5), 12, "int32"),
        ),  # fmt: skip
        r"ids in \[0, 10\).*representative_data with ids in \[12, 12\]",
    ),
    Case(
        "export_norm_over_time",
        lambda: export(_layer_norm_over_time()),
        "over_time",
    ),
    # --- export_tflite: results (TensorFlow) ------------------------
    Case(
        "export_calibration_one_step",
        lambda: export(
            seq2seq(), quantize="int8", representative_data=X[:, :1]
        ),
        "State 0 stays 0 .* representative_data.shape=\\(8, 1, 3\\)",
        tensorflow_only=True,
    ),
    Case(
        "export_report_checks_the_model",
        _report_checks_the_model_itself,
        tensorflow_only=True,
    ),
    Case("export_stateless_model", _stateless_exports, tensorflow_only=True),
    Case(
        "export_token_classifier",
        _token_classifier_exports,
        tensorflow_only=True,
    ),
    Case(
        "export_mixed_precision",
        _mixed_precision_exports,
        tensorflow_only=True,
    ),
    Case(
        "export_saturation_warning",
        _saturation_is_reported,
        tensorflow_only=True,
    ),
    Case(
        "export_infinite_calibration_in_a_process",
        in_process(
            "import numpy as np, keras_mgrade\n"
            "from keras_mgrade.models import mgrade_seq2seq\n"
            "from keras_mgrade.export import export_tflite\n"
            "x = np.ones((2, 8, 3), 'float32'); x[0, 3, 1] = np.inf\n"
            "m = mgrade_seq2seq(3, 2, units=8, num_layers=1, kernel_taps=2,"
            " max_delay=4)\n"
            "try:\n"
            "    export_tflite(m, '/tmp/inf.tflite', quantize='int8',"
            " representative_data=x, verbose=False)\n"
            "except ValueError as e:\n"
            "    print('ValueError:', e)\n",
            "ValueError: `representative_data` must be finite",
        ),
        tensorflow_only=True,
    ),
    # --- files and runtimes (TensorFlow: the files are converted) ---
    Case(
        "interpreter_runtime",
        lambda: StreamingInterpreter(float_file()[1], runtime="edgetpu"),
        "runtime='edgetpu'",
        tensorflow_only=True,
    ),
    Case(
        "interpreter_missing_file",
        lambda: StreamingInterpreter(path("missing.tflite")),
        "missing.tflite' .no such file",
        FileNotFoundError,
    ),
    Case(
        "interpreter_not_a_path",
        lambda: StreamingInterpreter(3.5),
        "model of type float",
    ),
    Case(
        "interpreter_arena_size_text",
        lambda: StreamingInterpreter(float_file()[1], arena_size="big"),
        "arena_size='big'",
        tensorflow_only=True,
    ),
    Case(
        "interpreter_arena_size_negative",
        lambda: StreamingInterpreter(float_file()[1], arena_size=-5),
        "arena_size=-5",
        tensorflow_only=True,
    ),
    Case(
        "interpreter_truncated_file_in_a_process",
        lambda: (
            _write_corrupt_files(),
            in_process(
                _interpreter_code(
                    "truncated.tflite", "StreamingInterpreter({file!r})"
                ),
                "ValueError: `model` is not a valid TFLite file",
            )(),
        ),
        tensorflow_only=True,
    ),
    Case(
        "interpreter_corrupt_file_in_a_process",
        lambda: (
            _write_corrupt_files(),
            in_process(
                _interpreter_code(
                    "corrupt.tflite", "StreamingInterpreter({file!r})"
                ),
                "ValueError: `model` is not a valid TFLite file",
            )(),
        ),
        tensorflow_only=True,
    ),
    Case(
        "interpreter_random_bytes",
        lambda: StreamingInterpreter(b"\0" * 64),
        "no TFLite file identifier",
    ),
    Case(
        "find_arena_size_corrupt_in_a_process",
        lambda: (
            _write_corrupt_files(),
            in_process(
                _interpreter_code(
                    "corrupt.tflite", "find_arena_size({file!r})"
                ),
                "ValueError: `model` is not a valid TFLite file",
            )(),
        ),
        tensorflow_only=True,
    ),
    Case(
        "find_arena_size_granularity",
        lambda: find_arena_size(b"", granularity=0),
        "granularity=0",
    ),
    Case(
        "stream_file_one_sequence",
        lambda: stream_file(float_file()[1], X[0]),
        r"sequences.shape=\(16, 3\).*sequences\[None\]",
        tensorflow_only=True,
    ),
    Case(
        "run_one_dimensional_sequence",
        lambda: StreamingInterpreter(float_file()[1]).run(X[0, :, 0]),
        r"sequence.shape=\(16,\)",
        tensorflow_only=True,
    ),
    Case(
        "run_wrong_features",
        lambda: StreamingInterpreter(float_file()[1]).run(X[0, :, :2]),
        r"sequence.shape=\(16, 2\)",
        tensorflow_only=True,
    ),
    Case(
        "run_length_not_a_multiple",
        lambda: StreamingInterpreter(four_step_file()).run(X[0, :10]),
        r"multiple of 4. Received: sequence.shape=\(10, 3\)",
        tensorflow_only=True,
    ),
    Case(
        "step_nan_input",
        lambda: StreamingInterpreter(float_file()[1]).step(
            np.full((1, 3), np.nan)
        ),
        "x_t. must be finite.*3 non-finite",
        tensorflow_only=True,
    ),
    Case(
        "step_wrong_size",
        lambda: StreamingInterpreter(float_file()[1]).step(np.ones((1, 5))),
        r"x_t.shape=\(1, 5\)",
        tensorflow_only=True,
    ),
    # --- quantization-aware training --------------------------------
    Case(
        "quantize_not_a_model",
        lambda: quantize_model("model.keras"),
        "model of type str",
    ),
    Case(
        "quantize_config_type",
        lambda: quantize_model(classifier(), config=8),
        "config of type int",
    ),
    Case(
        "quantize_unknown_layer",
        lambda: quantize_model(classifier(), {"nope": QuantizeConfig()}),
        "'nope'",
    ),
    Case(
        "quantize_calibration_shape",
        lambda: quantize_model(
            classifier(), calibration_data=np.ones((4, 16, 5))
        ),
        r"data with shape \(4, 16, 5\)",
    ),
    Case(
        "quantize_calibration_nan",
        lambda: quantize_model(
            classifier(), calibration_data=np.full((2, 16, 3), np.nan)
        ),
        "96 non-finite",
    ),
    Case(
        "calibrate_batch_size",
        lambda: quantize_model(classifier()).calibrate(
            np.ones((2, 16, 3)), batch_size=0
        ),
        "batch_size=0",
    ),
    Case(
        "quantize_config_bits",
        lambda: QuantizeConfig(activation_bits=1),
        "activation_bits=1",
    ),
    # --- command line ------------------------------------------------
    Case(
        "cli_missing_model",
        cli_error(["report", path("none.keras")], "MODEL must be an existing"),
        tensorflow_only=True,
    ),
    Case(
        "cli_text_file_named_keras",
        cli_error(
            ["export", path("text.keras")],
            "MODEL must be a .keras model file",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    Case(
        "cli_calibration_rank_2",
        cli_error(
            [
                "export",
                path("seq2seq.keras"),
                "--int8",
                "--calibration",
                path("rank2.npy"),
                "--out",
                path("cli"),
            ],  # fmt: skip
            "representative_data.shape=(8, 16)",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    Case(
        "cli_int8_without_calibration",
        cli_error(
            ["export", path("seq2seq.keras"), "--int8"],
            "--int8 needs --calibration",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    Case(
        "cli_corrupt_tflite",
        cli_error(
            ["report", path("corrupt.tflite")],
            "MODEL` is not a valid TFLite file",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    Case(
        "cli_missing_calibration",
        cli_error(
            [
                "export",
                path("seq2seq.keras"),
                "--int8",
                "--calibration",
                path("none.npy"),
            ],  # fmt: skip
            "--calibration must be an existing file",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    Case(
        "cli_c_without_int8",
        cli_error(
            ["export", path("seq2seq.keras"), "--c", path("c")],
            "--c writes the int8 step as C",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    Case(
        "cli_int16x8_without_calibration",
        cli_error(
            ["export", path("seq2seq.keras"), "--int16x8"],
            "--int16x8 needs --calibration",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    Case(
        "cli_c_with_int16x8",
        cli_error(
            [
                "export",
                path("seq2seq.keras"),
                "--int16x8",
                "--calibration",
                path("x.npy"),
                "--c",
                path("c"),
            ],  # fmt: skip
            "the C backend runs int8 files only",
            setup=_write_corrupt_files,
        ),
        tensorflow_only=True,
    ),
    # --- 16x8 --------------------------------------------------------
    Case(
        "int16x8_without_calibration",
        lambda: export(seq2seq(), quantize="int16x8"),
        "quantize='int16x8' needs calibration data",
    ),
    Case(
        "int16x8_qat_with_8_bit_activations",
        lambda: quantize_model(seq2seq()).check_exportable("int16x8"),
        "needs 8-bit weights and 16-bit activations",
    ),
    Case(
        "int16x8_embedding_gather",
        lambda: export(
            tokens(),
            quantize="int16x8",
            representative_data=np.zeros((2, 8), "int32") + 1,
        ),
        "GATHER",
        tensorflow_only=True,
    ),
    Case(
        "int16x8_hard_swish",
        lambda: export(
            _hard_swish_model(), quantize="int16x8", representative_data=X
        ),
        "HARD_SWISH",
        tensorflow_only=True,
    ),
    Case(
        "export_c_int16_file",
        lambda: __import__("keras_mgrade.export").export.export_c(
            _int16_file(), path("c16")
        ),
        "int8 files only.*int16",
        tensorflow_only=True,
    ),
    # --- datasets ----------------------------------------------------
    Case("speech_truncated_wav", _truncated_wav, "truncated"),
]


def _hard_swish_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 3))
    hidden = keras.layers.Dense(4, activation="hard_swish")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(hidden))


@functools.cache
def _int16_file():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.Dense(2)])
    report = export(
        model, "int16.tflite", quantize="int16x8", representative_data=X
    )
    return report["path"]


def _built_pooling():
    layer = TemporalMeanPooling()
    layer.build((None, None, 3))
    return layer


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case):
    if case.tensorflow_only and BACKEND != "tensorflow":
        pytest.skip("needs a converted file: runs on the TensorFlow backend")
    if case.match is None:
        case.run()
        return
    with pytest.raises(case.error, match=case.match):
        case.run()


def test_enough_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 80


def test_cli_debug_shows_the_traceback():
    if BACKEND != "tensorflow":
        pytest.skip("one run of the command line is enough")
    code, output = cli("--debug", "report", path("none.keras"))
    assert code != 0 and "Traceback" in output


@pytest.mark.skipif(BACKEND != "tensorflow", reason="conversion test")
def test_round_positions_and_sigma_reach_the_command_line_export():
    model = classifier(num_layers=2)
    model.get_layer("mgrade_0").conv.round_positions()
    model.get_layer("mgrade_1").conv.sigma = 0.3
    model.save(path("rounded_cli.keras"))
    np.save(path("x.npy"), X)
    code, output = cli(
        "export", path("rounded_cli.keras"), "--check", path("x.npy"),
        "--out", path("rounded_cli"),
    )  # fmt: skip
    assert code == 0, output[-3000:]
    got = stream_file(path("rounded_cli/model_float32.tflite"), X)[:, -1]
    # The file computes this model (rounded delays in block 0, sigma 0.3 in
    # block 1), not the model of the default config.
    np.testing.assert_allclose(got, to_numpy(model(X)), atol=1e-4)
    fresh = classifier(num_layers=2)
    fresh.set_weights(model.get_weights())
    assert np.abs(to_numpy(fresh(X)) - got).max() > 1e-3
