"""Train a small mGRADE classifier, export it to int8 TFLite, run it on
TFLite Micro sample by sample, and print what it costs.

The task (`keras_mgrade.datasets.multi_timescale`) needs a long memory (a
pulse early in the sequence) and a fast one (the frequency of a burst at
the end): 4 classes. Steps:

1. train `mgrade_classifier` (2 MGRADE blocks, 32 units, 4 learnable
   delays in a 16-sample window) with sigma annealing;
2. export the single-step model to full-integer int8 TFLite (state as
   inputs/outputs, identical state quantization in and out);
3. stream the test set through the TFLite Micro interpreter, one sample per
   invoke, feeding the state back;
4. print float Keras vs TFLite Micro accuracy and the deployed memory —
   flash = the flatbuffer, RAM = the TFLite Micro arena measured on this
   64-bit host and estimated for a 32-bit Cortex-M — of the float32 and
   the int8 file, against MCU budgets; with the Keras GRU and LSTM of the
   same int8 budget beside them when `benchmarks/deploy_compare.py` has
   written its results (`--baselines`). `out/` gets `model.keras`,
   `model_int8.tflite` and `model_float32.tflite` (+ `.json` reports), the
   C arrays of the file for TFLite Micro firmware, the same int8 step as
   plain C without an interpreter (`c/mgrade.h`, `c/mgrade.c`;
   `keras_mgrade.export.export_c`), `report.md`, `results.json` and
   plots (learned delays; accuracy vs deployed memory).

Expected (this machine, 2 CPU cores): about 97-100 % test accuracy for
float Keras and both files on TFLite Micro (within a point or two); the
int8 file is about 29 KB of flatbuffer and 23 KB of host arena (about
18 KB on a Cortex-M), a third of the float32 file's. `--fast` (fewer and
shorter sequences) runs in about a minute.

    KERAS_BACKEND=tensorflow python examples/quickstart.py [--fast]
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _import_quietly():
    """Imports TensorFlow and the TFLite Micro runtime with their C++
    start-up messages (absl, oneDNN, CUDA probing) sent to /dev/null; the
    Python warnings and errors stay."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow  # noqa: F401
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:  # reported where the library needs them
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


_import_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade import callbacks  # noqa: E402
from keras_mgrade import datasets  # noqa: E402
from keras_mgrade import memory  # noqa: E402
from keras_mgrade.export import StreamingInterpreter  # noqa: E402
from keras_mgrade.export import c_source  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402
from keras_mgrade.models import mgrade_classifier  # noqa: E402

CONFIGS = {
    # name: (train sequences, test sequences, timesteps, epochs)
    "fast": (1200, 200, 96, 6),
    "full": (3000, 500, 128, 10),
}


def build(seed):
    return mgrade_classifier(
        input_features=2,
        num_classes=4,
        units=32,
        num_layers=2,
        kernel_taps=4,
        max_delay=16,
        sigma=2.0,
        mlp_ratio=2,
        seed=seed,
    )


def stream_on_micro(path, x, report):
    """Classifies each sequence on TFLite Micro, one sample per invoke."""
    interp = StreamingInterpreter(path, "tflm")
    progress = keras.utils.Progbar(len(x), unit_name="sequence")
    predictions = []
    for i, sequence in enumerate(x):
        interp.reset()
        outputs = [interp.step(x_t[None])[0] for x_t in sequence]
        # Mean pooling on the host: the class is the argmax of the mean
        # of the per-step logits; otherwise the file's last output is it.
        pooled = np.mean(outputs, 0) if report["host_pooling"] else outputs[-1]
        predictions.append(int(np.argmax(pooled)))
        progress.update(i + 1)
    return np.array(predictions)


