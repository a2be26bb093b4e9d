"""LayerNorm against the folded batch norm (`MGRADE(norm="batch")`): float
and int8-on-TFLite-Micro accuracy, and the operators each block costs.

For each task and each `norm` (`"layer"`, `"batch"`, and `None` as the
reference without normalisation) one model is trained in float32 (Adam,
cosine decay, gradient clipping), scored in Keras, exported to int8 with
post-training quantization (`export_tflite(..., representative_data=...)`)
and its test set streamed through the TFLite Micro interpreter. Tasks, at
reduced size for a 2-core CPU:

- `digits`: scikit-learn's 8x8 digits read one pixel per step (64 steps,
  `keras_mgrade.datasets.digits`), `mgrade_classifier`, 1 block of 16
  units, mean of the per-step logits (computed by the host from the int8
  file's outputs), as `benchmarks/qat.py`'s `digits`; test accuracy (%).
- `listops`: Long Range Arena ListOps expressions of at most 48 tokens and
  depth 2 (`keras_mgrade.datasets.listops`, right-aligned as in
  `examples/listops.py`), an Embedding encoder, 2 blocks of 32 units, the
  logits of the last step; test accuracy (%).
- `lorenz`: the partially observed Lorenz-63 system (observe x,
  reconstruct y and z at every step; `keras_mgrade.datasets.lorenz`),
  `mgrade_seq2seq`, 1 block of 16 units, as `benchmarks/qat.py`'s
  `lorenz16`; test NRMSE (RMSE / std of the target, mean over y and z;
  lower is better).

Every model has 4 learnable delays in a 16-step window and the MLP
(`mlp_ratio=2`). The table gives, per task and norm, the float metric,
the int8 metric on TFLite Micro, the operators of one block in the int8
file (`operators_per_layer` of the export report), the export's own
largest deviation from the float model in int8 output steps, the file
size and the measured TFLite Micro arena.

    KERAS_BACKEND=tensorflow nice -n 5 python benchmarks/norms.py \\
        [--seeds 0] [--tasks digits listops lorenz] \\
        [--norms layer batch none] [--fast] [--out out/norms]

`--fast` (tiny data, 1-2 epochs; a smoke run of every path) takes about
6 minutes. The default size takes about 13 minutes per seed on a
2-core CPU shared with other jobs.
"""

import argparse
import json
import math
import os
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from qat import accuracy  # noqa: E402
from qat import machine  # noqa: E402
from qat import nrmse  # noqa: E402

from keras_mgrade import datasets  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402
from keras_mgrade.export import stream_file  # noqa: E402
from keras_mgrade.models import mgrade_classifier  # noqa: E402
from keras_mgrade.models import mgrade_seq2seq  # noqa: E402
from keras_mgrade.quantization import quantize_model  # noqa: E402

NORMS = {"layer": "layer", "batch": "batch", "none": None}
BLOCK = dict(kernel_taps=4, max_delay=16, mlp_ratio=2)
SIZES = {
    # task: {size: dict(train, test, timesteps, epochs, lr)}
    "digits": {
        "full": dict(train=None, test=None, timesteps=64, epochs=12),
        "fast": dict(train=192, test=64, timesteps=64, epochs=2),
    },
    "listops": {
        "full": dict(train=3000, test=500, timesteps=48, epochs=6),
        "fast": dict(train=512, test=128, timesteps=32, epochs=1),
    },
    "lorenz": {
        "full": dict(train=512, test=128, timesteps=128, epochs=25),
        "fast": dict(train=96, test=16, timesteps=48, epochs=2),
    },
}
BATCH = 32
LEARNING_RATE = 3e-3
QAT_LEARNING_RATE = 1e-3
CALIBRATION = 64  # PTQ representative sequences
HIGHER_IS_BETTER = {"digits": True, "listops": True, "lorenz": False}


