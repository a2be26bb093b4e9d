"""Verify: a written file on TFLite Micro against the Keras step model.

The exporter measures the smallest arena the file runs in
(`keras_mgrade.export.arena`) and streams whole check sequences through
the file on the TFLite Micro interpreter and through the Keras step model
it was converted from (float32, or fake-quantized for a quantization-
aware model), and reports the largest difference.
"""

import numpy as np

from keras_mgrade.export import micro
from keras_mgrade.export.streaming import stream
from keras_mgrade.export.streaming import streaming_model


def check_sequences(check_data, representative_data, model, k):
    """The sequences of the deviation check: `check_data`, else up to 4
    calibration sequences, else 2 random normal ones of `64 * k` steps."""
    if check_data is not None:
        return check_data
    if representative_data is not None:
        return representative_data[:4]
    shape = (2, 64 * k) + tuple(model.inputs[0].shape[2:])
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def deviation(model, flat, sequences, arena, steps_per_invoke, host_pooling):
    """Max |file on TFLite Micro - Keras step model| over `sequences`.

    Args:
        model: the model the file came from (a sequence model, or a
            quantization-aware model: then its fake-quantized step model).
        flat: the file's bytes.
        sequences: array `(n, timesteps, ...)`.
        arena: the file's arena size in bytes.
        steps_per_invoke: the file's steps per invoke.
        host_pooling: bool, the file leaves the final pooling to the host.

    Returns:
        float.
    """
    batch_step = streaming_model(
        model,
        steps_per_invoke=steps_per_invoke,
        host_pooling=host_pooling,
        batch_size=sequences.shape[0],
    )
    reference, _ = stream(batch_step, sequences)
    got = micro.stream_file(flat, sequences, "tflm", arena_size=arena + 1024)
    return float(np.max(np.abs(got - reference)))


def deviation_lsb(value, layout, quantize):
    """`{"max_deviation_output_lsb": ...}`: the deviation in steps of the
    int8 output grid (empty for a float file)."""
    if quantize != "int8":
        return {}
    scale = layout["outputs"][0].get("scale")
    if not scale:
        return {}
    return {"max_deviation_output_lsb": round(value / scale, 3)}
