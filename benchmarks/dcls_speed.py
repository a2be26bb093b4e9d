"""Training-step time of DCLSConv1D vs keras.layers.DepthwiseConv1D.

One training step = `model.train_on_batch` (forward, backward, Adam update)
of `Input(T, C) -> layer` with a mean-squared error against random
targets. DCLSConv1D has `N` learnable delays per channel in a window of
`max_delay`; the reference is a `DepthwiseConv1D` with a dense kernel of
the same span on the causally padded input (what DCLSConv1D computes after
building its dense kernel). Also timed: DCLSConv1D after
`round_positions()` (the inference form, positions frozen). Variants are
timed alternately in one process; the median over rounds is reported.

    KERAS_BACKEND=jax python benchmarks/dcls_speed.py

Defaults: B=16, T=1024, C=64, max_delay=64, kernel_taps=8.
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade.layers import DCLSConv1D  # noqa: E402


def make_model(kind, timesteps, channels, max_delay, taps):
    inputs = keras.Input((timesteps, channels))
    if kind == "depthwise":
        x = keras.layers.ZeroPadding1D((max_delay - 1, 0))(inputs)
        out = keras.layers.DepthwiseConv1D(max_delay, padding="valid")(x)
    else:
        layer = DCLSConv1D(taps, max_delay, seed=0)
        out = layer(inputs)
        if kind == "dcls_rounded":
            layer.round_positions()
    model = keras.Model(inputs, out)
    model.compile(optimizer="adam", loss="mse")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--timesteps", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--max-delay", type=int, default=64)
    parser.add_argument("--kernel-taps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    kinds = ["dcls", "dcls_rounded", "depthwise"]
    rng = np.random.default_rng(0)
    shape = (args.batch, args.timesteps, args.channels)
    x = rng.normal(size=shape).astype("float32")
    y = rng.normal(size=shape).astype("float32")
    models = {
        k: make_model(
            k, args.timesteps, args.channels, args.max_delay, args.kernel_taps
        )
        for k in kinds
    }
    for model in models.values():
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
    times = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[kind].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"backend={keras.backend.backend()} keras={keras.__version__} "
        f"python={platform.python_version()} cpus={os.cpu_count()} "
        f"B={args.batch} T={args.timesteps} C={args.channels} "
        f"max_delay={args.max_delay} kernel_taps={args.kernel_taps}"
    )
    for k in kinds:
        print(
            f"{k:>14}: {med[k] * 1e3:8.2f} ms  "
            f"({med[k] / med['depthwise']:.2f} x DepthwiseConv1D)"
        )


if __name__ == "__main__":
    main()
