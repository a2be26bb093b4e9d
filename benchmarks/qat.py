"""QAT vs post-training quantization (PTQ), int8 and 16x8, on TFLite Micro.

For each experiment and seed:

1. train a float32 mGRADE model (Adam, cosine decay) and score it in Keras;
2. PTQ: export it to int8 and to 16x8 (int16 activations, int8 weights)
   with `export_tflite(..., representative_data=x_train[:64])`, stream
   the test set through the TFLite Micro interpreter one sample per
   invoke, and score the outputs;
3. QAT: fine-tune the float model with `quantize_model(model, config,
   calibration_data=x_train[:64])` (ranges start calibrated; 8-bit
   activations for the int8 file,
   `QuantizeConfig(activation_bits=16)` for the 16x8 file, each from the
   float weights), export it without calibration data, stream the test
   set through TFLite Micro and score it (Adam with cosine decay to 0:
   3 epochs at 1e-3 on the digits tasks, 90 epochs at the float rate
   3e-3 on Lorenz, where shorter or slower QAT leaves more of the int8
   loss);
4. a control: the float model fine-tuned in float for the same epochs
   with the same schedule, so that what QAT gains from the extra
   training alone is visible.

Experiments (small models, one MGRADE block, 4 learnable delays in a
16-step window):

- `digits`: scikit-learn's 8x8 digits read one pixel per step (64 steps,
  `keras_mgrade.datasets.digits`), `mgrade_classifier`, 16 units,
  `norm="layer"`, mean of the per-step logits (computed by the host from
  the file's per-step outputs); metric: test accuracy (%).
- `pdigits4`: the same images with the pixels in a fixed random order,
  each held for 4 steps (`digits(permuted=True, upsample=4)`, 256 steps):
  longer sequences and smaller class margins, where PTQ int8 loses
  more than a point.
- `lorenz16`: the partially observed Lorenz-63 system
  (`keras_mgrade.datasets.lorenz`, `dt = 0.01`) of `paper_tables`: observe
  `x`, reconstruct `y` and `z` at every step; `mgrade_seq2seq`, 16 units,
  no normalisation (`norm=None`), 120 float epochs; metric NRMSE = RMSE /
  std of the targets, averaged over `y` and `z` (lower is better;
  predicting the mean scores 1.0).
- `lorenz`: the same with 32 units.
- `lorenz_ln` (not run by default): 32 units with the builders' default
  `norm="layer"`.

The report's `max_deviation_output_lsb` columns are the largest
difference between the file on TFLite Micro and the Keras model it was
exported from (float step model for PTQ, fake-quantized step model for
QAT), over 4 test sequences, in steps of the file's output.

    KERAS_BACKEND=jax nice -n 5 python benchmarks/qat.py \\
        [--seeds 0 1 2] [--experiments digits pdigits4 lorenz16 lorenz] \\
        [--fast] [--out out/qat] [--qat-schedule EPOCHS LR]
        [--ablation | --speed | --rounding]

`--ablation` prints instead, per experiment and seed, the fake-quantized
Keras model's metric with only the weights quantized and with one
activation point at a time left in float (which tensors cost accuracy).
`--speed` prints instead the time of one QAT training step against one
float training step, per model, on the current backend. `--rounding`
prints instead the PTQ files (int8 and 16x8) with nearest and with GPTQ
weight rounding (`export_tflite(..., weight_rounding=...)`) on TFLite
Micro. The PTQ columns of the comparison use the exporter's default
rounding: nearest for int8, GPTQ for 16x8.
Measured results: `benchmarks/RESULTS.md`, section qat.
"""

import argparse
import contextlib
import json
import os
import platform
import subprocess
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade import datasets  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402
from keras_mgrade.export import stream_file  # noqa: E402
from keras_mgrade.models import mgrade_classifier  # noqa: E402
from keras_mgrade.models import mgrade_seq2seq  # noqa: E402
from keras_mgrade.quantization import QuantizeConfig  # noqa: E402
from keras_mgrade.quantization import quantize_model  # noqa: E402
from keras_mgrade.quantization.model import QuantizationScope  # noqa: E402

