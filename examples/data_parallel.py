"""Train an mGRADE classifier on several devices with data parallelism.

`keras.distribution.DataParallel` (JAX backend) replicates the weights on
every device and splits each global batch along the batch axis: with 2
devices and a global batch of 32, each device runs the forward and
backward pass on 16 sequences, and the gradients are summed across the
devices before the (replicated) optimizer step. The result is the same
training as on one device up to float32 rounding: only the order of the
additions in the batch reductions changes.

This script trains `mgrade_classifier` (2 MGRADE blocks of 16 units, 4
delays in a 16-step window) on `keras_mgrade.datasets.multi_timescale`
twice, from the same seed on the same data in the same order: once with
`DataParallel` over all devices, once on a single device. It prints how
the batches were split and the largest differences between the two runs
(final weights, per-epoch losses).

Without accelerators, XLA can split the CPU into virtual devices:
`--virtual-devices N` sets
`XLA_FLAGS=--xla_force_host_platform_device_count=N` before JAX is
imported (the flag has no effect once JAX has started). The script also
sets `PJRT_NPROC` (unless set), the size of the thread pool on which
XLA's CPU client runs the programs of all its devices, to two threads per
device (at least one per core). With the default of one thread per core,
2 virtual devices on 2 cores can deadlock: XLA aborts with "Termination
timeout for `all reduce` ... of 40 seconds exceeded. ... Expected 2
threads to join the rendezvous, but only 1 of them arrived on time". Of 3
full runs started at once on this machine, 2 aborted so; with
`PJRT_NPROC=4`, 6 of 6 finished. The backend must be JAX.

Expected (2 CPU cores, `--virtual-devices 2`, about 40 s): both runs
reach 100 % training accuracy and a final loss of 0.0342 (0.034227 and
0.034212). The per-step differences are float32 rounding, but over 512
Adam steps they grow: the final weights differ by up to 1.3e-3 (training
moved them by up to 1.2), the epoch losses by up to 4.6e-5; after the 16
steps of `--fast`, 1.2e-7 and 0. On a CPU the 2 virtual devices share
the same cores, so the parallel run is not faster.

    python examples/data_parallel.py --virtual-devices 2 [--fast] [--out DIR]
"""

import argparse
import json
import os
import re
import time

CONFIGS = {
    # name: (train sequences, timesteps, MGRADE blocks, epochs)
    "fast": (256, 48, 1, 2),
    "full": (2048, 128, 2, 8),
}
GLOBAL_BATCH_SIZE = 32
DEVICES_FLAG = "--xla_force_host_platform_device_count"


def configure_xla(virtual_devices=None):
    """Before JAX is imported: asks XLA for `virtual_devices` CPU devices
    (if given and `XLA_FLAGS` does not already say how many), and, when the
    CPU is split into devices, sizes XLA's CPU thread pool (`PJRT_NPROC`,
    unless set) to two threads per device or one per core if more."""
    flags = os.environ.get("XLA_FLAGS", "")
    if virtual_devices is not None and DEVICES_FLAG not in flags:
        flags = f"{flags} {DEVICES_FLAG}={virtual_devices}".strip()
        os.environ["XLA_FLAGS"] = flags
    match = re.search(DEVICES_FLAG + r"=(\d+)", flags)
    if match:
        threads = max(2 * int(match.group(1)), os.cpu_count() or 1)
        os.environ.setdefault("PJRT_NPROC", str(threads))


