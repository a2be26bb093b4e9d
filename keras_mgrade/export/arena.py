"""The smallest TFLite Micro arena a file runs in, found by bisection.

Each probe allocates the interpreter and runs one invoke in a forked
child process, because TFLite Micro can crash (not just fail) when the
arena is far too small. The search itself runs in a separate Python
process that runs this file as a script (`python arena.py FILE LOW HIGH
STEP`: numpy and tflite-micro only), so that forking never copies a
process with TensorFlow's threads running.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np


def read_model(model, name="model"):
    """The bytes of a `.tflite` file given as a path or as bytes, checked
    to be a well-formed TFLite flatbuffer (`check_model`) before any
    native runtime sees them."""
    if isinstance(model, bytes | bytearray):
        data = bytes(model)
    elif isinstance(model, str | os.PathLike):
        if not os.path.isfile(model):
            raise FileNotFoundError(
                f"`{name}` must be a .tflite file or its bytes. Received: "
                f"{name}={os.fspath(model)!r} (no such file)"
            )
        with open(model, "rb") as f:
            data = f.read()
    else:
        raise ValueError(
            f"`{name}` must be the path or the bytes of a .tflite file. "
            f"Received: {name} of type {type(model).__name__}"
        )
    check_model(data, name, model if not isinstance(model, bytes) else None)
    return data


def check_model(data, name="model", path=None):
    """Raises a ValueError unless `data` parses as a TFLite model whose
    operators and tensors refer to existing tensors and buffers (a
    truncated or corrupt file would otherwise crash the interpreter)."""
    from tflite_micro.tensorflow.lite.micro.python import (
        schema_py_generated as schema,
    )

    where = f"{name}={os.fspath(path)!r}" if path is not None else name
    problem = None
    if len(data) < 8 or data[4:8] != b"TFL3":
        problem = "no TFLite file identifier"
    else:
        try:
            graph = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
            problem = _dangling_index(graph)
        except Exception as error:  # struct/index errors of a bad buffer
            problem = f"{type(error).__name__}: {error}"
    if problem is not None:
        raise ValueError(
            f"`{name}` is not a valid TFLite file ({problem}). Received: "
            f"{where} ({len(data)} bytes)"
        )


# The name of the metadata entry in which the exporter records how the
# file streams (steps per invoke, state kind, host pooling) as JSON.
METADATA = "keras_mgrade"


def stream_metadata(data):
    """The exporter's metadata of a file (`{}` for another file)."""
    from tflite_micro.tensorflow.lite.micro.python import (
        schema_py_generated as schema,
    )

    graph = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for entry in graph.metadata or []:
        if entry.name and entry.name.decode() == METADATA:
            return json.loads(bytes(graph.buffers[entry.buffer].data))
    return {}


def collapsed_zero_points(data):
    """Whether a per-channel quantized tensor of the file has one zero
    point for several scales (TFLite Micro reads it; LiteRT rejects it)."""
    from tflite_micro.tensorflow.lite.micro.python import (
        schema_py_generated as schema,
    )

    graph = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for sub in graph.subgraphs:
        for tensor in sub.tensors or []:
            q = tensor.quantization
            if (
                q is not None
                and q.scale is not None
                and q.zeroPoint is not None
            ):
                if len(q.scale) > 1 and len(q.zeroPoint) == 1:
                    return True
    return False


def _dangling_index(graph):
    """A description of the first out-of-range index in `graph`, or
    None."""
    if not graph.subgraphs:
        return "no subgraph"
    buffers = len(graph.buffers or [])
    codes = len(graph.operatorCodes or [])
    for sub in graph.subgraphs:
        tensors = len(sub.tensors or [])
        for tensor in sub.tensors or []:
            if not 0 <= tensor.buffer < max(buffers, 1):
                return f"tensor buffer {tensor.buffer} of {buffers}"
        for op in sub.operators or []:
            if not 0 <= op.opcodeIndex < codes:
                return f"operator code {op.opcodeIndex} of {codes}"
            for index in list(op.inputs) + list(op.outputs):
                if not -1 <= index < tensors:
                    return f"tensor index {index} of {tensors}"
        for index in list(sub.inputs) + list(sub.outputs):
            if not 0 <= index < tensors:
                return f"input/output tensor {index} of {tensors}"
    return None


