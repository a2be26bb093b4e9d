"""The interpreter-free C backend (`keras_mgrade.export.c_backend`).

The reference is the TFLite Micro Python runtime on the same `.tflite`
file: every output of every step of the generated C (host gcc, C99,
-Wall -Wextra -Werror) must be bit-identical to it, over 4,096 steps,
for the quickstart architecture, a seq2seq model, a QAT model, a
4-steps-per-invoke file, random-weight models covering every block
option and the registered `keras.layers.Conv1D(padding="causal")`.
Unary operators are checked exhaustively (all 256 int8 inputs) against
one-operator files, binary operators on all 65,536 input pairs.
On emulated Cortex-M4 (QEMU mps2-an386) and Cortex-M55 (mps3-an547) the
firmware's outputs must equal the host's. Exports run on the TensorFlow
backend only; tests skip where the C tools are missing.
"""

import os

import keras
import numpy as np
import pytest
from helpers import BACKEND

from keras_mgrade import datasets
from keras_mgrade.export import StreamingInterpreter
from keras_mgrade.export import export_tflite
from keras_mgrade.export.c_backend import UnsupportedOperatorError
from keras_mgrade.export.c_backend import export_c
from keras_mgrade.export.c_backend import generate
from keras_mgrade.export.c_backend import toolchain
from keras_mgrade.export.c_backend.graph import read_graph
from keras_mgrade.export.c_backend.lowering import unary_function
from keras_mgrade.export.c_backend.ops_unary import table
from keras_mgrade.layers.mgrade import MGRADE
from keras_mgrade.models import mgrade_classifier
from keras_mgrade.models import mgrade_seq2seq

TOOLS = toolchain.available()
DRIVER = os.path.join(os.path.dirname(__file__), "c_driver", "host_driver.c")
STEPS = 4096

tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="exports run on the TensorFlow backend"
)
needs_cc = pytest.mark.skipif(
    not TOOLS["host-cc"], reason="no host C compiler (gcc or cc) on PATH"
)
needs_arm = pytest.mark.skipif(
    not (TOOLS["arm-gcc"] and TOOLS["qemu"]),
    reason="arm-none-eabi-gcc and qemu-system-arm are needed "
    "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
    "qemu-system-arm)",
)


# --------------------------------------------------------------- models


def _data(n=16, timesteps=96, features=2):
    x, _ = datasets.multi_timescale(n, timesteps=timesteps, seed=0)
    return x[..., :features]


def _mixed_blocks():
    """One model whose blocks cover the block options: RMS norm without
    convolution, no norm without recurrence or MLP, max_delay 1, the
    MLP activations that add operators (TANH, HARD_SWISH, LEAKY_RELU),
    and batch norms (folded, with and without the MLP)."""
    inputs = keras.Input((None, 2))
    x = keras.layers.Dense(8)(inputs)
    options = [
        dict(norm="rms", use_conv=False, mlp_activation="tanh"),
        dict(norm=None, use_recurrence=False, mlp_ratio=0),
        dict(max_delay=1, kernel_taps=1, mlp_activation="hard_silu"),
        dict(mlp_activation="leaky_relu", norm="layer"),
        dict(norm="batch"),
        dict(norm="batch", mlp_ratio=0, use_conv=False),
    ]
    blocks = []
    for i, kw in enumerate(options):
        kw = {"kernel_taps": 2, "max_delay": 6, "seed": i, **kw}
        blocks.append(MGRADE(8, name=f"block_{i}", **kw))
        x = blocks[-1](x)
    outputs = keras.layers.Dense(3)(x)
    rng = np.random.default_rng(0)
    for block in blocks[-2:]:  # learned-looking statistics
        for norm in (block.mlp_norm, block.post_norm):
            if norm is not None:
                norm.moving_mean.assign(rng.normal(0.0, 0.5, 8))
                norm.moving_variance.assign(rng.uniform(0.5, 2.0, 8))
                norm.gamma.assign(rng.uniform(0.5, 1.5, 8))
    return keras.Model(inputs, outputs)


