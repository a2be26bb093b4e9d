"""Training-step time of MinGRU (every scan form) vs keras.layers.GRU and
the projection-only bound.

One training step = `model.train_on_batch` (forward, backward, Adam update)
of `Input(T, D) -> layer(H, return_sequences=True)` with a mean-squared
error against random targets, B=16, D=64, H=128. The projection-only
bound is the same Dense projection and gates as MinGRU with the scan
removed (output `z * g(h~)`): no recurrent layer can be faster than that.
All variants of one T are timed alternately (round-robin) in one process,
and the median over rounds is reported.

Run once per backend:

    KERAS_BACKEND=jax python benchmarks/scan_speed.py
    KERAS_BACKEND=tensorflow python benchmarks/scan_speed.py
    KERAS_BACKEND=torch python benchmarks/scan_speed.py

Options: `--timesteps 256 1024 4096`, `--rounds 7`, `--json out.json`.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_mgrade.layers import MinGRU  # noqa: E402
from keras_mgrade.layers.min_gru import MinGRUCell  # noqa: E402
from keras_mgrade.layers.min_gru import candidate_activation  # noqa: E402


class ProjectionOnly(keras.layers.Layer):
    """MinGRU without the scan: the lower bound of any MinGRU."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.cell = MinGRUCell(units)

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs):
        pre = ops.cast(self.cell.project(inputs), "float32")
        z = ops.sigmoid(pre[..., : self.units])
        return z * candidate_activation(pre[..., self.units :])


def make_model(kind, timesteps, features, units):
    inputs = keras.Input((timesteps, features), batch_size=None)
    if kind == "gru":
        layer = keras.layers.GRU(units, return_sequences=True)
    elif kind == "projection":
        layer = ProjectionOnly(units)
    else:
        layer = MinGRU(units, return_sequences=True, scan=kind)
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer="adam", loss="mse")
    return model


def time_steps(timesteps, kinds, batch, features, units, rounds, warmup):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, timesteps, features)).astype("float32")
    y = rng.uniform(size=(batch, timesteps, units)).astype("float32")
    models = {k: make_model(k, timesteps, features, units) for k in kinds}
    for model in models.values():
        for _ in range(warmup):
            model.train_on_batch(x, y)
    times = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[kind].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--timesteps", type=int, nargs="+", default=[256, 1024, 4096]
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=[
            "auto",
            "sequential",
            "chunked",
            "associative",
            "log",
            "gru",
            "projection",
        ],
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    backend = keras.backend.backend()
    from keras_mgrade.ops import resolve_method

    print(
        f"backend={backend} keras={keras.__version__} "
        f"python={platform.python_version()} cpus={os.cpu_count()} "
        f"auto={resolve_method('auto', 1024)}"
    )
    results = []
    header = f"{'T':>6} " + " ".join(f"{k:>12}" for k in args.kinds)
    print("training-step time, ms (median)")
    print(header)
    for t in args.timesteps:
        res = time_steps(
            t,
            args.kinds,
            args.batch,
            args.features,
            args.units,
            args.rounds,
            args.warmup,
        )
        print(
            f"{t:>6} " + " ".join(f"{res[k] * 1e3:>12.1f}" for k in args.kinds)
        )
        sys.stdout.flush()
        results.append({"timesteps": t, "seconds": res})
    if "gru" in args.kinds and "projection" in args.kinds:
        print("\nratios of MinGRU(scan='auto'): vs GRU, vs projection bound")
        for r in results:
            s = r["seconds"]
            print(
                f"T={r['timesteps']:>5}: {s['auto'] / s['gru']:.2f} x GRU, "
                f"{s['auto'] / s['projection']:.2f} x bound"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "backend": backend,
                    "keras": keras.__version__,
                    "results": results,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