def train(build, data, seed, epochs, distribution=None, verbose=2):
    """Builds and trains a model from `seed`, under `distribution` (None:
    one device). Returns the model, its initial weights, the history and
    the seconds spent in `fit` (compilation included)."""
    import contextlib

    import keras

    scope = distribution.scope() if distribution else contextlib.nullcontext()
    with scope:
        keras.utils.set_random_seed(seed)
        model = build(seed)
        initial = [keras.ops.convert_to_numpy(w) for w in model.weights]
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        start = time.perf_counter()
        history = model.fit(
            *data,
            batch_size=GLOBAL_BATCH_SIZE,
            epochs=epochs,
            shuffle=True,
            verbose=verbose,
        )
        seconds = time.perf_counter() - start
    return model, initial, history.history, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="CI size")
    parser.add_argument(
        "--virtual-devices",
        type=int,
        default=None,
        metavar="N",
        help="split the CPU into N XLA devices (set before JAX starts)",
    )
    parser.add_argument("--out", default=os.path.join("out", "data_parallel"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configure_xla(args.virtual_devices)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import keras
    import numpy as np

    from keras_mgrade import datasets
    from keras_mgrade.models import mgrade_classifier

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            "This example needs the JAX backend (keras.distribution."
            "DataParallel is used with JAX here). Run it with "
            f"KERAS_BACKEND=jax. Received: backend "
            f"{keras.backend.backend()!r}"
        )
    import jax

    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        raise RuntimeError(
            "Data parallelism needs at least 2 devices. On a CPU, pass "
            "--virtual-devices 2 (or set XLA_FLAGS="
            f"{DEVICES_FLAG}=2 before JAX is imported). Received: devices "
            f"{devices}"
        )
    if GLOBAL_BATCH_SIZE % len(devices):
        raise RuntimeError(
            f"The global batch ({GLOBAL_BATCH_SIZE}) must split evenly over "
            f"the devices. Received: {len(devices)} devices"
        )
    start = time.perf_counter()
    n_train, timesteps, num_layers, epochs = CONFIGS[
        "fast" if args.fast else "full"
    ]
    x_train, y_train = datasets.multi_timescale(
        n_train, timesteps=timesteps, seed=args.seed
    )

    def build(seed):
        return mgrade_classifier(
            input_features=2,
            num_classes=4,
            units=16,
            num_layers=num_layers,
            kernel_taps=4,
            max_delay=16,
            sigma=2.0,
            timesteps=timesteps,
            seed=seed,
        )

    distribution = keras.distribution.DataParallel(devices=devices)
    layout = distribution.get_data_layout(
        (GLOBAL_BATCH_SIZE,) + x_train.shape[1:]
    )
    batch = keras.distribution.distribute_tensor(
        x_train[:GLOBAL_BATCH_SIZE], layout
    )
    shards = {
        str(shard.device): int(shard.data.shape[0])
        for shard in batch.addressable_shards
    }
    print(
        f"{len(devices)} devices ({', '.join(devices)}); a global batch of "
        f"{GLOBAL_BATCH_SIZE} sequences is split as {shards}"
    )
    verbose = 2 if args.fast else 1

    print(f"\ntraining with DataParallel on {len(devices)} devices")
    parallel, parallel_initial, parallel_history, parallel_seconds = train(
        build, (x_train, y_train), args.seed, epochs, distribution, verbose
    )
    weight_devices = {
        len(w.value.sharding.device_set) for w in parallel.weights
    }
    print("\ntraining the same model on one device")
    single, single_initial, single_history, single_seconds = train(
        build, (x_train, y_train), args.seed, epochs, None, verbose
    )

    def max_diff(a, b):
        return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))

    initial_diff = max_diff(parallel_initial, single_initial)
    weight_diff = max_diff(
        [keras.ops.convert_to_numpy(w) for w in parallel.weights],
        [keras.ops.convert_to_numpy(w) for w in single.weights],
    )
    weight_change = max_diff(
        [keras.ops.convert_to_numpy(w) for w in single.weights],
        single_initial,
    )
    loss_diff = float(
        np.max(
            np.abs(
                np.array(parallel_history["loss"])
                - np.array(single_history["loss"])
            )
        )
    )
    seconds = time.perf_counter() - start
    results = {
        "backend": keras.backend.backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "num_devices": len(devices),
        "global_batch_size": GLOBAL_BATCH_SIZE,
        "batch_split": shards,
        "weight_devices": sorted(weight_devices),
        "initial_weight_max_abs_diff": initial_diff,
        "weight_max_abs_diff": weight_diff,
        "weight_max_abs_change": weight_change,
        "loss_max_abs_diff": loss_diff,
        "parallel_loss": parallel_history["loss"],
        "single_loss": single_history["loss"],
        "parallel_accuracy": 100.0 * parallel_history["accuracy"][-1],
        "single_accuracy": 100.0 * single_history["accuracy"][-1],
        "parallel_seconds": parallel_seconds,
        "single_seconds": single_seconds,
        "seconds": seconds,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print()
    print("| run | final loss | accuracy | training time |")
    print("|---|---:|---:|---:|")
    runs = (
        (f"DataParallel, {len(devices)} devices", parallel_history),
        ("one device", single_history),
    )
    for (name, history), run_seconds in zip(
        runs, (parallel_seconds, single_seconds)
    ):
        print(
            f"| {name} | {history['loss'][-1]:.6f} | "
            f"{100.0 * history['accuracy'][-1]:.1f} % | {run_seconds:.0f} s |"
        )
    print(
        f"max |difference|: final weights {weight_diff:.2e} (training "
        f"moved them by up to {weight_change:.2e}), epoch losses "
        f"{loss_diff:.2e}"
    )
    print(f"total {seconds:.0f} s")
    return results


if __name__ == "__main__":
    main()
