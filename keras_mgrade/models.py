"""Model builders: an mGRADE classifier and a sequence-to-sequence model."""

import keras

from keras_mgrade import _utils
from keras_mgrade.layers.last_timestep import LastTimestep
from keras_mgrade.layers.mgrade import MGRADE
from keras_mgrade.layers.temporal_mean_pooling import TemporalMeanPooling

POOLINGS = ("mean", "last")
# The builders' arguments that configure the stack of MGRADE blocks.
BLOCK_ARGS = (
    "units",
    "num_layers",
    "kernel_taps",
    "max_delay",
    "sigma",
    "mlp_ratio",
    "norm",
    "dropout",
    "use_conv",
    "use_recurrence",
    "scan",
    "positions_initializer",
    "positions_lr_multiplier",
    "normalize_taps",
    "gate_bias_initializer",
    "conv_kernel_initializer",
    "seed",
)


def mgrade_classifier(
    input_features,
    num_classes,
    units=64,
    num_layers=2,
    kernel_taps=8,
    max_delay=32,
    sigma=0.7,
    mlp_ratio=2,
    norm="layer",
    dropout=0.0,
    pooling="mean",
    timesteps=None,
    vocabulary_size=None,
    use_conv=True,
    use_recurrence=True,
    scan="auto",
    positions_initializer="evenly_spaced",
    positions_lr_multiplier=5.0,
    normalize_taps=False,
    gate_bias_initializer=None,
    conv_kernel_initializer=None,
    seed=None,
    name="mgrade_classifier",
):
    """An mGRADE sequence classifier as a functional `keras.Model`.

    Dense encoder (or Embedding for tokens) -> `num_layers` MGRADE blocks ->
    per-step Dense decoder -> pooling over time: the mean (streamed as a
    causal running mean) or the last step. The output is logits
    `(batch, num_classes)`: compile with a `from_logits=True` loss. Every
    layer streams, so `keras_mgrade.export.streaming_model` turns the model
    into a one-sample-per-call step model.

    Layer names: `encoder`, `mgrade_0 … mgrade_{L-1}`, `decoder`, `pooling`.

    Args:
        input_features: int, features per time step; `None` when
            `vocabulary_size` is given.
        num_classes: int, number of classes.
        units: int, the block width `H`. Defaults to `64`.
        num_layers: int, number of MGRADE blocks. Defaults to `2`.
        kernel_taps: int, delays per channel. Defaults to `8`.
        max_delay: int, the convolution window. Defaults to `32`.
        sigma: float, Gaussian width of the delays. Defaults to `0.7`.
        mlp_ratio: int, MLP width in multiples of `units` (0: no MLP).
            Defaults to `2`.
        norm: `"layer"`, `"rms"`, `"batch"` (a folded per-channel affine
            at inference: see `MGRADE`) or `None`. Defaults to `"layer"`.
        dropout: float, dropout in the blocks. Defaults to `0.0`.
        pooling: `"mean"` or `"last"`. Defaults to `"mean"`.
        timesteps: int or None, a fixed sequence length (None: any).
        vocabulary_size: int or None. If given, inputs are integer tokens
            `(batch, timesteps)` and the encoder is an Embedding.
        use_conv: bool, include the delay convolutions (False: a
            MinGRU-only ablation). Defaults to `True`.
        use_recurrence: bool, include the MinGRUs (False: a
            convolution-only ablation). Defaults to `True`.
        scan: the MinGRU scan form. Defaults to `"auto"`.
        positions_initializer: see `DCLSConv1D`. Defaults to
            `"evenly_spaced"`.
        positions_lr_multiplier: see `DCLSConv1D`. Defaults to `5.0`.
        normalize_taps: see `DCLSConv1D`. Defaults to `False`.
        gate_bias_initializer: the MinGRU gate-bias initializer (see
            `MGRADE`): None (a zero bias), `"timescales"`, `"chrono"`,
            `"auto"` or a Keras initializer. Defaults to `None`.
        conv_kernel_initializer: the convolution's tap-weight initializer
            (see `MGRADE`): None (`DCLSConv1D`'s default) or a Keras
            initializer such as `"zeros"`. Defaults to `None`.
        seed: int, seed of the initializers. Defaults to `None`.
        name: the model name.

    Returns:
        A `keras.Model` mapping `(batch, timesteps, input_features)` (or
        tokens) to logits `(batch, num_classes)`.

    Example:

    >>> model = mgrade_classifier(3, 5, units=16, num_layers=1, max_delay=8)
    >>> tuple(model.output.shape)
    (None, 5)
    """
    num_classes = _utils.check_positive_int("num_classes", num_classes)
    if pooling not in POOLINGS:
        raise ValueError(
            f"Unknown pooling. Expected one of {POOLINGS}. Received: "
            f"pooling={pooling!r}"
        )
    inputs, x = _encoder(input_features, vocabulary_size, units, timesteps)
    x = _blocks(x, **{k: v for k, v in locals().items() if k in BLOCK_ARGS})
    x = keras.layers.Dense(num_classes, name="decoder")(x)
    if pooling == "mean":
        outputs = TemporalMeanPooling(name="pooling")(x)
    else:
        outputs = LastTimestep(name="pooling")(x)
    return keras.Model(inputs, outputs, name=name)


