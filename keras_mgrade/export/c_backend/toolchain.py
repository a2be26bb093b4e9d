"""Build and run generated models: on the host (gcc/cc) and on emulated
Cortex-M4 (QEMU `mps2-an386`) and Cortex-M55 (QEMU `mps3-an547`) with
`arm-none-eabi-gcc`, semihosting and an instruction-counting QEMU plugin.

Used by the tests (outputs bit-identical to TFLite Micro on every core)
and by `benchmarks/c_backend.py` (instructions per step, flash, RAM,
stack). The board files (start-up, linker script, plugin, firmware
driver) are in `cortex_m/`.

Example:

>>> sorted(available())
['arm-gcc', 'host-cc', 'qemu']
"""

import importlib.resources
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

# core -> (QEMU machine, compiler flags)
CORES = {
    "cortex-m4": ("mps2-an386", ["-mcpu=cortex-m4", "-mfloat-abi=soft"]),
    "cortex-m55": ("mps3-an547", ["-mcpu=cortex-m55", "-mfloat-abi=hard"]),
}
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def available():
    """Which tools are on PATH: `{"host-cc", "arm-gcc", "qemu"}` -> bool."""
    return {
        "host-cc": bool(shutil.which("gcc") or shutil.which("cc")),
        "arm-gcc": bool(shutil.which("arm-none-eabi-gcc")),
        "qemu": bool(shutil.which("qemu-system-arm")),
    }


def board_file(name):
    """Path of a file of `cortex_m/` (start-up, linker script, ...)."""
    base = importlib.resources.files("keras_mgrade.export.c_backend")
    return str(base / "cortex_m" / name)


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"Command failed (exit {result.returncode}): {' '.join(cmd)}\n"
            + result.stdout[-2000:]
            + result.stderr[-4000:]
        )
    return result


