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
4. print float Keras vs int8 TFLite Micro accuracy and the memory table
   against MCU budgets, and write `out/`: `model.keras`,
   `model_int8.tflite` (+ `.json` report), the C sources, `report.md`,
   and plots (learned delays; accuracy vs memory).

Expected (this machine, 2 CPU cores): about 97-100 % test accuracy for
both float Keras and int8 TFLite Micro (they differ by at most a point or
two), a TFLite Micro arena of about 30 KB and a flatbuffer of 40-50 KB:
it fits every budget except the 20 KB KWS class. `--fast` (fewer and shorter
sequences) runs in under a minute.

    KERAS_BACKEND=tensorflow python examples/quickstart.py [--fast]
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for label, kbytes, acc in rows:
        ax.plot(kbytes, acc, "o")
        ax.annotate(label, (kbytes, acc))
    ax.set_xlabel("deploy memory (KiB, RAM + flash)")
    ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    paths.append(os.path.join(out, "accuracy_vs_memory.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="CI size")
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
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
    print(f"streaming {n_test} test sequences through TFLite Micro")
    predictions = stream_on_micro(path, x_test, report)
    micro_acc = 100.0 * np.mean(predictions == y_test)

    fp = memory.footprint(model, "int8")
    arena, flash = report["arena_bytes"], report["flatbuffer_bytes"]
    lines = [
        "# keras_mgrade quickstart",
        "",
        f"Task: multi_timescale, {n_train} train / {n_test} test sequences "
        f"of {timesteps} steps, 4 classes.",
        "",
        "| model | test accuracy |",
        "|---|---:|",
        f"| float32 Keras | {float_acc:.1f} % |",
        f"| int8 TFLite Micro (one sample per invoke) | {micro_acc:.1f} % |",
        "",
        "## Memory (int8)",
        "",
        fp.table(),
        "",
        f"Analytic: parameters {fp.parameter_bytes} B, state "
        f"{fp.state_bytes} B, peak activations {fp.activation_bytes} B.",
        f"Measured: flatbuffer {flash} B, TFLite Micro arena {arena} B "
        f"(ops: {', '.join(report['ops'])}).",
        "",
        memory.budget_table(arena, flash),
        "",
    ]
    text = "\n".join(lines)
    rows = [
        ("float32 (analytic)", memory.footprint(model, "float32").total_bytes
         / 1024, float_acc),
        ("int8 TFLM (measured)", (arena + flash) / 1024, micro_acc),
    ]  # fmt: skip
    plot_paths = plots(model, args.out, rows)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {
                "float_accuracy": float_acc,
                "micro_accuracy": micro_acc,
                "arena_bytes": arena,
                "flatbuffer_bytes": flash,
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
            + [path]
            + sorted(c_paths.values())
            + plot_paths
        ),
    )
    print(f"total {time.perf_counter() - start:.0f} s")
    return float_acc, micro_acc


if __name__ == "__main__":
    main()