def right_align(x):
    """Moves the padding (id 0) of every row to the front."""
    lengths = np.sum(x != 0, axis=1)
    aligned = np.zeros_like(x)
    for row, (tokens, length) in enumerate(zip(x, lengths)):
        aligned[row, x.shape[1] - length :] = tokens[:length]
    return aligned


def load(task, size, seed):
    """`(x_train, y_train, x_test, y_test)` of a task."""
    s = SIZES[task][size]
    if task == "lorenz":
        x_train, y_train = datasets.lorenz(
            s["train"], s["timesteps"], seed=seed
        )
        x_test, y_test = datasets.lorenz(
            s["test"], s["timesteps"], seed=10_000 + seed
        )
        return x_train, y_train, x_test, y_test
    if task == "listops":
        n = s["train"] + s["test"]
        x, y = datasets.listops(
            n, max_length=s["timesteps"], max_depth=2, seed=seed
        )
        x = right_align(x)
        return (
            x[: s["train"]],
            y[: s["train"]],
            x[s["train"] :],
            y[s["train"] :],
        )
    (x_train, y_train), (x_test, y_test) = datasets.digits(seed=seed)
    return (
        x_train[: s["train"]],
        y_train[: s["train"]],
        x_test[: s["test"]],
        y_test[: s["test"]],
    )


def build(task, norm, timesteps, seed):
    """The model, its loss and its metric."""
    kwargs = dict(norm=norm, timesteps=timesteps, seed=seed, **BLOCK)
    if task == "lorenz":
        model = mgrade_seq2seq(
            1, 2, units=16, num_layers=1, sigma=2.0, **kwargs
        )
        return model, "mse", nrmse
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if task == "digits":
        model = mgrade_classifier(
            1, 10, units=16, num_layers=1, sigma=2.0, **kwargs
        )
        return model, loss, accuracy
    model = mgrade_classifier(
        None,
        10,
        vocabulary_size=len(datasets.LISTOPS_VOCABULARY),
        units=32,
        num_layers=2,
        pooling="last",
        **kwargs,
    )
    return model, loss, accuracy


def on_micro(path, report, x):
    """The file's outputs for `x`, streamed on TFLite Micro; for a file
    whose host pools, the mean of the per-step outputs; for a file of a
    last-step classifier, the last step's."""
    with open(path, "rb") as f:
        flat = f.read()
    y = stream_file(flat, x, "tflm", arena_size=report["arena_bytes"] + 1024)
    if report["host_pooling"] == "mean":
        return y.mean(axis=1)
    return y


