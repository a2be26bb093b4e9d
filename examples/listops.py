"""ListOps: evaluate nested list expressions read one token at a time.

`keras_mgrade.datasets.listops` samples Long Range Arena ListOps
expressions such as `[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]` (value 9);
the label is the value, a digit. Reading left to right, the model must
keep a stack of partial results: hierarchical structure that a small
recurrent state only approximates. This example uses short expressions
(at most 64 tokens, nesting depth at most 3) so that it trains on a CPU;
the LRA benchmark uses up to 2000 tokens. `--fast` uses single operators
(depth 1) of at most 32 tokens.

The expressions are right-aligned (padding first), so the last step of
every sequence is the closing bracket, and the classifier reads its
logits there (`mgrade_classifier(pooling="last")`, an Embedding encoder,
2 MGRADE blocks of 32 units, 4 delays in a 16-step window). Chance is
the frequency of the most common value in the test set (about 15 %:
`MAX` and `MIN` make 9 and 0 more frequent).

Expected (2 CPU cores, about 2 minutes): 54.6 % test accuracy against a
15.6 % majority-class baseline. `--fast` (the easier depth-1 task)
reaches about 50 % against 14 %.

    python examples/listops.py [--fast] [--out out/listops]
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
from keras_mgrade.models import mgrade_classifier  # noqa: E402

CONFIGS = {
    # name: (train sequences, test sequences, max tokens, max depth, epochs)
    "fast": (2048, 256, 32, 1, 4),
    "full": (16000, 1000, 64, 3, 10),
}


def right_align(x):
    """Moves the padding (id 0) of every row to the front."""
    lengths = np.sum(x != 0, axis=1)
    aligned = np.zeros_like(x)
    for row, (tokens, length) in enumerate(zip(x, lengths)):
        aligned[row, x.shape[1] - length :] = tokens[:length]
    return aligned


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="CI size")
    parser.add_argument("--out", default=os.path.join("out", "listops"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    n_train, n_test, max_length, max_depth, epochs = CONFIGS[
        "fast" if args.fast else "full"
    ]
    keras.utils.set_random_seed(args.seed)
    print(f"sampling {n_train + n_test} expressions")
    x, y = datasets.listops(
        n_train + n_test,
        max_length=max_length,
        max_depth=max_depth,
        seed=args.seed,
    )
    x = right_align(x)
    x_train, y_train = x[:n_train], y[:n_train]
    x_test, y_test = x[n_train:], y[n_train:]

    model = mgrade_classifier(
        input_features=None,
        num_classes=10,
        vocabulary_size=len(datasets.LISTOPS_VOCABULARY),
        units=32,
        num_layers=2,
        kernel_taps=4,
        max_delay=16,
        pooling="last",
        timesteps=max_length,
        seed=args.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    print(
        f"training on {n_train} expressions of at most {max_length} tokens "
        f"and depth {max_depth}"
    )
    model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=epochs,
        validation_data=None if args.fast else (x_test, y_test),
        verbose=2 if args.fast else 1,
    )
    logits = model.predict(x_test, batch_size=128, verbose=0)
    accuracy = 100.0 * float(np.mean(np.argmax(logits, -1) == y_test))
    majority = 100.0 * float(np.max(np.bincount(y_test, minlength=10)))
    majority /= len(y_test)

    seconds = time.perf_counter() - start
    results = {
        "backend": keras.backend.backend(),
        "accuracy": accuracy,
        "majority_class": majority,
        "seconds": seconds,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print()
    example = datasets.listops_to_string(x_test[0])
    prediction = int(np.argmax(logits[0]))
    print(f"example: {example} = {y_test[0]} (predicted {prediction})")
    print(f"test accuracy {accuracy:.1f} % (majority class {majority:.1f} %)")
    print(f"total {seconds:.0f} s")
    return accuracy, majority


if __name__ == "__main__":
    main()
