"""keras_mgrade.memory: the analytic footprint, counted by hand."""

import keras
import pytest

from keras_mgrade import memory
from keras_mgrade.layers import DCLSConv1D
from keras_mgrade.layers import MinGRU
from keras_mgrade.models import mgrade_classifier


def _classifier(**kwargs):
    options = {
        "units": 16,
        "num_layers": 2,
        "kernel_taps": 4,
        "max_delay": 8,
        "mlp_ratio": 2,
    }
    options.update(kwargs)
    return mgrade_classifier(3, 5, **options)


def test_classifier_by_hand():
    model = _classifier()
    fp = memory.footprint(model, "int8")
    h, d, g, r = 16, 3, 8, 2
    # Per block: dense conv kernel g*h (int8) + bias h (int32); MinGRU kernel
    # h*2h + bias 2h; two norms 2*2h; MLP h*rh + rh, rh*h + h.
    block_params = (
        g * h
        + h
        + h * 2 * h
        + 2 * h
        + 4 * h
        + h * r * h
        + r * h
        + r * h * h
        + h
    )
    block_bytes = (
        g * h + 4 * h  # conv
        + 2 * h * h + 4 * 2 * h  # MinGRU
        + 4 * h  # two norms
        + h * r * h + 4 * r * h + r * h * h + 4 * h  # MLP
    )  # fmt: skip
    encoder = d * h + h
    decoder = h * 5 + 5
    assert fp.parameters == encoder + 2 * block_params + decoder
    assert fp.parameter_bytes == (
        d * h + 4 * h + 2 * block_bytes + h * 5 + 4 * 5
    )
    state = 2 * ((g - 1) * h + h) + 5 + 1
    assert fp.state_bytes == state
    # The window of one conv (g*h + h) is the largest working set + the
    # block's residual vectors.
    assert fp.activation_bytes == state + g * h + h + 3 * h
    fp32 = memory.footprint(model, "float32")
    assert fp32.state_bytes == 4 * state
    assert fp32.parameter_bytes == 4 * fp.parameters
    # Training-only weights (positions, sigma) are not deployed.
    assert fp.trainable_parameters == model.count_params()
    assert fp.trainable_parameters > fp.parameters


def test_rounded_conv_counts_taps_and_indices():
    inputs = keras.Input((None, 6))
    conv = DCLSConv1D(3, 40)
    model = keras.Model(inputs, conv(inputs))
    dense = memory.footprint(model).parameter_bytes
    assert dense == 40 * 6 + 4 * 6
    conv.round_positions()
    rounded = memory.footprint(model)
    # int8 tap weights + int32 gather indices + int32 bias.
    assert rounded.parameter_bytes == 3 * 6 + 4 * 3 * 6 + 4 * 6
    assert rounded.state_bytes == 39 * 6


def test_budgets_and_table():
    model = _classifier()
    fp = memory.footprint(model)
    fits = fp.fits()
    assert all(fits.values())
    assert not any(fp.fits(ram_bytes=10**8).values())
    small = {"tiny": (fp.ram_bytes - 1, None), "ok": (fp.ram_bytes, None)}
    assert fp.fits(small) == {"tiny": False, "ok": True}
    table = fp.table()
    assert "mgrade_0" in table and f"| {fp.parameters} |" in table
    budget = memory.budget_table(fp.ram_bytes, fp.flash_bytes)
    assert budget.count("| yes |") == 4
    assert memory.format_bytes(1536) == "1.5 KiB"
    assert fp.as_dict()["total_bytes"] == (
        fp.parameter_bytes + fp.state_bytes + fp.activation_bytes
    )


def test_errors():
    model = _classifier()
    with pytest.raises(ValueError, match="precision='int4'"):
        memory.footprint(model, "int4")
    inputs = keras.Input((None, 4))
    x = MinGRU(8, return_sequences=True)(inputs)
    x = keras.layers.Conv1D(4, 3, name="valid_conv")(x)
    with pytest.raises(
        ValueError, match="padding='valid' for layer 'valid_conv'"
    ):
        memory.footprint(keras.Model(inputs, x))
    y = keras.layers.SimpleRNN(4, name="rnn")(inputs)
    with pytest.raises(
        ValueError, match="'rnn' of type SimpleRNN .* Registered"
    ):
        memory.footprint(keras.Model(inputs, y))
    with pytest.raises(ValueError, match="built"):
        memory.footprint(keras.Sequential([MinGRU(4)]))