EXPERIMENTS = {
    # name: (task, units, norm, QAT epochs at full size, QAT learning
    # rate): regression needs longer QAT at the float learning rate
    "lorenz16": ("lorenz", 16, None, 90, 3e-3),
    "lorenz": ("lorenz", 32, None, 90, 3e-3),
    "lorenz_ln": ("lorenz", 32, "layer", 90, 3e-3),
    "digits": ("digits", 16, "layer", 3, 1e-3),
    "pdigits4": ("pdigits", 16, "layer", 3, 1e-3),
}
SIZES = {
    # task: {size: (train sequences, test sequences, timesteps,
    #               float epochs)}; digits: None = all images
    "lorenz": {"full": (1024, 256, 128, 120), "fast": (96, 16, 48, 2)},
    "digits": {"full": (None, None, 64, 30), "fast": (192, 64, 64, 2)},
    "pdigits": {"full": (None, None, 256, 30), "fast": (192, 64, 128, 2)},
}
BATCH = 32
FLOAT_LR = 3e-3
CALIBRATION = 64  # PTQ representative sequences


def nrmse(prediction, target):
    """Mean over output features of RMSE / std of the targets."""
    prediction = prediction.reshape(-1, target.shape[-1])
    target = target.reshape(-1, target.shape[-1])
    rmse = np.sqrt(np.mean((prediction - target) ** 2, axis=0))
    return float(np.mean(rmse / np.std(target, axis=0)))


def accuracy(logits, labels):
    return float(100.0 * np.mean(np.argmax(logits, -1) == labels))


def load(task, size, seed):
    n_train, n_test, timesteps, _ = SIZES[task][size]
    if task == "lorenz":
        x_train, y_train = datasets.lorenz(n_train, timesteps, seed=seed)
        # Test trajectories from seeds no training set uses.
        x_test, y_test = datasets.lorenz(n_test, timesteps, seed=10_000 + seed)
        return x_train, y_train, x_test, y_test
    (x_train, y_train), (x_test, y_test) = datasets.digits(
        permuted=task == "pdigits", upsample=timesteps // 64, seed=seed
    )
    return (
        x_train[:n_train],
        y_train[:n_train],
        x_test[:n_test],
        y_test[:n_test],
    )


def build(task, units, norm, timesteps, seed):
    kwargs = dict(
        units=units,
        num_layers=1,
        kernel_taps=4,
        max_delay=16,
        sigma=2.0,
        norm=norm,
        timesteps=timesteps,
        seed=seed,
    )
    if task == "lorenz":
        return mgrade_seq2seq(1, 2, **kwargs), "mse", nrmse
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return mgrade_classifier(1, 10, **kwargs), loss, accuracy


def adam(lr, epochs, n, alpha=0.0):
    steps = max(1, epochs * int(np.ceil(n / BATCH)))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=alpha)
    return keras.optimizers.Adam(schedule)


def on_micro(path, report, x):
    """The file's outputs for `x`, streamed on TFLite Micro; for a file
    whose host pools, the mean of the per-step outputs."""
    with open(path, "rb") as f:
        flat = f.read()
    y = stream_file(flat, x, "tflm", arena_size=report["arena_bytes"] + 1024)
    return y.mean(axis=1) if report["host_pooling"] == "mean" else y


def train_float(name, seed, size):
    """The float32 model of an experiment, trained; its data and metric."""
    task, units, norm = EXPERIMENTS[name][:3]
    _, _, timesteps, epochs = SIZES[task][size]
    keras.utils.set_random_seed(seed)
    data = load(task, size, seed)
    model, loss, metric = build(task, units, norm, timesteps, seed)
    model.compile(adam(FLOAT_LR, epochs, len(data[0]), alpha=0.05), loss)
    model.fit(data[0], data[1], batch_size=BATCH, epochs=epochs, verbose=0)
    return model, loss, metric, data


def _on_chip(model, quantize, path, data, calibrate, **kwargs):
    """Exports `model` to `quantize` (calibrated on training sequences if
    `calibrate`), streams the test set on TFLite Micro; the metric and the
    report's deviation from the Keras model in output steps."""
    x_train, _, x_test, _ = data
    report = export_tflite(
        model,
        path,
        quantize=quantize,
        representative_data=x_train[:CALIBRATION] if calibrate else None,
        check_data=x_test[:4],
        verbose=False,
        **kwargs,
    )
    return on_micro(path, report, x_test), report["max_deviation_output_lsb"]


def _qat(model, weights, bits, loss, epochs, lr, data):
    """`model` (reset to `weights`) fine-tuned with `bits`-bit activation
    QAT from calibrated ranges; the QAT model."""
    x_train, y_train = data[0], data[1]
    model.set_weights(weights)
    config = QuantizeConfig(activation_bits=bits)
    # Shares (and trains) model's weights; ranges start calibrated.
    qat = quantize_model(model, config, calibration_data=x_train[:CALIBRATION])
    qat.compile(adam(lr, epochs, len(x_train)), loss)
    qat.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0)
    return qat


