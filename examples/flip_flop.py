"""Learn the flip-flop language: remember the last written bit.

Every step of a flip-flop sequence (`keras_mgrade.datasets.flip_flop`,
Liu et al. 2023) is an instruction, `write`, `ignore` or `read`, with a
bit. At a `read` the model must output the bit of the most recent `write`,
however many `ignore` steps (each with a random distractor bit) came in
between: a one-bit memory that must be overwritten by writes and kept
through everything else. With `p_write = p_read = 0.1` (the sparse
FFL(0.8) setting) the last write is on average 10 steps back, sometimes
more than 50.

The model is `mgrade_seq2seq` (2 MGRADE blocks, 32 units, 4 delays in a
16-step window) with one logit per step, trained with binary
cross-entropy on the read steps only (`sample_weight` = the read mask).
The metric is the accuracy on the read steps (chance: 50 %), measured at
the training length and, with the same weights, on sequences 4 times
longer: the recurrence carries the bit over any distance, so the
accuracy should hold.

Expected (2 CPU cores, about 70 s): 100.0 % read accuracy at the
training length (256 steps) and 100.0 % at 1024 steps. `--fast` (64
steps, then 256) also reaches 100 %.

    python examples/flip_flop.py [--fast] [--out out/flip_flop]
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade import datasets  # noqa: E402
from keras_mgrade.models import mgrade_seq2seq  # noqa: E402

CONFIGS = {
    # name: (train sequences, test sequences, timesteps, epochs)
    "fast": (512, 64, 64, 8),
    "full": (2048, 256, 256, 10),
}
LONGER = 4  # test on sequences this many times longer than in training


def build(timesteps, seed):
    return mgrade_seq2seq(
        input_features=4,
        output_features=1,
        units=32,
        num_layers=2,
        kernel_taps=4,
        max_delay=16,
        timesteps=timesteps,
        seed=seed,
    )


def read_accuracy(model, x, y, mask):
    """Percentage of read steps whose bit the model gets right."""
    logits = model.predict(x, batch_size=64, verbose=0)
    correct = (logits > 0.0) == (y > 0.5)
    return 100.0 * float(np.sum(correct[..., 0] * mask) / np.sum(mask))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="CI size")
    parser.add_argument("--out", default=os.path.join("out", "flip_flop"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    n_train, n_test, timesteps, epochs = CONFIGS[
        "fast" if args.fast else "full"
    ]
    keras.utils.set_random_seed(args.seed)
    x, y, mask = datasets.flip_flop(n_train, timesteps, seed=args.seed)
    test = datasets.flip_flop(n_test, timesteps, seed=args.seed + 1)
    longer = datasets.flip_flop(n_test, LONGER * timesteps, seed=args.seed + 2)

    model = build(timesteps, args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    print(
        f"training on {n_train} sequences of {timesteps} steps "
        f"({int(mask.sum())} read steps)"
    )
    model.fit(
        x,
        y,
        sample_weight=mask,
        batch_size=32,
        epochs=epochs,
        verbose=2 if args.fast else 1,
    )
    accuracy = read_accuracy(model, *test)
    # The same weights in a model built for longer sequences.
    long_model = build(LONGER * timesteps, args.seed)
    long_model.set_weights(model.get_weights())
    long_accuracy = read_accuracy(long_model, *longer)

    seconds = time.perf_counter() - start
    results = {
        "backend": keras.backend.backend(),
        "read_accuracy": accuracy,
        "read_accuracy_longer": long_accuracy,
        "timesteps": timesteps,
        "longer_timesteps": LONGER * timesteps,
        "seconds": seconds,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(f"read accuracy, {timesteps} steps: {accuracy:.1f} % (chance 50 %)")
    print(f"read accuracy, {LONGER * timesteps} steps: {long_accuracy:.1f} %")
    print(f"total {seconds:.0f} s")
    return accuracy, long_accuracy


if __name__ == "__main__":
    main()
