"""`export_tflite`: a sequence model -> a streaming `.tflite` file + report.

Conversion needs TensorFlow (`pip install keras-mgrade[tflite]`). A model
built or trained on JAX or PyTorch is exported by saving it to `.keras`
and converting it in a TensorFlow-backend subprocess (`keras-mgrade
export`), so the result is the same whatever the training backend.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
from keras import ops

from keras_mgrade import _utils
from keras_mgrade.export import micro
from keras_mgrade.export import variables
from keras_mgrade.export.streaming import stream
from keras_mgrade.export.streaming import streaming_model
from keras_mgrade.layers.temporal_mean_pooling import TemporalMeanPooling

QUANTIZE = (None, "int8")
STATES = ("io", "variables")
# Ops of the step graph known to run on TFLite Micro (int8 and float).
TFLM_OPS = {
    "ADD",
    "CONCATENATION",
    "DEPTHWISE_CONV_2D",
    "DIV",
    "FULLY_CONNECTED",
    "GATHER",
    "LOGISTIC",
    "MAXIMUM",
    "MEAN",
    "MINIMUM",
    "MUL",
    "PACK",
    "QUANTIZE",
    "DEQUANTIZE",
    "RELU",
    "RELU6",
    "RESHAPE",
    "RSQRT",
    "SQUARED_DIFFERENCE",
    "STRIDED_SLICE",
    "SUB",
    "SUM",
    "TANH",
    "SOFTMAX",
    "LEAKY_RELU",
    "HARD_SWISH",
    "UNPACK",
    "SQUARE",
    # state="variables"
    "VAR_HANDLE",
    "READ_VARIABLE",
    "ASSIGN_VARIABLE",
    "CALL_ONCE",
}
# Ops whose int8 kernel requantizes to its output tensor's scale, so the
# output quantization may be set freely.
_REQUANTIZING = {
    "ADD",
    "SUB",
    "MUL",
    "FULLY_CONNECTED",
    "QUANTIZE",
    "DEPTHWISE_CONV_2D",
}


def _require_tensorflow():
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            "Converting to TFLite needs TensorFlow: `pip install "
            "keras-mgrade[tflite]` (tensorflow, ai-edge-litert, "
            "tflite-micro). Training can use any backend."
        ) from e
    return tf


def _as_sequences(data, name):
    if data is None:
        return None
    if not isinstance(data, np.ndarray):
        try:
            data = np.concatenate([np.asarray(d) for d in data], 0)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"`{name}` must be an array (n, timesteps, features) or an "
                f"iterable of such arrays. Received: {name} of type "
                f"{type(data).__name__}"
            ) from e
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(
            f"`{name}` must be whole sequences (n, timesteps, ...). "
            f"Received: {name}.shape={data.shape}"
        )
    return data


def export_tflite(
    model,
    path,
    quantize=None,
    state="io",
    representative_data=None,
    steps_per_invoke=1,
    check_data=None,
    max_calibration_sequences=64,
    verbose=True,
):
    """Writes a streaming `.tflite` file and returns its report.

    The file is the single-step model of `streaming_model`, TFLite builtin
    ops only. With the default `state="io"`: input 0 `x_t`, inputs `1..k`
    the states, output 0 `y_t`, outputs `1..k` the new states in the same
    order (tensors named `x_t`, `state_i`, `y_t`, `new_state_i`); with
    `state="variables"` only `x_t` and `y_t`. With `quantize="int8"`:
    full-integer, int8 inputs and outputs, and each state's input and
    output share one scale and zero point, so firmware copies the output
    bytes to the input unchanged. For an int8 classifier with mean pooling,
    `y_t` is the per-step logits and the host keeps their mean
    (`report["host_pooling"] == "mean"`; the class is the argmax of the
    running sum).

    Args:
        model: a built sequence `keras.Model` (see `streaming_model`).
        path: where to write the `.tflite`; the report goes beside it as
            `<path without .tflite>.json`.
        quantize: `None` (float32) or `"int8"`.
        state: `"io"` (default: states are explicit inputs and outputs,
            portable to every runtime) or `"variables"`: the states live
            in the graph as resource variables (`VAR_HANDLE`,
            `READ_VARIABLE`, `ASSIGN_VARIABLE`, a `CALL_ONCE` initialiser
            setting them to zero); the file's only input is `x_t` and only
            output `y_t`. It is the `io` file with its state tensors
            moved into variables (see `keras_mgrade.export.variables`), so
            both compute the same outputs; in int8 the variables are int8
            with the `io` file's state scale and zero point. Meant for
            TFLite Micro: the firmware creates `MicroResourceVariables`
            for one variable per state, and `MicroInterpreter::Reset()`
            restores the zero state. LiteRT runs the file too, but its
            `reset_all_variables()` does not restore the zero state:
            re-create the interpreter to start a new stream.
        representative_data: whole input sequences `(n, timesteps, ...)`
            (or an iterable of such arrays); needed for `"int8"`. They are
            streamed through the float step model to calibrate the inputs,
            the states and every activation.
        steps_per_invoke: int, time steps per invoke.
        check_data: sequences for the report's deviation check (default:
            up to 4 of `representative_data`, or random normal data).
        max_calibration_sequences: int, sequences used for calibration.
        verbose: bool, print progress.

    Returns:
        dict, the report: `ops`, `flatbuffer_bytes`, `arena_bytes`
        (smallest TFLite Micro arena, measured), `inputs`/`outputs`
        (name, shape, dtype, scale, zero point), `max_abs_deviation` (file
        on TFLite Micro vs the Keras model over the check sequences),
        `host_pooling`, `quantize`, `state`, `steps_per_invoke`, and
        for `state="variables"` `variables` (name, shape, dtype, scale,
        zero point of each state variable, in `state_specs` order).

    Example:

    >>> import os, tempfile
    >>> from keras_mgrade.models import mgrade_classifier
    >>> model = mgrade_classifier(2, 3, units=8, num_layers=1, max_delay=4,
    ...                           kernel_taps=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
    >>> report = export_tflite(model, path, verbose=False)
    >>> [e["name"] for e in report["inputs"]]
    ['x_t', 'state_0', 'state_1', 'state_2', 'state_3']
    >>> report["max_abs_deviation"] < 1e-4
    True
    """
    if quantize not in QUANTIZE:
        raise ValueError(
            f"Invalid `quantize`. Expected one of {QUANTIZE}. Received: "
            f"quantize={quantize!r}"
        )
    if state not in STATES:
        raise ValueError(
            f"Invalid `state`. Expected one of {STATES}. Received: "
            f"state={state!r}"
        )
    steps_per_invoke = _utils.check_positive_int(
        "steps_per_invoke", steps_per_invoke
    )
    representative_data = _as_sequences(
        representative_data, "representative_data"
    )
    check_data = _as_sequences(check_data, "check_data")
    qat = hasattr(model, "quantization_scope")
    if qat and quantize is None:
        model = model.source  # the float file of a QAT model
        qat = False
    if quantize == "int8" and representative_data is None and not qat:
        raise ValueError(
            "quantize='int8' needs calibration data: pass "
            "`representative_data` (whole input sequences), or train the "
            "model with keras_mgrade.quantization.quantize_model. Received: "
            "representative_data=None"
        )
    if qat:
        _check_qat_exportable(model)
    if keras.backend.backend() != "tensorflow":
        return _export_in_subprocess(
            model,
            path,
            quantize,
            representative_data,
            steps_per_invoke,
            check_data,
            max_calibration_sequences,
            state,
        )
    tf = _require_tensorflow()
    log = print if verbose else (lambda *a, **k: None)
    start = time.perf_counter()
    source = model.source if qat else model
    host_pooling = None
    if quantize == "int8" and isinstance(
        source.layers[-1], TemporalMeanPooling
    ):
        host_pooling = "mean"
    step = streaming_model(
        model,
        steps_per_invoke=steps_per_invoke,
        without_pooling=host_pooling is not None,
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(step)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if qat:
        # The fake-quant ops of the step graph carry the learned ranges:
        # the converter quantizes from them, without calibration.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif quantize == "int8":
        samples = _calibration_samples(
            model,
            representative_data[:max_calibration_sequences],
            steps_per_invoke,
            host_pooling is not None,
            log,
        )
        names = [t.name for t in step.inputs]

        def representative_dataset():
            for sample in samples:
                yield dict(zip(names, sample))

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    log(f"converting to TFLite ({quantize or 'float32'})...")
    with micro.quiet_stderr(), contextlib.redirect_stdout(io.StringIO()):
        flat = converter.convert()
    flat, layout = _fix_io(flat, len(step.inputs) - 1, quantize)
    if state == "variables":
        flat, _ = variables.to_variables(flat)
        layout = {
            "inputs": layout["inputs"][:1],
            "outputs": layout["outputs"][:1],
            "variables": layout["inputs"][1:],
        }
    ops_used = _op_names(flat)
    unknown = sorted(set(ops_used) - TFLM_OPS)
    if unknown:
        raise RuntimeError(
            f"The converted file uses ops that are not in the TFLite Micro "
            f"op set of this exporter: {unknown}. Please report the model."
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flat)
    log(f"wrote {path} ({len(flat)} bytes); measuring the TFLite Micro arena")
    arena = micro.find_arena_size(flat)
    if check_data is None:
        if representative_data is not None:
            check_data = representative_data[:4]
        else:
            shape = (2, 64 * steps_per_invoke) + tuple(
                source.inputs[0].shape[2:]
            )
            rng = np.random.default_rng(0)
            check_data = rng.normal(size=shape).astype("float32")
    deviation = _deviation(step, flat, check_data, arena)
    report = {
        "path": os.path.abspath(path),
        "quantize": quantize or "float32",
        "state": state,
        "steps_per_invoke": steps_per_invoke,
        "host_pooling": host_pooling,
        "ops": ops_used,
        "flatbuffer_bytes": len(flat),
        "arena_bytes": arena,
        "inputs": layout["inputs"],
        "outputs": layout["outputs"],
        **({"variables": layout["variables"]} if "variables" in layout else {}),
        "max_abs_deviation": deviation,
        **_deviation_lsb(deviation, layout, quantize),
        "quantization": "qat" if qat else ("ptq" if quantize else None),
        "check_sequences": int(check_data.shape[0]),
        "check_timesteps": int(check_data.shape[1]),
        "seconds": round(time.perf_counter() - start, 2),
    }
    with open(_report_path(path), "w") as f:
        json.dump(report, f, indent=2)
    log(
        f"arena {arena} bytes, max |file - keras| = {deviation:.3g} over "
        f"{check_data.shape[0]} sequences"
    )
    return report


def _report_path(path):
    root, ext = os.path.splitext(path)
    return (root if ext == ".tflite" else path) + ".json"


def _calibration_samples(model, data, k, without_pooling, log, limit=2000):
    """Per-invoke inputs `[x, *states]` seen when streaming `data`."""
    n = data.shape[0]
    batch_step = streaming_model(
        model,
        steps_per_invoke=k,
        without_pooling=without_pooling,
        batch_size=n,
    )
    states = [
        np.zeros(tuple(t.shape), "float32") for t in batch_step.inputs[1:]
    ]
    fn = _compiled(batch_step)
    samples = []
    steps = data.shape[1] // k
    rng = np.random.default_rng(0)
    every = max(1, (n * steps) // limit)
    log(f"calibrating on {n} sequences x {steps} invokes")
    for i in range(steps):
        x = data[:, i] if k == 1 else data[:, i * k : (i + 1) * k]
        x = x.astype(batch_step.inputs[0].dtype)
        for b in rng.permutation(n)[: max(1, n // every)]:
            samples.append(
                [x[b : b + 1]] + [s[b : b + 1].copy() for s in states]
            )
        out = fn([x] + states)
        states = [np.asarray(s) for s in out[1:]]
    return samples


def _compiled(step_model):
    import tensorflow as tf

    @tf.function(jit_compile=False, reduce_retracing=True)
    def run(values):
        return step_model(values, training=False)

    return lambda values: [t.numpy() for t in run(values)]


def _check_qat_exportable(model):
    if not model.built or not float(ops.convert_to_numpy(model.initialized)):
        raise ValueError(
            "The quantization-aware model has no learned ranges yet: train "
            "it (fit) before exporting it to int8. Received: model "
            f"{model.name!r}"
        )
    for name, config in model.layer_configs.items():
        if (config.weight_bits, config.activation_bits) != (8, 8):
            raise ValueError(
                "An int8 file needs 8-bit weights and activations. Received: "
                f"config[{name!r}] with weight_bits={config.weight_bits}, "
                f"activation_bits={config.activation_bits}"
            )


def _deviation_lsb(deviation, layout, quantize):
    # The deviation in steps of the int8 output (y_t) grid.
    if quantize != "int8":
        return {}
    scale = layout["outputs"][0].get("scale")
    if not scale:
        return {}
    return {"max_deviation_output_lsb": round(deviation / scale, 3)}


def _deviation(step, flat, sequences, arena):
    """Max |TFLite Micro file - Keras step model| over whole sequences."""
    inner = step.layers[-1]
    batch_step = streaming_model(
        inner.quantizer or inner.source,
        steps_per_invoke=step.layers[-1].steps_per_invoke,
        without_pooling=step.layers[-1].without_pooling,
        batch_size=sequences.shape[0],
    )
    reference, _ = stream(batch_step, sequences)
    got = micro.stream_file(flat, sequences, "tflm", arena_size=arena + 1024)
    return float(np.max(np.abs(got - reference)))


def _op_names(flat):
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    names = set()
    for sub in graph.subgraphs:
        for op in sub.operators:
            names.add(flatbuffer_utils.opcode_to_name(graph, op.opcodeIndex))
    return sorted(names)


def _fix_io(flat, num_states, quantize):
    """Orders the subgraph inputs/outputs as the export contract says,
    names them, and makes each state's output quantization equal to its
    input's (where the producing op requantizes)."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    sub = graph.subgraphs[0]
    sig = graph.signatureDefs[0]
    by_name_in = {_s(t.name): t.tensorIndex for t in sig.inputs}
    by_name_out = {_s(t.name): t.tensorIndex for t in sig.outputs}
    inputs = [by_name_in["x_t"]] + [
        by_name_in[f"state_{i}"] for i in range(num_states)
    ]
    outputs = [by_name_out[f"output_{i}"] for i in range(num_states + 1)]
    sub.inputs = np.array(inputs, "int32")
    sub.outputs = np.array(outputs, "int32")
    in_names = ["x_t"] + [f"state_{i}" for i in range(num_states)]
    out_names = ["y_t"] + [f"new_state_{i}" for i in range(num_states)]
    renamed = set()
    for idx, name in list(zip(inputs, in_names)) + list(
        zip(outputs, out_names)
    ):
        if idx not in renamed:
            sub.tensors[idx].name = name.encode()
            renamed.add(idx)
    for entries, order, names in (
        (sig.inputs, inputs, in_names),
        (sig.outputs, outputs, out_names),
    ):
        del entries[:]
        for idx, name in zip(order, names):
            entry = type_of_tensor_map()
            entry.name = name.encode()
            entry.tensorIndex = int(idx)
            entries.append(entry)
    if quantize == "int8":
        producers = {}
        for op in sub.operators:
            for o in op.outputs:
                producers[int(o)] = flatbuffer_utils.opcode_to_name(
                    graph, op.opcodeIndex
                )
        for i in range(num_states):
            t_in = sub.tensors[inputs[i + 1]]
            t_out = sub.tensors[outputs[i + 1]]
            if _qparams(t_in) == _qparams(t_out):
                continue
            producer = producers.get(int(outputs[i + 1]))
            if producer not in _REQUANTIZING:
                raise RuntimeError(
                    f"State {i}: input and output quantization differ "
                    f"({_qparams(t_in)} vs {_qparams(t_out)}) and the op "
                    f"producing it ({producer}) cannot requantize."
                )
            t_out.quantization.scale = np.array(t_in.quantization.scale)
            t_out.quantization.zeroPoint = np.array(t_in.quantization.zeroPoint)
    flat = bytes(flatbuffer_utils.convert_object_to_bytearray(graph))
    return flat, _layout(graph, inputs, outputs, in_names, out_names)


def type_of_tensor_map():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.TensorMapT()


def _s(name):
    return name.decode() if isinstance(name, bytes) else name


def _qparams(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return (float(q.scale[0]), int(q.zeroPoint[0]))


_TYPES = {0: "float32", 2: "int32", 9: "int8", 3: "uint8", 4: "int64"}


def _layout(graph, inputs, outputs, in_names, out_names):
    sub = graph.subgraphs[0]

    def entry(idx, name):
        t = sub.tensors[idx]
        q = _qparams(t)
        return {
            "name": name,
            "shape": [int(d) for d in t.shape],
            "dtype": _TYPES.get(t.type, str(t.type)),
            "scale": None if q is None else q[0],
            "zero_point": None if q is None else q[1],
        }

    return {
        "inputs": [entry(i, n) for i, n in zip(inputs, in_names)],
        "outputs": [entry(i, n) for i, n in zip(outputs, out_names)],
    }


def _export_in_subprocess(
    model,
    path,
    quantize,
    data,
    k,
    check_data,
    max_calibration_sequences,
    state="io",
):
    """Saves the model and converts it under KERAS_BACKEND=tensorflow."""
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.keras")
        model.save(model_path)
        cmd = [
            sys.executable,
            "-m",
            "keras_mgrade.cli",
            "export",
            model_path,
            "--out",
            os.path.abspath(path),
            "--steps-per-invoke",
            str(k),
            "--max-calibration-sequences",
            str(max_calibration_sequences),
            "--state",
            state,
        ]
        if quantize == "int8":
            cmd += ["--int8"]
        if quantize == "int8" and data is not None:
            cal = os.path.join(tmp, "calibration.npy")
            np.save(cal, data)
            cmd += ["--calibration", cal]
        if check_data is not None:
            chk = os.path.join(tmp, "check.npy")
            np.save(chk, check_data)
            cmd += ["--check", chk]
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                "Export under the TensorFlow backend failed:\n"
                + result.stdout[-2000:]
                + result.stderr[-4000:]
            )
    with open(_report_path(path)) as f:
        return json.load(f)
