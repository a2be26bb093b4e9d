"""The interpreter-free C backend against TFLite Micro: memory, flash,
instructions per step on emulated Cortex-M4 and Cortex-M55, host time.

Models: the quickstart classifier (trained as `examples/quickstart.py
--fast`) and, with `--paper`, the `benchmarks/paper_tables.py` seq2seq
models (`mgrade_seq2seq(1, 2, units=H, num_layers=2, kernel_taps=4,
max_delay=16, mlp_ratio=2)`, H = 16 and 25, calibrated on Lorenz data).
For each model:

- `export_tflite(..., quantize="int8")`, then `export_c` on the file;
- bit-exactness: every output of 1,024 steps of the host build equals the
  TFLite Micro Python runtime, and the Cortex-M4 / Cortex-M55 firmware
  (QEMU mps2-an386 / mps3-an547) equals the host;
- flash: `.text + .rodata + .data` of the compiled model object (all
  kernel code included; it calls no library function);
- RAM: the state struct + the static scratch (`.bss`) + the stack
  high-water of the step calls (painted stack, measured in the firmware);
- instructions per step: a QEMU plugin counts executed instructions
  between two markers around 256 calls; per MAC with the file's
  multiply-accumulates (FULLY_CONNECTED and DEPTHWISE_CONV_2D);
- host time per step of the C (gcc -O2, 200,000 calls) beside TFLite
  Micro's `invoke` (Python runtime, 2,000 invokes);
- TFLite Micro's flatbuffer and smallest arena for the same file
  (`find_arena_size`, 64-bit host), and the figures measured with TFLite
  Micro built for Cortex-M (`/work/shared/research/deployment.md` §8).

Writes `benchmarks/c_backend_RESULTS.md` (and prints it).

    KERAS_BACKEND=tensorflow python benchmarks/c_backend.py [--paper]
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade import callbacks  # noqa: E402
from keras_mgrade import datasets  # noqa: E402
from keras_mgrade import memory  # noqa: E402
from keras_mgrade.export import StreamingInterpreter  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402
from keras_mgrade.export import find_arena_size  # noqa: E402
from keras_mgrade.export.c_backend import export_c  # noqa: E402
from keras_mgrade.export.c_backend import toolchain  # noqa: E402
from keras_mgrade.models import mgrade_classifier  # noqa: E402
from keras_mgrade.models import mgrade_seq2seq  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "..", "tests", "export", "c_driver")
CORES = ("cortex-m4", "cortex-m55")
CHECK_STEPS = 1024
COUNT_CALLS = 256
# TFLite Micro built from source on Cortex-M, the quickstart int8 file
# (13,504 MACs per step), measured with `benchmarks/tflm_source/measure.sh
# FILE --configs "m4 m4nn m55 m55nn"` (benchmarks/RESULTS.md): instructions
# per step, the harness firmware's .text + .rodata on Cortex-M4 (kernels,
# framework, libc and the flatbuffer), the smallest working arena.
TFLM_QUOTED = {
    "M4 reference kernels": ("cortex-m4", 330473),
    "M4 CMSIS-NN kernels": ("cortex-m4", 196260),
    "M55 reference kernels": ("cortex-m55", 321578),
    "M55 CMSIS-NN kernels": ("cortex-m55", 135863),
}
TFLM_FLASH_KB = 147.4
TFLM_ARENA_32BIT = 17468
TFLM_QUOTED_MACS = 13504  # the quickstart file those figures were measured on

TIMING_DRIVER = r"""
#include <stdio.h>
#include <time.h>
#include "mgrade.h"
int main(int argc, char **argv) {
  static mgrade_state state;
  int8_t x[MGRADE_INPUT_SIZE], y[MGRADE_OUTPUT_SIZE];
  long calls = argc > 1 ? atol(argv[1]) : 100000, i;
  unsigned sum = 0;
  struct timespec t0, t1;
  for (i = 0; i < MGRADE_INPUT_SIZE; ++i) x[i] = (int8_t)(i * 37);
  mgrade_reset(&state);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (i = 0; i < calls; ++i) {
    x[i % MGRADE_INPUT_SIZE] ^= (int8_t)(y[0] + i);
    mgrade_step(&state, x, y);
    sum += (unsigned char)y[0];
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%.1f %u\n", ((t1.tv_sec - t0.tv_sec) * 1e9 +
                       (t1.tv_nsec - t0.tv_nsec)) / calls, sum);
  return 0;
}
"""


def quickstart_model(seed=0):
    """The quickstart classifier, trained as `quickstart.py --fast`."""
    keras.utils.set_random_seed(seed)
    x, y = datasets.multi_timescale(1400, timesteps=96, seed=seed)
    model = mgrade_classifier(
        input_features=2, num_classes=4, units=32, num_layers=2,
        kernel_taps=4, max_delay=16, sigma=2.0, mlp_ratio=2, seed=seed,
    )  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        x[:1200],
        y[:1200],
        batch_size=32,
        epochs=6,
        callbacks=[callbacks.SigmaAnnealing(end=0.5, fraction=0.5)],
        verbose=0,
    )
    return model, x[:64]


def paper_model(units, seed=0):
    """The paper_tables seq2seq model at width `units` (untrained,
    calibrated on partially observed Lorenz sequences)."""
    model = mgrade_seq2seq(
        1, 2, units=units, num_layers=2, kernel_taps=4, max_delay=16,
        mlp_ratio=2, seed=seed,
    )  # fmt: skip
    x, _ = datasets.lorenz(
        64, 256, seed=1, dt=0.04, noise=0.1, observed=0, task="reconstruct"
    )
    return model, x


def _inputs(shape, calls, seed=0):
    rng = np.random.default_rng(seed)
    x = np.clip(np.round(rng.normal(0, 40, size=(calls, *shape))), -128, 127)
    return x.astype(np.int8)


def micro_reference(path, inputs):
    """TFLite Micro outputs and mean invoke time (microseconds)."""
    interp = StreamingInterpreter(path, "tflm")
    rows, start = [], time.perf_counter()
    for x in inputs:
        rows.append(np.asarray(interp.step_raw(x)[0]).reshape(-1))
    seconds = time.perf_counter() - start
    return np.stack(rows), 1e6 * seconds / len(inputs)


def host_time(c_dir, work, calls=200000):
    """Nanoseconds per call of the C step (gcc -O2, host)."""
    source = os.path.join(work, "timing.c")
    with open(source, "w") as f:
        f.write("#include <stdlib.h>\n" + TIMING_DRIVER)
    exe = os.path.join(work, "timing")
    subprocess.run(
        ["gcc", "-O2", "-I", c_dir, source, os.path.join(c_dir, "mgrade.c")]
        + ["-o", exe],
        check=True,
    )
    out = subprocess.run([exe, str(calls)], capture_output=True, text=True)
    return float(out.stdout.split()[0])


def profile(c_dir, core, work, opt):
    """Instructions per kernel kind in one step (markers after each call)."""
    prof = os.path.join(work, f"prof_{core}")
    os.makedirs(prof, exist_ok=True)
    source = open(os.path.join(c_dir, "mgrade.c")).read()
    head, body = source.split("void mgrade_step(", 1)
    kinds, lines = [], []
    for line in body.split("\n"):
        lines.append(line)
        m = re.match(r"\s+(mg_\w+)\(", line)
        if m:
            lines.append("  prof_mark();")
            kinds.append(m.group(1))
    head = head.replace(
        '#include "mgrade.h"', '#include "mgrade.h"\nvoid prof_mark(void);'
    )
    with open(os.path.join(prof, "mgrade.c"), "w") as f:
        f.write(head + "void mgrade_step(" + "\n".join(lines))
    with open(os.path.join(prof, "mgrade.h"), "w") as f:
        f.write(open(os.path.join(c_dir, "mgrade.h")).read())
    report = json.load(open(os.path.join(c_dir, "mgrade_c.json")))
    shape = tuple(report["inputs"][0]["shape"])
    elf, _ = toolchain.build_firmware(
        prof, "mgrade", core, prof, _inputs(shape, 3), opt=opt
    )
    plugin = toolchain.build_plugin(prof)
    mark = toolchain._symbol_address(elf, "prof_mark")
    machine = toolchain.CORES[core][0]
    result = subprocess.run(
        ["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none"]
        + ["-semihosting-config", "enable=on,target=native", "-kernel", elf]
        + ["-plugin", f"{plugin},mark={mark:#x}", "-d", "plugin"],
        capture_output=True,
        text=True,
    )
    deltas = [int(v) for v in re.findall(r"\+(\d+) insns", result.stderr)]
    n = len(kinds)
    third = deltas[1 + 2 * n : 1 + 3 * n]  # the third call, warm
    totals = {}
    for kind, value in zip(kinds, third):
        totals[kind] = totals.get(kind, 0) + value
    return totals


def measure_core(c_dir, report, core, work, opt, host_outputs, inputs):
    out = os.path.join(work, f"{core}{opt}")
    size = host_outputs.shape[1]
    elf, obj = toolchain.build_firmware(
        c_dir, "mgrade", core, out, inputs[:COUNT_CALLS], opt=opt
    )
    plugin = toolchain.build_plugin(out)
    run = toolchain.run_firmware(elf, core, size, plugin)
    sizes = toolchain.section_sizes(obj)
    return {
        "core": core,
        "opt": opt,
        "same_as_host": bool(
            np.array_equal(run["outputs"], host_outputs[:COUNT_CALLS])
        ),
        "instructions": run["instructions"] / COUNT_CALLS,
        "stack": run["stack"],
        "flash": sizes["text"] + sizes["rodata"] + sizes["data"],
        "text": sizes["text"],
        "rodata": sizes["rodata"],
        "bss": sizes["bss"] + sizes["data"],
        "library_calls": toolchain.undefined_symbols(obj),
    }


def measure(name, model, data, work, log):
    """Everything for one model."""
    path = os.path.join(work, f"{name}.tflite")
    info = export_tflite(
        model, path, quantize="int8", representative_data=data, verbose=False
    )
    c_dir = os.path.join(work, name)
    report = export_c(path, c_dir)
    log(f"{name}: generated, {report['kernel_calls']} kernel calls")
    shape = tuple(report["inputs"][0]["shape"])
    inputs = _inputs(shape, CHECK_STEPS)
    expected, tflm_us = micro_reference(path, inputs)
    exe = toolchain.build_host(
        c_dir, "mgrade", os.path.join(DRIVER, "host_driver.c"),
        os.path.join(c_dir, "host"),
    )  # fmt: skip
    host, _ = toolchain.run_host(exe, inputs, 0, expected.shape[1])
    fp = memory.footprint(model, "int8")
    row = {
        "name": name,
        "report": report,
        "bit_exact_host": bool(np.array_equal(host, expected)),
        "tflm_us": tflm_us,
        "host_ns": host_time(c_dir, c_dir),
        "flatbuffer": info["flatbuffer_bytes"],
        "arena": find_arena_size(path),
        "parameter_bytes": fp.parameter_bytes,
        "state_activation_bytes": fp.state_bytes + fp.activation_bytes,
        "analytic_state": fp.state_bytes,
        "cores": [],
        "profile": {},
    }
    log(f"{name}: host bit-exact {row['bit_exact_host']}")
    if toolchain.available()["arm-gcc"] and toolchain.available()["qemu"]:
        for core in CORES:
            for opt in ("-O2", "-Os"):
                row["cores"].append(
                    measure_core(c_dir, report, core, work, opt, host, inputs)
                )
                log(f"{name}: {core} {opt} {row['cores'][-1]}")
            row["profile"][core] = profile(c_dir, core, work, "-O2")
    return row


def _versions():
    import tensorflow as tf

    def tool(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True)
            return out.stdout.splitlines()[0]
        except (OSError, IndexError):
            return "not installed"

    return (
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, NumPy {np.__version__}, tflite-micro "
        "(PyPI); "
        + tool(["arm-none-eabi-gcc", "--version"])
        + "; "
        + tool(["qemu-system-arm", "--version"])
        + "; "
        + tool(["gcc", "--version"])
    )


def _targets(row, core_row, core):
    macs = row["report"]["macs_per_step"]
    ram = row["report"]["state_bytes"] + core_row["bss"] + core_row["stack"]
    per_mac = core_row["instructions"] / row["report"]["macs_per_call"]
    budget_flash = 1.2 * row["parameter_bytes"] + 6144
    budget_ram = 1.1 * row["state_activation_bytes"]
    limit = 3.0 if core == "cortex-m4" else 1.5
    return macs, ram, per_mac, budget_flash, budget_ram, limit


def results_markdown(rows, seconds):
    lines = [
        "# C backend results (`benchmarks/c_backend.py`)",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared). "
        + _versions()
        + ".",
        "",
        "`KERAS_BACKEND=tensorflow python benchmarks/c_backend.py "
        + ("--paper" if len(rows) > 1 else "")
        + f"` ({seconds:.0f} s). Instruction counts are executed "
        "instructions under QEMU (a TCG plugin), not cycles.",
        "",
    ]
    lines += NOTES + [""]
    for row in rows:
        lines += model_section(row)
    return "\n".join(lines)


NOTES = [
    "How the numbers are counted:",
    "",
    "- flash: `.text + .rodata + .data` of the model object (`mgrade.c`"
    " compiled alone): weights, folded biases, packed per-channel"
    " requantization, tables, parameter structs and every kernel; it calls"
    " no library function (checked with `arm-none-eabi-nm -u`).",
    "- RAM: the `mgrade_state` struct (the caller's) + the static scratch"
    " (`.bss` of the model object) + the stack high-water of the step calls"
    " (painted stack, deepest word touched during 256 calls). The int8"
    " classifier file leaves the mean pooling to the firmware: its running"
    " sum (4 × int32 = 16 B for the quickstart) is not in these numbers;"
    " the analytic footprint counts the pooling's two states (5 B).",
    "- instructions: QEMU TCG plugin, executed instructions between two"
    " markers around 256 calls (the driver's loop, ~10 instructions per"
    " call, included), divided by the calls; per MAC with the file's"
    " FULLY_CONNECTED and DEPTHWISE_CONV_2D multiply-accumulates.",
    "- -O2 and -Os are the model object's optimisation flags"
    " (`arm-none-eabi-gcc -mthumb -mcpu=cortex-m4 -mfloat-abi=soft` or"
    " `-mcpu=cortex-m55 -mfloat-abi=hard`).",
]


def model_section(row):
    r = row["report"]
    lines = [
        f"## {row['name']}",
        "",
        f"{r['macs_per_step']} MACs per step; {len(r['ops'])} operator "
        f"kinds in the file, {r['kernel_calls']} kernel calls per "
        f"`mgrade_step` ({r['tables']} table lookups). Bit-identical to "
        f"TFLite Micro on {CHECK_STEPS} host steps: "
        f"{'yes' if row['bit_exact_host'] else 'NO'}.",
        "",
        "| build | flash (text+rodata) | RAM: state + scratch + stack | "
        "instructions/step | per MAC | same outputs as host |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in row["cores"]:
        _, ram, per_mac, *_ = _targets(row, c, c["core"])
        lines.append(
            f"| {c['core']} {c['opt']} | {c['flash']:,} B ({c['text']:,} + "
            f"{c['rodata']:,}) | {ram:,} B ({r['state_bytes']} + {c['bss']} "
            f"+ {c['stack']}) | {c['instructions']:,.0f} | {per_mac:.2f} | "
            f"{'yes' if c['same_as_host'] else 'NO'} |"
        )
    lines += [""] + targets_section(row) + [""] + tflm_section(row)
    lines += [""] + profile_section(row) + [""]
    return lines


def targets_section(row):
    lines = [
        "| build | instructions/MAC (≤ 3.0 M4, ≤ 1.5 M55) | flash ≤ 1.2 × "
        f"{row['parameter_bytes']:,} + 6,144 = "
        f"{1.2 * row['parameter_bytes'] + 6144:,.0f} B | RAM ≤ 1.1 × "
        f"{row['state_activation_bytes']:,} = "
        f"{1.1 * row['state_activation_bytes']:,.0f} B |",
        "|---|---:|---:|---:|",
    ]

    def mark(ok):
        return "met" if ok else "**not met**"

    for c in row["cores"]:
        _, ram, per_mac, flash_budget, ram_budget, limit = _targets(
            row, c, c["core"]
        )
        lines.append(
            f"| {c['core']} {c['opt']} | {per_mac:.2f} "
            f"({mark(per_mac <= limit)}) | {c['flash']:,} B "
            f"({mark(c['flash'] <= flash_budget)}) | {ram:,} B "
            f"({mark(ram <= ram_budget)}) |"
        )
    return lines


def tflm_section(row):
    r = row["report"]
    lines = [
        "| | this C | TFLite Micro |",
        "|---|---:|---:|",
        f"| model bytes | {r['const_bytes']:,} B of constants | "
        f"{row['flatbuffer']:,} B flatbuffer |",
        f"| working RAM | {r['state_bytes'] + r['scratch_bytes']:,} B "
        f"(state + scratch, plus stack) | {row['arena']:,} B smallest arena "
        "(64-bit host) |",
        f"| host time per step | {row['host_ns'] / 1000:.2f} µs (gcc -O2) | "
        f"{row['tflm_us']:.1f} µs (Python runtime `invoke`) |",
    ]
    if row["name"] == "quickstart":
        # Measured with TFLite Micro built for Cortex-M on a quickstart file
        # of TFLM_QUOTED_MACS MACs per step: when this file is leaner the
        # ratios favour this C by that much more than the graphs differ.
        note = (
            ""
            if r["macs_per_step"] == TFLM_QUOTED_MACS
            else f" (file of {TFLM_QUOTED_MACS:,} MACs/step)"
        )
        lines += [
            f"| flash with kernels | see above | ~{TFLM_FLASH_KB} KB{note} |",
            f"| arena on Cortex-M (32-bit) | | {TFLM_ARENA_32BIT:,} B{note} |",
        ]
        for label, (core, count) in TFLM_QUOTED.items():
            mine = [
                c["instructions"]
                for c in row["cores"]
                if c["core"] == core and c["opt"] == "-O2"
            ]
            ratio = f" ({count / mine[0]:.1f}× this C)" if mine else ""
            lines.append(
                f"| TFLite Micro {label}, instructions/step{note} | | "
                f"{count:,}{ratio} |"
            )
    return lines


def profile_section(row):
    if not row["profile"]:
        return []
    kinds = sorted(
        {k for p in row["profile"].values() for k in p},
        key=lambda k: -row["profile"]["cortex-m4"].get(k, 0),
    )
    lines = [
        "Instructions per step by kernel (-O2, one warm step, marker "
        "overhead included):",
        "",
        "| kernel | " + " | ".join(row["profile"]) + " |",
        "|---|" + "---:|" * len(row["profile"]),
    ]
    for k in kinds:
        cells = [f"{p.get(k, 0):,}" for p in row["profile"].values()]
        lines.append(f"| `{k}` | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paper", action="store_true")
    parser.add_argument(
        "--out", default=os.path.join(HERE, "c_backend_RESULTS.md")
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as work:
        model, data = quickstart_model()
        rows.append(measure("quickstart", model, data, work, log))
        if args.paper:
            for units in (16, 25):
                model, data = paper_model(units)
                rows.append(measure(f"paper-H{units}", model, data, work, log))
    text = results_markdown(rows, time.perf_counter() - start)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
