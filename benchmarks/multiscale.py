"""The mGRADE multi-timescale claim, measured: tasks that need a fast
delay embedding and a memory of hundreds of steps at once, at a matched
int8 deploy footprint.

Tasks (`keras_mgrade.datasets`, generated locally, per-step targets):

- `cued_lorenz`: reconstruct the hidden y or z of a noisy partially
  observed Lorenz system (fast: a delay embedding of x), which one being
  set by a cue in the first 16 steps (slow: held for up to 252 steps).
  Metric: NRMSE over steps 16-255 (lower is better).
- `lorenz_sample_hold`: at one-step marks 64-192 steps apart,
  reconstruct y and z (fast) and hold them until the next mark (slow).
  Metric: NRMSE from the first mark on.
- `tone_flip_flop`: a flip-flop whose write-1 / write-0 / ignore
  instructions are 8-step square-wave bursts of half period 1 / 2 / 4
  in one noisy channel (no single sample tells them apart: fast), and
  the last written bit must be held through distractors for 32-128
  steps and more (slow). Metric: per-step accuracy after the first burst.
- for reference, `flip_flop` (the sparse flip-flop language, one-hot
  instructions: memory only) and `selective_copy` (4 tokens in 128
  steps, one-hot: content-based memory only).

Models, as in `benchmarks/paper_tables.py`, sized to the same int8 deploy
footprint (`keras_mgrade.memory.footprint(model, "int8")`; GRU and LSTM
with `paper_tables.rnn_footprint`): `mgrade` (2 MGRADE blocks, 4 delays
in a 16-step window, library defaults), `conv-only`
(`use_recurrence=False`), `mingru-only` (`use_conv=False`), and one
`keras.layers.GRU` / `LSTM` layer with a per-step Dense decoder. Every
model is trained with the same protocol (Adam 3e-3 with cosine decay to
1.5e-4, `clipnorm=1`, batch 16, 1024 training sequences of 256 steps,
256 validation and 512 test sequences, 12 epochs), the
validation metric is recorded after every epoch, and the epoch with the
best validation metric is kept. Reported: the learning curves (plot),
the epochs to a stated threshold on the validation metric, the final
test metric, and for the seed-0 keras_mgrade models the metric of the
int8 file on the TFLite Micro interpreter (`export_tflite(...,
quantize="int8")` then `stream_file`).

`--variants` adds controlled experiments of the training-dynamics study:
the same protocol for the kinds in `--variant-kinds` with one factor
changed at a time (`VARIANTS`: the MinGRU gate-bias initialisation, the
scale of the convolution at initialisation, sigma, normalised taps, the
delay learning-rate multiplier, the norms). `--check lorenz|quickstart`
runs only the regression check of a block default
(`--gate-bias-initializer`, `--conv-kernel-initializer`) on
`paper_tables`' Lorenz protocol or on `examples/quickstart.py --fast`.
`--units` gives every model one width instead of the matched footprint
(to separate the width from the architecture).

    KERAS_BACKEND=jax python benchmarks/multiscale.py [--fast]
        [--tasks ...] [--kinds ...] [--seeds 3] [--epochs 12]
        [--variants NAME ...] [--variant-kinds KIND ...] [--no-micro]
        [--units H] [--check lorenz|quickstart]
        [--gate-bias-initializer CHOICE] [--conv-kernel-initializer NAME]
        [--out benchmarks]

`--fast` is a tiny configuration for a quick check (about a minute).
"""

import argparse
import functools
import json
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from paper_tables import int8_on_micro  # noqa: E402
from paper_tables import rnn_footprint  # noqa: E402

from keras_mgrade import datasets  # noqa: E402
from keras_mgrade import memory  # noqa: E402
from keras_mgrade.models import mgrade_seq2seq  # noqa: E402

KINDS = ("mgrade", "conv-only", "mingru-only", "gru", "lstm")
BLOCK_KINDS = {
    "mgrade": {},
    "conv-only": {"use_recurrence": False},
    "mingru-only": {"use_conv": False},
}
# The block configuration shared by the three keras_mgrade models.
BLOCK = dict(num_layers=2, kernel_taps=4, max_delay=16, mlp_ratio=2)

