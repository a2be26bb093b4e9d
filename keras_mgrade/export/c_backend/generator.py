"""`generate`: int8 `.tflite` bytes -> the text of `<name>.h`, `<name>.c`
and the report (a template plus data: see `render`)."""

import hashlib

from keras_mgrade.export.c_backend import render
from keras_mgrade.export.c_backend.graph import read_graph
from keras_mgrade.export.c_backend.lowering import lower
from keras_mgrade.export.c_backend.planner import plan_memory

# sizeof() of the parameter structs on 32-bit Arm (arm-none-eabi-gcc).
STRUCT_BYTES = {
    "mg_fc_params": 32,
    "mg_window_params": 24,
    "mg_dwconv_params": 40,
    "mg_add_params": 28,
    "mg_mul_params": 24,
    "mg_sqdiff_params": 40,
    "mg_minmax_params": 8,
    "mg_bcast": 12,
    "mg_mean_params": 24,
    "mg_norm_params": 92,
    "mg_lut_params": 12,
}


def _float_literal(value):
    return f"{float(value):.9g}f"


def _state_fields(graph):
    fields = []
    for i, index in enumerate(graph.inputs[1:]):
        t = graph.tensors[index]
        fields.append(
            f"  int8_t s{i}[{t.size}];  /* state {i}: {list(t.shape)}, "
            f"scale {float(t.s):.6g}, zero point {t.zp} */"
        )
    return fields or ["  int8_t unused;  /* the model has no state */"]


def _reset_body(graph):
    lines = []
    for i, index in enumerate(graph.inputs[1:]):
        t = graph.tensors[index]
        lines.append(f"  mg_fill(state->s{i}, {t.zp}, {t.size});")
    return lines or ["  (void)state;"]


def _steps_per_call(graph, steps_per_invoke):
    if steps_per_invoke is not None:
        return int(steps_per_invoke)
    shape = graph.tensors[graph.inputs[0]].shape
    return int(shape[1]) if len(shape) >= 3 else 1


def _io_entry(graph, index, name):
    t = graph.tensors[index]
    return {
        "name": name,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "scale": float(t.s),
        "zero_point": t.zp,
    }


def _body_and_kernels(plan, renderer):
    """The step function's lines and the kernel library code it needs."""
    body = [renderer.step_source(s) for s in plan.steps]
    if plan.scratch_bytes == 0:
        body.insert(0, "  (void)scratch;")
    sections = {"fill"}
    flags = {
        "MG_EXACT": 0,
        "MG_FC_ROWS": 0,
        "MG_RQ_PAIRS": 0,
        "MG_BCAST": 0,
        "MG_WINDOW_TAIL": 0,
        "MG_FC_UNPACK": 1,
        "MG_CHANNELS_MAX": 1,
    }
    for s in plan.steps:
        sections.update(s.sections)
        for feature in s.features:
            macro, value = (feature, 1) if isinstance(feature, str) else feature
            flags[macro] = max(flags[macro], value)
    return "\n".join(body), render.kernels_source(sections, flags)


