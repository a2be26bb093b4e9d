"""The mGRADE paper's argument measured here: accuracy at a matched int8
deploy footprint, and the streaming footprint of the paper's model sizes.

Part 1 — partially observed Lorenz (`keras_mgrade.datasets.lorenz`): the
model sees the x coordinate (with observation noise) and reconstructs y
and z at every step. Five models are sized to the same int8 deploy
footprint (parameter bytes + state + peak activations, the convention of
`keras_mgrade.memory.footprint(model, "int8")`):

- `mgrade`: `mgrade_seq2seq` (MGRADE blocks: delay conv + MinGRU),
- `conv-only`: the same blocks with `use_recurrence=False` (a TCN-like
  stack of learnable-delay convolutions),
- `mingru-only`: the same blocks with `use_conv=False`,
- `gru`, `lstm`: one `keras.layers.GRU` / `keras.layers.LSTM` layer and a
  per-step Dense decoder (registered streamable kinds: `keras_mgrade.memory`
  counts them, checked against the independent `rnn_footprint` here).

Each is trained with several seeds; the metric is the test NRMSE (per
target coordinate, RMSE divided by the standard deviation of the target,
averaged over y and z; the first `--skip` steps of each sequence, where
no model has seen enough history, are left out). For every kind the
seed-0 model is exported to an int8 streaming file with
`keras_mgrade.export.export_tflite` (GRU and LSTM through their cells, the
standard converter's FULLY_CONNECTED/LOGISTIC/TANH ops) and run on the
TFLite Micro interpreter: the table gives the flatbuffer bytes, the
measured arena (host and 32-bit estimate) and the NRMSE of the int8 file
beside the analytic bytes.

Part 2 — the analytic streaming footprint (int8 parameters and the state
kept between time steps) of mGRADE at the sizes of the paper's
experiments against S4, S5, LRU and Transformer models of the sizes their
authors used on the same tasks (formulas in `s4_size`, `s5_size`,
`lru_size`, `transformer_size`).

Run it under JAX, the default here: on a 2-core CPU it trains the GRU and
LSTM baselines about 3 x faster than TensorFlow, TensorFlow trains the
MGRADE stacks about 1.5 x faster, and PyTorch is the slowest for both:

    KERAS_BACKEND=jax python benchmarks/paper_tables.py [--fast]
        [--seeds 3] [--epochs 25] [--budgets 6000 12000] [--out benchmarks]

`--fast` is a tiny configuration for a quick check (about 2 minutes).
The plot (NRMSE vs int8 bytes) is written to `OUT/paper_tables.png`.
"""

import argparse
import math
import os
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_mgrade import datasets  # noqa: E402
from keras_mgrade import memory  # noqa: E402
from keras_mgrade.export import export_tflite  # noqa: E402
from keras_mgrade.export import stream_file  # noqa: E402
from keras_mgrade.models import mgrade_classifier  # noqa: E402
from keras_mgrade.models import mgrade_seq2seq  # noqa: E402

KINDS = ("mgrade", "conv-only", "mingru-only", "gru", "lstm")
BLOCK_KINDS = {
    "mgrade": {},
    "conv-only": {"use_recurrence": False},
    "mingru-only": {"use_conv": False},
}

CONFIGS = {
    # sequences per split, their length, training, int8 budgets (bytes)
    "fast": dict(
        train=64,
        val=16,
        test=32,
        timesteps=64,
        epochs=2,
        batch_size=16,
        budgets=[5000],
    ),
    "full": dict(
        train=512,
        val=128,
        test=256,
        timesteps=256,
        epochs=25,
        batch_size=16,
        budgets=[6000, 12000],
    ),
}

# The task: x observed with noise, y and z reconstructed.
LORENZ = dict(dt=0.04, noise=0.1, observed=0, task="reconstruct")
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}

# The block configuration shared by the three keras_mgrade models.
BLOCK = dict(num_layers=2, kernel_taps=4, max_delay=16, mlp_ratio=2)


# --------------------------------------------------------------------------
# Part 1: matched-footprint comparison on partially observed Lorenz.
# --------------------------------------------------------------------------