def export_on_micro(model, x_test, calibration=None, last_step=False):
    """Exports `model` to int8 (calibrated on `calibration`, or from its
    QAT ranges) and streams `x_test` on TFLite Micro: `(report, outputs)`
    (the last step's logits for a last-step classifier)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model_int8.tflite")
        report = export_tflite(
            model,
            path,
            quantize="int8",
            representative_data=calibration,
            check_data=x_test[:4],
            verbose=False,
        )
        pred = on_micro(path, report, x_test)
    return report, pred[:, -1] if last_step else pred


def adam(lr, epochs, n):
    steps = max(1, epochs * math.ceil(n / BATCH))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)
    return keras.optimizers.Adam(schedule, clipnorm=1.0)


def run(task, norm_name, seed, size, qat_epochs):
    """One model: trained in float, scored in Keras, as a PTQ int8 file
    and (`qat_epochs` > 0) as a QAT int8 file on TFLite Micro."""
    s = SIZES[task][size]
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = load(task, size, seed)
    model, loss, metric = build(task, NORMS[norm_name], s["timesteps"], seed)
    model.compile(adam(LEARNING_RATE, s["epochs"], len(x_train)), loss)
    model.fit(x_train, y_train, batch_size=BATCH, epochs=s["epochs"], verbose=0)
    row = dict(task=task, norm=norm_name, seed=seed)
    row["float"] = metric(model.predict(x_test, verbose=0), y_test)
    report, pred = export_on_micro(
        model,
        x_test,
        calibration=x_train[:CALIBRATION],
        last_step=task == "listops",
    )
    row["int8_tflm"] = metric(pred, y_test)
    row["operators_per_block"] = report["operators_per_layer"]["mgrade_0"]
    row["operators"] = report["operators"]
    row["ops"] = report["ops"]
    row["deviation_lsb"] = report["max_deviation_output_lsb"]
    row["flatbuffer_bytes"] = report["flatbuffer_bytes"]
    row["arena_bytes"] = report["arena_bytes"]
    row["qat_int8_tflm"] = None
    if qat_epochs and task != "listops":  # QAT takes no Embedding
        qat = quantize_model(model)
        qat.compile(adam(QAT_LEARNING_RATE, qat_epochs, len(x_train)), loss)
        qat.fit(
            x_train, y_train, batch_size=BATCH, epochs=qat_epochs, verbose=0
        )
        qat_report, pred = export_on_micro(qat, x_test)
        row["qat_int8_tflm"] = metric(pred, y_test)
        row["qat_deviation_lsb"] = qat_report["max_deviation_output_lsb"]
    row["seconds"] = time.perf_counter() - start
    return row


def table(rows):
    lines = [
        "| task | norm | seed | float | PTQ int8 on TFLite Micro | "
        "QAT int8 on TFLite Micro | operators per block | operators in "
        "file | MEAN/RSQRT in file | PTQ max deviation (output LSB) | "
        "flatbuffer B | arena B |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        unit = "" if r["task"] == "lorenz" else " %"
        fmt = ".4f" if r["task"] == "lorenz" else ".1f"
        mean_rsqrt = {"MEAN", "RSQRT"} & set(r["ops"])
        qat = r["qat_int8_tflm"]
        qat = "n/a" if qat is None else f"{qat:{fmt}}{unit}"
        lines.append(
            f"| {r['task']} | {r['norm']} | {r['seed']} | "
            f"{r['float']:{fmt}}{unit} | {r['int8_tflm']:{fmt}}{unit} | "
            f"{qat} | "
            f"{r['operators_per_block']} | {r['operators']} | "
            f"{'yes' if mean_rsqrt else 'no'} | {r['deviation_lsb']:.1f} | "
            f"{r['flatbuffer_bytes']} | {r['arena_bytes']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=sorted(SIZES),
        default=["digits", "listops", "lorenz"],
    )
    parser.add_argument(
        "--norms", nargs="+", choices=list(NORMS), default=list(NORMS)
    )
    parser.add_argument(
        "--qat-epochs",
        type=int,
        default=2,
        help="QAT fine-tuning epochs after the float training (0: none)",
    )
    parser.add_argument("--fast", action="store_true", help="smoke size")
    parser.add_argument("--out", default=os.path.join("out", "norms"))
    args = parser.parse_args(argv)
    size = "fast" if args.fast else "full"
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    rows = []
    qat_epochs = min(args.qat_epochs, 1) if args.fast else args.qat_epochs
    for seed in args.seeds:
        for task in args.tasks:
            for norm in args.norms:
                row = run(task, norm, seed, size, qat_epochs)
                print(
                    f"{task} norm={norm} seed {seed}: float "
                    f"{row['float']:.4g}, int8 on TFLite Micro "
                    f"{row['int8_tflm']:.4g}, QAT {row['qat_int8_tflm']}, "
                    f"{row['operators_per_block']} "
                    f"operators per block ({row['seconds']:.0f} s)",
                    flush=True,
                )
                rows.append(row)
                with open(os.path.join(args.out, "results.json"), "w") as f:
                    json.dump({"size": size, "rows": rows}, f, indent=2)
    seconds = time.perf_counter() - start
    print()
    print(machine())
    print()
    print(table(rows))
    print()
    print(f"total {seconds:.0f} s")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {"size": size, "seconds": seconds, "machine": machine(),
             "rows": rows},
            f,
            indent=2,
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
