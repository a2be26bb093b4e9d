"""The PyTorch arithmetic of quantization-aware training
(`keras_mgrade.quantization._torch_ops`) computes the same values as the
formulas it replaces: `keras.quantizers.fake_quant_with_min_max_vars`
(Keras' own implementation on PyTorch) and the requantization written
plainly in NumPy float32, step by step as `QuantizationScope.requantized`
states it. Inputs include grid points, exact half steps, the bounds,
infinities and NaN."""

import keras
import numpy as np
import pytest
from helpers import BACKEND

pytestmark = pytest.mark.skipif(
    BACKEND != "torch", reason="the PyTorch implementation"
)


def _inputs(low, high, levels, seed=0):
    rng = np.random.default_rng(seed)
    scale = (high - low) / levels
    grid = low + scale * np.arange(levels + 1)
    x = np.concatenate(
        [
            rng.uniform(low - 1.0, high + 1.0, 4000),
            grid,
            grid + scale / 2,  # half steps: the rounding's ties
            [low, high, -np.inf, np.inf, np.nan, 0.0, -0.0],
        ]
    )
    return x.astype("float32")


def _same(actual, expected):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_array_equal(actual[ok], expected[ok])


@pytest.mark.parametrize(
    "low, high, narrow",
    [(-1.3, 2.1, False), (0.0, 1.0, False), (-0.7, 0.7, True)],
)
def test_fake_quant_equals_keras(low, high, narrow):
    import torch

    from keras_mgrade.quantization.model import _fake_quant

    x = _inputs(low, high, 255)
    lo = torch.tensor(low)
    hi = torch.tensor(high)
    ours = torch.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    q = _fake_quant(ours, lo, hi, 8, narrow_range=narrow)
    ref = keras.quantizers.fake_quant_with_min_max_vars(
        theirs, lo, hi, num_bits=8, narrow_range=narrow
    )
    _same(q.detach().numpy(), ref.detach().numpy())
    upstream = torch.linspace(-1.0, 1.0, len(x))
    (q * upstream).sum().backward()
    (ref * upstream).sum().backward()
    _same(ours.grad.numpy(), theirs.grad.numpy())


def test_fake_quant_per_channel_equals_keras():
    import torch

    from keras_mgrade.quantization.model import _fake_quant

    rng = np.random.default_rng(1)
    w = rng.normal(size=(40, 6)).astype("float32")
    w[0] = w[1] + 0.5 * np.abs(w).max(0) / 127  # some ties
    m = torch.tensor(np.abs(w).max(0))
    q = _fake_quant(torch.tensor(w), -m, m, 8, narrow_range=True, axis=-1)
    ref = keras.quantizers.fake_quant_with_min_max_vars(
        torch.tensor(w), -m, m, num_bits=8, narrow_range=True, axis=-1
    )
    _same(q.numpy(), ref.numpy())


def _round_half_away(v):
    return (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(
        "float32"
    )


@pytest.mark.parametrize("count", [1, 16])
def test_requantize_equals_plain_formula(count):
    import torch

    from keras_mgrade.quantization import _torch_ops

    f32 = np.float32
    unit, scale = f32(0.0123), f32(0.0371)
    if count > 1:
        unit = f32(unit / f32(count))
    low, high = f32(-128 * scale), f32(127 * scale)
    exponent = np.floor(np.log2(f32(unit / scale))) + 1
    right = max(-exponent, 0.0) if count == 1 else max(4 - exponent, 0.0)
    step = f32(2.0**right)
    multiplier = f32(f32(unit / scale) * step)
    rng = np.random.default_rng(2)
    acc = rng.integers(-400, 400, 3000).astype("float32")  # about the range
    x = np.concatenate([acc * unit, (acc + f32(0.5)) * unit, [0.0, -0.0]])
    x = x.astype("float32")
    # The fake quantization on the output grid (what `q` is).
    q = np.clip(np.round(x / scale), -128, 127).astype("float32") * scale
    q[:10] = x[:10]  # elements the fake quantization left unchanged
    first = _round_half_away(_round_half_away(x / unit) * multiplier)
    exact = np.clip(_round_half_away(first / step) * scale, low, high)
    expected = np.where(q == x, q, q + (exact - q)).astype("float32")
    constants = _torch_ops.requantize_constants(
        [torch.tensor(v) for v in (unit, multiplier, step, scale, low, high)]
    )
    got = _torch_ops.requantize(torch.tensor(q), torch.tensor(x), constants)
    _same(got.numpy(), expected)
    # The roundings are not trivial here: a single rounding differs.
    single = np.clip(np.floor(x / scale + 0.5), -128, 127) * scale
    assert np.sum(single != expected) > 20


def test_replay_passes_on_grid_tensors_through():
    import torch

    from keras_mgrade.quantization import _torch_ops
    from keras_mgrade.quantization.model import _nudged

    g = _torch_ops.grid(_nudged(torch.tensor(-1.0), torch.tensor(1.5), 8, True))
    scale = torch.tensor(2.5 / 255)
    x = torch.tensor(_inputs(-1.0, 1.5, 255)[:4000])
    q = _torch_ops.fake_quant_values(x, g)
    grids = {id(q): (q, scale)}
    replay = _torch_ops.Replay(g, q, grids)
    # Off the grid: quantized, as the first step was.
    y = torch.tensor(_inputs(-1.0, 1.5, 255, seed=3)[:4000])
    out = replay(y)
    _same(out.numpy(), _torch_ops.fake_quant_values(y, g).numpy())
    # Its own last output, and a tensor recorded on its grid, pass
    # through: the fake quantization would not change them.
    assert replay(out) is out
    again = _torch_ops.fake_quant_values(out, g)
    _same(again.numpy(), out.numpy())
    on_grid = q.clone()
    grids[id(on_grid)] = (on_grid, scale)
    assert replay(on_grid) is on_grid
    _same(_torch_ops.fake_quant_values(on_grid, g).numpy(), on_grid.numpy())


def test_weight_given_as_a_keras_variable_keeps_its_gradient():
    # A registered kind may mark a weight with `lambda: layer.kernel`
    # (a Keras variable, not a tensor): its quantization must train it.
    import torch

    from keras_mgrade.quantization.model import _quantize_weight

    v = keras.Variable(
        np.linspace(-1.0, 1.0, 12).reshape(3, 4), dtype="float32"
    )
    q = _quantize_weight(v, -1, 8)
    q.sum().backward()
    assert isinstance(q, torch.Tensor)
    np.testing.assert_array_equal(v.value.grad.numpy(), np.ones((3, 4)))