def build(kind, units, seed, features=1, outputs=2):
    """The model of `kind` with width `units` (built)."""
    if kind in BLOCK_KINDS:
        return mgrade_seq2seq(
            features,
            outputs,
            units=units,
            seed=seed,
            name=kind.replace("-", "_"),
            **BLOCK,
            **BLOCK_KINDS[kind],
        )
    layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[kind]
    inputs = keras.Input((None, features), name="inputs")
    x = layer(
        units,
        return_sequences=True,
        seed=seed,
        name=kind,
    )(inputs)
    outputs = keras.layers.Dense(outputs, name="decoder")(x)
    return keras.Model(inputs, outputs, name=kind)


def rnn_footprint(kind, units, features=1, outputs=2):
    """The int8 deploy footprint of `build("gru"|"lstm", ...)`, analytic.

    The convention of `keras_mgrade.memory` (int8 weights 1 byte, matrix
    biases int32 4 bytes, state and activations 1 byte per element, peak
    activations = the new states + the largest per-layer working set):

    - GRU (`reset_after=True`, Keras' default): kernel `(D, 3H)`,
      recurrent kernel `(H, 3H)`, bias `(2, 3H)`; state `h` (`H`); working
      set `x_t`, the input and recurrent projections (`3H` each) and the
      new `h`: `D + 7H`.
    - LSTM: kernel `(D, 4H)`, recurrent kernel `(H, 4H)`, bias `4H`; state
      `h, c` (`2H`); working set `D + 4H + 4H + 2H`.
    - Dense decoder: kernel `(H, O)`, bias `O`; working set `H + O`.

    Returns:
        dict with `parameters`, `parameter_bytes`, `state_bytes`,
        `activation_bytes`, `total_bytes`.
    """
    gates = {"gru": 3, "lstm": 4}[kind]
    weights = gates * units * (features + units)
    biases = (2 if kind == "gru" else 1) * gates * units
    state = units if kind == "gru" else 2 * units
    work_rnn = features + 2 * gates * units + state
    dec_weights, dec_biases = units * outputs, outputs
    parameters = weights + biases + dec_weights + dec_biases
    parameter_bytes = weights + 4 * biases + dec_weights + 4 * dec_biases
    activations = state + max(work_rnn, units + outputs)
    return dict(
        parameters=parameters,
        parameter_bytes=parameter_bytes,
        state_bytes=state,
        activation_bytes=activations,
        total_bytes=parameter_bytes + state + activations,
    )


def footprint(kind, units):
    """The int8 footprint of `kind` at width `units` (dict), from
    `keras_mgrade.memory` (GRU and LSTM are registered streamable kinds);
    for GRU and LSTM checked against the independent `rnn_footprint`."""
    fp = memory.footprint(build(kind, units, seed=0), "int8")
    fp = dict(
        parameters=fp.parameters,
        parameter_bytes=fp.parameter_bytes,
        state_bytes=fp.state_bytes,
        activation_bytes=fp.activation_bytes,
        total_bytes=fp.total_bytes,
    )
    if kind not in BLOCK_KINDS and fp != rnn_footprint(kind, units):
        raise RuntimeError(
            f"keras_mgrade.memory's {kind} footprint {fp} differs from "
            f"the analytic {rnn_footprint(kind, units)}"
        )
    return fp


_QUADRATIC = {}


def match_width(kind, budget, widths=range(2, 257)):
    """The width whose int8 total bytes is closest to `budget`.

    For the keras_mgrade models the total is a quadratic polynomial in the
    width (matrices `H^2`, state and activations `H`), fitted on three
    built models (building one takes seconds); GRU and LSTM are analytic.
    """
    if kind in BLOCK_KINDS:
        if kind not in _QUADRATIC:
            hs = [8, 16, 24]
            totals = [footprint(kind, h)["total_bytes"] for h in hs]
            _QUADRATIC[kind] = np.polyfit(hs, totals, 2)
        total = lambda h: np.polyval(_QUADRATIC[kind], h)  # noqa: E731
    else:
        total = lambda h: rnn_footprint(kind, h)["total_bytes"]  # noqa: E731
    return min(widths, key=lambda h: abs(total(h) - budget))


def nrmse(pred, target, skip):
    """RMSE / std of the target per coordinate, averaged over them."""
    pred, target = pred[:, skip:], target[:, skip:]
    mse = np.mean((pred - target) ** 2, axis=(0, 1))
    return float(np.mean(np.sqrt(mse / np.var(target, axis=(0, 1)))))


def lorenz_data(config):
    data = {}
    for split, seed in SPLIT_SEEDS.items():
        data[split] = datasets.lorenz(
            config[split], config["timesteps"], seed=seed, **LORENZ
        )
    return data


