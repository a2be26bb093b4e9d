"""Run a streaming `.tflite` file sample by sample, with its state fed
back, on the TFLite Micro interpreter (the `tflite-micro` package, the
real TFLite Micro runtime) or on LiteRT (`ai-edge-litert`, or the older
`tflite_runtime`).

The file follows the export contract. State `"io"`: input 0 is `x_t`,
inputs `1..k` the states, output 0 `y_t`, outputs `1..k` the new states in
the same order, fed back here after each invoke. State `"variables"`: one
input `x_t`, one output `y_t`, the states kept by the runtime in resource
variables. Float inputs are quantized and integer (int8 or int16)
outputs dequantized here, with the file's own scales, so callers work in
float.
"""

import contextlib
import os
import sys

import numpy as np

from keras_mgrade import _utils
from keras_mgrade.export.arena import collapsed_zero_points
from keras_mgrade.export.arena import read_model
from keras_mgrade.export.arena import stream_metadata

RUNTIMES = ("tflm", "litert")


def _quant(details, key_scales, key_zero_points):
    q = details.get("quantization_parameters") or {}
    scales = np.asarray(q.get(key_scales, []), "float64").ravel()
    zeros = np.asarray(q.get(key_zero_points, []), "int64").ravel()
    if scales.size == 0 or scales[0] == 0.0:
        return None
    return float(scales[0]), int(zeros[0])


class _Tensor:
    """Shape, dtype and (scale, zero point) of one input or output."""

    def __init__(self, shape, dtype, quantization):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.quantization = quantization

    def to_file(self, value, name="x_t"):
        """`value` (float) in the file's dtype: quantized for an integer
        tensor. Raises for a wrong size or a value that is not finite."""
        value = np.asarray(value, "float32")
        if value.size == 1:
            value = np.broadcast_to(value.reshape(()), self.shape)
        if value.size != int(np.prod(self.shape)):
            raise ValueError(
                f"`{name}` must have {int(np.prod(self.shape))} values (the "
                f"file's shape {self.shape}). Received: {name}.shape="
                f"{value.shape}"
            )
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"`{name}` must be finite: an integer file has no NaN or "
                f"infinity. Received: {name} with "
                f"{int(np.sum(~np.isfinite(value)))} non-finite value(s)"
            )
        value = value.reshape(self.shape)
        if self.quantization is None or self.dtype.kind == "f":
            return value.astype(self.dtype)
        scale, zero = self.quantization
        info = np.iinfo(self.dtype)
        q = np.round(value / scale) + zero
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def from_file(self, value):
        value = np.asarray(value)
        if self.quantization is None or self.dtype.kind == "f":
            return value.astype("float32")
        scale, zero = self.quantization
        return ((value.astype("float32") - zero) * scale).astype("float32")


