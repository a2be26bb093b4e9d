"""mGRADE against the Keras LSTM and GRU a user would otherwise deploy, on
the same path: the same int8 budget, the same converter, the same
TFLite Micro runtime.

For each task and seed, three models are trained in float:

- `mgrade`: the task's mGRADE model (the quickstart classifier, or the
  12 KB Lorenz model of `paper_tables.py`);
- `gru`, `lstm`: one `keras.layers.GRU` / `LSTM` layer with the same head,
  its width chosen so that its int8 parameter bytes
  (`keras_mgrade.memory.footprint(model, "int8").parameter_bytes`) match
  the mGRADE model's.

Each is exported with `keras_mgrade.export.export_tflite(...,
quantize="int8")` — post-training int8, calibrated on training sequences
— into a single-step file with the state as inputs and outputs (the
Keras GRU and LSTM are registered streamable kinds: their cells are the
step, converted by the standard TFLite converter into FULLY_CONNECTED,
LOGISTIC, TANH, MUL, ADD, SUB and SPLIT; not the converter's fused
sequence operators, which TFLite Micro does not run), and streamed on the
TFLite Micro interpreter one sample per invoke. The table gives, per
model: flatbuffer bytes, the smallest TFLite Micro arena on this 64-bit
host and its 32-bit Cortex-M estimate (`keras_mgrade.export.estimate`),
operators, the host time of one invoke (median over the seeds: this
shared machine's timing noise), and the float and int8 metric
(test accuracy, or NRMSE for the Lorenz regression), mean ± std over the
seeds.

    KERAS_BACKEND=jax python benchmarks/deploy_compare.py [--fast]
        [--seeds 3] [--out out/deploy_compare]
    python benchmarks/deploy_compare.py --tables out/deploy_compare/results.json

JAX trains the GRU and LSTM fastest on this CPU (see `paper_tables.py`);
the export runs in a TensorFlow process either way.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade import callbacks  # noqa: E402
from keras_mgrade import datasets  # noqa: E402
from keras_mgrade import memory  # noqa: E402
from keras_mgrade.export import StreamingInterpreter  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402
from keras_mgrade.export import stream_file  # noqa: E402
from keras_mgrade.layers import TemporalMeanPooling  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
import paper_tables  # noqa: E402
import quickstart  # noqa: E402

KINDS = ("mgrade", "gru", "lstm")
CONFIGS = {
    "fast": dict(
        classify=dict(train=200, test=50, timesteps=48, epochs=1),
        lorenz=dict(paper_tables.CONFIGS["fast"], epochs=1),
        latency_steps=100,
    ),
    "full": dict(
        classify=dict(train=1200, test=200, timesteps=96, epochs=6),
        lorenz=dict(paper_tables.CONFIGS["full"]),
        latency_steps=1000,
    ),
}
LORENZ_MGRADE_UNITS = 25  # paper_tables' 12 KB mGRADE model
SKIP = 32  # Lorenz: steps left out of the NRMSE (warm-up)


def rnn(kind, units, features, outputs, seed, pooled):
    """One GRU/LSTM layer, a per-step Dense head, and the classifier's
    mean pooling when `pooled`."""
    inputs = keras.Input((None, features), name="inputs")
    cell = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[kind]
    x = cell(units, return_sequences=True, seed=seed, name=kind)(inputs)
    x = keras.layers.Dense(outputs, name="decoder")(x)
    if pooled:
        x = TemporalMeanPooling(name="pooling")(x)
    return keras.Model(inputs, x, name=kind)


def matched_units(kind, target_bytes, features, outputs, pooled):
    """The width whose int8 parameter bytes are closest to the target."""

    def parameter_bytes(units):
        model = rnn(kind, units, features, outputs, 0, pooled)
        return memory.footprint(model, "int8").parameter_bytes

    low, high = 2, 256
    while high - low > 1:  # parameter bytes grow with the width
        mid = (low + high) // 2
        if parameter_bytes(mid) <= target_bytes:
            low = mid
        else:
            high = mid
    return min(
        (low, high), key=lambda u: abs(parameter_bytes(u) - target_bytes)
    )


def classify_task(config, seed):
    """The quickstart task (multi_timescale, 4 classes)."""
    n = config["train"] + config["test"]
    x, y = datasets.multi_timescale(n, timesteps=config["timesteps"], seed=seed)
    split = config["train"]
    return dict(
        train=(x[:split], y[:split]),
        test=(x[split:], y[split:]),
        features=2,
        outputs=4,
        pooled=True,
    )


def lorenz_task(config, seed):
    data = paper_tables.lorenz_data(config)
    return dict(data, features=1, outputs=2, pooled=False)


def build(task_name, kind, task, seed, units=None):
    if kind == "mgrade":
        if task_name == "classify":
            return quickstart.build(seed)
        return paper_tables.build("mgrade", LORENZ_MGRADE_UNITS, seed)
    return rnn(
        kind, units, task["features"], task["outputs"], seed, task["pooled"]
    )


def train(model, task_name, task, config, seed):
    keras.utils.set_random_seed(seed)
    x, y = task["train"]
    if task_name == "classify":
        model.compile(
            keras.optimizers.Adam(3e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        extra = [callbacks.SigmaAnnealing(end=0.5, fraction=0.5)]
        model.fit(
            x,
            y,
            batch_size=32,
            epochs=config["epochs"],
            verbose=0,
            callbacks=extra if model.name.startswith("mgrade") else [],
        )
        return model
    return paper_tables.train_model(model, task, config["epochs"])


def metric(task_name, task, predictions):
    x, y = task["test"]
    if task_name == "classify":
        if predictions.ndim == 3:  # per-step logits: the host's mean
            predictions = predictions.mean(axis=1)
        return float(np.mean(np.argmax(predictions, -1) == y))
    return paper_tables.nrmse(predictions, y, SKIP)


def latency_us(path, x, steps):
    """Median host time of one TFLite Micro invoke (microseconds)."""
    interp = StreamingInterpreter(path, "tflm")
    sample = interp.inputs[0].to_file(x[0][None])
    times = []
    for _ in range(3):
        interp.reset()
        start = time.perf_counter()
        for _ in range(steps):
            interp.step_raw(sample)
        times.append((time.perf_counter() - start) / steps)
    return 1e6 * float(np.median(times))


def measure(task_name, task, model, config, tmp):
    x_train, _ = task["train"]
    x_test, _ = task["test"]
    path = os.path.join(tmp, f"{model.name}.tflite")
    report = export_tflite(
        model,
        path,
        quantize="int8",
        representative_data=x_train[:64],
        verbose=False,
    )
    fp = memory.footprint(model, "int8")
    return dict(
        parameter_bytes=fp.parameter_bytes,
        flatbuffer_bytes=report["flatbuffer_bytes"],
        arena_bytes=report["arena_bytes"],
        arena_32bit_estimate=report["arena"]["cortex_m_estimate_bytes"],
        operators=report["operators"],
        latency_us=latency_us(path, x_test[0], config["latency_steps"]),
        float_metric=metric(task_name, task, model.predict(x_test, verbose=0)),
        int8_metric=metric(task_name, task, stream_file(path, x_test)),
    )


def run(task_name, config, seeds, log):
    rows = {}
    for seed in range(seeds):
        task = (classify_task if task_name == "classify" else lorenz_task)(
            config[task_name], seed
        )
        target = None
        for kind in KINDS:
            start = time.perf_counter()
            units = None
            if kind != "mgrade":
                units = matched_units(
                    kind,
                    target,
                    task["features"],
                    task["outputs"],
                    task["pooled"],
                )
            model = build(task_name, kind, task, seed, units)
            model = train(model, task_name, task, config[task_name], seed)
            with tempfile.TemporaryDirectory() as tmp:
                row = measure(task_name, task, model, config, tmp)
            if kind == "mgrade":
                target = row["parameter_bytes"]
            row["units"] = units
            rows.setdefault(kind, []).append(row)
            log(
                f"{task_name} {kind} seed {seed}: {json.dumps(row)} "
                f"({time.perf_counter() - start:.0f} s)"
            )
    return rows


COLUMNS = (
    ("units", "H", "{}"),
    ("parameter_bytes", "int8 param B", "{:,}"),
    ("flatbuffer_bytes", "flatbuffer B", "{:,}"),
    ("arena_bytes", "arena B (host)", "{:,}"),
    ("arena_32bit_estimate", "arena B (32-bit est.)", "{:,}"),
    ("operators", "operators", "{}"),
    ("latency_us", "µs/step (host TFLM)", "{:.1f}"),
)


def table(task_name, rows):
    name = "accuracy" if task_name == "classify" else "NRMSE"
    head = [label for _, label, _ in COLUMNS]
    head += [f"float {name}", f"int8 {name} (TFLM)"]
    lines = [
        "| model | " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(head),
    ]
    for kind, runs in rows.items():
        cells = []
        for key, _, fmt in COLUMNS:
            values = [r[key] for r in runs if r[key] is not None]
            if key == "latency_us" and values:  # timing noise: the median
                values = [float(np.median(values))]
            cells.append(fmt.format(values[0]) if values else "—")
        for key in ("float_metric", "int8_metric"):
            values = np.array([r[key] for r in runs])
            cells.append(f"{values.mean():.4f} ± {values.std():.4f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny check")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--out", default=os.path.join("out", "deploy_compare"))
    parser.add_argument(
        "--tables",
        metavar="RESULTS_JSON",
        help="print the tables of an earlier run's results.json and exit",
    )
    args = parser.parse_args(argv)
    if args.tables:
        with open(args.tables) as f:
            for name, rows in json.load(f).items():
                print(f"\n## {name}\n")
                print(table(name, rows))
        return
    config = CONFIGS["fast" if args.fast else "full"]
    seeds = args.seeds or (1 if args.fast else 3)
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", flush=True)

    results = {
        name: run(name, config, seeds, log) for name in ("classify", "lorenz")
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    for name, rows in results.items():
        print(f"\n## {name}\n")
        print(table(name, rows))
    print(f"\nwall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