CONFIGS = {
    "fast": dict(
        train=64,
        val=32,
        test=32,
        timesteps=64,
        epochs=2,
        batch_size=16,
        budget=6000,
        seeds=1,
    ),
    "full": dict(
        train=1024,
        val=256,
        test=512,
        timesteps=256,
        epochs=12,
        batch_size=16,
        budget=6000,
        seeds=3,
    ),
}
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}

# Controlled experiments. `default` is the library's default (a zero
# MinGRU gate bias); the others change one factor: the gate-bias
# initialisation (`TimescaleInitializer` arguments), or, from the zero
# gate bias, a convolution / norm setting. `conv_scale` multiplies the
# convolution's tap weights after building (its output at
# initialisation); `conv-zero` starts them at zero
# (`conv_kernel_initializer="zeros"`).
ZERO = {"gate_bias_initializer": None}
VARIANTS = {
    "default": {},
    "zero-gate-bias": ZERO,
    "timescales": {"gate_timescales": {}},
    "timescales-64": {"gate_timescales": {"max_timescale": 64}},
    "timescales-1024": {"gate_timescales": {"max_timescale": 1024}},
    "chrono": {"gate_timescales": {"spacing": "linear"}},
    "conv-init-0.1": {**ZERO, "conv_scale": 0.1},
    "conv-zero": {**ZERO, "conv_kernel_initializer": "zeros"},
    "timescales-conv-zero": {
        "gate_timescales": {},
        "conv_kernel_initializer": "zeros",
    },
    "sigma-0.5": {**ZERO, "sigma": 0.5},
    "normalize-taps": {**ZERO, "normalize_taps": True},
    "positions-lr-1": {**ZERO, "positions_lr_multiplier": 1.0},
    "rms-norm": {**ZERO, "norm": "rms"},
    "no-norm": {**ZERO, "norm": None},
}


# --------------------------------------------------------------------------
# Tasks: each returns (x, targets, weights) with per-step targets and the
# weights of the scored steps.
# --------------------------------------------------------------------------


def _cued_lorenz(n, timesteps, seed):
    x, y, _ = datasets.cued_lorenz(n, timesteps, seed=seed)
    weights = np.ones(y.shape[:2], "float32")
    weights[:, :16] = 0.0  # the cue may not have been shown yet
    return x, y, weights


def _sample_hold(n, timesteps, seed):
    gaps = (64, 192) if timesteps >= 256 else (16, 32)
    return datasets.lorenz_sample_hold(
        n, timesteps, min_gap=gaps[0], max_gap=gaps[1], seed=seed
    )


def _tone_flip_flop(n, timesteps, seed):
    return datasets.tone_flip_flop(n, timesteps, seed=seed)


def _flip_flop(n, timesteps, seed):
    x, y, mask = datasets.flip_flop(n, timesteps, seed=seed)
    return x, y[..., 0].astype("int32"), mask


def _selective_copy(n, timesteps, seed):
    tokens, y = datasets.selective_copy(
        n, timesteps // 2, num_tokens=4, vocabulary_size=4, seed=seed
    )
    targets = np.zeros(tokens.shape, "int32")
    weights = np.zeros(tokens.shape, "float32")
    targets[:, -4:] = y - 1
    weights[:, -4:] = 1.0
    return np.eye(6, dtype="float32")[tokens], targets, weights


# name: (generator, input features, outputs (regression) or classes,
#        regression?, threshold, reference task?)
TASKS = {
    "cued_lorenz": (_cued_lorenz, 2, 1, True, 0.2, False),
    "lorenz_sample_hold": (_sample_hold, 2, 2, True, 0.3, False),
    "tone_flip_flop": (_tone_flip_flop, 1, 2, False, 0.95, False),
    "flip_flop": (_flip_flop, 4, 2, False, 0.95, True),
    "selective_copy": (_selective_copy, 6, 4, False, 0.9, True),
}


def task_data(task, config):
    make = TASKS[task][0]
    return {
        split: make(config[split], config["timesteps"], seed)
        for split, seed in SPLIT_SEEDS.items()
    }


