"""A flip-flop read from fast tones: delays and recurrence, both needed.

In `keras_mgrade.datasets.tone_flip_flop` the only input is one noisy
channel. Now and then it carries an 8-step burst of a square wave of
random phase and amplitude; its half period is the instruction: 1 step
"write 1", 2 steps "write 0", 4 steps "ignore". At every step the model
must output the bit of the last write, held through distractor bursts
for up to a few hundred steps. Every sample of a burst is
`+-amplitude`, so telling the bursts apart needs the last few samples
(a delay embedding, what `DCLSConv1D` provides), and holding the bit
needs a memory far longer than the convolution's 16-step window (what
the `MinGRU` provides): the two timescales of the mGRADE paper at once.

The model is `mgrade_seq2seq` (2 MGRADE blocks of 16 units, 4 delays in
a 16-step window: 3.7k parameters, about 6 KB at int8), trained with
cross-entropy on the steps after the first write; beside it the same
stack without the convolution (`use_conv=False`, the MinGRU-only
ablation). The metric is the per-step accuracy on the test set (chance
about 50 %).

Expected (2 CPU cores, about 3 minutes): mGRADE 99.9 %, MinGRU-only
about 90 % (it has to find the tones with its gates alone; see
`benchmarks/multiscale.py` for 3 seeds and the GRU, LSTM and
convolution-only models at the same footprint). `--fast` (mGRADE only,
512 sequences of 128 steps, 3 epochs) reaches about 90 %.

    python examples/tone_flip_flop.py [--fast] [--out out/tone_flip_flop]
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
    # name: (train sequences, test sequences, timesteps, epochs, ablation)
    "fast": (384, 64, 96, 3, False),
    "full": (2048, 512, 256, 10, True),
}


def accuracy(model, x, y, mask):
    """Percentage of the scored steps whose bit the model gets right."""
    logits = model.predict(x, batch_size=128, verbose=0)
    correct = np.argmax(logits, axis=-1) == y
    return 100.0 * float(np.sum(correct * mask) / np.sum(mask))


def train(x, y, mask, epochs, seed, use_conv=True):
    """Trains a 2-block stack of 16 units on the tone flip-flop."""
    model = mgrade_seq2seq(
        input_features=1,
        output_features=2,
        units=16,
        num_layers=2,
        kernel_taps=4,
        max_delay=16,
        use_conv=use_conv,
        seed=seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        x,
        y,
        sample_weight=mask,
        batch_size=16,
        epochs=epochs,
        verbose=0,
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="CI size")
    parser.add_argument("--out", default=os.path.join("out", "tone_flip_flop"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    n_train, n_test, timesteps, epochs, ablation = CONFIGS[
        "fast" if args.fast else "full"
    ]
    keras.utils.set_random_seed(args.seed)
    x, y, mask = datasets.tone_flip_flop(n_train, timesteps, seed=args.seed)
    test = datasets.tone_flip_flop(n_test, timesteps, seed=args.seed + 1)
    print(
        f"training on {n_train} sequences of {timesteps} steps, {epochs} epochs"
    )
    results = {"backend": keras.backend.backend(), "timesteps": timesteps}
    model = train(x, y, mask, epochs, args.seed)
    results["mgrade_accuracy"] = accuracy(model, *test)
    results["parameters"] = model.count_params()
    print(f"mGRADE: test accuracy {results['mgrade_accuracy']:.1f} %")
    if ablation:
        keras.utils.set_random_seed(args.seed)
        model = train(x, y, mask, epochs, args.seed, use_conv=False)
        results["mingru_only_accuracy"] = accuracy(model, *test)
        print(
            "MinGRU-only (use_conv=False): test accuracy "
            f"{results['mingru_only_accuracy']:.1f} %"
        )

    results["seconds"] = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"total {results['seconds']:.0f} s")
    return results["mgrade_accuracy"]


if __name__ == "__main__":
    main()