class StreamingInterpreter:
    """A streaming `.tflite` file on TFLite Micro or LiteRT.

    `state` is `"io"` (states fed back by this class, kept in `states`),
    `"variables"` (resource variables inside the file: nothing to feed)
    or `"none"` (a model without state). `reset()` restores the zero
    state: for `"variables"` on TFLite Micro it calls the interpreter's
    `reset()`; on LiteRT, whose `reset_all_variables()` does not restore
    it, it re-creates the interpreter.

    Args:
        model: path or bytes of a `.tflite` file from `export_tflite`.
        runtime: `"tflm"` (TFLite Micro) or `"litert"`.
        arena_size: TFLite Micro arena in bytes (default: 1 MiB).
        steps_per_invoke: int or None, the time steps one invoke
            consumes. None reads it from the file (`export_tflite` records
            it), or 1 for a file from elsewhere.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from keras_mgrade.export import export_tflite
    >>> from keras_mgrade.models import mgrade_seq2seq
    >>> model = mgrade_seq2seq(1, 1, units=8, num_layers=1, max_delay=4,
    ...                        kernel_taps=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
    >>> _ = export_tflite(model, path, verbose=False)
    >>> interp = StreamingInterpreter(path)
    >>> x = np.random.default_rng(0).normal(size=(32, 1)).astype("float32")
    >>> y = interp.run(x)            # one sample per invoke, state fed back
    >>> y.shape
    (32, 1)
    >>> float(np.abs(y - model.predict(x[None], verbose=0)[0]).max()) < 1e-4
    True
    """

    def __init__(
        self, model, runtime="tflm", arena_size=None, steps_per_invoke=None
    ):
        if runtime not in RUNTIMES:
            raise ValueError(
                f"Unknown runtime. Expected one of {RUNTIMES}. Received: "
                f"runtime={runtime!r}"
            )
        self.runtime = runtime
        self.model_bytes = read_model(model)
        if arena_size is not None:
            _utils.check_positive_int("arena_size", arena_size)
        self.arena_size = int(arena_size or (1 << 20))
        metadata = stream_metadata(self.model_bytes)
        if runtime == "litert" and (
            metadata.get("target") == "tflm"
            or collapsed_zero_points(self.model_bytes)
        ):
            raise ValueError(
                "This file was made for TFLite Micro (target='tflm'): "
                "LiteRT rejects its collapsed per-channel zero points and "
                "unit-rank operator outputs. Run it with runtime='tflm', or "
                "export it with target='litert'. Received: runtime='litert'"
            )
        if steps_per_invoke is None:
            steps_per_invoke = metadata.get("steps_per_invoke", 1)
        self.steps_per_invoke = _utils.check_positive_int(
            "steps_per_invoke", steps_per_invoke
        )
        self._open()
        self.num_states = len(self.inputs) - 1
        if self.num_states:
            self.state = "io"
        else:
            has = _has_variables(self.model_bytes)
            self.state = "variables" if has else "none"
        self.reset()

    def _open(self):
        self._invoked = False
        if self.runtime == "tflm":
            from tflite_micro import runtime as tflm

            self._interp = tflm.Interpreter.from_bytes(
                self.model_bytes, arena_size=self.arena_size
            )
            with quiet_stderr():
                n_in = _count(self._interp.get_input_details)
                n_out = _count(self._interp.get_output_details)
            self.inputs = [
                _tflm_tensor(self._interp.get_input_details(i))
                for i in range(n_in)
            ]
            self.outputs = [
                _tflm_tensor(self._interp.get_output_details(i))
                for i in range(n_out)
            ]
        else:
            interpreter_cls = _litert_interpreter()
            self._interp = interpreter_cls(model_content=self.model_bytes)
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()
            self._out = self._interp.get_output_details()
            self.inputs = [_litert_tensor(d) for d in self._in]
            self.outputs = [_litert_tensor(d) for d in self._out]

    def reset(self):
        """Restores the initial (zero) state."""
        self.states = [
            t.to_file(np.zeros(t.shape, "float32")) for t in self.inputs[1:]
        ]
        if self.runtime == "tflm":
            self._interp.reset()
        elif self.state == "variables" and self._invoked:
            # LiteRT's reset_all_variables() keeps the last values.
            self._open()

    def step_raw(self, x_file):
        """One invoke with `x_t` already in the file's dtype; returns the
        raw outputs (file dtype) and keeps the new states."""
        values = [x_file] + self.states
        self._invoked = True
        if self.runtime == "tflm":
            for i, v in enumerate(values):
                self._interp.set_input(v, i)
            self._interp.invoke()
            outs = [
                np.array(self._interp.get_output(i))
                for i in range(len(self.outputs))
            ]
        else:
            for d, v in zip(self._in, values):
                self._interp.set_tensor(d["index"], v)
            self._interp.invoke()
            outs = [
                np.array(self._interp.get_tensor(d["index"])) for d in self._out
            ]
        # Copy the new states back unchanged (identical quantization).
        self.states = outs[1:]
        return outs

    def step(self, x_t):
        """One step in float: quantizes `x_t`, returns `y_t` dequantized."""
        outs = self.step_raw(self.inputs[0].to_file(x_t, "x_t"))
        return self.outputs[0].from_file(outs[0])

    def run(self, sequence, reset=True):
        """Streams one sequence `(timesteps, *features)` (a multiple of the
        file's steps per invoke); returns the stacked outputs in float."""
        if reset:
            self.reset()
        sequence = np.asarray(sequence)
        k = self.steps_per_invoke
        features = self.inputs[0].shape[2 if k > 1 else 1 :]
        if tuple(sequence.shape[1:]) != tuple(features) or (
            sequence.shape[0] % k
        ):
            raise ValueError(
                "`sequence` must be one sequence (timesteps, "
                f"*{tuple(features)}) with timesteps a multiple of {k}. "
                f"Received: sequence.shape={sequence.shape}"
            )
        outputs = []
        for t in range(0, sequence.shape[0], k):
            x = sequence[t] if k == 1 else sequence[t : t + k]
            y = self.step(x[None])
            outputs.append(y[0])
        if k == 1:
            return np.stack(outputs, 0)
        return np.concatenate(outputs, 0)


def _has_variables(model_bytes):
    """Whether the file holds resource variables (`VAR_HANDLE` ops)."""
    try:
        from tflite_micro import runtime as tflm
    except ImportError:  # LiteRT only: re-creating on reset is harmless
        return True
    return tflm.count_resource_variables(model_bytes) > 0


def _count(get_details):
    n = 0
    while True:
        try:
            get_details(n)
        except Exception:  # index out of range
            return n
        n += 1


@contextlib.contextmanager
def quiet_stderr():
    """Silences C-level stderr (TFLite Micro prints allocation failures)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _tflm_tensor(details):
    return _Tensor(
        details["shape"],
        details["dtype"],
        _quant(details, "scales", "zero_points"),
    )


def _litert_tensor(details):
    scale, zero = details.get("quantization", (0.0, 0))
    quant = None if not scale else (float(scale), int(zero))
    return _Tensor(details["shape"], details["dtype"], quant)


def _litert_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise ImportError(
                "LiteRT is not installed: `pip install ai-edge-litert` (or "
                "`pip install keras-mgrade[tflite]`)."
            ) from e
    return Interpreter


def stream_file(model, sequences, runtime="tflm", arena_size=None):
    """Streams sequences `(n, timesteps, *features)` through a file, each
    from the zero state.

    Returns:
        numpy float32 `(n, timesteps, *output)`: `y_t` at every step.
    """
    interp = StreamingInterpreter(model, runtime, arena_size)
    sequences = np.asarray(sequences)
    k = interp.steps_per_invoke
    rank = len(interp.inputs[0].shape) + (1 if k == 1 else 0)
    if sequences.ndim != rank:
        raise ValueError(
            f"`sequences` must be a batch of sequences (n, timesteps, "
            f"*features): rank {rank} for this file (input "
            f"{interp.inputs[0].shape}). Received: sequences.shape="
            f"{sequences.shape}; for one sequence use sequences[None] or "
            "StreamingInterpreter.run"
        )
    return np.stack([interp.run(s) for s in sequences], 0)