def score(task, pred, targets, weights):
    """NRMSE (regression: RMSE / std of the target per output, averaged)
    or accuracy over the scored steps (`weights > 0`)."""
    scored = weights > 0
    if TASKS[task][3]:
        values = []
        for c in range(targets.shape[-1]):
            p, t = pred[..., c][scored], targets[..., c][scored]
            values.append(np.sqrt(np.mean((p - t) ** 2) / np.var(t)))
        return float(np.mean(values))
    return float(np.mean(np.argmax(pred, -1)[scored] == targets[scored]))


def better(task, a, b):
    """Whether metric `a` is at least as good as `b`."""
    return a <= b if TASKS[task][3] else a >= b


def epochs_to_threshold(task, curve):
    """The first epoch (1-based) whose validation metric reaches the
    task's threshold, or None."""
    threshold = TASKS[task][4]
    for epoch, value in enumerate(curve, start=1):
        if better(task, value, threshold):
            return epoch
    return None


# --------------------------------------------------------------------------
# Models at a matched int8 footprint.
# --------------------------------------------------------------------------


def _block_options(variant, seed):
    options = dict(VARIANTS[variant])
    options.pop("conv_scale", None)
    timescales = options.pop("gate_timescales", None)
    if timescales is not None:
        from keras_mgrade.layers import TimescaleInitializer

        options["gate_bias_initializer"] = TimescaleInitializer(
            **timescales, seed=seed
        )
    return options


def build(kind, units, seed, features, outputs, variant="default"):
    """The model of `kind` with width `units` (built)."""
    if kind in BLOCK_KINDS:
        model = mgrade_seq2seq(
            features,
            outputs,
            units=units,
            seed=seed,
            name=kind.replace("-", "_"),
            **{**BLOCK, **BLOCK_KINDS[kind], **_block_options(variant, seed)},
        )
        scale = VARIANTS[variant].get("conv_scale")
        for layer in model.layers:
            conv = getattr(layer, "conv", None)
            if scale is not None and conv is not None:
                conv.kernel.assign(conv.kernel * scale)
        return model
    layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[kind]
    inputs = keras.Input((None, features), name="inputs")
    x = layer(units, return_sequences=True, seed=seed, name=kind)(inputs)
    outputs = keras.layers.Dense(outputs, name="decoder")(x)
    return keras.Model(inputs, outputs, name=kind)


def footprint(kind, units, features, outputs):
    """The int8 footprint of `kind` at width `units` (dict)."""
    if kind not in BLOCK_KINDS:
        fp = rnn_footprint(kind, units, features, outputs)
        count = build(kind, units, 0, features, outputs).count_params()
        if fp["parameters"] != count:
            raise RuntimeError(
                f"The analytic {kind} parameter count {fp['parameters']} "
                f"differs from Keras' {count}"
            )
        return fp
    fp = memory.footprint(build(kind, units, 0, features, outputs), "int8")
    return dict(
        parameters=fp.parameters,
        parameter_bytes=fp.parameter_bytes,
        state_bytes=fp.state_bytes,
        activation_bytes=fp.activation_bytes,
        total_bytes=fp.total_bytes,
    )


def match_width(kind, budget, features, outputs, widths=range(2, 257)):
    """The width whose int8 total bytes is closest to `budget` (for the
    keras_mgrade models a quadratic in the width fitted on three built
    models, as in paper_tables)."""
    if kind in BLOCK_KINDS:
        hs = [8, 16, 24]
        totals = [
            footprint(kind, h, features, outputs)["total_bytes"] for h in hs
        ]
        coefficients = np.polyfit(hs, totals, 2)
        total = lambda h: np.polyval(coefficients, h)  # noqa: E731
    else:
        total = lambda h: rnn_footprint(  # noqa: E731
            kind, h, features, outputs
        )["total_bytes"]
    return min(widths, key=lambda h: abs(total(h) - budget))


# --------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------


