"""The arguments of `export_tflite`, checked before any converter or
interpreter sees them: each error names the argument, what was received
and what was expected (native code given a NaN, an infinity or a wrong
shape can crash the process instead of raising)."""

import os

import keras
import numpy as np

from keras_mgrade import _utils
from keras_mgrade import core

QUANTIZE = (None, "int8", "int16x8")
STATES = ("io", "variables")
TARGETS = ("tflm", "litert")
WEIGHT_ROUNDING = ("nearest", "gptq")
DATA = ("representative_data", "check_data")


def check_request(model, path, **request):
    """The export arguments, checked and normalised (arrays as numpy).

    Raises:
        ValueError naming the argument and the value received.
    """
    source = _check_model(model)
    if not isinstance(path, str | os.PathLike) or os.path.isdir(path):
        raise ValueError(
            "`path` must be the path of the .tflite file to write. Received: "
            f"path={path!r}"
        )
    _check_choice("quantize", request["quantize"], QUANTIZE)
    _check_choice("state", request["state"], STATES)
    _check_choice("target", request["target"], TARGETS)
    _check_choice(
        "weight_rounding", request["weight_rounding"], (None,) + WEIGHT_ROUNDING
    )
    k = _utils.check_positive_int(
        "steps_per_invoke", request["steps_per_invoke"]
    )
    request["steps_per_invoke"] = k
    request["max_calibration_sequences"] = _utils.check_positive_int(
        "max_calibration_sequences", request["max_calibration_sequences"]
    )
    for name in DATA:
        request[name] = check_sequences(name, request[name], source, k)
    quantized = core.quantized_steps(model)
    data = request["representative_data"]
    quantize = request["quantize"]
    if quantize is not None and quantized is not None:
        quantized.check_exportable(quantize)
    rounding = request["weight_rounding"]
    post_training = quantize is not None and quantized is None
    if rounding is None:
        # GPTQ for 16x8, whose error is mostly the int8 weights' rounding.
        gptq = post_training and quantize == "int16x8"
        rounding = request["weight_rounding"] = "gptq" if gptq else "nearest"
    if rounding != "nearest" and not post_training:
        what = (
            "a quantization-aware model (its file keeps the weights it "
            "was trained with)"
            if quantize is not None
            else "a float32 file"
        )
        raise ValueError(
            f"weight_rounding={rounding!r} rounds the weights of "
            "post-training quantization (quantize='int8' or 'int16x8' "
            f"with representative_data), not of {what}. Received: "
            f"weight_rounding={rounding!r}, quantize={quantize!r}"
        )
    tables = request["lookup_tables"]
    if tables is not None and not isinstance(tables, bool):
        raise ValueError(
            "`lookup_tables` must be None (default), True or False. "
            f"Received: lookup_tables={tables!r}"
        )
    tables_apply = request["target"] == "tflm" and quantize == "int8"
    if request["lookup_tables"] is None:
        request["lookup_tables"] = tables_apply
    if request["lookup_tables"] and not tables_apply:
        raise ValueError(
            "lookup_tables=True tabulates int8 activations for TFLite "
            "Micro: it needs quantize='int8' and target='tflm'. Received: "
            f"lookup_tables=True, quantize={quantize!r}, "
            f"target={request['target']!r}"
        )
    if quantize is not None and quantized is None and data is None:
        raise ValueError(
            f"quantize={quantize!r} needs calibration data: pass "
            "`representative_data` (whole input sequences), or train the "
            "model with keras_mgrade.quantization.quantize_model. Received: "
            "representative_data=None"
        )
    if data is not None and data.dtype.kind == "f" and np.ptp(data) == 0:
        raise ValueError(
            "`representative_data` must vary: every value is "
            f"{float(data.flat[0])!r}, so the integer input range would be "
            "empty and every real input would saturate. Received: "
            f"representative_data.shape={data.shape}"
        )
    return request


def _check_model(model):
    quantized = core.quantized_steps(model)
    source = model if quantized is None else quantized.source
    if not isinstance(source, keras.Model):
        raise ValueError(
            "`model` must be a keras.Model (or a quantization-aware model "
            "from keras_mgrade.quantization). Received: model of type "
            f"{type(model).__name__}"
        )
    core.check_streamable(source)
    return source


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Invalid `{name}`. Expected one of {choices}. Received: "
            f"{name}={value!r}"
        )


def check_sequences(name, data, model, steps_per_invoke=1):
    """`data` as a numpy array of whole input sequences of `model`, or
    None; raises a ValueError naming `name` for a wrong type, shape,
    dtype, length or a value that is not finite."""
    if data is None:
        return None
    data = _as_array(name, data)
    spec = model.inputs[0]
    expected = (None, None) + tuple(spec.shape[2:])
    if data.ndim != len(expected) or data.shape[2:] != expected[2:]:
        raise ValueError(
            f"`{name}` must be whole input sequences of shape "
            f"(n, timesteps, *features) = {_shape_text(expected)} for "
            f"model {model.name!r}. Received: {name}.shape={data.shape}"
        )
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(
            f"`{name}` must hold at least one sequence of at least one step. "
            f"Received: {name}.shape={data.shape}"
        )
    if data.shape[1] % steps_per_invoke:
        raise ValueError(
            f"The sequence length of `{name}` must be a multiple of "
            f"steps_per_invoke (each invoke takes {steps_per_invoke} "
            f"steps). Received: {name}.shape={data.shape}, "
            f"steps_per_invoke={steps_per_invoke}"
        )
    return _check_values(name, data, model)


def _as_array(name, data):
    if not isinstance(data, np.ndarray):
        try:
            data = np.concatenate([np.asarray(d) for d in data], 0)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"`{name}` must be an array (n, timesteps, features) or an "
                f"iterable of such arrays. Received: {name} of type "
                f"{type(data).__name__}"
            ) from e
    if data.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must be numeric. Received: {name}.dtype={data.dtype}"
        )
    return data


def _check_values(name, data, model):
    integer_input = np.dtype(model.inputs[0].dtype).kind in "iu"
    if integer_input and data.dtype.kind not in "biu":
        raise ValueError(
            f"`{name}` must be integer tokens for model {model.name!r} "
            f"(its input is {model.inputs[0].dtype}). Received: "
            f"{name}.dtype={data.dtype}"
        )
    if not integer_input and not np.all(np.isfinite(data)):
        bad = int(np.sum(~np.isfinite(data)))
        raise ValueError(
            f"`{name}` must be finite. Received: {name} with {bad} NaN or "
            f"infinite value(s) (first at index "
            f"{tuple(int(i) for i in np.argwhere(~np.isfinite(data))[0])})"
        )
    vocabulary = _vocabulary_size(model)
    if vocabulary is not None and (data.min() < 0 or data.max() >= vocabulary):
        raise ValueError(
            f"`{name}` must hold token ids in [0, {vocabulary}) (the "
            f"vocabulary of the model's Embedding). Received: {name} with "
            f"ids in [{data.min()}, {data.max()}]"
        )
    return data.astype(model.inputs[0].dtype)


def _vocabulary_size(model):
    embeddings = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Embedding)
    ]
    return embeddings[0].input_dim if embeddings else None


def _shape_text(shape):
    return (
        "(" + ", ".join(["n", "timesteps"] + [str(d) for d in shape[2:]]) + ")"
    )
