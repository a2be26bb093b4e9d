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
a 16-step window: 4.0k parameters, about 6 KB at int8) with
`gate_bias_initializer="timescales"`: the MinGRU gates start with
memories spread from 2 to 256 steps, so the gradient reaches a write
burst hundreds of steps back from the start of training (README, "Gate
bias at initialization"). It is trained with cross-entropy on the steps
after the first write. The full run also trains the library default (a
zero gate bias: every memory starts at about 2 steps) and the same stack
without the convolution (`use_conv=False`, the MinGRU-only ablation).
The metric is the per-step accuracy on the test set (chance about 50 %).

Expected (TensorFlow, 2 CPU cores, about 1 minute): 99.6 % with
timescales, 99.6 % with the zero gate bias (this task is learned either
way; `cued_lorenz` is where the gate bias matters, see
`benchmarks/RESULTS.md`), MinGRU-only 48.8 % (it cannot tell the tones
apart); 3 seeds and the GRU, LSTM and conv-only models at the same int8
footprint in `benchmarks/multiscale.py`.
`--fast` (the timescales model only, 384 sequences of 96 steps, 3
epochs) reaches 87-92 % (TensorFlow 91.5 %, JAX 87.3 %, PyTorch 90.0 %;
under 30 s).

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
    "full": (1024, 512, 256, 12, True),
}


def accuracy(model, x, y, mask):
    """Percentage of the scored steps whose bit the model gets right."""
    logits = model.predict(x, batch_size=128, verbose=0)
    correct = np.argmax(logits, axis=-1) == y
    return 100.0 * float(np.sum(correct * mask) / np.sum(mask))


def train(x, y, mask, epochs, seed, use_conv=True, gate="timescales"):
    """Trains a 2-block stack of 16 units on the tone flip-flop."""
    model = mgrade_seq2seq(
        input_features=1,
        output_features=2,
        units=16,
        num_layers=2,
        kernel_taps=4,
        max_delay=16,
        use_conv=use_conv,
        gate_bias_initializer=gate,
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
    models = {"mgrade": dict(gate="timescales")}
    if ablation:
        models["mgrade_zero_gate_bias"] = dict(gate=None)
        models["mingru_only"] = dict(gate=None, use_conv=False)
    for name, options in models.items():
        keras.utils.set_random_seed(args.seed)
        model = train(x, y, mask, epochs, args.seed, **options)
        results[f"{name}_accuracy"] = accuracy(model, *test)
        print(f"{name}: test accuracy {results[name + '_accuracy']:.1f} %")
        if name == "mgrade":
            results["parameters"] = model.count_params()

    results["seconds"] = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"total {results['seconds']:.0f} s")
    return results["mgrade_accuracy"]


if __name__ == "__main__":
    main()