def runs_in(model_bytes, size):
    """Whether the file allocates and runs one invoke (zero inputs) in an
    arena of `size` bytes; the probe runs in a forked child."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            from tflite_micro import runtime

            interp = runtime.Interpreter.from_bytes(
                model_bytes, arena_size=size
            )
            i = 0
            while True:
                try:
                    d = interp.get_input_details(i)
                except Exception:  # index out of range: all inputs set
                    break
                interp.set_input(np.zeros(d["shape"], d["dtype"]), i)
                i += 1
            interp.invoke()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def bisect(model_bytes, low, high, granularity):
    """The smallest working arena in `(low, high]` to within
    `granularity` bytes, or -1 if the file does not run in `high`."""
    if not runs_in(model_bytes, high):
        return -1
    while high - low > granularity:
        mid = (low + high) // 2
        if runs_in(model_bytes, mid):
            high = mid
        else:
            low = mid
    return high


def find_arena_size(model, low=256, high=1 << 24, granularity=16):
    """The smallest TFLite Micro arena (bytes) in which the file allocates
    and runs one step.

    Args:
        model: path or bytes of a `.tflite` file.
        low: a size known to be too small. Defaults to 256.
        high: the largest size tried. Defaults to 16 MiB.
        granularity: the precision of the answer in bytes. Defaults to 16.

    Returns:
        int, bytes.
    """
    for arg, value in (
        ("low", low),
        ("high", high),
        ("granularity", granularity),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`{arg}` must be a positive int. Received: {arg}={value!r}"
            )
    if low >= high:
        raise ValueError(
            f"`low` must be below `high`. Received: low={low}, high={high}"
        )
    out = _run_self(model, lambda path: [path, low, high, granularity])
    size = int(out.stdout.strip().splitlines()[-1])
    if size < 0:
        raise RuntimeError(
            f"The model does not run on TFLite Micro even with an arena of "
            f"{high} bytes."
        )
    return size


def _run_self(model, arguments):
    """Runs this module as a script in a fresh process (TFLite Micro's
    allocator logs and failures stay out of this one) on the model
    written to a temporary file; `arguments(path)` gives its arguments."""
    model_bytes = read_model(model)
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(model_bytes)
        path = f.name
    try:
        return subprocess.run(
            [sys.executable, os.path.abspath(__file__)]
            + [str(v) for v in arguments(path)],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(path)


_ALLOCATION = re.compile(
    r"'(?P<kind>[^']+)' used (?P<used>\d+) bytes .*requested \d+ bytes for "
    r"(?P<count>\d+)"
)
_TOTAL = re.compile(
    r"allocation (?P<part>total|head|tail) (?P<bytes>\d+) bytes"
)


def allocations(model, arena_size):
    """The arena as TFLite Micro's recording allocator reports it (its
    `print_allocations()`) after allocating the file in `arena_size`
    bytes: `{"total", "head", "tail": bytes, "kinds": {kind: {"bytes",
    "count"}}}`. The head holds the planned tensors (activations, inputs,
    outputs), the tail the interpreter's persistent bookkeeping."""
    out = _run_self(
        model, lambda path: ["--allocations", path, int(arena_size)]
    )
    text = out.stdout + out.stderr
    result = {m["part"]: int(m["bytes"]) for m in _TOTAL.finditer(text)}
    result["kinds"] = {
        m["kind"]: {"bytes": int(m["used"]), "count": int(m["count"])}
        for m in _ALLOCATION.finditer(text)
    }
    return result


def _print_allocations(path, arena_size):
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(
        read_model(path), arena_size=int(arena_size)
    )
    interp.print_allocations()


def main(argv=None):
    argv = argv or sys.argv[1:]
    if argv[0] == "--allocations":
        _print_allocations(*argv[1:3])
        return
    path, low, high, granularity = argv[:4]
    print(bisect(read_model(path), int(low), int(high), int(granularity)))


if __name__ == "__main__":
    main()
