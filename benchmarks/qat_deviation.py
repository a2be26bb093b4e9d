"""How closely an int8 file on TFLite Micro follows its QAT model.

Trains a float model, fine-tunes it with quantization-aware training,
exports it to int8 without calibration data and streams test sequences
through the file on TFLite Micro and through the QAT model's step graph
(`streaming_model(qat)`), then prints the share of outputs (every step of
every sequence) within 2 int8 output steps and the largest difference.

- `digits`: scikit-learn's digits read as 16 steps of 4 pixels,
  `mgrade_classifier` with 2 blocks of 16 units and the default
  `norm="layer"`, 6 float + 2 QAT epochs, 64 test sequences;
- `lorenz`: the 32-unit Lorenz seq2seq of `benchmarks/qat.py` (`load`,
  `build`) with `norm="layer"`, 512 training trajectories of 128 steps,
  20 float + 2 QAT epochs, 64 test trajectories.

    KERAS_BACKEND=tensorflow python benchmarks/qat_deviation.py digits
    KERAS_BACKEND=tensorflow python benchmarks/qat_deviation.py lorenz

Measured (seed 0, 2-core CPU): digits 99.95 % within 2 steps, max 4
(60.2 %, max 26 when the QAT model rounded each requantization once);
lorenz 100 %, max 1 (70.9 %, max 53). About 4 and 8 minutes.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade import datasets  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402
from keras_mgrade.export import stream  # noqa: E402
from keras_mgrade.export import stream_file  # noqa: E402
from keras_mgrade.export import streaming_model  # noqa: E402
from keras_mgrade.models import mgrade_classifier  # noqa: E402
from keras_mgrade.quantization import quantize_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qat as qat_benchmark  # noqa: E402


def task(name, seed):
    """`(model, loss, x_train, y_train, x_test, float epochs)`."""
    if name == "digits":
        (x_train, y_train), (x_test, _) = datasets.digits(seed=seed)
        x_train = x_train.reshape(-1, 16, 4)
        x_test = x_test.reshape(-1, 16, 4)[:64]
        model = mgrade_classifier(
            4, 10, units=16, num_layers=2, norm="layer", seed=seed
        )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return model, loss, x_train, y_train, x_test, 6
    x_train, y_train, x_test, _ = qat_benchmark.load("lorenz", "full", seed)
    model, loss, _ = qat_benchmark.build(
        "lorenz", 32, "layer", x_train.shape[1], seed
    )
    return model, loss, x_train[:512], y_train[:512], x_test[:64], 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=["digits", "lorenz"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    model, loss, x, y, x_test, epochs = task(args.task, args.seed)
    model.compile(keras.optimizers.Adam(3e-3), loss)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-3), loss)
    qat.fit(x, y, batch_size=32, epochs=2, verbose=0)
    path = os.path.join(tempfile.mkdtemp(), f"{args.task}.tflite")
    report = export_tflite(
        qat, path, quantize="int8", check_data=x_test[:4], verbose=False
    )
    got = stream_file(
        path, x_test, "tflm", arena_size=report["arena_bytes"] + 1024
    )
    step = streaming_model(
        qat,
        host_pooling=report["host_pooling"] == "mean",
        batch_size=len(x_test),
    )
    expected, _ = stream(step, x_test)
    lsb = np.abs(got - expected) / report["outputs"][0]["scale"]
    print(
        f"{args.task} seed {args.seed}: {100 * np.mean(lsb <= 2.001):.3f} % "
        f"of {lsb.size} outputs within 2 output steps, max "
        f"{lsb.max():.2f} steps"
    )


if __name__ == "__main__":
    main()
