"""The fake quantization arithmetic of `model.py` in plain PyTorch.

PyTorch runs every operation eagerly, and a training step of a quantized
model is mostly small elementwise operations, so how each one is written
decides the speed (`benchmarks/qat.py --speed`):

- in-place operations on one buffer instead of a new tensor per step;
- a comparison that writes booleans, a `where` or a `masked_fill` on a
  large tensor costs 5-30 times a float multiply on CPU, so masks are
  float (a comparison written into a float tensor, 0.0/1.0) and applied
  by multiplication;
- an arithmetic operand is a float32 tensor (a Python number is wrapped
  and converted at every call), a clamp bound a Python number (a clamp
  between tensors takes a slow broadcasting path).

The values are those of the `keras.ops` formulas they replace, operation
for operation (float32 throughout).
"""

import torch

_HALF = torch.tensor(0.5)


def _bound(value):
    return float(value) if value.numel() == 1 else value


def _float32(x):
    if isinstance(x, torch.Tensor):
        return x if x.dtype == torch.float32 else x.float()
    # A Keras variable, an array or a number: on Keras' device.
    import keras

    return keras.ops.convert_to_tensor(x, "float32")


def grid(nudged):
    """`(low, high, low, scale, inverse, zero)` of a fake quantization
    from `_nudged(..., grid=True)`'s `(low, high, scale, inverse, zero)`
    (tensors, per tensor or per channel): the first two as clamp bounds,
    the rest as arithmetic operands."""
    low, high, scale, inverse, zero = (_float32(v) for v in nudged)
    return (_bound(low), _bound(high), low, scale, inverse, zero)


def fake_quant_values(x, g, clamped=None):
    """`fake_quant_with_min_max_vars(x)` on grid `g` (see `grid`),
    without gradient: `floor((clamp(x) - low) * inverse - zero + 0.5) *
    scale` (computed in place of `clamped`, `clamp(x)`, if given)."""
    if x.requires_grad:
        with torch.no_grad():
            return fake_quant_values(x.detach(), g, clamped)
    lo, hi, low, scale, inverse, zero = g
    q = torch.clamp(x, lo, hi) if clamped is None else clamped
    return q.sub_(low).mul_(inverse).sub_(zero).add_(_HALF).floor_().mul_(scale)


class Replay:
    """A point's fake quantization on grid `g` inside a loop without
    gradient, after the step that returned `last` (`grids`: the scope's
    `{id(tensor): (tensor, scale, ...)}`). A tensor on the point's grid
    already is passed through, since the fake quantization leaves a
    value on its grid unchanged, bit for bit: the tensor it returned
    last (a state fed back), or one whose recorded grid has the same
    scale (a time step of a sequence this point quantized)."""

    __slots__ = ("g", "last", "grids", "scale")

    def __init__(self, g, last, grids):
        self.g = g
        self.last = last
        self.grids = grids
        self.scale = grids[id(last)][1] if id(last) in grids else None

    def __call__(self, x):
        if x is not self.last:
            known = self.grids.get(id(x))
            if known is not None and known[1] is self.scale:
                self.last = x
            else:
                self.last = fake_quant_values(x, self.g)
        return self.last


def _equal(a, b):
    """1.0 where `a == b`, else 0.0 (a float result: a comparison that
    writes booleans is several times slower)."""
    return torch.eq(a, b, out=torch.empty_like(a))


class _StraightThrough(torch.autograd.Function):
    """The fake quantization with its straight-through gradient: passed
    where `x` is inside the range (bounds included), zero outside."""

    @staticmethod
    def forward(ctx, x, g):
        with torch.no_grad():
            clamped = torch.clamp(x, g[0], g[1])
            inside = _equal(clamped, x)  # (0 for NaN, as a comparison)
            q = fake_quant_values(x, g, clamped)
        ctx.save_for_backward(inside)
        return q

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None