def run(name, seed, size, out, schedule=None):
    qat_epochs = EXPERIMENTS[name][3] if size == "full" else 1
    lr = EXPERIMENTS[name][4]
    if schedule:
        qat_epochs, lr = int(schedule[0]), float(schedule[1])
    start = time.perf_counter()
    model, loss, metric, data = train_float(name, seed, size)
    x_train, y_train, x_test, y_test = data
    n = len(x_train)
    row = {"experiment": name, "seed": seed, "qat_epochs": qat_epochs}
    row["float"] = metric(model.predict(x_test, verbose=0), y_test)
    row["float_seconds"] = time.perf_counter() - start
    prefix = os.path.join(out, f"{name}_seed{seed}")

    for key, quantize in (("ptq", "int8"), ("ptq16", "int16x8")):
        y, row[f"{key}_lsb"] = _on_chip(
            model, quantize, f"{prefix}_{key}.tflite", data, True
        )
        row[key] = metric(y, y_test)

    weights = model.get_weights()
    control = keras.models.clone_model(model)
    control.set_weights(weights)
    control.compile(adam(lr, qat_epochs, n), loss)
    control.fit(
        x_train, y_train, batch_size=BATCH, epochs=qat_epochs, verbose=0
    )
    row["control"] = metric(control.predict(x_test, verbose=0), y_test)

    for key, bits, quantize in (("qat", 8, "int8"), ("qat16", 16, "int16x8")):
        start = time.perf_counter()
        qat = _qat(model, weights, bits, loss, qat_epochs, lr, data)
        row[f"{key}_seconds"] = time.perf_counter() - start
        row[f"{key}_keras"] = metric(qat.predict(x_test, verbose=0), y_test)
        y, row[f"{key}_lsb"] = _on_chip(
            qat, quantize, f"{prefix}_{key}.tflite", data, False
        )
        row[key] = metric(y, y_test)
    model.set_weights(weights)
    return row


ROUNDINGS = (
    ("int8", "nearest"),
    ("int8", "gptq"),
    ("int16x8", "nearest"),
    ("int16x8", "gptq"),
)


def rounding(name, seed, size, out):
    """PTQ with each weight rounding (`export_tflite(...,
    weight_rounding=...)`): the files' metrics on TFLite Micro against
    the float32 model's."""
    model, _, metric, data = train_float(name, seed, size)
    row = {"float": metric(model.predict(data[2], verbose=0), data[3])}
    for quantize, method in ROUNDINGS:
        path = os.path.join(
            out, f"{name}_seed{seed}_{quantize}_{method}.tflite"
        )
        y, _ = _on_chip(
            model, quantize, path, data, True, weight_rounding=method
        )
        row[quantize, method] = metric(y, data[3])
    return row