def _causal_conv1d():
    """The registered stock layer: `keras.layers.Conv1D(padding="causal")`
    with a dilation, between Dense layers and before an MGRADE block."""
    inputs = keras.Input((None, 2))
    x = keras.layers.Conv1D(
        6, 3, padding="causal", dilation_rate=2, activation="relu"
    )(inputs)
    x = MGRADE(6, kernel_taps=2, max_delay=4, seed=7)(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def _rounded():
    model = mgrade_classifier(
        2, 3, units=8, num_layers=1, kernel_taps=3, max_delay=8,
        pooling="last", seed=5,
    )  # fmt: skip
    model.get_layer("mgrade_0").conv.round_positions()
    return model


def _qat():
    from keras_mgrade.quantization import quantize_model

    keras.utils.set_random_seed(0)
    x, y = datasets.multi_timescale(64, timesteps=32, seed=1)
    model = mgrade_classifier(
        2, 4, units=8, num_layers=1, kernel_taps=2, max_delay=6, seed=3
    )
    qat = quantize_model(model)
    qat.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return qat


MODELS = {
    # name: (builder, export options)
    "quickstart": (
        lambda: mgrade_classifier(
            input_features=2,
            num_classes=4,
            units=32,
            num_layers=2,
            kernel_taps=4,
            max_delay=16,
            sigma=2.0,
            mlp_ratio=2,
            seed=0,
        ),
        {},
    ),  # fmt: skip
    "seq2seq": (
        lambda: mgrade_seq2seq(
            2, 3, units=16, num_layers=2, kernel_taps=4, max_delay=8, seed=2
        ),
        {},
    ),
    "qat": (_qat, {}),
    "steps4": (
        lambda: mgrade_classifier(
            2, 3, units=8, num_layers=1, kernel_taps=2, max_delay=6, seed=4
        ),
        {"steps_per_invoke": 4},
    ),
    "mixed": (_mixed_blocks, {}),
    # Widths that are not multiples of 4 or 16 (row and column tails);
    # LOGISTIC and the operators around it in the file (the others hold
    # table lookups, `lookup_tables`).
    "odd": (
        lambda: mgrade_seq2seq(
            2, 3, units=10, num_layers=1, kernel_taps=3, max_delay=5, seed=6
        ),
        {"lookup_tables": False},
    ),
    "rounded": (_rounded, {}),
    "conv1d": (_causal_conv1d, {}),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("c_backend"))


_CACHE = {}


def _build(name, workdir):
    """Exports model `name` to int8, generates and compiles its C (host):
    cached for the module."""
    if name in _CACHE:
        return _CACHE[name]
    builder, options = MODELS[name]
    out = os.path.join(workdir, name)
    model = builder()
    data = None if name == "qat" else _data(8, 48)
    report = export_c(model, out, representative_data=data, **options)
    exe = toolchain.build_host(out, "mgrade", DRIVER, os.path.join(out, "host"))
    _CACHE[name] = (out, report, exe)
    return _CACHE[name]


def _inputs(shape, calls, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 40.0, size=(calls, *shape))
    return np.clip(np.round(x), -128, 127).astype(np.int8)


def _micro_outputs(path, inputs, reset_every):
    interp = StreamingInterpreter(path, "tflm")
    rows = []
    for call, x in enumerate(inputs):
        if reset_every and call and call % reset_every == 0:
            interp.reset()
        rows.append(np.asarray(interp.step_raw(x)[0]).reshape(-1))
    state = np.concatenate([np.asarray(s).reshape(-1) for s in interp.states])
    return np.stack(rows), state


# ---------------------------------------------------------- bit-exact


@tf_only
@needs_cc
@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_bit_exact_with_tflite_micro(name, workdir):
    out, report, exe = _build(name, workdir)
    shape = tuple(report["inputs"][0]["shape"])
    calls = STEPS // report["steps_per_invoke"]
    reset_every = calls // 4
    inputs = _inputs(shape, calls)
    expected, expected_state = _micro_outputs(
        report["tflite"], inputs, reset_every
    )
    got, state = toolchain.run_host(exe, inputs, reset_every, expected.shape[1])
    mismatches = np.flatnonzero(np.any(got != expected, axis=1))
    assert mismatches.size == 0, (
        f"{name}: {mismatches.size} of {calls} calls differ, first at call "
        f"{mismatches[:1]}"
    )
    np.testing.assert_array_equal(state, expected_state)


@tf_only
@needs_cc
@pytest.mark.slow
def test_report_and_api(workdir):
    out, report, _ = _build("quickstart", workdir)
    assert sorted(os.path.basename(f) for f in report["files"]) == [
        "mgrade.c",
        "mgrade.h",
        "mgrade_c.json",
    ]
    # Encoder 2 x 32; per block the depthwise window 16 x 32, the gate and
    # candidate 32 x 32 each, the MLP 32 x 64 and 64 x 32; decoder 32 x 4.
    block = 16 * 32 + 2 * 32 * 32 + 2 * 32 * 64
    assert report["macs_per_step"] == 2 * 32 + 2 * block + 32 * 4
    # FIFOs 2 x 15 x 32 and MinGRU states 2 x 32 (the host keeps the mean).
    assert report["state_bytes"] == 1024
    assert report["host_pooling"] == "mean"
    assert 0 < report["scratch_bytes"] <= 1024
    header = open(os.path.join(out, "mgrade.h")).read()
    for line in (
        "#define MGRADE_INPUT_SIZE 2",
        "#define MGRADE_OUTPUT_SIZE 4",
        "#define MGRADE_STEPS_PER_CALL 1",
        "void mgrade_reset(mgrade_state *state);",
        "void mgrade_step(mgrade_state *state, const int8_t *x, int8_t *y);",
    ):
        assert line in header
    source = open(os.path.join(out, "mgrade.c")).read()
    for word in ("malloc", "float", "double"):
        assert word not in source.split("/* ---- kernels")[1], word


@tf_only
@needs_cc
@pytest.mark.slow
def test_steps_per_invoke_file_is_a_four_step_function(workdir):
    _, report, _ = _build("steps4", workdir)
    assert report["steps_per_invoke"] == 4
    assert report["inputs"][0]["shape"] == [1, 4, 2]
    assert report["macs_per_call"] == 4 * report["macs_per_step"]


# ------------------------------------------------------- Cortex-M cores


@tf_only
@needs_cc
@needs_arm
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["quickstart", "steps4", "mixed", "rounded", "odd"]
)
def test_cortex_m_matches_host(name, workdir):
    out, report, exe = _build(name, workdir)
    shape = tuple(report["inputs"][0]["shape"])
    calls = (STEPS if name == "quickstart" else 512) // report[
        "steps_per_invoke"
    ]
    inputs = _inputs(shape, calls, seed=1)
    size = int(np.prod(report["outputs"][0]["shape"]))
    host, host_state = toolchain.run_host(exe, inputs, calls // 2, size)
    for core in ("cortex-m4", "cortex-m55"):
        elf, _ = toolchain.build_firmware(
            out, "mgrade", core, os.path.join(out, core), inputs, calls // 2
        )
        result = toolchain.run_firmware(elf, core, size)
        np.testing.assert_array_equal(result["outputs"], host, err_msg=core)
        np.testing.assert_array_equal(result["state"], host_state)
        assert 0 < result["stack"] < 1024


# --------------------------------------------- one-operator files


def _tensor(schema, shape, scale, zero_point, buffer=0, dtype=9):
    t = schema.TensorT()
    t.shape = list(shape)
    t.type = dtype
    t.buffer = buffer
    if scale is not None:
        q = schema.QuantizationParametersT()
        q.scale = [float(scale)]
        q.zeroPoint = [int(zero_point)]
        t.quantization = q
    return t


def _op_file(op_name, inputs, output, options=None, consts=(), same=False):
    """A `.tflite` with inputs `[x, s]` and outputs `[y, s]` (the state
    passes through a RESHAPE): one operator `y = op(x[, s or const])`.

    `inputs`: one or two `(scale, zero_point)`; the second is the state.
    `consts`: `(value, scale, zero_point)` scalar constant inputs.
    `same`: the operator reads `x` twice (`x * x`).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    n = 256
    model = schema.ModelT()
    model.version = 3
    codes = []
    for name in (op_name, "RESHAPE"):
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, name)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.version = 1
        codes.append(code)
    model.operatorCodes = codes
    buffers = [schema.BufferT()]
    x = _tensor(schema, [1, n], *inputs[0])
    s_scale, s_zero = inputs[1] if len(inputs) > 1 else inputs[0]
    s_in = _tensor(schema, [1, n], s_scale, s_zero)
    s_out = _tensor(schema, [1, n], s_scale, s_zero)
    y = _tensor(schema, [1, n], *output)
    shape_buffer = schema.BufferT()
    shape_buffer.data = np.array([1, n], np.int32).tobytes()
    buffers.append(shape_buffer)
    shape = _tensor(schema, [2], None, 0, buffer=1, dtype=2)
    tensors = [x, s_in, y, s_out, shape]
    op_inputs = [0] + ([1] if len(inputs) > 1 else []) + ([0] if same else [])
    for value, scale, zero in consts:
        b = schema.BufferT()
        b.data = np.array([value], np.int8).tobytes()
        buffers.append(b)
        tensors.append(_tensor(schema, [], scale, zero, len(buffers) - 1))
        op_inputs.append(len(tensors) - 1)
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = op_inputs
    op.outputs = [2]
    if options is not None:
        op.builtinOptionsType, op.builtinOptions = options
    copy = schema.OperatorT()
    copy.opcodeIndex = 1
    copy.inputs = [1, 4]
    copy.outputs = [3]
    sub = schema.SubGraphT()
    sub.tensors = tensors
    sub.inputs = [0, 1]
    sub.outputs = [2, 3]
    sub.operators = [op, copy]
    model.subgraphs = [sub]
    model.buffers = buffers
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _micro(data, inputs):
    """TFLite Micro outputs `y` of a one-operator file, one row per call."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(data, arena_size=1 << 16)
    rows = []
    for values in inputs:
        for i, v in enumerate(values):
            interp.set_input(np.asarray(v, np.int8).reshape(1, -1), i)
        interp.invoke()
        rows.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(rows)


ALL = np.arange(-128, 128, dtype=np.int8)

# op, input (scale, zero point), output (scale, zero point), options, consts
UNARY_CASES = [
    ("LOGISTIC", (0.0128, 0), (1 / 256, -128), None, ()),
    ("LOGISTIC", (0.0903, 5), (1 / 256, -128), None, ()),
    ("LOGISTIC", (0.37, -60), (1 / 256, -128), None, ()),
    ("TANH", (0.021, 3), (1 / 128, 0), None, ()),
    ("TANH", (0.2, -17), (1 / 128, 0), None, ()),
    ("RSQRT", (0.00334, -128), (0.5569, -128), None, ()),
    ("RSQRT", (0.117, -128), (0.0042, -128), None, ()),
    ("QUANTIZE", (1 / 256, -128), (1 / 255, -128), None, ()),
    ("QUANTIZE", (0.05, 10), (0.031, -3), None, ()),
    ("RELU", (0.05, 10), (0.025, -128), None, ()),
    ("RELU6", (0.05, 10), (0.05, 10), None, ()),
    ("HARD_SWISH", (0.043, -5), (0.031, -110), None, ()),
    ("LEAKY_RELU", (0.043, -5), (0.031, 20), ("leaky", 0.2), ()),
    ("MUL", (0.026, 3), (0.0442, 3), None, ((-128, 0.00667, -128),)),
    ("ADD", (0.00334, -128), (0.00334, -128), None, ((-128, 3.9e-8, -128),)),
    ("SUB", (0.02, 7), (0.03, -1), None, ((40, 0.05, -3),)),
    ("MINIMUM", (1 / 255, -128), (1 / 255, -128), None, ((0, 1 / 255, -128),)),
    ("MAXIMUM", (0.1, 4), (0.1, 4), None, ((-9, 0.1, 4),)),
    ("SQUARED_DIFFERENCE", (0.1, 4), (0.3, -128), None, ((12, 0.2, -5),)),
]


def _options(kind):
    from tensorflow.lite.python import schema_py_generated as schema

    if kind is None:
        return None
    opts = schema.LeakyReluOptionsT()
    opts.alpha = kind[1]
    return schema.BuiltinOptions.LeakyReluOptions, opts


@tf_only
@pytest.mark.parametrize("case", UNARY_CASES, ids=lambda c: c[0])
def test_tables_equal_tflite_micro_on_all_256_inputs(case):
    op_name, x_q, y_q, options, consts = case
    data = _op_file(op_name, [x_q], y_q, _options(options), consts)
    graph = read_graph(data)
    f = unary_function(graph, graph.operators[0])
    assert f is not None
    # TFLite Micro rejects RSQRT inputs below the zero point.
    valid = ALL[ALL >= x_q[1]] if op_name == "RSQRT" else ALL
    x = np.resize(valid, 256)
    expected = _micro(data, [(x, ALL)])[0][: valid.size]
    got = np.array(table(f), np.int8)[valid.astype(np.int64) + 128]
    np.testing.assert_array_equal(got, expected)


@tf_only
def test_square_is_a_table():
    data = _op_file("MUL", [(0.0218, 5)], (0.0332, -128), same=True)
    graph = read_graph(data)
    f = unary_function(graph, graph.operators[0])
    expected = _micro(data, [(ALL, ALL)])[0]
    np.testing.assert_array_equal(
        np.array(table(f), np.int8)[ALL.astype(np.int64) + 128], expected
    )


BINARY_CASES = [
    ("ADD", [(0.0206, 0), (0.0086, -128)], (0.0223, -26)),
    ("ADD", [(0.0086, -128), (0.0206, 0)], (0.0223, -26)),
    ("SUB", [(0.0129, -54), (0.0086, -128)], (0.0080, -7)),
    ("SUB", [(0.0040, 3), (0.0750, 1)], (0.0750, 1)),
    ("MUL", [(1 / 256, -128), (0.0080, -7)], (0.0041, -25)),
    ("MUL", [(0.13, 4), (0.21, -9)], (0.0011, 2)),
    ("SQUARED_DIFFERENCE", [(0.1, 4), (0.2, -5)], (0.3, -128)),
    ("MINIMUM", [(0.1, 4), (0.1, 4)], (0.1, 4)),
    ("MAXIMUM", [(0.1, 4), (0.1, 4)], (0.1, 4)),
]


@tf_only
@needs_cc
@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: c[0])
def test_binary_kernels_on_all_input_pairs(case, tmp_path):
    op_name, inputs, output = case
    data = _op_file(op_name, inputs, output)
    path = tmp_path / "op.tflite"
    path.write_bytes(data)
    out = str(tmp_path / "c")
    export_c(str(path), out)
    exe = toolchain.build_host(out, "mgrade", DRIVER, str(tmp_path / "host"))
    a = np.tile(ALL, (256, 1))
    b = np.repeat(ALL[:, None], 256, axis=1)
    expected = _micro(data, list(zip(a, b)))
    got, _ = toolchain.run_host(exe, a, 0, 256, states=b)
    np.testing.assert_array_equal(got, expected)


