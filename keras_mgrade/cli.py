"""The `keras-mgrade` command line.

    keras-mgrade export MODEL.keras [--int8 | --int16x8]
                        [--calibration DATA.npy]
                        [--out DIR_OR_FILE.tflite] [--steps-per-invoke K]
                        [--state io|variables] [--target tflm|litert]
                        [--weight-rounding nearest|gptq]
                        [--no-lookup-tables] [--c DIR]
    keras-mgrade report MODEL.keras|MODEL.tflite

`export` converts under the TensorFlow backend whatever backend the model
was trained on (`--int8`: full int8; `--int16x8`: int16 activations and
states with int8 weights, for TFLite Micro; both calibrate on
`--calibration`; `--weight-rounding` chooses how the int8 weights are
rounded, see `export_tflite`; `--no-lookup-tables` keeps LOGISTIC and
the operators around it instead of int8 table lookups, for Arm's vela or
ST's code generator); with `--out DIR` it writes
`DIR/model_<precision>.tflite`, its JSON report and the C sources
(`model_data.h/.cc`, `model_ops.h`); with `--state variables` the file
is `DIR/model_<precision>_variables.tflite`
(states in resource variables, for TFLite Micro); with `--c DIR` (int8,
state `io`) it also writes the step as plain C, `DIR/mgrade.h` and
`DIR/mgrade.c`, with no interpreter (`keras_mgrade.export.export_c`).
`report` prints the memory table against MCU budgets: analytic for a
`.keras` model; for a `.tflite` file, the flatbuffer, the TFLite Micro
arena measured on this (64-bit) host with its allocation record, and the
estimated arena on a 32-bit Cortex-M, which the budget table uses
(`keras_mgrade.export.estimate`).

A mistake in the arguments or the files (a missing or unreadable file,
data of the wrong shape, a model that cannot stream) prints one line,
`keras-mgrade: error: ...`, and exits with status 2; `--debug` shows the
whole traceback instead.
"""

import argparse
import json
import os
import sys


def _backend_tensorflow():
    # Conversion needs the TensorFlow backend; set it before keras loads.
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _export(args):
    _backend_tensorflow()
    import keras
    import numpy as np

    import keras_mgrade  # noqa: F401  (registers the layers)
    from keras_mgrade.export import c_source
    from keras_mgrade.export.tflite import export_tflite
    from keras_mgrade.quantization import is_quantized

    model = _load_model(args.model, keras)
    if args.int8 and not args.calibration and not is_quantized(model):
        raise ValueError(
            "--int8 needs --calibration DATA.npy (whole input sequences, "
            "shape (n, timesteps, features)), unless the model was trained "
            "with keras_mgrade.quantization.quantize_model"
        )
    if args.int16x8 and not args.calibration:
        raise ValueError(
            "--int16x8 needs --calibration DATA.npy (whole input sequences, "
            "shape (n, timesteps, features))"
        )
    if args.c is not None and args.int16x8:
        raise ValueError(
            "--c writes the int8 step as C: the C backend runs int8 files "
            "only, not the int16 tensors of --int16x8. Use --int8 with --c, "
            "or run the 16x8 file on TFLite Micro"
        )
    if args.c is not None and (not args.int8 or args.state != "io"):
        raise ValueError(
            "--c writes the int8 step as C, from an int8 file with the "
            "state as inputs and outputs: it needs --int8 and --state io. "
            f"Received: --c {args.c!r} with "
            f"{'--int8' if args.int8 else 'no --int8'}, --state {args.state}"
        )
    data = _load_array("--calibration", args.calibration, np)
    check = _load_array("--check", args.check, np)
    quantize = "int8" if args.int8 else "int16x8" if args.int16x8 else None
    precision = quantize or "float32"
    out = args.out or "."
    if out.endswith(".tflite"):
        path, c_dir = out, None
    else:
        suffix = "_variables" if args.state == "variables" else ""
        name = f"model_{precision}{suffix}.tflite"
        path, c_dir = os.path.join(out, name), out
    report = export_tflite(
        model,
        path,
        quantize=quantize,
        state=args.state,
        representative_data=data,
        steps_per_invoke=args.steps_per_invoke,
        check_data=check,
        max_calibration_sequences=args.max_calibration_sequences,
        target=args.target,
        weight_rounding=args.weight_rounding,
        lookup_tables=False if args.no_lookup_tables else None,
    )
    if c_dir is not None:
        with open(path, "rb") as f:
            flat = f.read()
        paths = c_source.write_c_sources(
            flat,
            report["ops"],
            c_dir,
            num_variables=len(report.get("variables", [])),
        )
        print("C sources:", ", ".join(sorted(paths.values())))
    print(json.dumps({k: report[k] for k in ("ops", "arena_bytes")}))
    print(_arena_text(path, report["flatbuffer_bytes"], report["arena"]))
    if args.c is not None:
        from keras_mgrade.export import export_c

        c_report = export_c(path, args.c)
        print(
            f"C backend: {', '.join(c_report['files'][:2])} (constants "
            f"{c_report['const_bytes']} B, state {c_report['state_bytes']} "
            f"B, scratch {c_report['scratch_bytes']} B, "
            f"{c_report['macs_per_step']} MACs per step)"
        )
    return 0


