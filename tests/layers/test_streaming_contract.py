"""The streaming contract of every streamable layer, with one helper
(`helpers.check_streaming_contract`): the step loop equals the sequence
call at lengths around the scans' chunk boundaries from non-zero initial
states, stateful chunked calls equal one call, the step marks its
quantization points; and `.keras` files saved here load on the two other
backends with the same outputs."""

import keras
import numpy as np
import pytest
from helpers import StreamingSpec
from helpers import check_loads_on_other_backends
from helpers import check_streaming_contract

from keras_mgrade import core
from keras_mgrade.layers import MGRADE
from keras_mgrade.layers import DCLSConv1D
from keras_mgrade.layers import LastTimestep
from keras_mgrade.layers import MinGRU
from keras_mgrade.layers import TemporalMeanPooling


def _random_positions(layer):
    conv = layer.conv if isinstance(layer, MGRADE) else layer
    if conv is None or conv.max_delay == 1:
        return
    shape = tuple(conv.positions_raw.shape)
    rng = np.random.default_rng(2)
    conv.set_positions(rng.uniform(0, conv.max_delay - 1, shape))


def _random_statistics(layer):
    # Batch norms with learned-looking moving statistics, so that their
    # folded form in the step is not the identity.
    _random_positions(layer)
    rng = np.random.default_rng(3)
    for norm in (layer.mlp_norm, layer.post_norm):
        if norm is not None:
            width = norm.moving_mean.shape[-1]
            norm.moving_mean.assign(rng.normal(size=width))
            norm.moving_variance.assign(rng.uniform(0.3, 3.0, width))
            norm.gamma.assign(rng.normal(size=width))
            norm.beta.assign(rng.normal(size=width))


def _rounded(layer):
    _random_positions(layer)
    layer.round_positions()


def _min_gru(scan):
    return StreamingSpec(
        name=f"min_gru_{scan}",
        make=lambda **kw: MinGRU(
            6,
            return_sequences=True,
            return_state=True,
            scan=scan,
            bias_initializer="random_normal",
            **kw,
        ),
        features=4,
    )


# A window's worth of steps and more: no scan inside.
SHORT = (1, 17)
# Around the chunk boundaries of the MinGRU's scan inside the block.
BLOCK = (1, 64, 65)


def _dcls(name, prepare=_random_positions, **options):
    return StreamingSpec(
        name=name,
        lengths=SHORT,
        make=lambda **kw: DCLSConv1D(
            return_state=True,
            positions_initializer="uniform",
            bias_initializer="random_normal",
            **{**options, **kw},
        ),
        features=3,
        prepare=prepare,
    )


def _mgrade(name, width=8, prepare=_random_positions, **options):
    kwargs = {"kernel_taps": 3, "max_delay": 9, **options}
    return StreamingSpec(
        name=name,
        make=lambda **kw: MGRADE(8, return_state=True, **{**kwargs, **kw}),
        features=width,
        lengths=BLOCK,
        prepare=prepare,
    )


def _conv1d(name, **options):
    return StreamingSpec(
        name=name,
        make=lambda **kw: keras.layers.Conv1D(
            padding="causal", bias_initializer="random_normal", **options
        ),
        features=3,
        lengths=SHORT,
        returns_state=False,
        takes_initial_state=False,
        stateful=False,
    )


SPECS = [
    *(_min_gru(s) for s in ("sequential", "chunked", "associative", "log")),
    _dcls("dcls", kernel_taps=3, max_delay=9),
    _dcls("dcls_rounded", prepare=_rounded, kernel_taps=3, max_delay=9),
    _dcls("dcls_filters", kernel_taps=2, max_delay=6, filters=4),
    _dcls("dcls_no_window", kernel_taps=1, max_delay=1),
    _mgrade("mgrade"),
    _mgrade("mgrade_rms", norm="rms"),
    _mgrade("mgrade_no_norm_no_mlp", norm=None, mlp_ratio=0),
    _mgrade("mgrade_batch", norm="batch", prepare=_random_statistics),
    _mgrade(
        "mgrade_batch_no_mlp",
        norm="batch",
        mlp_ratio=0,
        mlp_activation="relu",
        prepare=_random_statistics,
    ),
    _mgrade("mgrade_min_gru_only", use_conv=False),
    _mgrade("mgrade_conv_only", use_recurrence=False),
    _mgrade("mgrade_no_window", kernel_taps=1, max_delay=1),
    _mgrade("mgrade_projected", width=5, project_inputs=True),
    StreamingSpec(
        name="temporal_mean_pooling",
        make=lambda **kw: TemporalMeanPooling(return_sequences=True, **kw),
        features=3,
        lengths=SHORT,
        returns_state=False,
        takes_initial_state=False,
        stateful=False,
        points=False,
    ),
    StreamingSpec(
        name="last_timestep",
        make=lambda **kw: LastTimestep(**kw),
        features=3,
        lengths=SHORT,
        returns_state=False,
        takes_initial_state=False,
        stateful=False,
        sequence_output=False,
        points=False,
    ),
    *(
        StreamingSpec(
            name=rnn.__name__.lower(),
            make=lambda rnn=rnn, **kw: rnn(
                4, return_sequences=True, return_state=True, **kw
            ),
            features=3,
            lengths=SHORT,
            points=False,  # the Keras cells mark no quantization points
        )
        for rnn in (keras.layers.GRU, keras.layers.LSTM)
    ),
    _conv1d("conv1d", filters=4, kernel_size=3),
    _conv1d("conv1d_dilated", filters=2, kernel_size=4, dilation_rate=3),
    _conv1d("conv1d_relu", filters=3, kernel_size=2, activation="relu"),
    _conv1d("conv1d_pointwise", filters=3, kernel_size=1),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_streaming_contract(spec):
    check_streaming_contract(spec)


def test_every_kind_with_state_is_covered():
    """A registered kind that can have state cannot skip this test."""
    covered = {type(spec.build()).__name__ for spec in SPECS}
    with_state = {
        kind.name
        for kind in core.registry.kinds()
        if kind.state_shapes is not core.registry.no_state
    }
    assert with_state <= covered, with_state - covered


@pytest.mark.slow
def test_saved_on_this_backend_loads_on_the_others():
    rng = np.random.default_rng(3)
    models, inputs = {}, {}
    for spec in SPECS:
        layer = spec.build(batch=None)
        x_in = keras.Input((None, spec.features))
        out = layer(x_in)
        model = keras.Model(x_in, out[0] if spec.returns_state else out)
        models[spec.name] = model
        inputs[spec.name] = rng.normal(size=(2, 25, spec.features)).astype(
            "float32"
        )
    check_loads_on_other_backends(models, inputs)
