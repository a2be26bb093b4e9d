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
  structs, per-op persistent data); the 32-bit Cortex-M estimate
  (`keras_mgrade.export.estimate`) beside it;
- the per-step latency of one invoke on the TFLite Micro interpreter;
- the same model exported with `state="variables"`: flatbuffer and arena;
- the flash taken by the generated `model_data.cc` on Cortex-M: compiled
  with `arm-none-eabi-g++ -mcpu=<cpu> -mthumb -Os -c` for Cortex-M4, M7
  and M55, section sizes from `arm-none-eabi-size` (skipped with a
  message when the compiler is not installed: `apt-get install
  gcc-arm-none-eabi`).

    KERAS_BACKEND=tensorflow python benchmarks/export_memory.py
"""

import os
import re
import shutil
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
from keras_mgrade.export import c_source  # noqa: E402
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


CORTEX_M = ("cortex-m4", "cortex-m7", "cortex-m55")


def cortex_m_flash(flat, ops):
    """`{cpu: {section: bytes, "g_model_data": bytes}}` of the generated
    `model_data.cc` compiled for each Cortex-M core, or None when
    `arm-none-eabi-g++` is missing."""
    compiler = shutil.which("arm-none-eabi-g++")
    if compiler is None:
        return None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = c_source.write_c_sources(flat, ops, tmp)
        for cpu in CORTEX_M:
            obj = os.path.join(tmp, f"model_data_{cpu}.o")
            build = subprocess.run(
                [compiler, f"-mcpu={cpu}", "-mthumb", "-Os", "-c"]
                + [paths["source"], "-I", tmp, "-o", obj],
                capture_output=True,
                text=True,
            )
            if build.returncode != 0:
                results[cpu] = None  # this toolchain lacks the core
                continue
            sizes = subprocess.run(
                ["arm-none-eabi-size", "-A", obj],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = {
                p[0]: int(p[1])
                for p in (ln.split() for ln in sizes.splitlines())
                if len(p) >= 2 and p[0] in (".text", ".rodata", ".data")
            }
            symbols = subprocess.run(
                ["arm-none-eabi-nm", "-S", obj],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for line in symbols.splitlines():
                if line.endswith(" g_model_data"):
                    row["g_model_data"] = int(line.split()[1], 16)
            results[cpu] = row
    return results


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
        var_report = export_tflite(
            model,
            os.path.join(tmp, "demo_int8_variables.tflite"),
            quantize="int8",
            state="variables",
            representative_data=x,
            verbose=False,
        )
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
        f"{arena / analytic_ram:.2f} x analytic RAM (64-bit host); 32-bit "
        f"Cortex-M estimate {report['arena']['cortex_m_estimate_bytes']} B"
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
    print(
        f"state variables: flatbuffer {var_report['flatbuffer_bytes']} B "
        f"({var_report['flatbuffer_bytes'] - len(flat):+d} B), arena "
        f"{var_report['arena_bytes']} B "
        f"({var_report['arena_bytes'] - arena:+d} B), max |file - keras| "
        f"{var_report['max_abs_deviation']:.3g} (io: "
        f"{report['max_abs_deviation']:.3g})"
    )
    flash = cortex_m_flash(flat, report["ops"])
    if flash is None:
        print(
            "Cortex-M flash: skipped, arm-none-eabi-g++ not found "
            "(apt-get install gcc-arm-none-eabi)"
        )
        return
    version = subprocess.run(
        ["arm-none-eabi-g++", "--version"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    print(f"Cortex-M flash of model_data.o ({version}, -mthumb -Os):")
    for cpu, row in flash.items():
        if row is None:
            print(f"  {cpu}: not supported by this compiler")
            continue
        padding = row[".rodata"] - len(flat) - 4
        print(
            f"  {cpu}: .rodata {row['.rodata']} B = flatbuffer {len(flat)}"
            f" B + g_model_data_len 4 B + alignment padding {padding} B; "
            f"g_model_data symbol {row.get('g_model_data')} B; .text "
            f"{row.get('.text', 0)} B, .data {row.get('.data', 0)} B"
        )


if __name__ == "__main__":
    main()