def build_host(c_dir, name, driver, exe, opt="-O2"):
    """Compiles `<c_dir>/<name>.c` with a driver into `exe` (host cc,
    C99, all warnings as errors)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    _run(
        [cc, *WARNINGS, opt, "-I", c_dir, driver]
        + [os.path.join(c_dir, f"{name}.c"), "-o", exe]
    )
    return exe


def run_host(exe, inputs, reset_every=0, output_size=None, states=None):
    """Streams `inputs` (int8, one row per call) through a host build of
    `tests/export/c_driver/host_driver.c`; returns `(outputs, state)`.
    With `states` (int8, one row per call) the state is replaced by the
    row before each call."""
    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    calls = inputs.shape[0]
    records = inputs.reshape(calls, -1)
    mode = reset_every
    if states is not None:
        records = np.concatenate(
            [records, np.asarray(states, np.int8).reshape(calls, -1)], 1
        )
        mode = -1
    header = np.array([calls, mode], np.int32).tobytes()
    result = subprocess.run(
        [exe], input=header + records.tobytes(), capture_output=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{exe} failed with exit {result.returncode}")
    data = np.frombuffer(result.stdout, np.int8)
    size = output_size
    outputs = data[: calls * size].reshape(calls, size)
    return outputs, data[calls * size :]


def _c_array(name, values):
    flat = np.asarray(values, np.int8).reshape(-1)
    rows = [
        "  " + ", ".join(str(int(v)) for v in flat[i : i + 16]) + ","
        for i in range(0, flat.size, 16)
    ]
    return (
        f"static const int8_t {name}[{flat.size}] = {{\n"
        + "\n".join(rows)
        + "\n};\n"
    )


def write_inputs(path, inputs, reset_every=0, states=None):
    """Writes `mg_inputs.h`: the calls' inputs (and, optionally, a state
    per call that replaces the state before the call) as const arrays."""
    text = (
        f"#define MG_CALLS {len(inputs)}\n"
        f"#define MG_RESET_EVERY {int(reset_every)}\n"
        + _c_array("mg_inputs", inputs)
    )
    if states is not None:
        text += "#define MG_STATES 1\n" + _c_array("mg_states", states)
    with open(path, "w") as f:
        f.write(text)


def compile_model(c_dir, name, core, obj, opt="-O2"):
    """Compiles `<name>.c` for `core` into the object `obj`."""
    flags = CORES[core][1]
    _run(
        ["arm-none-eabi-gcc", *WARNINGS, opt, "-mthumb", *flags]
        + ["-ffunction-sections", "-fdata-sections", "-c"]
        + [os.path.join(c_dir, f"{name}.c"), "-o", obj]
    )
    return obj


def build_firmware(c_dir, name, core, out_dir, inputs, reset_every=0,
                   opt="-O2", states=None):  # fmt: skip
    """Links the model, the driver `cortex_m/cm_driver.c` and the board
    files into `<out_dir>/<name>_<core>.elf`; returns `(elf, model_obj)`.
    `states`: optional state per call (see `write_inputs`)."""
    os.makedirs(out_dir, exist_ok=True)
    write_inputs(
        os.path.join(out_dir, "mg_inputs.h"), inputs, reset_every, states
    )
    tag = f"{name}_{core}"
    obj = os.path.join(out_dir, f"{tag}.o")
    compile_model(c_dir, name, core, obj, opt)
    elf = os.path.join(out_dir, f"{tag}.elf")
    _run(
        ["arm-none-eabi-gcc", "-std=c99", "-O2", "-mthumb", *CORES[core][1]]
        + ["-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections"]
        + ["--specs=rdimon.specs", "-nostartfiles"]
        + ["-T", board_file("cortex_m.ld"), "-I", c_dir, "-I", out_dir]
        + [f"-DMG_NAME={name}", f"-DMG_NAME_UPPER={name.upper()}"]
        + ["-include", os.path.join(c_dir, f"{name}.h")]
        + [board_file("startup.c"), board_file("cm_driver.c"), obj]
        + ["-Wl,-Map=" + os.path.join(out_dir, f"{tag}.map"), "-o", elf]
    )
    return elf, obj


def build_plugin(out_dir):
    """Compiles the instruction-counting QEMU plugin; returns its path."""
    so = os.path.join(out_dir, "libinsn_count.so")
    cc = shutil.which("gcc") or shutil.which("cc")
    _run([cc, "-shared", "-fPIC", "-O2", board_file("insn_count.c"), "-o", so])
    return so


def _symbol_address(elf, symbol):
    out = _run(["arm-none-eabi-nm", elf]).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16)
    raise RuntimeError(f"Symbol {symbol} not found in {elf}")


def run_firmware(elf, core, output_size, plugin=None, timeout=600):
    """Runs a firmware on QEMU; returns a dict with `outputs` (int8 rows),
    `state` (bytes), `stack` (bytes used by the step calls) and, with a
    plugin, `instructions` (executed by all calls of the silent phase)."""
    machine = CORES[core][0]
    cmd = ["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none"]
    cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", elf]
    if plugin:
        mark = _symbol_address(elf, "prof_mark")
        cmd += ["-plugin", f"{plugin},mark={mark:#x}", "-d", "plugin"]
    # stdout to a file, not a pipe: QEMU writes the guest's semihosting
    # output without blocking and drops what a full pipe does not take
    # (a reader slowed down on a busy machine lost rows).
    with tempfile.TemporaryFile("w+") as out:
        result = subprocess.run(
            cmd, stdout=out, stderr=subprocess.PIPE, text=True,
            timeout=timeout,
        )  # fmt: skip
        out.seek(0)
        stdout = out.read()
    if result.returncode != 0:
        raise RuntimeError(
            f"Command failed (exit {result.returncode}): {' '.join(cmd)}\n"
            + stdout[-2000:]
            + result.stderr[-4000:]
        )
    rows, state, stack = [], None, None
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "y":
            rows.append(np.frombuffer(bytes.fromhex(value), np.int8))
        elif key == "state":
            state = np.frombuffer(bytes.fromhex(value), np.int8)
        elif key == "stack":
            stack = int(value)
    report = {"outputs": np.stack(rows), "state": state, "stack": stack}
    marks = re.findall(r"mark \d+: \+(\d+) insns", result.stderr)
    if plugin and len(marks) >= 2:
        report["instructions"] = int(marks[1])
    return report


def section_sizes(path):
    """Bytes of `.text`, `.rodata`, `.data`, `.bss` in an object or ELF
    (sub-sections summed)."""
    out = _run(["arm-none-eabi-size", "-A", path]).stdout
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        for key in sizes:
            if parts[0] == f".{key}" or parts[0].startswith(f".{key}."):
                sizes[key] += int(parts[1])
    return sizes


def undefined_symbols(obj):
    """Library functions an object calls (e.g. memcpy, __aeabi_*)."""
    out = _run(["arm-none-eabi-nm", "-u", obj]).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line)