def mgrade_seq2seq(
    input_features,
    output_features,
    units=64,
    num_layers=2,
    kernel_taps=8,
    max_delay=32,
    sigma=0.7,
    mlp_ratio=2,
    norm="layer",
    dropout=0.0,
    timesteps=None,
    vocabulary_size=None,
    use_conv=True,
    use_recurrence=True,
    scan="auto",
    positions_initializer="evenly_spaced",
    positions_lr_multiplier=5.0,
    normalize_taps=False,
    gate_bias_initializer=None,
    conv_kernel_initializer=None,
    seed=None,
    name="mgrade_seq2seq",
):
    """An mGRADE model with an output at every time step.

    Dense encoder -> `num_layers` MGRADE blocks -> per-step Dense decoder,
    for regression or per-step classification (e.g. the partially observed
    Lorenz system: observe one coordinate, predict the others). Causal, so
    the output at step `t` uses inputs up to `t`, and the model streams.

    Args:
        input_features: int, features per step (None with
            `vocabulary_size`).
        output_features: int, outputs per step.
        units, num_layers, kernel_taps, max_delay, sigma, mlp_ratio, norm,
        dropout, timesteps, vocabulary_size, use_conv, use_recurrence,
        scan, positions_initializer, positions_lr_multiplier,
        normalize_taps, gate_bias_initializer, conv_kernel_initializer,
        seed: as in
        `mgrade_classifier`.
        name: the model name.

    Returns:
        A `keras.Model` mapping `(batch, timesteps, input_features)` to
        `(batch, timesteps, output_features)`.

    Example:

    >>> model = mgrade_seq2seq(1, 2, units=16, num_layers=1, max_delay=8)
    >>> tuple(model.output.shape)
    (None, None, 2)
    """
    output_features = _utils.check_positive_int(
        "output_features", output_features
    )
    inputs, x = _encoder(input_features, vocabulary_size, units, timesteps)
    x = _blocks(x, **{k: v for k, v in locals().items() if k in BLOCK_ARGS})
    outputs = keras.layers.Dense(output_features, name="decoder")(x)
    return keras.Model(inputs, outputs, name=name)


def _encoder(input_features, vocabulary_size, units, timesteps):
    units = _utils.check_positive_int("units", units)
    if vocabulary_size is not None:
        vocabulary_size = _utils.check_positive_int(
            "vocabulary_size", vocabulary_size
        )
        if input_features is not None:
            raise ValueError(
                "With vocabulary_size the inputs are integer tokens; pass "
                f"input_features=None. Received: input_features="
                f"{input_features!r}, vocabulary_size={vocabulary_size}"
            )
        inputs = keras.Input((timesteps,), dtype="int32", name="inputs")
        x = keras.layers.Embedding(vocabulary_size, units, name="encoder")(
            inputs
        )
        return inputs, x
    input_features = _utils.check_positive_int("input_features", input_features)
    inputs = keras.Input((timesteps, input_features), name="inputs")
    return inputs, keras.layers.Dense(units, name="encoder")(inputs)


def _blocks(x, num_layers, seed, **block_kwargs):
    num_layers = _utils.check_positive_int("num_layers", num_layers)
    for i in range(num_layers):
        x = MGRADE(
            seed=None if seed is None else seed + i,
            name=f"mgrade_{i}",
            **block_kwargs,
        )(x)
    return x
