"""Verify: a written file on TFLite Micro against the user's model and
against the Keras step model it was converted from.

The exporter streams whole check sequences through the file on the
TFLite Micro interpreter, one invoke at a time with the states fed back,
and compares

- with the user's model itself (`model.predict` on the whole sequences:
  every step for a sequence output; the host's mean of the per-step
  outputs, or the last step, for a pooled one): `max_abs_deviation`;
- with the Keras step model (float32, or fake-quantized for a
  quantization-aware model) at every step: `max_abs_deviation_step`, and
  in steps of the integer output grid (int8 or int16),
  `max_deviation_output_lsb`.

It also reports, as `warnings`, quantization that saturates: an integer
input or state at the ends of its type (-128 or 127 in int8, -32768 or
32767 in int16) for a large share of the check steps (the calibration
did not cover what the check data reach).
"""

import numpy as np

from keras_mgrade.export.micro import StreamingInterpreter
from keras_mgrade.export.streaming import stream
from keras_mgrade.export.streaming import streaming_model

# A share of saturated integer values above which the report warns.
SATURATION_WARNING = 0.05


def check_sequences(check_data, representative_data, model, k):
    """The sequences of the deviation check: `check_data`, else up to 4
    calibration sequences, else 2 random normal ones of `64 * k` steps
    (random tokens for a model with an integer input)."""
    if check_data is not None:
        return check_data
    if representative_data is not None:
        return representative_data[:4]
    rng = np.random.default_rng(0)
    spec = model.inputs[0]
    shape = (2, 64 * k) + tuple(spec.shape[2:])
    if np.dtype(spec.dtype).kind in "iu":
        vocabulary = _embedding_size(model)
        return rng.integers(0, vocabulary, shape).astype(spec.dtype)
    return rng.normal(size=shape).astype("float32")


def _embedding_size(model):
    for layer in model.layers:
        if hasattr(layer, "input_dim"):
            return int(layer.input_dim)
    return 2


def verify(
    model, flat, sequences, arena, k, host_pooling, quantize, user_model=None
):
    """The report's verification entries (see the module docstring).

    Args:
        model: the model the file was converted from (a sequence model or
            a quantization-aware model).
        flat: the file's bytes.
        sequences: check sequences `(n, timesteps, ...)`.
        arena: the file's arena size in bytes.
        k: the file's steps per invoke.
        host_pooling: bool, the file leaves the final pooling to the host.
        quantize: None, `"int8"` or `"int16x8"`.
        user_model: the model as the user gave it, when `model` is a copy
            of it (a float32 copy of a mixed-precision model). Defaults to
            `model`.

    Returns:
        dict.
    """
    got, saturation, output = _stream(flat, sequences, arena + 1024)
    batch_step = streaming_model(
        model,
        steps_per_invoke=k,
        host_pooling=host_pooling,
        batch_size=sequences.shape[0],
    )
    reference, _ = stream(batch_step, sequences)
    step_deviation = float(np.max(np.abs(got - reference)))
    user_model = model if user_model is None else user_model
    expected = np.asarray(user_model.predict(sequences, verbose=0))
    if expected.ndim == got.ndim:
        pooled = got
    else:
        pooled = got.mean(axis=1) if host_pooling else got[:, -1]
    result = {
        "max_abs_deviation": float(np.max(np.abs(pooled - expected))),
        "max_abs_deviation_step": step_deviation,
        "warnings": _warnings(saturation),
    }
    if quantize is not None and output.quantization is not None:
        scale = output.quantization[0]
        result["max_deviation_output_lsb"] = round(step_deviation / scale, 3)
    return result


def _stream(flat, sequences, arena):
    """The file's float outputs `(n, timesteps, ...)` over `sequences`,
    per integer input/state the share of saturated values, and the file's
    output tensor."""
    interp = StreamingInterpreter(flat, "tflm", arena)
    k = interp.steps_per_invoke
    names = ["x_t"] + [f"state_{i}" for i in range(interp.num_states)]
    counts = np.zeros(len(names))
    total = np.zeros(len(names))
    outputs = []
    for sequence in sequences:
        interp.reset()
        ys = []
        for t in range(0, sequence.shape[0], k):
            x = sequence[t] if k == 1 else sequence[t : t + k]
            x_file = interp.inputs[0].to_file(x[None], "check_data")
            values = [x_file] + list(interp.states)
            for i, v in enumerate(values):
                if v.dtype in (np.int8, np.int16):
                    info = np.iinfo(v.dtype)
                    counts[i] += np.sum((v == info.min) | (v == info.max))
                    total[i] += v.size
            raw = interp.step_raw(x_file)
            ys.append(interp.outputs[0].from_file(raw[0])[0])
        outputs.append(np.stack(ys) if k == 1 else np.concatenate(ys))
    dtypes = [t.dtype for t in interp.inputs]
    shares = {
        name: (counts[i] / total[i], dtypes[i])
        for i, name in enumerate(names)
        if total[i]
    }
    return np.stack(outputs), shares, interp.outputs[0]


def _warnings(saturation):
    return [
        f"{name} saturates ({dtype} {np.iinfo(dtype).min} or "
        f"{np.iinfo(dtype).max}) in {100 * share:.1f} % of its values over "
        "the check sequences: the calibration data do not cover the range "
        "the check data reach"
        for name, (share, dtype) in saturation.items()
        if share > SATURATION_WARNING
    ]


def identical(flat, reference, sequences, arena):
    """Raises unless `flat` gives bit-identical raw outputs (and states)
    to `reference` on TFLite Micro over `sequences` (the file for TFLite
    Micro against the file as converted)."""
    runs = [
        StreamingInterpreter(f, "tflm", 2 * arena) for f in (flat, reference)
    ]
    k = runs[0].steps_per_invoke
    for sequence in sequences:
        for interp in runs:
            interp.reset()
        for t in range(0, sequence.shape[0], k):
            x = sequence[t] if k == 1 else sequence[t : t + k]
            x_file = runs[0].inputs[0].to_file(x[None], "check_data")
            a, b = (interp.step_raw(x_file) for interp in runs)
            if not all(np.array_equal(u, v) for u, v in zip(a, b)):
                raise RuntimeError(
                    "The file for TFLite Micro (shrunk, with its graph "
                    "passes and lookup tables) differs from the converted "
                    f"one on TFLite Micro at step {t}. Please report the "
                    "model; export with target='litert' meanwhile."
                )
