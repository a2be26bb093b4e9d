"""`export_c`: an int8 streaming model as `<name>.h` + `<name>.c`."""

import json
import os
import re

from keras_mgrade.export.c_backend.generator import generate

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _read_source(source, out_dir, name, export_kwargs):
    """`(bytes, path, exporter report)` of a file, bytes or a model."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), None, {}
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        with open(path, "rb") as f:
            data = f.read()
        info = {}
        report = os.path.splitext(path)[0] + ".json"
        if os.path.exists(report):
            with open(report) as f:
                info = json.load(f)
        return data, path, info
    if not hasattr(source, "layers"):
        raise ValueError(
            "`source` must be a .tflite path, its bytes, or a Keras model. "
            f"Received: source of type {type(source).__name__}"
        )
    from keras_mgrade.export.tflite import export_tflite

    kwargs = dict(export_kwargs)
    quantize = kwargs.pop("quantize", "int8")
    if quantize != "int8" or kwargs.get("state", "io") != "io":
        raise ValueError(
            "The C backend runs int8 files with the state as inputs and "
            "outputs. Expected quantize='int8', state='io'. Received: "
            f"quantize={quantize!r}, state={kwargs.get('state', 'io')!r}"
        )
    kwargs.setdefault("verbose", False)
    path = os.path.join(out_dir, f"{name}.tflite")
    info = export_tflite(source, path, quantize="int8", **kwargs)
    with open(path, "rb") as f:
        return f.read(), path, info


def export_c(source, out_dir, name="mgrade", **export_kwargs):
    """Writes an int8 streaming model as C99 source: `<name>.h`, `<name>.c`.

    The code is generated from the `.tflite` file itself, so it has exactly
    the quantization of the TFLite deployment, and every output of every
    step is bit-identical to TFLite Micro on the same file. It needs no
    interpreter, no dynamic memory and no floating point at run time:
    weights and per-channel multipliers are `const` arrays, unary
    operators are 256-entry tables, and the activations share one static
    scratch buffer planned at generation time. The API (for
    `name="mgrade"`):

        MGRADE_INPUT_SIZE, MGRADE_OUTPUT_SIZE, MGRADE_STEPS_PER_CALL,
        MGRADE_{INPUT,OUTPUT}_{SCALE,ZERO_POINT}, MGRADE_STATE_BYTES,
        MGRADE_SCRATCH_BYTES
        typedef struct {...} mgrade_state;
        void mgrade_reset(mgrade_state *state);
        void mgrade_step(mgrade_state *state, const int8_t *x, int8_t *y);

    A file with `steps_per_invoke = k` gives a `k`-step `mgrade_step`.
    For a classifier with mean pooling the file's output is the per-step
    logits (`report["host_pooling"] == "mean"`): the firmware keeps their
    running sum.

    Args:
        source: an int8 `.tflite` path (state `"io"`) written by
            `export_tflite` (its `.json` report beside it is read if
            present), the file's bytes, or a Keras model, which is first
            exported with `export_tflite(model, <out_dir>/<name>.tflite,
            quantize="int8", **export_kwargs)`.
        out_dir: folder for the files (created if needed).
        name: C identifier prefixing the API. Defaults to `"mgrade"`.
        **export_kwargs: passed to `export_tflite` when `source` is a
            model (`representative_data`, `steps_per_invoke`, ...).

    Returns:
        dict, the report (also written as `<out_dir>/<name>_c.json`):
        `files`, `ops`, `const_bytes` (flash estimate of the constants),
        `scratch_bytes`, `state_bytes`, `macs_per_step`, `inputs`,
        `outputs`, `states`, `steps_per_invoke`, `host_pooling`, ...

    Raises:
        UnsupportedOperatorError: the file has an operator (or an
            operator configuration) the backend has no kernel for; the
            message names it.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from keras_mgrade.models import mgrade_seq2seq
    >>> model = mgrade_seq2seq(1, 1, units=8, num_layers=1, max_delay=4,
    ...                        kernel_taps=2, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(4, 32, 1))
    >>> out = tempfile.mkdtemp()
    >>> report = export_c(model, out, representative_data=x)
    >>> sorted(os.path.basename(f) for f in report["files"])
    ['mgrade.c', 'mgrade.h', 'mgrade_c.json']
    >>> report["state_bytes"]  # FIFO 3 x 8 + hidden state 8
    32
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            "`name` must be a C identifier. Expected letters, digits and "
            f"underscores, not starting with a digit. Received: name={name!r}"
        )
    if export_kwargs and isinstance(source, str | os.PathLike | bytes):
        raise ValueError(
            "Export options apply only when `source` is a model. Received: "
            f"{sorted(export_kwargs)} with a file"
        )
    os.makedirs(out_dir, exist_ok=True)
    data, path, info = _read_source(source, out_dir, name, export_kwargs)
    label = os.path.basename(path) if path else "<bytes>"
    result = generate(data, name, label, info)
    files = {
        "header": os.path.join(out_dir, f"{name}.h"),
        "source": os.path.join(out_dir, f"{name}.c"),
    }
    for key, filename in files.items():
        with open(filename, "w") as f:
            f.write(result[key])
    report_path = os.path.join(out_dir, f"{name}_c.json")
    report = dict(result["report"])
    report["tflite"] = os.path.abspath(path) if path else None
    report["files"] = [
        os.path.abspath(p) for p in (*files.values(), report_path)
    ]
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2)
    return report