def plots(model, out, rows):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots")
        return []
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, i in zip(axes, range(2)):
        conv = model.get_layer(f"mgrade_{i}").conv
        pos = np.asarray(conv.positions)
        for n in range(pos.shape[0]):
            ax.plot(pos[n], ".", markersize=4)
        ax.set_title(f"mgrade_{i}: learned delays")
        ax.set_xlabel("channel")
        ax.set_ylabel("delay (samples)")
    fig.tight_layout()
    paths.append(os.path.join(out, "delays.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, flash, ram, acc in rows:
        ax.plot((flash + ram) / 1024, acc, "o")
        ax.annotate(
            f"{label}\n{flash / 1024:.1f} + {ram / 1024:.1f} KiB",
            ((flash + ram) / 1024, acc),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, 4),
        )
    ax.set_xlim(left=0)
    ax.set_xlabel(
        "deployed on TFLite Micro, measured (KiB): flatbuffer + arena "
        "(32-bit estimate)",
        fontsize=8,
    )
    ax.set_ylabel("test accuracy on TFLite Micro (%)")
    fig.tight_layout()
    paths.append(os.path.join(out, "accuracy_vs_memory.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def _deployed(label, report, accuracy):
    return dict(
        label=label,
        operators=report["operators"],
        flash=report["flatbuffer_bytes"],
        ram_host=report["arena_bytes"],
        ram=report["arena"]["cortex_m_estimate_bytes"],
        accuracy=f"{accuracy:.1f} %",
        accuracy_value=accuracy,
    )


def _c_backend(path, out_dir):
    """The int8 file as plain C (`export_c`); compiled for Cortex-M4 when
    `arm-none-eabi-gcc` is installed, its flash (.text + .rodata) and
    static RAM (.bss + .data) measured, else the generator's counts."""
    from keras_mgrade.export import export_c
    from keras_mgrade.export.c_backend import toolchain

    c_report = export_c(path, out_dir)
    row = dict(label="mGRADE int8, C backend", operators="—")
    if toolchain.available()["arm-gcc"]:
        obj = os.path.join(out_dir, "mgrade_cortex_m4.o")
        sizes = toolchain.section_sizes(
            toolchain.compile_model(out_dir, "mgrade", "cortex-m4", obj)
        )
        row["label"] += " (Cortex-M4 object; RAM: state + static, no stack)"
        row["flash"] = sizes["text"] + sizes["rodata"]
        row["ram_host"] = row["ram"] = (
            c_report["state_bytes"] + sizes["bss"] + sizes["data"]
        )
    else:
        row["label"] += " (constants + state + scratch)"
        row["flash"] = c_report["const_bytes"]
        row["ram_host"] = row["ram"] = (
            c_report["state_bytes"] + c_report["scratch_bytes"]
        )
    row["files"] = c_report["files"]
    return row


def _baselines(path):
    """GRU/LSTM rows of `benchmarks/deploy_compare.py` (classification,
    same int8 parameter budget; mean over its seeds), if it has run."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        runs = json.load(f).get("classify", {})
    rows = []
    for kind in ("gru", "lstm"):
        if not runs.get(kind):
            continue
        r = runs[kind]
        acc = 100.0 * np.array([run["int8_metric"] for run in r])
        rows.append(
            dict(
                label=f"Keras {kind.upper()} int8 (H={r[0]['units']}, "
                f"{len(r)} seeds)",
                operators=r[0]["operators"],
                flash=r[0]["flatbuffer_bytes"],
                ram_host=r[0]["arena_bytes"],
                ram=r[0]["arena_32bit_estimate"],
                accuracy=f"{acc.mean():.1f} ± {acc.std():.1f} %",
                accuracy_value=float(acc.mean()),
            )
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="CI size")
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baselines",
        default=os.path.join("out", "deploy_compare", "results.json"),
        help="benchmarks/deploy_compare.py results: GRU/LSTM rows",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    n_train, n_test, timesteps, epochs = CONFIGS[
        "fast" if args.fast else "full"
    ]
    keras.utils.set_random_seed(args.seed)
    x, y = datasets.multi_timescale(
        n_train + n_test, timesteps=timesteps, seed=args.seed
    )
    x_train, y_train = x[:n_train], y[:n_train]
    x_test, y_test = x[n_train:], y[n_train:]

    model = build(args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    print(f"training on {n_train} sequences of {timesteps} steps")
    model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=epochs,
        callbacks=[callbacks.SigmaAnnealing(end=0.5, fraction=0.5)],
        verbose=2 if args.fast else 1,
    )
    logits = model.predict(x_test, batch_size=100, verbose=0)
    float_acc = 100.0 * np.mean(np.argmax(logits, -1) == y_test)

    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    path = os.path.join(args.out, "model_int8.tflite")
    report = export_tflite(
        model,
        path,
        quantize="int8",
        representative_data=x_train[:64],
        check_data=x_test[:4],
    )
    with open(path, "rb") as f:
        flat = f.read()
    c_paths = c_source.write_c_sources(flat, report["ops"], args.out)
    c_deployed = _c_backend(path, os.path.join(args.out, "c"))
    float_path = os.path.join(args.out, "model_float32.tflite")
    float_report = export_tflite(
        model, float_path, check_data=x_test[:4], verbose=False
    )
    print(f"streaming {n_test} test sequences through TFLite Micro")
    micro_acc = 100.0 * np.mean(stream_on_micro(path, x_test, report) == y_test)
    float_micro_acc = 100.0 * np.mean(
        stream_on_micro(float_path, x_test, float_report) == y_test
    )

    fp = memory.footprint(model, "int8")
    deployed = [
        _deployed("mGRADE float32", float_report, float_micro_acc),
        _deployed("mGRADE int8", report, micro_acc),
        # Bit-exact with TFLite Micro on the same file: the same accuracy.
        dict(
            c_deployed,
            accuracy=f"{micro_acc:.1f} %",
            accuracy_value=micro_acc,
        ),
    ] + _baselines(args.baselines)
    flash = report["flatbuffer_bytes"]
    ram = report["arena"]["cortex_m_estimate_bytes"]
    lines = [
        "# keras_mgrade quickstart",
        "",
        f"Task: multi_timescale, {n_train} train / {n_test} test sequences "
        f"of {timesteps} steps, 4 classes.",
        "",
        "| model | test accuracy |",
        "|---|---:|",
        f"| float32 Keras | {float_acc:.1f} % |",
        f"| float32 TFLite Micro (one sample per invoke) | "
        f"{float_micro_acc:.1f} % |",
        f"| int8 TFLite Micro (one sample per invoke) | {micro_acc:.1f} % |",
        "",
        "## Deployed on TFLite Micro (measured)",
        "",
        "Flash is the flatbuffer; RAM is the TFLite Micro arena, measured "
        "on this 64-bit host, and its estimate for a 32-bit Cortex-M "
        "(from TFLite Micro's struct sizes; its formula and terms are in "
        "model_int8.json).",
        "",
        "| deployment | operators | flash (B) | RAM, host (B) "
        "| RAM, 32-bit est. (B) | accuracy |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {d['label']} | {d['operators']} | {d['flash']:,} | "
            f"{d['ram_host']:,} | {d['ram']:,} | {d['accuracy']} |"
            for d in deployed
        ),
        "",
        "int8 operators per layer: "
        + ", ".join(
            f"{name} {n}" for name, n in report["operators_per_layer"].items()
        )
        + f"; ops: {', '.join(report['ops'])}.",
        "",
        "## Analytic int8 footprint (`keras_mgrade.memory`)",
        "",
        fp.table(),
        "",
        f"Parameters {fp.parameter_bytes} B, state {fp.state_bytes} B, "
        f"peak activations {fp.activation_bytes} B.",
        "",
        "## The int8 file against MCU budgets (32-bit arena estimate)",
        "",
        memory.budget_table(ram, flash),
        "",
    ]
    text = "\n".join(lines)
    rows = [
        (d["label"], d["flash"], d["ram"], d["accuracy_value"])
        for d in deployed
    ]
    plot_paths = plots(model, args.out, rows)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {
                "float_accuracy": float_acc,
                "float_micro_accuracy": float_micro_acc,
                "micro_accuracy": micro_acc,
                "deployed": deployed,
                "footprint": fp.as_dict(),
                "seconds": time.perf_counter() - start,
            },
            f,
            indent=2,
        )
    print()
    print(text)
    print(
        "wrote",
        ", ".join(
            [os.path.join(args.out, n) for n in ("model.keras", "report.md")]
            + [path, float_path]
            + c_deployed["files"]
            + sorted(c_paths.values())
            + plot_paths
        ),
    )
    print(f"total {time.perf_counter() - start:.0f} s")
    return float_acc, micro_acc


if __name__ == "__main__":
    main()
