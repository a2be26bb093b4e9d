"""Measured vs analytic memory of the README demo model, and the per-step
latency on the TFLite Micro interpreter (host CPU).

Builds the quickstart model (`examples/quickstart.py: build`), exports it
to int8 TFLite (calibrated on the quickstart task), and prints:

- the analytic footprint (`keras_mgrade.memory`): int8 parameters, state,
  peak activations;
- the flatbuffer size, split into weight data and the rest (quantization
  parameters, graph structure): the overhead over the int8 parameters;
- the measured TFLite Micro arena (smallest that works) and its split as
  TFLite Micro records it: the head (planned tensors: state in/out and
  activations) and the tail (interpreter bookkeeping: tensor and node
  structs, per-op persistent data);
- the per-step latency of one invoke on the TFLite Micro interpreter.

    KERAS_BACKEND=tensorflow python benchmarks/export_memory.py
"""

import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_mgrade import datasets  # noqa: E402
from keras_mgrade import memory  # noqa: E402
from keras_mgrade.export import StreamingInterpreter  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import quickstart  # noqa: E402


def arena_split(path, arena):
    """(head, tail) bytes as TFLite Micro's recording allocator reports
    (in a subprocess: `print_allocations` writes to the C stderr)."""
    code = (
        "import sys\n"
        "from tflite_micro import runtime\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "n = int(sys.argv[2])\n"
        "i = runtime.Interpreter.from_bytes(data, arena_size=n)\n"
        "i.print_allocations()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, path, str(arena + 4096)],
        capture_output=True,
        text=True,
    )
    text = out.stdout + out.stderr
    head = re.search(r"allocation head (\d+) bytes", text)
    tail = re.search(r"allocation tail (\d+) bytes", text)
    if head is None or tail is None:
        return None, None
    return int(head.group(1)), int(tail.group(1))


def weight_bytes(flat):
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    return sum(0 if b.data is None else len(b.data) for b in graph.buffers)


def main():
    model = quickstart.build(seed=0)
    x, _ = datasets.multi_timescale(64, timesteps=128, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo_int8.tflite")
        report = export_tflite(
            model, path, quantize="int8", representative_data=x, verbose=False
        )
        with open(path, "rb") as f:
            flat = f.read()
        head, tail = arena_split(path, report["arena_bytes"])
    fp = memory.footprint(model, "int8")
    analytic_ram = fp.state_bytes + fp.activation_bytes
    arena = report["arena_bytes"]
    weights = weight_bytes(flat)
    interp = StreamingInterpreter(flat, "tflm", arena_size=arena + 1024)
    x_q = [interp.inputs[0].to_file(v[None]) for v in x[0]]
    for v in x_q[:50]:
        interp.step_raw(v)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for v in x_q:
            interp.step_raw(v)
        times.append((time.perf_counter() - start) / len(x_q))
    latency = float(np.median(times))

    print("demo model (examples/quickstart.py), int8, state io")
    print(fp.table())
    print()
    print(
        f"analytic: parameters {fp.parameter_bytes} B, state "
        f"{fp.state_bytes} B, peak activations {fp.activation_bytes} B "
        f"-> RAM {analytic_ram} B"
    )
    print(
        f"flatbuffer: {len(flat)} B = weight data {weights} B + "
        f"{len(flat) - weights} B quantization parameters and graph; "
        f"{len(flat) / fp.parameter_bytes:.2f} x int8 parameter bytes, "
        f"overhead over 1.3 x parameters: "
        f"{len(flat) - 1.3 * fp.parameter_bytes:.0f} B"
    )
    print(
        f"TFLite Micro arena (smallest that works): {arena} B = "
        f"{arena / analytic_ram:.2f} x analytic RAM"
    )
    print(
        f"  recorded head (planned tensors) {head} B = "
        f"{head / analytic_ram:.2f} x analytic RAM; tail (bookkeeping) "
        f"{tail} B; ops {len(report['ops'])} kinds"
    )
    print(
        f"per-step latency on the TFLite Micro interpreter (host): "
        f"{latency * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