@tf_only
@needs_cc
@needs_arm
@pytest.mark.slow
@pytest.mark.parametrize("case", BINARY_CASES[:7], ids=lambda c: c[0])
def test_binary_kernels_on_cortex_m(case, tmp_path):
    """The DSP (M4) and Helium (M55) paths of ADD, SUB and MUL on all
    input pairs equal the host (itself equal to TFLite Micro)."""
    op_name, inputs, output = case
    path = tmp_path / "op.tflite"
    path.write_bytes(_op_file(op_name, inputs, output))
    out = str(tmp_path / "c")
    export_c(str(path), out)
    exe = toolchain.build_host(out, "mgrade", DRIVER, str(tmp_path / "host"))
    a = np.tile(ALL, (256, 1))
    b = np.repeat(ALL[:, None], 256, axis=1)
    host, _ = toolchain.run_host(exe, a, 0, 256, states=b)
    for core in ("cortex-m4", "cortex-m55"):
        elf, _ = toolchain.build_firmware(
            out, "mgrade", core, str(tmp_path / core), a, states=b
        )
        result = toolchain.run_firmware(elf, core, 256)
        np.testing.assert_array_equal(result["outputs"], host, err_msg=core)


BROADCAST_CASES = [
    ("ADD", (0.0206, 0), (0.0223, -26), (-77, 0.0086, -128)),
    ("SUB", (0.0129, -54), (0.0080, -7), (90, 0.0086, -128)),
    ("MUL", (0.13, 4), (0.0011, 2), (-9, 0.21, -9)),
]