class ValidationCurve(keras.callbacks.Callback):
    """Records the task metric on the validation split after every epoch
    and keeps the weights of the best epoch."""

    def __init__(self, task, data):
        super().__init__()
        self.task = task
        self.x, self.targets, self.weights = data
        self.curve = []
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        pred = self.model.predict(self.x, batch_size=256, verbose=0)
        value = score(self.task, pred, self.targets, self.weights)
        self.curve.append(value)
        if self.best is None or better(self.task, value, self.curve[self.best]):
            self.best = epoch
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        self.model.set_weights(self.best_weights)


def train(task, model, data, config):
    """Trains `model` on `task`; returns the validation curve."""
    _, _, _, regression, _, _ = TASKS[task]
    x, targets, weights = data["train"]
    batch_size, epochs = config["batch_size"], config["epochs"]
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.05)
    loss = (
        "mse"
        if regression
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(keras.optimizers.Adam(schedule, clipnorm=1.0), loss)
    curve = ValidationCurve(task, data["val"])
    model.fit(
        x,
        targets,
        sample_weight=weights,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=[curve],
        verbose=0,
    )
    return curve.curve


def check_on_micro(task, model, data, num_test=32):
    """Exports `model` to int8 and streams test sequences on TFLite
    Micro: the metric of the file and of the float model on them."""
    x_test, targets, weights = (a[:num_test] for a in data["test"])
    report, pred, float_pred = int8_on_micro(
        model, data["train"][0][:16], x_test
    )
    return dict(
        flatbuffer_bytes=report["flatbuffer_bytes"],
        arena_bytes=report["arena_bytes"],
        int8=score(task, pred, targets, weights),
        float=score(task, float_pred, targets, weights),
        num_test=num_test,
    )


def run(task, kinds, variants, config, log, micro=True, variant_kinds=None):
    """Trains every kind on `task` with every seed, and every variant
    other than `"default"` for the kinds in `variant_kinds` (all the
    keras_mgrade kinds when None)."""
    variant_kinds = variant_kinds or list(BLOCK_KINDS)
    _, features, outputs, _, _, _ = TASKS[task]
    data = task_data(task, config)
    rows = []
    for variant in variants:
        for kind in kinds:
            if variant != "default" and (
                kind not in BLOCK_KINDS or kind not in variant_kinds
            ):
                continue
            units = config.get("units") or match_width(
                kind, config["budget"], features, outputs
            )
            fp = footprint(kind, units, features, outputs)
            row = dict(task=task, kind=kind, variant=variant, units=units)
            row.update(fp, curves=[], test=[], seconds=[])
            for seed in range(config["seeds"]):
                start = time.perf_counter()
                keras.utils.set_random_seed(seed)
                model = build(kind, units, seed, features, outputs, variant)
                row["curves"].append(train(task, model, data, config))
                pred = model.predict(data["test"][0], verbose=0)
                row["test"].append(score(task, pred, *data["test"][1:]))
                row["seconds"].append(time.perf_counter() - start)
                ett = epochs_to_threshold(task, row["curves"][-1])
                log(
                    f"  {task:18s} {kind:11s} {variant:14s} H={units:3d} "
                    f"{fp['total_bytes']:5d} B seed {seed}: test "
                    f"{row['test'][-1]:.4f}, epochs to threshold {ett} "
                    f"({row['seconds'][-1]:.0f} s)"
                )
                if micro and seed == 0 and kind in BLOCK_KINDS:
                    row["micro"] = check_on_micro(task, model, data)
                    log(f"  {task:18s} {kind:11s} int8 file {row['micro']}")
            rows.append(row)
    return rows


GATE_BIAS_CHOICES = {
    "auto": "auto",
    "none": None,
    "timescales": "timescales",
    "chrono": "chrono",
}


def lorenz_check(seeds, log, gate_bias="auto", conv_kernel=None):
    """`benchmarks/paper_tables.py`'s Lorenz protocol (full size, budgets
    6000 and 12000 B) for the `mgrade` model only, with the block's
    `gate_bias_initializer` set to `gate_bias` and its
    `conv_kernel_initializer` to `conv_kernel`: the regression check of a
    change of the block's defaults."""
    import paper_tables

    paper_tables.BLOCK["gate_bias_initializer"] = GATE_BIAS_CHOICES[gate_bias]
    paper_tables.BLOCK["conv_kernel_initializer"] = conv_kernel
    config = paper_tables.CONFIGS["full"]
    data = paper_tables.lorenz_data(config)
    lines = [
        f"| budget | model (gate bias {gate_bias}, conv kernel "
        f"{conv_kernel}) | H | NRMSE mean ± std | "
        "per seed |",
        "|---:|---|---:|---|---|",
    ]
    for budget in config["budgets"]:
        units = paper_tables.match_width("mgrade", budget)
        values = []
        for seed in range(seeds):
            model = paper_tables.train(
                "mgrade",
                units,
                seed,
                data,
                config["epochs"],
                config["batch_size"],
            )
            x_test, y_test = data["test"]
            pred = model.predict(x_test, verbose=0)
            values.append(paper_tables.nrmse(pred, y_test, skip=32))
            log(f"  lorenz mgrade {budget} B seed {seed}: {values[-1]:.4f}")
        lines.append(
            f"| {budget} | mgrade | {units} | {np.mean(values):.4f} ± "
            f"{np.std(values):.4f} | "
            + ", ".join(f"{v:.4f}" for v in values)
            + " |"
        )
    return "\n".join(lines)


def quickstart_check(seeds, log, gate_bias="auto", conv_kernel=None):
    """`examples/quickstart.py --fast` (its data, model and training) with
    the blocks' `gate_bias_initializer` set to `gate_bias` and
    `conv_kernel_initializer` to `conv_kernel`: the float test accuracy
    per seed (the int8 file is the quickstart's own check)."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "examples", "quickstart.py")
    spec = importlib.util.spec_from_file_location("quickstart", path)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    # `quickstart.build` calls `mgrade_classifier` by its module name.
    quickstart.mgrade_classifier = functools.partial(
        quickstart.mgrade_classifier,
        gate_bias_initializer=GATE_BIAS_CHOICES[gate_bias],
        conv_kernel_initializer=conv_kernel,
    )
    from keras_mgrade import callbacks

    n_train, n_test, timesteps, epochs = quickstart.CONFIGS["fast"]
    values = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        x, y = datasets.multi_timescale(
            n_train + n_test, timesteps=timesteps, seed=seed
        )
        model = quickstart.build(seed)
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(
            x[:n_train],
            y[:n_train],
            batch_size=32,
            epochs=epochs,
            callbacks=[callbacks.SigmaAnnealing(end=0.5, fraction=0.5)],
            verbose=0,
        )
        logits = model.predict(x[n_train:], batch_size=100, verbose=0)
        values.append(100.0 * np.mean(np.argmax(logits, -1) == y[n_train:]))
        log(f"  quickstart seed {seed}: {values[-1]:.1f} %")
    return (
        f"| quickstart --fast (gate bias {gate_bias}, conv kernel "
        f"{conv_kernel}) | "
        f"{np.mean(values):.1f} ± {np.std(values):.1f} % | "
        + ", ".join(f"{v:.1f}" for v in values)
        + " |"
    )


# --------------------------------------------------------------------------
# Tables and plot.
# --------------------------------------------------------------------------


def _metric_name(task):
    return "NRMSE" if TASKS[task][3] else "accuracy"


def _threshold(task):
    sign = "≤" if TASKS[task][3] else "≥"
    return f"{_metric_name(task)} {sign} {TASKS[task][4]}"


def results_table(rows):
    lines = [
        "| task (threshold) | model | variant | H | params | int8 total B | "
        "epochs to threshold (per seed) | test metric mean ± std | "
        "per seed | int8 on TFLite Micro (seed 0, float → int8) |",
        "|---|---|---|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        ett = [epochs_to_threshold(r["task"], c) for c in r["curves"]]
        ett = ", ".join("—" if e is None else str(e) for e in ett)
        test = np.array(r["test"])
        micro = r.get("micro")
        micro = f"{micro['float']:.4f} → {micro['int8']:.4f}" if micro else "—"
        lines.append(
            f"| {r['task']} ({_threshold(r['task'])}) | {r['kind']} | "
            f"{r['variant']} | {r['units']} | {r['parameters']} | "
            f"{r['total_bytes']} | {ett} | {test.mean():.4f} ± "
            f"{test.std():.4f} | "
            + ", ".join(f"{v:.4f}" for v in test)
            + f" | {micro} |"
        )
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    columns = min(3, len(tasks))
    lines = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(
        lines, columns, figsize=(4.6 * columns, 3.4 * lines), squeeze=False
    )
    labels = list(dict.fromkeys((r["kind"], r["variant"]) for r in rows))
    for ax, task in zip(axes.flat, tasks):
        for r in rows:
            if r["task"] != task:
                continue
            color = f"C{labels.index((r['kind'], r['variant'])) % 10}"
            label = (
                r["kind"]
                if r["variant"] == "default"
                else (f"{r['kind']} ({r['variant']})")
            )
            curves = np.array(r["curves"])
            epochs = np.arange(1, curves.shape[1] + 1)
            for curve in curves:
                ax.plot(epochs, curve, color=color, alpha=0.25, lw=0.8)
            ax.plot(epochs, curves.mean(0), color=color, lw=1.8, label=label)
        ax.axhline(TASKS[task][4], color="k", ls=":", lw=1)
        ax.set_title(task + (" (reference)" if TASKS[task][5] else ""))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {_metric_name(task)}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny check")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--variants", nargs="+", default=None)
    parser.add_argument(
        "--variant-kinds",
        nargs="+",
        default=None,
        help="the kinds that the variants other than 'default' apply to",
    )
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None, help="int8 B")
    parser.add_argument(
        "--units",
        type=int,
        default=None,
        help="one width for every model instead of the matched footprint",
    )
    parser.add_argument("--no-micro", action="store_true")
    parser.add_argument(
        "--check",
        choices=("lorenz", "quickstart"),
        default=None,
        help="only the paper_tables Lorenz or the quickstart check of the "
        "mgrade model (regression checks of the block's defaults)",
    )
    parser.add_argument(
        "--gate-bias-initializer",
        choices=tuple(GATE_BIAS_CHOICES),
        default="auto",
        help="the blocks' gate_bias_initializer in --check",
    )
    parser.add_argument(
        "--conv-kernel-initializer",
        default=None,
        help="the blocks' conv_kernel_initializer in --check (e.g. zeros)",
    )
    parser.add_argument(
        "--out", default=os.path.dirname(os.path.abspath(__file__))
    )
    args = parser.parse_args(argv)
    config = dict(CONFIGS["fast" if args.fast else "full"])
    for key in ("seeds", "epochs", "budget", "units"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    variants = args.variants or ["default"]
    for name, choices in (
        ("tasks", TASKS),
        ("kinds", KINDS),
        ("variants", VARIANTS),
        ("variant_kinds", BLOCK_KINDS),
    ):
        unknown = set(getattr(args, name) or []) - set(choices)
        if unknown:
            parser.error(f"unknown {name} {sorted(unknown)}: {list(choices)}")
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", flush=True)

    log(f"backend {keras.backend.backend()}; {config}; variants {variants}")
    if args.check is not None:
        check = {"lorenz": lorenz_check, "quickstart": quickstart_check}
        print(
            check[args.check](
                config["seeds"],
                log,
                gate_bias=args.gate_bias_initializer,
                conv_kernel=args.conv_kernel_initializer,
            )
        )
        return None
    rows = []
    for task in args.tasks:
        rows += run(
            task,
            args.kinds,
            variants,
            config,
            log,
            micro=not args.no_micro,
            variant_kinds=args.variant_kinds,
        )
    os.makedirs(args.out, exist_ok=True)
    name = "multiscale" if "default" in variants else "multiscale_variants"
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(dict(config=config, rows=rows), f, indent=1)
    plot(rows, os.path.join(args.out, f"{name}.png"))
    print()
    print(results_table(rows))
    print()
    print(f"plot: {os.path.join(args.out, name + '.png')}")
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