def _template_values(graph, ctx, plan, name, source, steps, model_bytes):
    renderer = render.Renderer(ctx, plan)
    body, kernels = _body_and_kernels(plan, renderer)
    x = graph.tensors[graph.inputs[0]]
    y = graph.tensors[graph.outputs[0]]
    values = {
        "name": name,
        "NAME": name.upper(),
        "description": "an int8 streaming model, one call per "
        + ("time step" if steps == 1 else f"{steps} time steps"),
        "source": source,
        "source_bytes": len(model_bytes),
        "source_sha256": hashlib.sha256(bytes(model_bytes)).hexdigest(),
        "steps": steps,
        "input_size": x.size,
        "output_size": y.size,
        "input_scale": _float_literal(x.s),
        "input_zero_point": x.zp,
        "output_scale": _float_literal(y.s),
        "output_zero_point": y.zp,
        "state_bytes": _state_bytes(graph),
        "scratch_bytes": plan.scratch_bytes,
        "scratch_words": max(1, -(-plan.scratch_bytes // 4)),
        "macs": sum(s.macs for s in plan.steps),
        "state_fields": "\n".join(_state_fields(graph)),
        "reset_body": "\n".join(_reset_body(graph)),
        "step_body": body,
        "ops": ", ".join(graph.op_names),
        "kernels": kernels,
    }
    # Constants last: rendering the steps registers constant tensors.
    values["consts"] = "\n\n".join(render.const_source(c) for c in ctx.consts)
    values["structs"] = "\n\n".join(
        render.struct_source(s) for s in ctx.structs
    )
    return values


def _state_bytes(graph):
    return sum(graph.tensors[i].nbytes for i in graph.inputs[1:])


def _report(graph, ctx, plan, values, steps, info):
    macs = values["macs"]
    const_bytes = sum(c.nbytes for c in ctx.consts)
    struct_bytes = sum(STRUCT_BYTES[s.ctype] for s in ctx.structs)
    return {
        "name": values["name"],
        "source": values["source"],
        "source_sha256": values["source_sha256"],
        "steps_per_invoke": steps,
        "host_pooling": info.get("host_pooling"),
        "inputs": [_io_entry(graph, graph.inputs[0], "x")],
        "outputs": [_io_entry(graph, graph.outputs[0], "y")],
        "states": [
            _io_entry(graph, i, f"s{k}") for k, i in enumerate(graph.inputs[1:])
        ],
        "ops": graph.op_names,
        "kernel_calls": len(plan.steps),
        "tables": sum(1 for c in ctx.consts if c.name.endswith("_table")),
        "macs_per_step": macs // steps,
        "macs_per_call": macs,
        "const_bytes": const_bytes + struct_bytes,
        "weight_bytes": int(sum(t.nbytes for t in graph.tensors if t.is_const)),
        "state_bytes": _state_bytes(graph),
        "scratch_bytes": plan.scratch_bytes,
        "states_in_place": len(plan.in_place),
    }


def _check_int8(graph):
    """The C backend computes int8 activations only: a 16x8 file (int16
    inputs, states and activations) is refused, naming the tensor type."""
    for index in list(graph.inputs) + list(graph.outputs):
        tensor = graph.tensors[index]
        if tensor.dtype == "int16":
            raise ValueError(
                "The C backend runs int8 files only; this file's tensors "
                "are int16 (a 16x8 file, quantize='int16x8'). Run it on "
                "TFLite Micro, or export with quantize='int8' for the C "
                f"backend. Received: a file whose input/output {index} is "
                "int16"
            )


def generate(model_bytes, name="mgrade", source="model.tflite", info=None):
    """The C sources of an int8 streaming `.tflite` file.

    Args:
        model_bytes: the file's bytes (state as inputs/outputs).
        name: C identifier prefix of the API.
        source: how the file is named in the generated comments.
        info: optional dict of the exporter's report (`steps_per_invoke`,
            `host_pooling` are taken from it).

    Returns:
        dict with `header`, `source` (texts) and `report`.

    Example:

    >>> import tensorflow as tf
    >>> f = tf.function(lambda x, s: (tf.nn.relu(x), s + 0.0),
    ...     input_signature=[tf.TensorSpec([1, 4], tf.float32)] * 2)
    >>> conv = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [f.get_concrete_function()], f)
    >>> generate(conv.convert())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_mgrade.export.c_backend.program.UnsupportedOperatorError: ...
    """
    info = info or {}
    graph = read_graph(model_bytes)
    _check_int8(graph)
    if len(graph.inputs) != len(graph.outputs):
        raise ValueError(
            "The C backend needs the state as inputs and outputs (export "
            "with state='io'): as many outputs as inputs. Received: "
            f"{len(graph.inputs)} inputs, {len(graph.outputs)} outputs"
        )
    ctx = lower(graph)
    plan = plan_memory(graph, ctx.steps, ctx.aliases)
    steps = _steps_per_call(graph, info.get("steps_per_invoke"))
    values = _template_values(
        graph, ctx, plan, name, source, steps, model_bytes
    )
    return {
        "header": render.fill_template("model.h.in", values),
        "source": render.fill_template("model.c.in", values),
        "report": _report(graph, ctx, plan, values, steps, info),
    }
