"""Convert: the step model of a sequence model -> TFLite flatbuffer bytes.

Set-ups of `tf.lite.TFLiteConverter`, all with builtin ops only:
float32; int8 or 16x8 (int16 activations and states, int8 weights)
post-training quantization, calibrated on the states and activations
seen while streaming whole sequences; int8 or 16x8 from a
quantization-aware model, whose fake-quant ops carry the ranges.
"""

import contextlib
import io
import re

import keras
import numpy as np

from keras_mgrade import _utils
from keras_mgrade.export import micro
from keras_mgrade.export import tflm_ops
from keras_mgrade.export.streaming import as_list
from keras_mgrade.export.streaming import streaming_model


def require_tensorflow():
    """`import tensorflow`, or an ImportError naming the pip extra."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            "Converting to TFLite needs TensorFlow: `pip install "
            "keras-mgrade[tflite]` (tensorflow, ai-edge-litert, "
            "tflite-micro). Training can use any backend."
        ) from e
    return tf


def convert(step, quantize, quantized=False, samples=None):
    """The flatbuffer of `step` (a model from `streaming_model`).

    Args:
        step: the step model.
        quantize: None (float32), `"int8"` (int8 activations, states,
            inputs and outputs) or `"int16x8"` (the same in int16, with
            int8 weights and int64 biases: the converter's
            `EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`
            mode; int16 tensors are symmetric, zero point 0).
        quantized: bool, `step` is the step model of a quantization-aware
            model (quantized from its fake-quant ranges, no calibration).
        samples: for post-training quantization, the per-invoke inputs
            `[x, *states]` to calibrate on (`calibration_samples`).

    Returns:
        bytes.
    """
    tf = require_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(step)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        io_type = tf.int16 if quantize == "int16x8" else tf.int8
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    if quantize == "int16x8":
        opset = tf.lite.OpsSet
        converter.target_spec.supported_ops = [
            opset.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    if quantize is not None and not quantized:
        names = [t.name for t in step.inputs]

        def representative_dataset():
            for sample in samples:
                yield dict(zip(names, sample))

        converter.representative_dataset = representative_dataset
        if quantize == "int8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            ]
    with micro.quiet_stderr(), contextlib.redirect_stdout(io.StringIO()):
        try:
            return bytes(converter.convert())
        except Exception as error:  # the converter raises several kinds
            found = re.search(_NOT_16X8, str(error))
            if quantize == "int16x8" and found:
                tflm_ops.check_int16_ops([found.group(1)])
            raise


# How TensorFlow's 16x8 quantizer refuses an operator.
_NOT_16X8 = r"16x8-bit not yet supported for op: '([A-Z_0-9]+)'"


def convert_int16_from_ranges(step, quantized, samples):
    """The 16x8 flatbuffer of the step model of a quantization-aware model
    with 16-bit activations, quantized with its learned ranges.

    TensorFlow's converter reads no 16-bit fake-quant ops (its
    quantization-aware path has no int16 CONCATENATION or ADD), so the
    step graph is traced with the activations in float while the model
    records each marked tensor's symmetric range `m` by graph name
    (`traced_ranges`); the converter calibrates it (`samples`: per-invoke
    inputs that fill in the few tensors no point marks, such as a
    convolution before its bias), every recorded tensor's range is then
    set to `[-m, m]` (a RESHAPE's input with its output; a graph output,
    named by the signature, through its operator's bias), and the 16x8
    quantizer writes scale `m / 32767`, zero point 0: the grid of the
    16-bit fake quantization (LOGISTIC and TANH outputs keep the kernel's
    1/32768).

    Returns:
        bytes.
    """
    tf = require_tensorflow()
    from tensorflow.lite.python.optimize import calibrator

    quantized.traced_ranges.clear()
    converter = tf.lite.TFLiteConverter.from_keras_model(step)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    names = [t.name for t in step.inputs]
    converter.representative_dataset = lambda: (
        dict(zip(names, sample)) for sample in samples
    )
    converter._experimental_calibrate_only = True
    with micro.quiet_stderr(), contextlib.redirect_stdout(io.StringIO()):
        calibrated = bytes(converter.convert())
        ranged = _impose_ranges(calibrated, dict(quantized.traced_ranges))
        quantizer = calibrator.Calibrator(ranged)
        return bytes(
            quantizer._calibrator.QuantizeModel(
                np.dtype("int16").num,
                np.dtype("int16").num,
                False,
                np.dtype("int16").num,
                np.dtype("int64").num,
                False,
                False,
            )
        )


def _impose_ranges(flat, ranges):
    """`flat` (a calibrated float file) with the min/max of every tensor
    named in `ranges` set to `[-m, m]`."""
    from keras_mgrade.export import rewrite

    graph = rewrite.read_graph(flat)
    sub = graph.subgraphs[0]
    reshapes = {
        int(op.outputs[0]): int(op.inputs[0])
        for op in sub.operators
        if rewrite.op_name(graph, op) == "RESHAPE"
    }

    def lookup(name):
        name = name.removeprefix("serving_default_").split(":")[0]
        for part in reversed(name.split(";")):
            for key, m in ranges.items():
                if part == key or part.endswith("/" + key):
                    return m
        return None

    made = {int(o): op for op in sub.operators for o in op.outputs}
    outputs = {int(i) for i in sub.outputs}

    def name_of(index):
        return rewrite._text(sub.tensors[index].name or b"")

    for index, tensor in enumerate(sub.tensors):
        q = tensor.quantization
        if q is None or q.min is None or len(q.min) == 0:
            continue
        m = lookup(name_of(index))
        if m is None and index in outputs and index in made:
            # A graph output is named by the signature; the converter
            # names its operator's bias after the marked addition.
            inputs = [int(i) for i in made[index].inputs if i >= 0]
            constants = [i for i in inputs if _has_data(graph, sub, i)]
            found = [lookup(name_of(i)) for i in constants]
            m = next((v for v in found if v is not None), None)
        if m is None:
            continue
        targets = [index]
        while targets[-1] in reshapes:
            targets.append(reshapes[targets[-1]])
        for target in targets:
            tq = sub.tensors[target].quantization
            if tq is not None and tq.min is not None and len(tq.min):
                tq.min = np.array([-m], "float32")
                tq.max = np.array([m], "float32")
    return rewrite.write_graph(graph)


def _has_data(graph, sub, index):
    data = graph.buffers[sub.tensors[index].buffer].data
    return data is not None and len(data) > 0


def float32_model(model, log):
    """`model`, or a float32 copy of it with the same weights when any of
    its layers computes in another precision (a `mixed_float16` or
    `mixed_bfloat16` model): the file is converted from float32."""
    policies = {
        layer.dtype_policy.name
        for layer in _utils.iter_layers(model)
        if isinstance(layer, keras.layers.Layer)
    }
    if policies <= {"float32"}:
        return model

    def float32_layer(layer):
        config = dict(layer.get_config(), dtype="float32")
        return type(layer).from_config(config)

    copy = keras.models.clone_model(model, clone_function=float32_layer)
    copy.set_weights(model.get_weights())
    log(f"converting a float32 copy of the {sorted(policies)} model")
    return copy


def calibration_samples(
    model, data, k, host_pooling, log, limit=2000, substitute=None
):
    """Per-invoke inputs `[x, *states]` seen when streaming `data`
    `(n, timesteps, ...)` through the float step model of `model` (at most
    about `limit` of them, spread over the sequences and time);
    `substitute`: the rounded weights to stream with (see
    `keras_mgrade.export.rounding.Substitute`)."""
    n = data.shape[0]
    batch_step = streaming_model(
        model, steps_per_invoke=k, host_pooling=host_pooling, batch_size=n
    )
    batch_step.get_layer("streaming_step").substitute = substitute
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
    _check_states_move(samples, data.shape)
    return samples


def _check_states_move(samples, shape):
    """Each state must take a non-zero value somewhere in the calibration
    (otherwise its integer range is empty: the file would be broken)."""
    for i in range(1, len(samples[0]) if samples else 0):
        if not any(np.any(sample[i]) for sample in samples):
            raise ValueError(
                f"State {i - 1} stays 0 over the whole calibration, so its "
                "integer range would be empty: calibrate on longer sequences "
                "(the states are sampled before each step). Received: "
                f"representative_data.shape={shape}"
            )


def _compiled(step_model):
    import tensorflow as tf

    @tf.function(jit_compile=False, reduce_retracing=True)
    def run(values):
        return step_model(values, training=False)

    return lambda values: [t.numpy() for t in as_list(run(values))]
