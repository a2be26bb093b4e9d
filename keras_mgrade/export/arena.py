"""The smallest TFLite Micro arena a file runs in, found by bisection.

Each probe allocates the interpreter and runs one invoke in a forked
child process, because TFLite Micro can crash (not just fail) when the
arena is far too small. The search itself runs in a separate Python
process that runs this file as a script (`python arena.py FILE LOW HIGH
STEP`: numpy and tflite-micro only), so that forking never copies a
process with TensorFlow's threads running.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np


def read_model(model):
    """The bytes of a `.tflite` file given as a path or as bytes."""
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    with open(model, "rb") as f:
        return f.read()


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
    model_bytes = read_model(model)
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(model_bytes)
        path = f.name
    try:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), path]
            + [str(v) for v in (low, high, granularity)],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(path)
    size = int(out.stdout.strip().splitlines()[-1])
    if size < 0:
        raise RuntimeError(
            f"The model does not run on TFLite Micro even with an arena of "
            f"{high} bytes."
        )
    return size


def main(argv=None):
    path, low, high, granularity = (argv or sys.argv[1:])[:4]
    print(bisect(read_model(path), int(low), int(high), int(granularity)))


if __name__ == "__main__":
    main()