def fake_quant(x, g, gradient):
    """`fake_quant_values` (in float32, returned in the dtype of `x`),
    with the straight-through gradient when `gradient` and `x` requires
    one."""
    dtype = x.dtype
    if dtype != torch.float32:
        x = x.float()
    if gradient and x.requires_grad:
        q = _StraightThrough.apply(x, g)
    else:
        q = fake_quant_values(x, g)
    return q if dtype == torch.float32 else q.to(dtype)


def inside(x, low, high):
    """The float mask of `low <= x <= high` (`low`, `high`: numbers or
    tensors)."""
    with torch.no_grad():
        return _equal(torch.clamp(x, low, high), x)


class OPS:
    """The `keras.ops` functions of the quantization arithmetic in
    `model.py` (`_xp`) as torch operations, without keras' conversion
    of every operand. Constants and statistics only: `fake_quant`
    carries the gradients."""

    abs = torch.abs
    floor = torch.floor
    log2 = torch.log2
    moveaxis = torch.movedim
    power = torch.pow
    reshape = torch.reshape
    round = torch.round
    stack = torch.stack

    @staticmethod
    def cast(x, dtype):
        return _float32(x)  # (float32 throughout)

    @staticmethod
    def convert_to_tensor(x, dtype):
        return _float32(x)

    @staticmethod
    def clip(x, low, high):
        return torch.clamp(x, low, high)

    @staticmethod
    def maximum(x, y):
        if isinstance(y, torch.Tensor):
            return torch.maximum(x, y)
        return torch.clamp(x, min=y)

    @staticmethod
    def minimum(x, y):
        if isinstance(y, torch.Tensor):
            return torch.minimum(x, y)
        return torch.clamp(x, max=y)

    @staticmethod
    def max(x, axis=None):
        return torch.amax(x) if axis is None else torch.amax(x, dim=axis)

    @staticmethod
    def min(x, axis=None):
        return torch.amin(x) if axis is None else torch.amin(x, dim=axis)

    @staticmethod
    def stop_gradient(x):
        return x.detach() if isinstance(x, torch.Tensor) else x


def extrema(x):
    """`(min(x), max(x))` in one pass, without gradient."""
    return torch.aminmax(x.detach())


def requantize_constants(constants):
    """`requantize`'s constants from `(unit, multiplier, step, scale,
    low, high)` tensors."""
    values = [_float32(v) for v in constants]
    return tuple(values[:4]) + (_bound(values[4]), _bound(values[5]))


def requantize(q, x, constants):
    """`q`, the fake quantization of `x`, rounded twice as an int8
    kernel's requantization rounds (see
    `QuantizationScope.requantized`): the accumulator `x / unit` rounded,
    times `multiplier` rounded, divided by `step` rounded (halves away
    from zero each time), times `scale`, clamped; where `q` equals `x`
    (not quantized) it is unchanged.

    The three roundings share the sign of `x` (the multiplier and the
    step are positive), so they are computed on `|x|` and the sign
    applied once: `sign(y) * floor(|y| + 0.5)` at each stage, the same
    values (a zero keeps the sign of `x`: -0.0 equals 0.0)."""
    if q is x:
        return q
    if q.requires_grad or x.requires_grad:
        with torch.no_grad():
            delta = _requantize_delta(q.detach(), x.detach(), constants)
        return q + delta
    return _requantize_delta(q, x, constants).add_(q)


def _requantize_delta(q, x, constants):
    unit, multiplier, step, scale, low, high = constants
    if x.dtype != torch.float32:
        x = x.float()
    level = torch.abs(x).div_(unit).add_(_HALF).floor_()
    level = level.mul_(multiplier).add_(_HALF).floor_()
    level = level.div_(step).add_(_HALF).floor_()
    exact = level.copysign_(x).mul_(scale).clamp_(low, high)
    changed = torch.ne(q, x, out=torch.empty_like(q))
    # (A grid of zero width makes `exact` NaN; taken as no change, it
    # cannot turn the elements that `q` left equal to `x` NaN.)
    return exact.sub_(q).nan_to_num_(0.0, 0.0, 0.0).mul_(changed)