def rounding_table(name, rows):
    task = EXPERIMENTS[name][0]
    fmt = "{:.4f}" if task == "lorenz" else "{:.2f}"
    head = ["float32"] + [f"PTQ {q} {m}" for q, m in ROUNDINGS]
    unit = "NRMSE; gaps: % rel." if task == "lorenz" else "accuracy %; gaps: pp"
    lines = [
        f"{name}: PTQ weight rounding on TFLite Micro ({unit})",
        "",
        "| seed | " + " | ".join(head) + " | "
        + " | ".join(f"gap {q} {m}" for q, m in ROUNDINGS) + " |",
        "|---|" + "---:|" * (2 * len(ROUNDINGS) + 1),
    ]  # fmt: skip
    for seed, r in rows:
        cells = [fmt.format(r["float"])]
        cells += [fmt.format(r[k]) for k in ROUNDINGS]
        cells += [f"{gap(r[k], r['float'], task):+.2f}" for k in ROUNDINGS]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    cells = [fmt.format(np.mean([r["float"] for _, r in rows]))]
    cells += [fmt.format(np.mean([r[k] for _, r in rows])) for k in ROUNDINGS]
    cells += [
        f"{np.mean([gap(r[k], r['float'], task) for _, r in rows]):+.2f}"
        for k in ROUNDINGS
    ]
    lines.append("| mean | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def _float_points(keys=()):
    """Leaves the activation points named in `keys` in float in every
    quantization scope."""
    activation = QuantizationScope.activation
    keys = set(keys)

    def patched(self, owner, name, x, fixed=None, state=False):
        if self.key(owner, name) in keys:
            return x
        return activation(self, owner, name, x, fixed=fixed, state=state)

    QuantizationScope.activation = patched
    try:
        yield
    finally:
        QuantizationScope.activation = activation


def ablation(name, seed, size):
    """Which quantization points cost the accuracy: the fake-quantized
    Keras model of the trained float model (ranges from one forward pass
    over 256 training sequences, no fine-tuning, i.e. what PTQ sees),
    scored with all points quantized, with only the weights quantized,
    and with one activation point at a time left in float."""
    model, _, metric, (x_train, _, x_test, y_test) = train_float(
        name, seed, size
    )
    qat = quantize_model(model)
    qat(x_train[:256], training=True)  # sets the ranges; weights unchanged

    def score(**kwargs):
        with _float_points(**kwargs):
            qat.predict_function = None  # retrace with the patched scope
            return metric(qat.predict(x_test, verbose=0), y_test)

    reference = metric(model.predict(x_test, verbose=0), y_test)
    quantized = score()
    rows = [("float32 (no point quantized)", reference)]
    rows.append(("all points quantized", quantized))
    # The FIFO of a convolution shares its producer's range (one point).
    keys = [k for k in qat.range_table() if not k.endswith("/fifo")]
    rows.append(("only the weights quantized", score(keys=tuple(keys))))
    for key in keys:
        rows.append((f"all but `{key}`", score(keys=(key,))))
    task = EXPERIMENTS[name][0]
    lines = [
        f"{name}, seed {seed}: fake-quantized Keras model, calibrated, "
        "not fine-tuned",
        "",
        "| quantized | metric | vs float | share of the int8 loss recovered |",
        "|---|---:|---:|---:|",
    ]
    loss = quantized - reference
    for label, value in rows:
        recovered = 100.0 * (quantized - value) / loss if loss else 0.0
        lines.append(
            f"| {label} | {value:.4f} | "
            f"{gap(value, reference, task):+.1f} | {recovered:.0f} % |"
        )
    return "\n".join(lines)


def gap(value, reference, task):
    """NRMSE: relative change in %; accuracy: difference in points."""
    if task == "lorenz":
        return 100.0 * (value - reference) / reference
    return value - reference


def table(name, rows):
    task, units, norm = EXPERIMENTS[name][:3]
    regression = task == "lorenz"
    unit = "NRMSE" if regression else "accuracy (%)"
    fmt = "{:.4f}" if regression else "{:.2f}"
    gap_unit = "% rel." if regression else "pp"
    columns = ("float", "control", "ptq", "qat", "ptq16", "qat16")
    quantized = ("ptq", "qat", "ptq16", "qat16")
    lines = [
        f"{name}: {task}, {units} units, 1 block, norm={norm}, "
        f"{rows[0]['qat_epochs']} QAT epochs; {unit}; gaps vs float32 in "
        f"{gap_unit}",
        "",
        "| seed | float32 Keras | float32 + same epochs | PTQ int8 | QAT "
        "int8 | PTQ 16x8 | QAT 16x8 | gap PTQ int8 | gap QAT int8 | gap PTQ "
        "16x8 | gap QAT 16x8 | QAT int8 Keras | file vs Keras, LSB (PTQ / "
        "QAT int8) |",
        "|---|" + "---:|" * 12,
    ]
    for r in rows:
        cells = [fmt.format(r[c]) for c in columns]
        cells += [f"{gap(r[c], r['float'], task):+.2f}" for c in quantized]
        cells.append(fmt.format(r["qat_keras"]))
        cells.append(f"{r['ptq_lsb']:g} / {r['qat_lsb']:g}")
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")

    def mean_std(values):
        values = np.asarray(values, "float64")
        return f"{fmt.format(values.mean())} ± {fmt.format(values.std())}"

    cells = [mean_std([r[c] for r in rows]) for c in columns]
    for c in quantized:
        g = [gap(r[c], r["float"], task) for r in rows]
        cells.append(f"{np.mean(g):+.2f} ± {np.std(g):.2f}")
    cells.append(mean_std([r["qat_keras"] for r in rows]))
    cells.append("")
    lines.append("| mean ± std | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed(repeats=5, steps=8, warmup=3):
    """Seconds per training step (`train_on_batch`, batch 32, after
    `warmup` steps) of the float model and of its QAT model, for the
    `digits` and `lorenz` models and a 2-block `lorenz`: the median over
    `repeats` runs of `steps` steps each. Returns the table (markdown)."""
    shapes = [
        # label, task, units, norm, timesteps, blocks
        ("digits", "digits", 16, "layer", 64, 1),
        ("lorenz", "lorenz", 32, None, 128, 1),
        ("lorenz, 2 blocks", "lorenz", 32, None, 128, 2),
    ]
    rng = np.random.default_rng(0)

    def seconds(m, loss, x, y):
        m.compile(keras.optimizers.Adam(1e-4), loss)
        for _ in range(warmup):
            m.train_on_batch(x, y)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                m.train_on_batch(x, y)
            runs.append((time.perf_counter() - start) / steps)
        return float(np.median(runs))

    lines = [
        f"backend {keras.backend.backend()}; seconds per training step "
        f"(batch {BATCH}), median of {repeats} x {steps} steps",
        "",
        "| model | float step (s) | QAT step (s) | QAT / float |",
        "|---|---:|---:|---:|",
    ]
    for label, task, units, norm, timesteps, blocks in shapes:
        keras.utils.set_random_seed(0)
        kwargs = dict(
            units=units,
            num_layers=blocks,
            kernel_taps=4,
            max_delay=16,
            sigma=2.0,
            norm=norm,
            timesteps=timesteps,
            seed=0,
        )
        x = rng.normal(size=(BATCH, timesteps, 1)).astype("float32")
        if task == "lorenz":
            model = mgrade_seq2seq(1, 2, **kwargs)
            loss = "mse"
            y = rng.normal(size=(BATCH, timesteps, 2)).astype("float32")
        else:
            model = mgrade_classifier(1, 10, **kwargs)
            loss = keras.losses.SparseCategoricalCrossentropy(True)
            y = rng.integers(0, 10, size=(BATCH,)).astype("int32")

        t_float = seconds(model, loss, x, y)
        t_qat = seconds(quantize_model(model), loss, x, y)
        lines.append(
            f"| {label} | {t_float:.4f} | {t_qat:.4f} | {t_qat / t_float:.2f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def machine():
    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True)
        for line in lscpu.stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import tensorflow as tf

    return (
        f"{os.cpu_count()} CPUs ({model}), Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras "
        f"{keras.__version__}, backend {keras.backend.backend()}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--experiments",
        nargs="+",
        choices=sorted(EXPERIMENTS),
        default=["digits", "pdigits4", "lorenz16", "lorenz"],
    )
    parser.add_argument("--fast", action="store_true", help="smoke size")
    parser.add_argument("--out", default=os.path.join("out", "qat"))
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="instead of the comparison: which quantization points cost "
        "the accuracy (fake-quantized Keras model, one point at a time in "
        "float)",
    )
    parser.add_argument(
        "--qat-schedule",
        nargs=2,
        metavar=("EPOCHS", "LR"),
        help="QAT (and control) epochs and learning rate for every "
        "experiment instead of the per-task defaults",
    )
    parser.add_argument(
        "--rounding",
        action="store_true",
        help="instead of the comparison: PTQ int8 and 16x8 with nearest "
        "and GPTQ weight rounding (`export_tflite(weight_rounding=...)`)",
    )
    parser.add_argument(
        "--speed",
        action="store_true",
        help="instead of the comparison: seconds per training step of the "
        "float and the QAT models (digits, lorenz, 2-block lorenz)",
    )
    args = parser.parse_args(argv)
    if args.speed:
        print(machine())
        print(speed())
        return None
    size = "fast" if args.fast else "full"
    if args.rounding:
        os.makedirs(args.out, exist_ok=True)
        print(machine())
        for name in args.experiments:
            rows = [(s, rounding(name, s, size, args.out)) for s in args.seeds]
            print()
            print(rounding_table(name, rows), flush=True)
        return None
    if args.ablation:
        for name in args.experiments:
            for seed in args.seeds:
                print(ablation(name, seed, size), flush=True)
                print()
        return None
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    results = {}
    for name in args.experiments:
        rows = []
        for seed in args.seeds:
            row = run(name, seed, size, args.out, args.qat_schedule)
            print(
                f"{name} seed {seed}: float {row['float']:.4g}, PTQ "
                f"{row['ptq']:.4g}, QAT {row['qat']:.4g}, PTQ 16x8 "
                f"{row['ptq16']:.4g}, QAT 16x8 {row['qat16']:.4g} (control "
                f"{row['control']:.4g}; float {row['float_seconds']:.0f} s, "
                f"QAT {row['qat_seconds']:.0f} s)",
                flush=True,
            )
            rows.append(row)
        results[name] = rows
    seconds = time.perf_counter() - start
    text = "\n\n".join(table(name, rows) for name, rows in results.items())
    print()
    print(machine())
    print()
    print(text)
    print()
    print(f"total {seconds:.0f} s")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {"size": size, "seconds": seconds, "results": results}, f, indent=2
        )
    return results


if __name__ == "__main__":
    main()