@tf_only
@needs_cc
@pytest.mark.parametrize("case", BROADCAST_CASES, ids=lambda c: c[0])
def test_broadcast_constant_runs_bit_exact(case, tmp_path):
    """An arithmetic operator with a scalar constant runs (no table) with
    its broadcasting loop: equal to TFLite Micro on all 256 inputs, on the
    host and, where the toolchain is installed, on Cortex-M4 / M55."""
    op_name, x_q, y_q, const = case
    data = _op_file(op_name, [x_q], y_q, consts=(const,))
    path = tmp_path / "op.tflite"
    path.write_bytes(data)
    out = str(tmp_path / "c")
    export_c(str(path), out)
    assert "#define MG_BCAST 1" in open(os.path.join(out, "mgrade.c")).read()
    exe = toolchain.build_host(out, "mgrade", DRIVER, str(tmp_path / "host"))
    expected = _micro(data, [(ALL, ALL)])
    got, _ = toolchain.run_host(exe, ALL[None], 0, 256, states=ALL[None])
    np.testing.assert_array_equal(got, expected)
    available = toolchain.available()
    if not (available["arm-gcc"] and available["qemu"]):
        return
    for core in ("cortex-m4", "cortex-m55"):
        elf, _ = toolchain.build_firmware(
            out, "mgrade", core, str(tmp_path / core), ALL[None],
            states=ALL[None],
        )  # fmt: skip
        result = toolchain.run_firmware(elf, core, 256)
        np.testing.assert_array_equal(result["outputs"], got, err_msg=core)


# ----------------------------------------------------------- errors


@tf_only
def test_unsupported_operator_is_named():
    data = _op_file("SOFTMAX", [(0.1, 0)], (1 / 256, -128))
    with pytest.raises(UnsupportedOperatorError, match="SOFTMAX"):
        generate(data)


@tf_only
def test_invalid_name_and_source(tmp_path):
    data = _op_file("RELU", [(0.05, 10)], (0.025, -128))
    with pytest.raises(ValueError, match="name='2x'"):
        export_c(data, str(tmp_path), name="2x")
    with pytest.raises(ValueError, match="source of type int"):
        export_c(3, str(tmp_path))
    report = export_c(data, str(tmp_path), name="relu_model")
    assert os.path.exists(os.path.join(tmp_path, "relu_model.h"))
    assert report["state_bytes"] == 256


@tf_only
def test_float_file_is_rejected(tmp_path):
    model = mgrade_seq2seq(1, 1, units=4, num_layers=1, max_delay=2,
                           kernel_taps=1)  # fmt: skip
    path = os.path.join(tmp_path, "float.tflite")
    export_tflite(model, path, verbose=False)
    with pytest.raises(UnsupportedOperatorError, match="float32"):
        export_c(path, str(tmp_path))
