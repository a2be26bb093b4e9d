"""`export_tflite`: a sequence model -> a streaming `.tflite` file + report.

Conversion needs TensorFlow (`pip install keras-mgrade[tflite]`). A model
built or trained on JAX or PyTorch is exported in a TensorFlow-backend
process (`keras_mgrade.export.worker`), so the result is the same
whatever the training backend.
"""

import json
import os
import time

import keras
import numpy as np

from keras_mgrade import _utils
from keras_mgrade import core
from keras_mgrade.export import arena
from keras_mgrade.export import convert
from keras_mgrade.export import rewrite
from keras_mgrade.export import tflm_ops
from keras_mgrade.export import verify
from keras_mgrade.export import worker
from keras_mgrade.export.streaming import streaming_model

QUANTIZE = (None, "int8")
STATES = ("io", "variables")


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

    The export is a pipeline: convert (`keras_mgrade.export.convert`),
    rewrite the I/O to the contract (`keras_mgrade.export.rewrite`),
    verify on TFLite Micro (`keras_mgrade.export.verify`, the arena from
    `keras_mgrade.export.arena`), report. On JAX and PyTorch the model is
    exported in a TensorFlow process (`keras_mgrade.export.worker`), so
    the file is the same whatever the training backend.

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
    request = _check_request(
        model,
        quantize=quantize,
        state=state,
        representative_data=representative_data,
        steps_per_invoke=steps_per_invoke,
        check_data=check_data,
        max_calibration_sequences=max_calibration_sequences,
        verbose=verbose,
    )
    if keras.backend.backend() != "tensorflow":
        return worker.export_in_subprocess(model, path, **request)
    convert.require_tensorflow()
    log = print if verbose else (lambda *a, **k: None)
    start = time.perf_counter()
    quantized = core.quantized_steps(model)
    if quantized is not None and quantize is None:
        model, quantized = quantized.source, None  # its float file
    source = model if quantized is None else quantized.source
    host_pooling = quantize == "int8" and core.host_pooling_of(source)
    flat, step = _convert(model, quantized, host_pooling, request, log)
    flat, layout = rewrite.rewrite(flat, len(step.inputs) - 1, quantize, state)
    ops_used = rewrite.op_names(flat)
    tflm_ops.check_ops(ops_used)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flat)
    log(f"wrote {path} ({len(flat)} bytes); measuring the TFLite Micro arena")
    arena_bytes = arena.find_arena_size(flat)
    k = request["steps_per_invoke"]
    sequences = verify.check_sequences(
        request["check_data"], request["representative_data"], source, k
    )
    deviation = verify.deviation(
        model, flat, sequences, arena_bytes, k, bool(host_pooling)
    )
    report = {
        "path": os.path.abspath(path),
        "quantize": quantize or "float32",
        "state": state,
        "steps_per_invoke": k,
        "host_pooling": host_pooling or None,
        "ops": ops_used,
        "flatbuffer_bytes": len(flat),
        "arena_bytes": arena_bytes,
        **layout,
        "max_abs_deviation": deviation,
        **verify.deviation_lsb(deviation, layout, quantize),
        "quantization": _quantization(quantize, quantized),
        "check_sequences": int(sequences.shape[0]),
        "check_timesteps": int(sequences.shape[1]),
        "seconds": round(time.perf_counter() - start, 2),
    }
    with open(report_path(path), "w") as f:
        json.dump(report, f, indent=2)
    log(
        f"arena {arena_bytes} bytes, max |file - keras| = {deviation:.3g} "
        f"over {sequences.shape[0]} sequences"
    )
    return report


def _check_request(model, **request):
    """The export arguments, checked and normalised."""
    quantize, state = request["quantize"], request["state"]
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
    request["steps_per_invoke"] = _utils.check_positive_int(
        "steps_per_invoke", request["steps_per_invoke"]
    )
    for name in ("representative_data", "check_data"):
        request[name] = _as_sequences(request[name], name)
    quantized = core.quantized_steps(model)
    if quantize == "int8" and quantized is not None:
        quantized.check_exportable(quantize)
    elif quantize == "int8" and request["representative_data"] is None:
        raise ValueError(
            "quantize='int8' needs calibration data: pass "
            "`representative_data` (whole input sequences), or train the "
            "model with keras_mgrade.quantization.quantize_model. Received: "
            "representative_data=None"
        )
    return request


def _convert(model, quantized, host_pooling, request, log):
    """`(flatbuffer bytes, step model)` of `model`."""
    quantize, k = request["quantize"], request["steps_per_invoke"]
    step = streaming_model(
        model, steps_per_invoke=k, host_pooling=bool(host_pooling)
    )
    samples = None
    if quantize == "int8" and quantized is None:
        limit = request["max_calibration_sequences"]
        samples = convert.calibration_samples(
            model,
            request["representative_data"][:limit],
            k,
            bool(host_pooling),
            log,
        )
    log(f"converting to TFLite ({quantize or 'float32'})...")
    flat = convert.convert(step, quantize, quantized is not None, samples)
    return flat, step


def _quantization(quantize, quantized):
    if quantize is None:
        return None
    return "ptq" if quantized is None else "qat"


def report_path(path):
    """Where the JSON report of the file `path` goes."""
    root, ext = os.path.splitext(path)
    return (root if ext == ".tflite" else path) + ".json"