def _arena_text(path, flatbuffer_bytes, found):
    """The deployed memory of a file, as the report and `report` say it."""
    record = found["host_allocations"]
    kinds = ", ".join(
        f"{kind} {v['bytes']} B ({v['count']})"
        for kind, v in record["kinds"].items()
    )
    return (
        f"{path}: flatbuffer {flatbuffer_bytes} bytes (flash); TFLite Micro "
        f"arena {found['host_bytes']} bytes measured on this 64-bit host, "
        f"{found['cortex_m_estimate_bytes']} bytes estimated for a 32-bit "
        f"Cortex-M (RAM)\nhost arena after allocation: head "
        f"{record['head']} B (activations), tail {record['tail']} B "
        f"(bookkeeping: {kinds})"
    )


def _load_model(path, keras):
    _check_file("MODEL", path)
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many kinds for a bad file
        raise ValueError(
            f"MODEL must be a .keras model file. Received: {path!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from error


def _load_array(option, path, np):
    if path is None:
        return None
    _check_file(option, path)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:  # not a .npy file
        raise ValueError(
            f"{option} must be a .npy array file. Received: {path!r} "
            f"({type(error).__name__}: {error})"
        ) from error


def _check_file(what, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{what} must be an existing file. Received: {path!r}"
        )


def _report(args):
    from keras_mgrade import memory

    if args.model.endswith(".tflite"):
        from keras_mgrade.export import estimate
        from keras_mgrade.export.arena import find_arena_size
        from keras_mgrade.export.arena import read_model

        flat = read_model(args.model, "MODEL")
        found = estimate.arena_report(flat, find_arena_size(flat))
        print(_arena_text(args.model, len(flat), found) + "\n")
        print(memory.budget_table(found["cortex_m_estimate_bytes"], len(flat)))
        return 0
    import keras

    import keras_mgrade  # noqa: F401

    model = _load_model(args.model, keras)
    fp = memory.footprint(model, args.precision)
    print(fp.table())
    print()
    print(
        f"parameters {fp.parameter_bytes} B (flash), state "
        f"{fp.state_bytes} B + peak activations {fp.activation_bytes} B "
        f"(RAM), at {fp.precision}\n"
    )
    print(memory.budget_table(fp.ram_bytes, fp.flash_bytes))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="keras-mgrade", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write a streaming .tflite file")
    exp.add_argument("model", help="a .keras model")
    precision = exp.add_mutually_exclusive_group()
    precision.add_argument(
        "--int8", action="store_true", help="full-integer int8"
    )
    precision.add_argument(
        "--int16x8",
        action="store_true",
        help="int16 activations and states, int8 weights (TFLite Micro)",
    )
    exp.add_argument("--calibration", help=".npy of input sequences")
    exp.add_argument("--check", help=".npy of sequences for the check")
    exp.add_argument("--out", help="output directory or .tflite path")
    exp.add_argument("--steps-per-invoke", type=int, default=1)
    exp.add_argument(
        "--state",
        default="io",
        choices=("io", "variables"),
        help="states as inputs/outputs (io) or resource variables",
    )
    exp.add_argument("--max-calibration-sequences", type=int, default=64)
    exp.add_argument(
        "--c",
        metavar="DIR",
        help="also write the int8 step as plain C (mgrade.h, mgrade.c) to DIR",
    )
    exp.add_argument(
        "--target",
        default="tflm",
        choices=("tflm", "litert"),
        help="shrink the file for TFLite Micro (default) or keep it for LiteRT",
    )
    exp.add_argument(
        "--weight-rounding",
        choices=("nearest", "gptq"),
        help="how post-training quantization rounds the int8 weights "
        "(default: gptq for --int16x8, nearest for --int8)",
    )
    exp.add_argument(
        "--no-lookup-tables",
        action="store_true",
        help="keep int8 LOGISTIC (and the operators around it) instead of "
        "table lookups (for vela / Ethos-U or ST's code generator)",
    )
    rep = sub.add_parser("report", help="print the memory table")
    rep.add_argument("model", help="a .keras model or a .tflite file")
    rep.add_argument("--precision", default="int8", choices=("int8", "float32"))
    args = parser.parse_args(argv)
    command = _export if args.command == "export" else _report
    if args.debug:
        return command(args)
    try:
        return command(args)
    except (ValueError, OSError, ImportError, RuntimeError) as error:
        print(f"keras-mgrade: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