def train(kind, units, seed, data, epochs, batch_size=32):
    """Trains one model; returns it (best validation epoch restored)."""
    keras.utils.set_random_seed(seed)
    return train_model(build(kind, units, seed), data, epochs, batch_size)


def train_model(model, data, epochs, batch_size=32):
    """The training of every model here: Adam with cosine decay, gradient
    clipping, the best validation epoch kept."""
    x, y = data["train"]
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule, clipnorm=1.0), "mse")
    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=data["val"],
        callbacks=[
            keras.callbacks.EarlyStopping(
                "val_loss", patience=epochs, restore_best_weights=True
            )
        ],
        verbose=0,
    )
    return model


def int8_on_micro(model, calibration, x_test):
    """Exports `model` to int8 (calibrated on the `calibration`
    sequences) and streams `x_test` on TFLite Micro: `(export report,
    int8 predictions, float predictions of the model)`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model_int8.tflite")
        report = export_tflite(
            model,
            path,
            quantize="int8",
            representative_data=calibration,
            verbose=False,
        )
        pred = stream_file(path, x_test)
    return report, pred, model.predict(x_test, verbose=0)


def check_on_micro(model, data, skip, num_test):
    """Exports `model` to int8 and streams test sequences on TFLite Micro."""
    x_test, y_test = (a[:num_test] for a in data["test"])
    report, pred, float_pred = int8_on_micro(
        model, data["train"][0][:16], x_test
    )
    return dict(
        flatbuffer_bytes=report["flatbuffer_bytes"],
        arena_bytes=report["arena_bytes"],
        arena_32bit_estimate=report["arena"]["cortex_m_estimate_bytes"],
        nrmse_int8=nrmse(pred, y_test, skip),
        nrmse_float=nrmse(float_pred, y_test, skip),
        num_test=len(x_test),
    )


def run_lorenz(config, seeds, skip, log):
    data = lorenz_data(config)
    rows = []
    for budget in config["budgets"]:
        for kind in KINDS:
            units = match_width(kind, budget)
            fp = footprint(kind, units)
            if abs(fp["total_bytes"] / budget - 1) > 0.1:
                log(
                    f"  warning: {kind} H={units} has {fp['total_bytes']} B, "
                    f"more than 10 % from the budget {budget} B"
                )
            row = dict(kind=kind, budget=budget, units=units, **fp)
            row["nrmse"] = []
            for seed in range(seeds):
                start = time.perf_counter()
                model = train(
                    kind,
                    units,
                    seed,
                    data,
                    config["epochs"],
                    config["batch_size"],
                )
                x_test, y_test = data["test"]
                value = nrmse(model.predict(x_test, verbose=0), y_test, skip)
                row["nrmse"].append(value)
                log(
                    f"  {kind:12s} budget {budget:6d} B  H={units:3d}  "
                    f"{fp['total_bytes']:6d} B  seed {seed}: NRMSE "
                    f"{value:.4f}  ({time.perf_counter() - start:.0f} s)"
                )
                if seed == 0:
                    start = time.perf_counter()
                    row["micro"] = check_on_micro(
                        model, data, skip, num_test=min(32, len(x_test))
                    )
                    log(
                        f"  {kind:12s} int8 file {row['micro']} "
                        f"({time.perf_counter() - start:.0f} s)"
                    )
            rows.append(row)
    return rows


def lorenz_table(rows):
    lines = [
        "| budget | model | H | params | int8 param B | state B | "
        "peak act. B | **int8 total B** | vs budget | NRMSE mean ± std | "
        "per seed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        values = np.array(r["nrmse"])
        lines.append(
            f"| {r['budget']} | {r['kind']} | {r['units']} | "
            f"{r['parameters']} | {r['parameter_bytes']} | "
            f"{r['state_bytes']} | {r['activation_bytes']} | "
            f"**{r['total_bytes']}** | "
            f"{100 * (r['total_bytes'] / r['budget'] - 1):+.1f} % | "
            f"{values.mean():.4f} ± {values.std():.4f} | "
            + ", ".join(f"{v:.4f}" for v in values)
            + " |"
        )
    return "\n".join(lines)


def micro_table(rows):
    lines = [
        "| budget | model | analytic int8 param B | flatbuffer B | "
        "analytic RAM B | TFLite Micro arena B (host / 32-bit est.) | "
        "NRMSE float (seed 0) | NRMSE int8 on TFLite Micro |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ram = r["state_bytes"] + r["activation_bytes"]
        m = r.get("micro")
        if m is None:
            lines.append(
                f"| {r['budget']} | {r['kind']} | {r['parameter_bytes']} | "
                f"not streamed by keras_mgrade | {ram} | — | — | — |"
            )
            continue
        lines.append(
            f"| {r['budget']} | {r['kind']} | {r['parameter_bytes']} | "
            f"{m['flatbuffer_bytes']} | {ram} | {m['arena_bytes']} / "
            f"{m.get('arena_32bit_estimate', '—')} | "
            f"{m['nrmse_float']:.4f} | {m['nrmse_int8']:.4f} |"
        )
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, kind in enumerate(KINDS):
        sub = [r for r in rows if r["kind"] == kind]
        xs = [r["total_bytes"] for r in sub]
        means = [np.mean(r["nrmse"]) for r in sub]
        stds = [np.std(r["nrmse"]) for r in sub]
        color = f"C{i}"
        ax.errorbar(xs, means, yerr=stds, fmt="o-", color=color, label=kind)
        for r in sub:
            ax.plot(
                [r["total_bytes"]] * len(r["nrmse"]),
                r["nrmse"],
                ".",
                color=color,
                alpha=0.4,
            )
    ax.set_xlabel("int8 deploy footprint (bytes: parameters + state + act.)")
    ax.set_ylabel("test NRMSE (y, z)")
    ax.set_title("Partially observed Lorenz: reconstruct y, z from noisy x")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Part 2: analytic streaming footprint at the published model sizes.
#
# Bytes at int8: weights 1 B, matrix biases 4 B (int32), other vectors
# (norm scales, D, eigenvalues) 1 B; the state kept between time steps
# 1 B per real number (a complex number is 2). Every model is counted as a
# causal streaming classifier with the same kind of encoder (token
# embedding or Dense) and decoder; the S4/S5/LRU LRA runs were
# bidirectional, which cannot stream, so their causal (one-direction)
# form is counted. Positional encodings and the two-tower head of the
# Retrieval task are left out for every model.
# --------------------------------------------------------------------------

# task: (sequence length, input tokens or features, classes, tokens?)
TASKS = {
    "ListOps": (2000, 18, 10, True),
    "Text": (4096, 98, 2, True),
    "Retrieval": (4000, 135, 2, True),
    "Image": (1024, 1, 10, False),
    "Pathfinder": (1024, 1, 2, False),
    "Speech Commands": (16000, 1, 35, False),
}

# mGRADE: (L, H, Gamma, taps). The sizes of the authors' experiment
# configurations (github.com/louisnicolascasanova-tech/mGRADE,
# yaml_folder): ListOps c6_9, Text best/imdb_dcls_0, Retrieval
# aan_dcls_42, Pathfinder (Gamma = 1/4 of the 1024 steps, as the ICLR 2026
# reviews of arXiv 2507.01829 note for Image and Pathfinder), Speech
# Commands gsc_dcls_42. Image: no width found; Pathfinder's is assumed.
MGRADE_SIZES = {
    "ListOps": (6, 256, 64, 8),
    "Text": (6, 128, 32, 8),
    "Retrieval": (6, 64, 8, 2),
    "Image": (6, 128, 256, 8),
    "Pathfinder": (6, 128, 256, 8),
    "Speech Commands": (6, 96, 32, 8),
}

# S4: (L, H, N). state-spaces/s4 configs/experiment/lra/s4-*.yaml.
S4_SIZES = {
    "ListOps": (6, 256, 4),
    "Text": (6, 256, 4),
    "Retrieval": (6, 256, 4),
    "Image": (6, 512, 64),
    "Pathfinder": (6, 256, 64),
}

# S5: (L, H, P). lindermanlab/S5 bin/run_experiments/run_*.sh
# (n_layers, d_model, ssm_size_base).
S5_SIZES = {
    "ListOps": (8, 128, 16),
    "Text": (6, 256, 192),
    "Retrieval": (6, 128, 256),
    "Image": (6, 512, 384),
    "Pathfinder": (6, 192, 256),
    "Speech Commands": (6, 96, 128),
}

# LRU: (L, H, N). The LRU keeps S5's architecture and sizes (Orvieto et
# al. 2023, Sec. 3); counted with N = S5's P complex states (assumed).
LRU_SIZES = dict(S5_SIZES)

# Transformer: (L, d_model, qkv_dim, mlp_dim). google-research/
# long-range-arena lra_benchmarks/*/configs (base_listops_config,
# base_tc_config, base_match_config, cifar10 base, pathfinder32
# transformer_base).
TRANSFORMER_SIZES = {
    "ListOps": (6, 512, 512, 2048),
    "Text": (4, 256, 256, 1024),
    "Retrieval": (4, 128, 128, 512),
    "Image": (1, 32, 32, 64),
    "Pathfinder": (1, 128, 64, 128),
}


def _head(d_in, classes, h, tokens):
    """(params, bytes) of the encoder and decoder."""
    if tokens:
        enc, enc_b = d_in * h, d_in * h
    else:
        enc, enc_b = d_in * h + h, d_in * h + 4 * h
    dec, dec_b = h * classes + classes, h * classes + 4 * classes
    return enc + dec, enc_b + dec_b


def mgrade_size(task, L, h, gamma, taps):
    """mGRADE: `keras_mgrade.memory.footprint` of `mgrade_classifier`.

    Per layer (arXiv 2507.01829, the mGRADE layer; the appendix notes the
    convolution's buffer proportional to the kernel length): delay conv
    `Gamma H` (dense kernel), MinGRU `2H^2 + 2H`, MLP `4H^2 + 3H`, two
    norms `4H`. State per layer: the FIFO `(Gamma - 1) H` and the MinGRU
    state `H`.
    """
    _, d_in, classes, tokens = TASKS[task]
    model = mgrade_classifier(
        None if tokens else d_in,
        classes,
        units=h,
        num_layers=L,
        kernel_taps=taps,
        max_delay=gamma,
        vocabulary_size=d_in if tokens else None,
    )
    fp = memory.footprint(model, "int8")
    state = L * ((gamma - 1) * h + h)
    return fp.parameters, fp.parameter_bytes, state


def s4_size(task, L, h, n):
    """S4 (Gu et al., ICLR 2022, Sec. 2.3, the recurrent view
    `x_k = A_bar x_{k-1} + B_bar u_k`, `y_k = C x_k + D u_k`), diagonal
    form with `N/2` complex states per channel (conjugate pairs).

    Per layer: A_bar, B_bar, C `3 H N` reals, D `H`, the GLU output
    Linear `H -> 2H` (`2H^2` + int32 `2H`), norm `2H`. State `H N` reals.
    """
    _, d_in, classes, tokens = TASKS[task]
    p_head, b_head = _head(d_in, classes, h, tokens)
    vec = 3 * h * n + h + 2 * h
    mat, bias = 2 * h * h, 2 * h
    params = p_head + L * (vec + mat + bias)
    nbytes = b_head + L * (vec + mat + 4 * bias)
    return params, nbytes, L * h * n


def s5_size(task, L, h, p):
    """S5 (Smith et al., ICLR 2023, Sec. 3, the MIMO recurrence
    `x_k = Lambda_bar x_{k-1} + B_bar u_k`, `y_k = Re(C x_k) + D u_k`),
    with conjugate symmetry: `P/2` complex states.

    Per layer: Lambda_bar `P` reals, B_bar `P H`, C `P H`, D `H`, the
    half-GLU Dense `H -> H` (`H^2` + int32 `H`), norm `2H`. State `P`
    reals.
    """
    _, d_in, classes, tokens = TASKS[task]
    p_head, b_head = _head(d_in, classes, h, tokens)
    vec = p + 2 * p * h + h + 2 * h
    params = p_head + L * (vec + h * h + h)
    nbytes = b_head + L * (vec + h * h + 4 * h)
    return params, nbytes, L * p


def lru_size(task, L, h, n):
    """LRU (Orvieto et al., ICML 2023, Sec. 3 and App. A,
    `x_k = Lambda x_{k-1} + gamma * B u_k`, `y_k = Re(C x_k) + D u_k`),
    `N` complex states.

    Per layer: Lambda and gamma `3N` (folded into `2N + N`), B `2 N H`,
    C `2 N H`, D `H`, the GLU (two Dense `H -> H`: `2H^2` + int32 `2H`),
    norm `2H`. State `2N` reals.
    """
    _, d_in, classes, tokens = TASKS[task]
    p_head, b_head = _head(d_in, classes, h, tokens)
    vec = 3 * n + 4 * n * h + h + 2 * h
    params = p_head + L * (vec + 2 * h * h + 2 * h)
    nbytes = b_head + L * (vec + 2 * h * h + 8 * h)
    return params, nbytes, L * 2 * n


def transformer_size(task, L, d, qkv, mlp):
    """Causal Transformer (Vaswani et al. 2017, Sec. 3.2; the LRA
    baseline of Tay et al., ICLR 2021) decoding one step at a time with a
    key/value cache.

    Per layer: Q, K, V `3 d qkv` + int32 `3 qkv`, output `qkv d` + int32
    `d`, MLP `2 d mlp` + int32 `mlp + d`, two LayerNorms `4d`. State: the
    keys and values of every past step, `2 L T qkv` at the end of a
    sequence of length `T`.
    """
    seq_len, d_in, classes, tokens = TASKS[task]
    p_head, b_head = _head(d_in, classes, d, tokens)
    mat = 4 * d * qkv + 2 * d * mlp
    bias = 3 * qkv + d + mlp + d
    params = p_head + L * (mat + bias + 4 * d)
    nbytes = b_head + L * (mat + 4 * bias + 4 * d)
    return params, nbytes, 2 * L * seq_len * qkv


TRANSFORMER = "L={} d={} qkv={} mlp={}"


def analytic_rows():
    families = [
        ("mGRADE", MGRADE_SIZES, mgrade_size, "L={} H={} Γ={} taps={}"),
        ("S4", S4_SIZES, s4_size, "L={} H={} N={}"),
        ("S5", S5_SIZES, s5_size, "L={} H={} P={}"),
        ("LRU", LRU_SIZES, lru_size, "L={} H={} N={}"),
        ("Transformer", TRANSFORMER_SIZES, transformer_size, TRANSFORMER),
    ]
    rows = []
    for task in TASKS:
        for name, sizes, fn, fmt in families:
            if task not in sizes:
                continue
            cfg = sizes[task]
            config = fmt.format(*cfg)
            params, nbytes, state = fn(task, *cfg)
            rows.append(
                dict(
                    task=task,
                    model=name,
                    config=config,
                    params=params,
                    param_bytes=nbytes,
                    state_bytes=state,
                )
            )
    return rows


def analytic_table(rows):
    lines = [
        "| task (T) | model | size | params | int8 param B | state B | "
        "param + state B | state / mGRADE state |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    ref = {r["task"]: r for r in rows if r["model"] == "mGRADE"}
    for r in rows:
        base = ref[r["task"]]["state_bytes"]
        lines.append(
            f"| {r['task']} ({TASKS[r['task']][0]}) | {r['model']} | "
            f"{r['config']} | {r['params']:,} | {r['param_bytes']:,} | "
            f"{r['state_bytes']:,} | "
            f"{r['param_bytes'] + r['state_bytes']:,} | "
            f"{r['state_bytes'] / base:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny check")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=None, help="int8 bytes"
    )
    parser.add_argument(
        "--skip", type=int, default=None, help="warm-up steps not scored"
    )
    parser.add_argument(
        "--out", default=os.path.dirname(os.path.abspath(__file__))
    )
    args = parser.parse_args(argv)
    config = dict(CONFIGS["fast" if args.fast else "full"])
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.budgets is not None:
        config["budgets"] = args.budgets
    seeds = args.seeds if args.seeds is not None else (1 if args.fast else 3)
    skip = args.skip if args.skip is not None else (8 if args.fast else 32)
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", flush=True)

    log(
        f"backend {keras.backend.backend()}; Lorenz {LORENZ}, "
        f"{config['train']}/{config['val']}/{config['test']} sequences of "
        f"{config['timesteps']} steps, {config['epochs']} epochs of batch "
        f"{config['batch_size']}, "
        f"{seeds} seeds, budgets {config['budgets']} B, skip {skip}"
    )
    rows = run_lorenz(config, seeds, skip, log)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "paper_tables.png")
    plot(rows, path)

    print()
    print("## Partially observed Lorenz at matched int8 footprint")
    print()
    print(lorenz_table(rows))
    print()
    print("## Analytic bytes checked against the int8 file on TFLite Micro")
    print()
    print(micro_table(rows))
    print()
    print("## Streaming footprint at the published model sizes (int8)")
    print()
    print(analytic_table(analytic_rows()))
    print()
    print(f"plot: {path}")
    print(f"wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
