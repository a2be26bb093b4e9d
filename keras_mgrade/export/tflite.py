"""`export_tflite`: a sequence model -> a streaming `.tflite` file + report.

Conversion needs TensorFlow (`pip install keras-mgrade[tflite]`). A model
built or trained on JAX or PyTorch is exported in a TensorFlow-backend
process (`keras_mgrade.export.worker`), so the result is the same
whatever the training backend.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np

from keras_mgrade import core
from keras_mgrade.export import arena
from keras_mgrade.export import convert
from keras_mgrade.export import estimate
from keras_mgrade.export import request as request_checks
from keras_mgrade.export import rewrite
from keras_mgrade.export import rounding
from keras_mgrade.export import shrink
from keras_mgrade.export import tflm_ops
from keras_mgrade.export import verify
from keras_mgrade.export import worker
from keras_mgrade.export.streaming import streaming_model

QUANTIZE = request_checks.QUANTIZE
STATES = request_checks.STATES


def export_tflite(
    model,
    path,
    quantize=None,
    state="io",
    representative_data=None,
    steps_per_invoke=1,
    check_data=None,
    max_calibration_sequences=64,
    target="tflm",
    weight_rounding=None,
    lookup_tables=None,
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
    bytes to the input unchanged. With `quantize="int16x8"` (16x8: int16
    activations, states, inputs and outputs, int8 weights, int64 biases;
    TensorFlow's `EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`
    mode, calibrated as int8): the same, in int16 with zero point 0. It
    runs on TFLite Micro and LiteRT, not in ST's code generator (8-bit
    only) nor in `export_c`; a model whose step needs an operator TFLite
    Micro lacks in int16 (GATHER of an Embedding; HARD_SWISH and DIV,
    which the 16x8 quantizer refuses) raises a ValueError naming it. For
    a quantized classifier with mean pooling,
    `y_t` is the per-step logits and the host keeps their mean
    (`report["host_pooling"] == "mean"`; the class is the argmax of the
    running sum).

    Args:
        model: a built sequence `keras.Model` (see `streaming_model`).
        path: where to write the `.tflite`; the report goes beside it as
            `<path without .tflite>.json`.
        quantize: `None` (float32), `"int8"` or `"int16x8"`. A
            quantization-aware model exports from its learned ranges,
            without calibration data: to `"int8"` with 8-bit
            activations, to `"int16x8"` with
            `QuantizeConfig(activation_bits=16)` (the ranges are imposed
            on the 16x8 quantizer tensor by tensor, see
            `keras_mgrade.export.convert.convert_int16_from_ranges`;
            `representative_data`, if given, only fills in the few
            tensors no quantization point marks).
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
            (or an iterable of such arrays); needed for `"int8"` and
            `"int16x8"` unless the model is quantization-aware. They are
            streamed through the float step model to calibrate the inputs,
            the states and every activation.
        steps_per_invoke: int, time steps per invoke.
        check_data: sequences for the report's deviation check (default:
            up to 4 of `representative_data`, or random normal data).
        max_calibration_sequences: int, sequences used for calibration.
        target: `"tflm"` (default: the file is shrunk for TFLite Micro:
            no tensor names or signatures, collapsed all-zero per-channel
            zero points, no min/max arrays; LiteRT rejects such a file) or
            `"litert"` (the file as converted, for LiteRT and TFLite Micro
            alike). The shrunk file is checked to give bit-identical
            outputs on TFLite Micro; the report's `shrink` says what was
            removed.
        weight_rounding: how post-training quantization rounds the int8
            weights: `"nearest"` (the converter's rounding) or `"gptq"`:
            each output channel rounded weight by weight, the error of
            each compensated on those not yet rounded so that the
            channel's output on the calibration data moves least (GPTQ;
            on the converter's own per-channel grid, see
            `keras_mgrade.export.rounding`; a channel keeps nearest
            rounding where that is better). Defaults to `"gptq"` for
            `"int16x8"` (its error is mostly the int8 weights') and
            `"nearest"` for `"int8"` (measured: within noise of nearest
            on the classification benchmarks, better on Lorenz; see
            `benchmarks/RESULTS.md`). Not for float32 files nor
            quantization-aware models (a ValueError). The report's
            `weight_rounding` says what was done.
        lookup_tables: whether each int8 LOGISTIC or TANH, with the
            operators computing one tensor from its input alone around it
            (the MinGRU candidate's `MAXIMUM(x + 0.5, sigmoid(x))`, the
            MLP's `x * sigmoid(x)`), becomes a 256-entry table lookup
            (QUANTIZE to an int32 index, GATHER), bit-identical to what
            TFLite Micro computes without it and several times faster
            with its kernels (see `keras_mgrade.export.tables`). Defaults
            to True for `quantize="int8"` with `target="tflm"`; pass
            False for a file meant for Arm's vela (Ethos-U runs LOGISTIC
            itself, GATHER would fall back to the CPU) or ST's code
            generator. True with another quantization or target is a
            ValueError. The report's `lookup_tables` counts the tables
            and the operators they replaced.
        verbose: bool, print progress.

    The export is a pipeline: convert (`keras_mgrade.export.convert`),
    rewrite the I/O to the contract (`keras_mgrade.export.rewrite`),
    verify on TFLite Micro (`keras_mgrade.export.verify`, the arena from
    `keras_mgrade.export.arena`), report. On JAX and PyTorch the model is
    exported in a TensorFlow process (`keras_mgrade.export.worker`), so
    the file is the same whatever the training backend.

    Returns:
        dict, the report: `ops`, `operators`, `tensors`,
        `operators_per_layer`, `flatbuffer_bytes`, `shrink` (what the
        TFLite Micro target removed), `arena_bytes` (smallest TFLite
        Micro arena, measured with the 64-bit host runtime), `arena`
        (that figure, the host's allocation record and the estimated
        32-bit Cortex-M arena with its formula, see
        `keras_mgrade.export.estimate`), `inputs`/`outputs`
        (name, shape, dtype, scale, zero point), `max_abs_deviation` (the
        file on TFLite Micro vs `model.predict` over the check sequences,
        at the model's own output: every step, or the host's mean or the
        last step of a pooled output), `max_abs_deviation_step` (vs the
        Keras step model at every step; `max_deviation_output_lsb`: the
        same in steps of the int8 or int16 output), `warnings` (an
        integer input or state
        that saturates over the check data), `host_pooling`, `quantize`,
        `state`, `steps_per_invoke`, `lookup_tables` (`tables`,
        `operators_replaced`, `kept`: groups whose table differed from
        TFLite Micro's kernels, left as operators; or None),
        `weight_rounding` (the method; for
        `"gptq"` the number of weights rounded, `nearest` those left to
        the converter, and the summed output errors of both roundings on
        the calibration inputs), and for `state="variables"`
        `variables` (name, shape, dtype, scale, zero point of each state
        variable, in `state_specs` order). A model computing in mixed
        precision is converted from a float32 copy of it.

    Raises:
        ValueError: for a bad argument (naming it and the value received):
            calibration or check data of the wrong shape, dtype or length,
            with NaN or infinite values, constant calibration data, states
            that never leave zero over the calibration, a model that cannot
            stream.

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
    request = request_checks.check_request(
        model,
        path,
        quantize=quantize,
        state=state,
        representative_data=representative_data,
        steps_per_invoke=steps_per_invoke,
        check_data=check_data,
        max_calibration_sequences=max_calibration_sequences,
        target=target,
        weight_rounding=weight_rounding,
        lookup_tables=lookup_tables,
        verbose=verbose,
    )
    if keras.backend.backend() != "tensorflow":
        return worker.export_in_subprocess(model, path, **request)
    convert.require_tensorflow()
    job = _Job.of(model, request)
    flat, built = _build(job)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flat)
    job.log(
        f"wrote {path} ({len(flat)} bytes); measuring the TFLite Micro arena"
    )
    report = {"path": os.path.abspath(path), **_check(job, flat, built)}
    report["seconds"] = round(time.perf_counter() - job.start, 2)
    with open(report_path(path), "w") as f:
        json.dump(report, f, indent=2)
    _log_result(job.log, report)
    return report


@dataclasses.dataclass
class _Job:
    """One export: the model to convert and what it came from."""

    model: object  # the model converted (a float32 copy if need be)
    user_model: object  # the model as given (its float source for float)
    quantized: object  # the QuantizedSteps, or None
    host_pooling: bool
    request: dict
    log: object
    start: float

    @classmethod
    def of(cls, model, request):
        log = print if request["verbose"] else (lambda *a, **k: None)
        quantized = core.quantized_steps(model)
        user_model = model
        if quantized is not None and request["quantize"] is None:
            model, quantized = quantized.source, None  # its float file
            user_model = model
        if quantized is None:
            model = convert.float32_model(model, log)
        source = model if quantized is None else quantized.source
        quantize = request["quantize"]
        pooling = quantize is not None and core.host_pooling_of(source)
        return cls(
            model, user_model, quantized, bool(pooling), request, log,
            time.perf_counter(),
        )  # fmt: skip

    @property
    def source(self):
        return self.model if self.quantized is None else self.quantized.source


def _build(job):
    """The file's bytes, and what building it found: convert, apply the
    export contract and the graph passes, shrink for the target."""
    request = job.request
    flat, num_states, rounded = _convert(
        job.model, job.quantized, job.host_pooling, request, job.log
    )
    stream = {
        "steps_per_invoke": request["steps_per_invoke"],
        "host_pooling": "mean" if job.host_pooling else None,
        "target": request["target"],
    }
    names = [layer.name for layer in job.source.layers]
    args = (num_states, request["quantize"], request["state"])
    if request["quantize"] == "int16x8":
        tflm_ops.check_int16_ops(rewrite.op_names(flat))
    converted = flat
    flat, layout, stats = rewrite.rewrite(
        flat, *args, stream, names, lookup_tables=request["lookup_tables"]
    )
    unshrunk = flat
    if request["target"] == "tflm":  # the reference without the TFLM passes
        litert = dict(stream, target="litert")
        unshrunk, _, _ = rewrite.rewrite(converted, *args, litert, names)
    flat, removed = shrink.shrink(flat, request["target"])
    ops_used = rewrite.op_names(flat)
    tflm_ops.check_ops(ops_used)
    return flat, {
        "stream": stream,
        "layout": layout,
        "stats": stats,
        "unshrunk": unshrunk,
        "removed": removed,
        "ops": ops_used,
        "weight_rounding": rounded,
    }


def _check(job, flat, built):
    """The report: what the file holds, its arena, and its verification on
    TFLite Micro against the model and against the unshrunk file."""
    request = job.request
    arena_bytes = arena.find_arena_size(flat)
    sequences = verify.check_sequences(
        request["check_data"],
        request["representative_data"],
        job.source,
        request["steps_per_invoke"],
    )
    if built["removed"] or request["lookup_tables"]:
        verify.identical(flat, built["unshrunk"], sequences, arena_bytes)
    counts = rewrite.graph_counts(flat)
    return {
        "quantize": request["quantize"] or "float32",
        "state": request["state"],
        **built["stream"],
        "ops": built["ops"],
        **counts,
        "operators_per_layer": built["stats"]["operators_per_layer"],
        "flatbuffer_bytes": len(flat),
        "shrink": {
            "unshrunk_bytes": len(built["unshrunk"]),
            "removed_bytes": built["removed"],
        },
        "arena_bytes": arena_bytes,
        "arena": estimate.arena_report(flat, arena_bytes),
        **built["layout"],
        **verify.verify(
            job.model,
            flat,
            sequences,
            arena_bytes,
            request["steps_per_invoke"],
            job.host_pooling,
            request["quantize"],
            job.user_model,
        ),
        "quantization": _quantization(request["quantize"], job.quantized),
        "weight_rounding": built["weight_rounding"],
        "lookup_tables": built["stats"].get("lookup_tables"),
        "check_sequences": int(sequences.shape[0]),
        "check_timesteps": int(sequences.shape[1]),
    }


def _log_result(log, report):
    per_layer = ", ".join(
        f"{name} {n}" for name, n in report["operators_per_layer"].items()
    )
    removed = ", ".join(
        f"{what} {n} B"
        for what, n in report["shrink"]["removed_bytes"].items()
        if n
    )
    log(
        f"{report['operators']} operators ({per_layer}), "
        f"{report['tensors']} tensors, flatbuffer "
        f"{report['flatbuffer_bytes']} bytes (target {report['target']!r}"
        + (f"; removed: {removed}" if removed else "")
        + ")"
    )
    log(
        f"arena {report['arena_bytes']} bytes (host; 32-bit Cortex-M "
        f"estimate {report['arena']['cortex_m_estimate_bytes']} bytes), "
        f"max |file - model| = "
        f"{report['max_abs_deviation']:.3g} over "
        f"{report['check_sequences']} sequences"
    )
    for warning in report["warnings"]:
        log(f"warning: {warning}")


def _convert(model, quantized, host_pooling, request, log):
    """`(flatbuffer bytes, number of states, what the weight rounding
    did)` of `model`."""
    quantize, k = request["quantize"], request["steps_per_invoke"]
    step = streaming_model(model, steps_per_invoke=k, host_pooling=host_pooling)
    samples = None
    limit = request["max_calibration_sequences"]

    def calibrate(substitute=None):
        return convert.calibration_samples(
            model,
            request["representative_data"][:limit],
            k,
            host_pooling,
            log,
            substitute=substitute,
        )

    if quantize is not None and quantized is None:
        samples = calibrate()
    rounded = {"method": "nearest"}
    if request["weight_rounding"] == "gptq":
        moments, weights, substitute = _round_weights(
            step, model, samples, request, log
        )
        # Calibrated again with the rounded weights: the states fed to
        # the converter are those its graph computes, so that each
        # state's input and output get the same range.
        samples = calibrate(substitute)
    log(f"converting to TFLite ({quantize or 'float32'})...")
    if quantize == "int16x8" and quantized is not None:
        samples = convert.calibration_samples(
            quantized.source,
            _range_sequences(quantized, request),
            k,
            host_pooling,
            log,
        )
        flat = convert.convert_int16_from_ranges(step, quantized, samples)
    else:
        flat = convert.convert(step, quantize, quantized is not None, samples)
    if request["weight_rounding"] == "gptq":
        rounded = rounding.report(moments, weights, substitute)
    return flat, len(step.inputs) - 1, rounded


def _round_weights(step, model, samples, request, log):
    """Rounds the weights of `step` from the calibration statistics
    (`keras_mgrade.export.rounding`) and sets them on it: `(moments,
    rounded weights, substitute)`."""
    log(f"rounding the weights ({request['weight_rounding']})...")
    moments = rounding.collect(
        model,
        samples,
        request["steps_per_invoke"],
        step.get_layer("streaming_step").host_pooling,
    )
    float_flat = convert.convert(step, None)  # what the converter fuses
    factors = rounding.converter_factors(moments, float_flat)
    rounded = rounding.gptq_weights(moments, factors)
    substitute = rounding.Substitute(rounded)
    step.get_layer("streaming_step").substitute = substitute
    return moments, rounded, substitute


def _range_sequences(quantized, request):
    """Input sequences for the few tensors of a 16x8 file that no
    quantization point marks: `representative_data` if given, else
    uniform noise over the learned input range."""
    if request["representative_data"] is not None:
        return request["representative_data"][: request[
            "max_calibration_sequences"
        ]]  # fmt: skip
    source = quantized.source
    low, high = quantized.range_table().get("inputs/x", (-1.0, 1.0))
    shape = (8, 32 * request["steps_per_invoke"]) + tuple(
        source.inputs[0].shape[2:]
    )
    rng = np.random.default_rng(0)
    return rng.uniform(low, high, shape).astype(source.inputs[0].dtype)


def _quantization(quantize, quantized):
    if quantize is None:
        return None
    return "ptq" if quantized is None else "qat"


def report_path(path):
    """Where the JSON report of the file `path` goes."""
    root, ext = os.path.splitext(path)
    return (root if ext == ".tflite" else path) + ".json"
