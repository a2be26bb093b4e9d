"""`quantize_model`: quantization-aware training of a streaming model."""

import types

import keras
import numpy as np
from keras import ops

from keras_mgrade import core
from keras_mgrade.core import points
from keras_mgrade.quantization.config import QuantizeConfig

INPUTS = "inputs"  # the pseudo-layer name of the input point


def _xp():
    """The operations of the quantization arithmetic: `keras.ops`, or on
    PyTorch the same operations in torch (`_torch_ops.OPS`), without
    keras' conversion of every operand (PyTorch runs each one eagerly)."""
    if keras.backend.backend() == "torch":
        return _torch_ops().OPS
    return ops


def _extrema(x):
    """`(min(x), max(x))` (on PyTorch in one pass)."""
    if keras.backend.backend() == "torch":
        return _torch_ops().extrema(x)
    return ops.min(x), ops.max(x)


def _fake_quant(x, low, high, bits, narrow_range=False, axis=None):
    """`keras.quantizers.fake_quant_with_min_max_vars` (per channel: along
    the last axis) with a gradient for `x` only (the ranges are not
    trained). On PyTorch the same arithmetic in torch operations."""
    if keras.backend.backend() == "torch":
        torch_ops = _torch_ops()
        nudged = _nudged(low, high, bits, True, narrow_range, torch_ops.OPS)
        return torch_ops.fake_quant(x, torch_ops.grid(nudged), True)
    return keras.quantizers.fake_quant_with_min_max_vars(
        x, low, high, num_bits=bits, narrow_range=narrow_range, axis=axis
    )


def _nudged(low, high, bits, grid=False, narrow_range=False, xp=ops):
    """The range `fake_quant_with_min_max_vars` clips to: `[low, high]`
    moved so that zero is on the grid (its nudging); with `grid`, also
    its scale, inverse scale and zero point, computed as it does."""
    low = xp.cast(low, "float32")
    high = xp.cast(high, "float32")
    quant_min, quant_max = float(narrow_range), float(2**bits - 1)
    steps = quant_max - quant_min
    scale = (high - low) / steps
    inverse = steps / (high - low)
    zero = xp.round(xp.clip(quant_min - low / scale, quant_min, quant_max))
    low, high = (quant_min - zero) * scale, (quant_max - zero) * scale
    if not grid:
        return low, high
    return low, high, scale, inverse, xp.floor(-low * inverse + 0.5)


def _torch_ops():
    """The PyTorch arithmetic of the fake quantization (imported on that
    backend only)."""
    from keras_mgrade.quantization import _torch_ops

    return _torch_ops


# The output ranges the int8 LOGISTIC/SOFTMAX and TANH kernels impose; in
# 16x8 the int16 kernels write scale 1/32768, zero point 0 instead.
_KERNEL_RANGES = (points.SIGMOID_RANGE, points.TANH_RANGE)
_INT16_KERNEL_MAX = 32767.0 / 32768.0


def _fake_quant_activation(x, low, high, bits, kernel=False):
    """An activation on its integer grid. 16-bit activations are symmetric
    with zero point 0, as TFLite's int16 activations (16x8): the range is
    `[-m, m]`, `m = max(|low|, |high|)`, on 65535 levels (scale `m /
    32767`, what the converter writes), or the int16 kernel's own grid
    (1/32768) for a `kernel` range of LOGISTIC, SOFTMAX or TANH."""
    if bits != 16:
        return _fake_quant(x, low, high, bits)
    if kernel:
        m = _INT16_KERNEL_MAX
    else:
        m = ops.maximum(ops.maximum(ops.abs(low), ops.abs(high)), 1e-8)
        m = ops.stop_gradient(m)
    return _fake_quant(x, -m, m, bits, narrow_range=True)


def _tracing():
    """Whether TensorFlow traces a graph now (the converter's trace, as
    opposed to running the export step eagerly as a reference)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def _xla_scan(fn, states, inputs):
    """`points.scan_time` compiled by XLA inside the graph TensorFlow
    traces: a loop without gradient or observations (`scan` with
    `observe=False`) of small operations, which TensorFlow's executor
    would run one operation at a time (Keras does not use XLA on CPU by
    default)."""
    import tensorflow as tf

    compiled = tf.function(
        lambda states, inputs: points.scan_time(fn, states, inputs),
        jit_compile=True,
        autograph=False,
    )
    ys, final = compiled(list(states), list(inputs))
    return ys, list(final)


def _eager_range_table(model):
    """`model.range_table()` read outside the graph being traced."""
    import tensorflow as tf

    with tf.init_scope():
        return model.range_table()


def _quantize_weight(w, axis, bits):
    # Symmetric with the largest magnitude as the range ("last value"):
    # the grid TFLite uses for int8 weights (scale = max|w| / 127).
    xp = _xp()
    w = xp.convert_to_tensor(w, "float32")
    if axis is None:
        m = xp.stop_gradient(xp.maximum(xp.max(xp.abs(w)), 1e-8))
        return _fake_quant(w, -m, m, bits, narrow_range=True)
    # Per channel along the last axis (what every backend broadcasts).
    w = xp.moveaxis(w, axis, -1)
    m = xp.max(xp.abs(xp.reshape(w, (-1, w.shape[-1]))), axis=0)
    m = xp.stop_gradient(xp.maximum(m, 1e-8))
    q = _fake_quant(w, -m, m, bits, narrow_range=True, axis=-1)
    return xp.moveaxis(q, -1, axis)


def _quantize_operand(w, bits):
    # Per tensor over [min(w, 0), max(w, 0)]: the grid the converter gives
    # a constant operand of an elementwise MUL or ADD. The fake-quantized
    # values span the nudged range exactly, so the converter, which
    # measures the constant's own min and max, finds the same grid.
    xp = _xp()
    w = xp.convert_to_tensor(w, "float32")
    low = xp.stop_gradient(xp.minimum(xp.min(w), 0.0))
    high = xp.stop_gradient(xp.maximum(xp.max(w), 0.0))
    high = xp.maximum(high, low + 1e-8)
    return _fake_quant(w, low, high, bits)


def _operand_scale(q, bits):
    """The scale of a quantized operand `q`: its values span the nudged
    range."""
    xp = _xp()
    low = xp.stop_gradient(xp.minimum(xp.min(q), 0.0))
    high = xp.stop_gradient(xp.maximum(xp.max(q), low + 1e-8))
    return (high - low) / float((1 << bits) - 1)


def _weight_scale(w, axis, bits):
    """The scale of symmetric quantized weights `w`: per tensor, or per
    channel along `axis` (a vector, for the last axis of a product)."""
    xp = _xp()
    levels = float((1 << (bits - 1)) - 1)
    w = xp.stop_gradient(w)
    if axis is None:
        return xp.maximum(xp.max(xp.abs(w)), 1e-8) / levels
    w = xp.moveaxis(w, axis, -1)
    m = xp.max(xp.abs(xp.reshape(w, (-1, w.shape[-1]))), axis=0)
    return xp.maximum(m, 1e-8) / levels


def _grid(low, high, bits, xp=ops):
    """`(scale, nudged low, nudged high)` of a fake-quant range, as
    `keras.quantizers.fake_quant_with_min_max_vars` nudges it."""
    levels = float((1 << bits) - 1)
    low = xp.convert_to_tensor(low, "float32")
    high = xp.convert_to_tensor(high, "float32")
    scale = (high - low) / levels
    zero = xp.round(xp.clip(-low / scale, 0.0, levels))
    return scale, -zero * scale, (levels - zero) * scale


def _round_half_away(x):
    return ops.sign(x) * ops.floor(ops.abs(x) + 0.5)


# PyTorch: the grids of fixed ranges (`QuantizationScope._point_grids`).
_FIXED_GRIDS = {}


def _torch_grids(low, high, bits):
    xp = _torch_ops().OPS
    nudged = _nudged(low, high, bits, grid=True, xp=xp)
    return _torch_ops().grid(nudged), _grid(low, high, bits, xp=xp)


def _identity(x):
    return x


_MISSING = object()


class QuantizationScope(points.Scope):
    """The fake quantization of one run of the step graph.

    Modes: `"discover"` lists the points, `"train"` fake-quantizes with the
    current ranges and records each point's min/max, `"infer"` and
    `"export"` fake-quantize with the frozen ranges (`"export"` also folds
    the quantized weights into constants for the TFLite converter).

    With 16-bit activations, `"export"` traced by TensorFlow leaves the
    activations in float (its converter cannot read 16-bit fake-quant
    ops) and records in `model.traced_ranges` the symmetric range `m` of
    each traced tensor, by graph name, for the 16x8 exporter to impose;
    run eagerly (the exporter's reference) it fake-quantizes.
    """

    def __init__(self, model, mode):
        self.model = model
        self.mode = mode
        self.exports = mode == "export"
        self.prefix = ""
        self.found = {}
        self.aliases = {}
        self.produced = {}
        self.observed = {}
        self.no_gradient = False  # see `scan`
        # PyTorch runs every operation eagerly, with a Python overhead per
        # `keras.ops` call that dominates the scanned state update: there
        # the grids and requantization constants of each point are kept
        # for the run (`_grid`, `requantized`), and a loop without
        # gradient replays each point's quantization after its first step
        # (`looping`, `loop_memo`; see `scan`).
        self.eager = keras.backend.backend() == "torch"
        self.grid_cache = {}
        self.learned_grids = None
        self.requant_cache = {}
        self.looping = False
        self.loop_memo = {}
        self.quantized_with = None
        self.requantized_with = None
        if mode == "export" and keras.backend.backend() == "tensorflow":
            self.table = _eager_range_table(model)
        # id(tensor) -> (tensor, low, high): the grid of each tensor a
        # point returned in this run (read by `requantized`).
        self.grids = {}
        if mode != "discover":
            # Copies: the ranges are updated in place after the scan.
            self.ranges = ops.copy(ops.convert_to_tensor(model.ranges))
            self.ready = ops.copy(ops.convert_to_tensor(model.initialized)) > 0
        # PyTorch runs eagerly: the flag is read once (a `where` on every
        # point's tensor cost more than its fake quantization).
        self.ready_now = None
        if mode != "discover" and keras.backend.backend() == "torch":
            self.ready_now = bool(ops.convert_to_numpy(self.ready))

    def _config(self):
        return self.model.layer_config(self.prefix)

    def key(self, owner, name):
        parts = [self.prefix] + ([owner.name] if owner is not None else [])
        return "/".join(parts + [name])

    def activation(self, owner, name, x, fixed=None, state=False):
        if not self.looping:
            return self._activation(owner, name, x, fixed, state)
        # Inside the PyTorch loop: after the first step, the point's fake
        # quantization replayed (see `scan`).
        memo = (self.prefix, id(owner), name)
        replay = self.loop_memo.get(memo, _MISSING)
        if replay is None:
            return self._activation(owner, name, x, fixed, state)
        if replay is not _MISSING:
            return replay(x)
        self.quantized_with = None
        q = self._activation(owner, name, x, fixed, state)
        if q is x:
            self.loop_memo[memo] = _identity
        elif self.quantized_with is not None:
            self.loop_memo[memo] = _torch_ops().Replay(
                self.quantized_with, q, self.grids
            )
        else:
            self.loop_memo[memo] = None
        return q

    def _activation(self, owner, name, x, fixed, state):
        config = self._config()
        if config.skip:
            return x
        key = self.key(owner, name)
        fixed = config.fixed_range(key) or fixed
        if self.mode == "discover":
            return self._discover(key, x, fixed, state)
        bits = config.activation_bits
        key = self.model.aliases.get(key, key)
        fixed = self.model.points[key] if fixed is None else fixed
        if self.exports and bits == 16 and _tracing():
            return self._trace_int16(x, key, fixed)
        if fixed is not None:
            if self._calibrating():
                return x
            kernel = tuple(fixed) in _KERNEL_RANGES
            q = self._quantize(key, x, fixed[0], fixed[1], bits, kernel)
            return self._remember(q, *self._grid(key, fixed[0], fixed[1], bits))
        index = self.model.point_index(key)
        if self.mode == "train" and not self.no_gradient:
            # (Not inside a scan that drops its observations.)
            self._observe(key, *_extrema(x))
        if self.eager and bits == 8:
            low = high = None  # (read by `_point_grids` for every point)
        else:
            low, high = self.ranges[index, 0], self.ranges[index, 1]
        q = self._quantize(key, x, low, high, bits)
        if self.mode != "export":
            # Before the first training batch the ranges are not known yet.
            if self.ready_now is not None:
                q = q if self.ready_now else x
            else:
                q = ops.where(self.ready, q, x)
        return self._remember(q, *self._grid(key, low, high, bits))

    def _grid(self, key, low, high, bits):
        """`_grid(low, high, bits)` of point `key` (on PyTorch from
        `_point_grids`)."""
        if not self.eager:
            return _grid(low, high, bits)
        return self._point_grids(key, low, high, bits)[1]

    def _point_grids(self, key, low, high, bits):
        """PyTorch: `(_torch_ops.grid of its fake quantization, _grid)` of
        point `key` with range `[low, high]`, once per run: for the
        learned 8-bit points from one computation over all ranges, for a
        fixed range (numbers) once per process."""
        if key in self.grid_cache:
            return self.grid_cache[key]
        if isinstance(low, (int, float)):
            fixed = (float(low), float(high), bits)
            if fixed not in _FIXED_GRIDS:
                _FIXED_GRIDS[fixed] = _torch_grids(low, high, bits)
            grids = _FIXED_GRIDS[fixed]
        elif bits == 8:
            if self.learned_grids is None:
                every = self.ranges[:, 0], self.ranges[:, 1]
                xp = _torch_ops().OPS
                self.learned_grids = (
                    _nudged(*every, bits, grid=True, xp=xp),
                    _grid(*every, bits, xp=xp),
                )
            i = self.model.point_index(key)
            nudged, grid = ([v[i] for v in g] for g in self.learned_grids)
            grids = (_torch_ops().grid(nudged), tuple(grid))
        else:
            grids = _torch_grids(low, high, bits)
        self.grid_cache[key] = grids
        return grids

    def same_grid(self, new, old):
        if id(old) in self.grids:
            self.grids[id(new)] = (new,) + self.grids[id(old)][1:]

    def _remember(self, q, scale, low=None, high=None):
        """Keeps the grid of tensor `q`: its scale (per tensor, or per
        channel along the last axis) and, for an activation, its nudged
        range."""
        self.grids[id(q)] = (q, scale, low, high)
        return q

    def requantized(self, owner, name, x, inputs, count=1):
        """`activation`, rounded as TFLite Micro's int8 kernels round it:
        a product of the two `inputs` (MUL, FULLY_CONNECTED,
        DEPTHWISE_CONV_2D: the second input is the weight, its scale per
        output channel), a MEAN of `inputs[0]` over `count` values, or
        (one input, `count=1`) a QUANTIZE onto this point's grid.

        The kernels requantize their int32 accumulator (the bias rounded
        to its grid) with `MultiplyByQuantizedMultiplier`: for a real
        multiplier `M = m 2**-r` (`m` in `[0.5, 1)`, `r > 0`) they round
        `value * 2**r` to an integer first, then divide by `2**r`,
        rounding halves away from zero. A MEAN folds `1/count` into its
        multiplier (`r` from the scale ratio and `log2(count)`). The
        float fake quantization rounds once; this rounds twice, with a
        straight-through gradient (that of the fake quantization). When
        the step graph is traced for the converter the plain fake
        quantization is kept (the converter reads its range; the file's
        kernel rounds). An input that no point returned in this run
        leaves the plain fake quantization."""
        if self.looping:
            memo = ("requantized", self.prefix, id(owner), name)
            if memo in self.loop_memo:
                q = self.activation(owner, name, x)
                constants = self.loop_memo[memo]
                if constants is None:
                    return q
                return _torch_ops().requantize(q, x, constants)
            self.requantized_with = None
            q = self._requantized(owner, name, x, inputs, count)
            self.loop_memo[memo] = self.requantized_with
            return q
        return self._requantized(owner, name, x, inputs, count)

    def _requantized(self, owner, name, x, inputs, count):
        if self.exports and _tracing():
            # The converter reads the plain fake quantization's range; a
            # move of one tensor onto another grid (a QUANTIZE) it
            # inserts itself where an operator needs it.
            if len(inputs) == 1 and count == 1:
                return x
            return self.activation(owner, name, x)
        q = self.activation(owner, name, x)
        config = self._config()
        if self.mode == "discover" or config.skip:
            return q
        grids = [self.grids.get(id(t)) for t in (q, *inputs)]
        if any(g is None for g in grids) or config.activation_bits != 8:
            return q
        if self.eager:
            return self._torch_requantized(q, x, grids, count)
        unit, multiplier, step, scale, low, high = self._requant_constants(
            grids, count
        )
        # The accumulator (a bias rounded to its grid, as the file
        # stores it), then the two roundings of the requantization.
        acc = _round_half_away(ops.stop_gradient(ops.cast(x, "float32")) / unit)
        first = _round_half_away(acc * multiplier)
        coarse = _round_half_away(first / step)
        exact = ops.clip(coarse * scale, low, high)
        out = q + ops.stop_gradient(ops.where(q == x, 0.0, exact - q))
        return self._remember(out, scale, low, high)

    def _requant_constants(self, grids, count, xp=ops):
        """`(unit, multiplier, step, scale, low, high)` of `requantized`:
        the accumulator's scale, the first rounding's multiplier, the
        power of two of the second, and the output grid (`xp`: `keras.ops`
        or `_torch_ops.OPS`, the same operations in torch)."""
        _, scale, low, high = grids[0]
        unit = 1.0  # the scale of the kernel's int32 accumulator
        for g in grids[1:]:
            unit = unit * g[1]
        unit = xp.stop_gradient(unit)
        exponent = xp.floor(xp.log2(unit / scale)) + 1.0  # frexp's
        if count > 1:
            shift = min(int(count).bit_length() - 1, 32)
            right = xp.maximum(shift - exponent, 0.0)
            unit = unit / float(count)
        else:
            right = xp.maximum(-exponent, 0.0)
        step = xp.power(2.0, right)
        multiplier = xp.stop_gradient(unit / scale * step)
        return unit, multiplier, step, scale, low, high

    def _torch_requantized(self, q, x, grids, count):
        """`requantized` on PyTorch (`_torch_ops.requantize`), its
        constants computed once per point, inputs' grids and run."""
        cache_key = (count,) + tuple(id(g[1]) for g in grids)
        if cache_key not in self.requant_cache:
            torch_ops = _torch_ops()
            self.requant_cache[cache_key] = torch_ops.requantize_constants(
                self._requant_constants(grids, count, torch_ops.OPS)
            )
        self.requantized_with = self.requant_cache[cache_key]
        return self._remember(
            _torch_ops().requantize(q, x, self.requantized_with),
            *self.requantized_with[3:],
        )

    def _trace_int16(self, x, key, fixed):
        """Records the symmetric 16-bit range of `x` under its graph name
        (the first point marking a tensor decides) and returns `x`."""
        if fixed is not None and tuple(fixed) in _KERNEL_RANGES:
            m = _INT16_KERNEL_MAX
        else:
            low, high = fixed if fixed is not None else self.table[key]
            m = max(abs(low), abs(high), 1e-8)
        name = getattr(x, "name", None)
        if name:
            self.model.traced_ranges.setdefault(name.split(":")[0], m)
        return x

    def _quantize(self, key, x, low, high, bits, kernel=False):
        if bits == 16 or keras.backend.backend() != "torch":
            return _fake_quant_activation(x, low, high, bits, kernel=kernel)
        # PyTorch runs every operation eagerly: the arithmetic and the
        # straight-through gradient of fake_quant_with_min_max_vars, with
        # the nudged range computed once per point and no gradient
        # function (whose Python overhead dominated a training step).
        self.quantized_with = self._point_grids(key, low, high, bits)[0]
        return _torch_ops().fake_quant(
            x, self.quantized_with, not self.no_gradient
        )

    def _observe(self, key, low, high):
        xp = _xp()
        if key in self.observed:
            old_low, old_high = self.observed[key]
            low, high = xp.minimum(low, old_low), xp.maximum(high, old_high)
        self.observed[key] = (xp.stop_gradient(low), xp.stop_gradient(high))

    def scan(self, fn, states, inputs, observe=True):
        """`points.scan` in this scope: in `"train"` mode each step's
        observations are outputs of the scan, reduced over time after
        it (the min/max over all steps, as the step-by-step run records);
        with `observe=False` they are dropped: the caller marks the same
        points again on whole sequences, with their gradients, so the loop
        needs neither (on PyTorch it then skips the gradient part of the
        fake quantization, and replays each point met in the loop from
        its first step: every step of a loop runs the same step function,
        so it meets the same points on the same grids)."""
        self.no_gradient = not observe
        self.looping = self.eager and self.no_gradient
        self.loop_memo = {}
        try:
            return self._scan(fn, states, inputs, observe)
        finally:
            self.no_gradient = self.looping = False
            self.loop_memo = {}

    def _scan(self, fn, states, inputs, observe):
        if not observe and _tracing() and not self.exports:
            return _xla_scan(fn, states, inputs)
        if self.mode != "train" or not observe:
            # (Without `observe` the points observe nothing: `activation`.)
            return points.scan_time(fn, states, inputs)
        outer = self.observed

        def step(x_t, carry):
            self.observed = {}
            try:
                y, new = fn(x_t, carry)
                seen = self.observed if observe else {}
            finally:
                self.observed = outer
            # One value per step, with an axis in place of the batch.
            seen = {
                k: (ops.reshape(lo, (1,)), ops.reshape(hi, (1,)))
                for k, (lo, hi) in seen.items()
            }
            return (y, seen), new

        (ys, seen), final = points.scan_time(step, states, inputs)
        for key, (low, high) in seen.items():
            self._observe(key, ops.min(low), ops.max(high))
        return ys, final

    def gradient_mask(self, owner, name, x, fixed=None, state=False):
        """1.0 where the point's fake quantization passes the gradient of
        `x` (inside its nudged range, bounds included, as
        `fake_quant_with_min_max_vars`), else 0.0."""
        config = self._config()
        if config.skip or self.mode == "discover":
            return ops.ones_like(x)
        key = self.key(owner, name)
        fixed = config.fixed_range(key) or fixed
        key = self.model.aliases.get(key, key)
        fixed = self.model.points[key] if fixed is None else fixed
        if fixed is not None:
            low, high = fixed
        else:
            index = self.model.point_index(key)
            low, high = self.ranges[index, 0], self.ranges[index, 1]
        if self.eager and config.activation_bits == 8:
            if fixed is None and self.mode != "export" and not self.ready_now:
                return ops.ones_like(x)
            bounds = self._point_grids(key, low, high, 8)[0][:2]
            return _torch_ops().inside(x, *bounds)
        if fixed is not None:
            low, high = (ops.convert_to_tensor(float(v)) for v in fixed)
        ones = ops.ones_like(x)
        if config.activation_bits == 16:
            # Symmetric, zero point 0 (`_fake_quant_activation`).
            if fixed is not None and tuple(fixed) in _KERNEL_RANGES:
                m = ops.convert_to_tensor(_INT16_KERNEL_MAX)
            else:
                m = ops.maximum(ops.maximum(ops.abs(low), ops.abs(high)), 1e-8)
            low, high = _nudged(-m, m, 16, narrow_range=True)
        else:
            low, high = _nudged(low, high, config.activation_bits)
        mask = ops.cast(ops.logical_and(x >= low, x <= high), ops.dtype(x))
        if fixed is not None or self.mode == "export":
            return mask
        return ops.where(self.ready, mask, ones)

    def _discover(self, key, x, fixed, state):
        producer = self.produced.get(id(x))
        if (
            state
            and fixed is None
            and producer is not None
            and producer[1] != key
            and key not in self.found
        ):
            # A state fed by an already quantized tensor (the FIFO of a
            # convolution) takes that tensor's range: the int8 graph then
            # stores the samples unchanged.
            self.aliases[key] = self.aliases.get(producer[1], producer[1])
        elif key not in self.aliases:
            self.found.setdefault(key, fixed)
        self.produced[id(x)] = (x, key)
        return x

    def weight(self, owner, name, fn, axis):
        config = self._config()
        if config.skip or self.mode == "discover" or self._calibrating():
            return fn()
        bits = config.weight_bits
        if self.mode == "export":
            # Evaluated eagerly: the converter receives the quantized
            # weights as constants and quantizes them to the same grid.
            q = points.constant(lambda: _quantize_weight(fn(), axis, bits))
        else:
            q = _quantize_weight(fn(), axis, bits)
        return self._remember(q, _weight_scale(q, axis, bits))

    def operand(self, owner, name, fn):
        config = self._config()
        if config.skip or self.mode == "discover" or self._calibrating():
            return fn()
        bits = config.weight_bits
        if self.mode == "export":
            q = points.constant(lambda: _quantize_operand(fn(), bits))
        else:
            q = _quantize_operand(fn(), bits)
        return self._remember(q, _operand_scale(q, bits))

    def _calibrating(self):
        # `QuantizedModel.calibrate` observes the float model, as the
        # converter's post-training calibration does.
        return getattr(self.model, "_calibration", None) is not None

    def merge(self, low, high):
        """`low`/`high` (one entry per learned point) updated with this
        step's observations."""
        xp = _xp()
        keys = self.model.learned_points
        inf = ops.convert_to_tensor(np.inf, "float32")  # (on the device)
        step_low = xp.stack(
            [self.observed.get(k, (inf, -inf))[0] for k in keys]
        )
        step_high = xp.stack(
            [self.observed.get(k, (inf, -inf))[1] for k in keys]
        )
        return xp.minimum(low, step_low), xp.maximum(high, step_high)


@keras.saving.register_keras_serializable(package="keras_mgrade")
class QuantizedModel(keras.Model, core.QuantizedSteps):
    """A sequence model trained with the int8 rounding of its step graph.

    Computes what the model's single-step graph (the one
    `streaming_model` builds and the int8 exporter converts) computes
    over the time axis, with fake quantization
    (`keras.quantizers.fake_quant_with_min_max_vars`, straight-through
    gradients) at every quantization point of that graph: weights
    symmetric per output channel; activations per tensor, asymmetric
    (symmetric with zero point 0 at 16 bits, for a 16x8 file), with
    ranges tracked by a moving average of each batch's min/max during
    training and frozen at inference; each recurrent state (the
    convolution FIFO, the MinGRU `h`) with one range shared by its input
    and output. The output is the source model's: for a classifier with
    mean pooling, the mean of the per-step outputs (what the host computes
    from the int8 file's `y_t`).

    The step graph is not run one time step at a time: everything but the
    recurrence is computed for all time steps at once
    (`core.run_sequence`): position-wise layers on the time steps folded
    into the batch, a convolution FIFO as slices of the delayed input, the
    MinGRU gates for every step; only the MinGRU state update (and its
    points) is scanned, without gradient, its gradient coming from the
    adjoint recurrence (`MinGRUCell.sequence`). The result, the gradients
    and the range updates equal the step-by-step run (to float rounding;
    `_call_steps` is that reference). A stateful kind without a sequence
    form (`keras.layers.GRU`, `LSTM`, a running mean that the host does not
    pool) is scanned one step at a time, with gradient, the rest of the
    model still at once. On PyTorch, which runs every operation eagerly,
    the fake quantization is computed in torch operations
    (`_torch_ops`; the same values) and the loop replays each point's
    quantization after its first step; on TensorFlow the loop inside a
    traced graph is compiled by XLA (`_xla_scan`). A training step costs
    about 2.3-2.7 times the float model's on TensorFlow, 1.1-1.6 times on
    JAX, 2.7-3.0 times on PyTorch (`benchmarks/qat.py --speed`). Dropout
    is not applied (the step graph has none).

    Args:
        model: the float sequence model (see `streaming_model` for the
            supported layers; `Embedding` front ends are not supported).
        config: `None`, a `QuantizeConfig` for every layer, or a dict
            `{layer name: QuantizeConfig}` (other layers get the default;
            `"inputs"` names the model input).
    """

    def __init__(self, model, config=None, **kwargs):
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        kwargs.setdefault("name", f"{model.name}_qat")
        super().__init__(**kwargs)
        core.check_streamable(model)
        for layer in model.layers:
            if isinstance(layer, keras.layers.Embedding):
                raise ValueError(
                    "quantize_model does not support Embedding layers (int8 "
                    "token lookup); feed one-hot or float features. "
                    f"Received: layer {layer.name!r}"
                )
        self.source = model
        self.layer_configs = _resolve_config(model, config)
        self.host_pooling = core.host_pooling_of(model) is not None
        self.state_shapes = [
            shape
            for _, shapes in core.stateful_layers(model, self.host_pooling)
            for shape in shapes
        ]
        self.points = None
        self.aliases = {}
        self.learned_points = None
        self._index = None
        # {graph tensor name: m} of the last 16-bit export trace.
        self.traced_ranges = {}

    def layer_config(self, layer_name):
        return self.layer_configs.get(layer_name, self._default)

    @property
    def _default(self):
        return self.layer_configs.get("*", _DEFAULT)

    def quantization_scope(self, mode):
        """A `QuantizationScope` over this model's ranges."""
        return QuantizationScope(self, mode)

    def check_exportable(self, quantize):
        """Raises a ValueError if the learned ranges cannot make a
        `quantize` file: not trained yet, or bit widths other than the
        file's (`"int8"`: 8-bit weights and activations; `"int16x8"`:
        8-bit weights, 16-bit activations)."""
        bits = _FILE_BITS.get(quantize, (8, 8))
        names = [INPUTS] + [layer.name for layer in self.source.layers]
        for name in names:
            config = self.layer_config(name)
            if (config.weight_bits, config.activation_bits) != bits:
                hint = (
                    " (QuantizeConfig(activation_bits=16))"
                    if quantize == "int16x8"
                    else ""
                )
                raise ValueError(
                    f"A quantize={quantize!r} file needs {bits[0]}-bit "
                    f"weights and {bits[1]}-bit activations in every layer"
                    f"{hint}. Received: layer {name!r} with weight_bits="
                    f"{config.weight_bits}, activation_bits="
                    f"{config.activation_bits}"
                )
        if not self.built or not float(ops.convert_to_numpy(self.initialized)):
            raise ValueError(
                "The quantization-aware model has no learned ranges yet: "
                f"train it (fit) before exporting it to {quantize}. "
                f"Received: model {self.name!r}"
            )
        table = self.range_table()
        empty = {k: v for k, v in table.items() if not v[1] > v[0]}
        if empty:
            raise ValueError(
                "Some learned ranges are empty or not finite (trained on NaN "
                "or constant data?): the int8 file would be broken. "
                f"Received: ranges {dict(list(empty.items())[:3])}"
            )

    def point_index(self, key):
        return self._index[key]

    def _discover(self):
        scope = QuantizationScope(self, "discover")
        shape = (1,) + tuple(self.source.inputs[0].shape[2:])
        x = ops.zeros(shape, self.source.inputs[0].dtype)
        states = [
            ops.zeros((1,) + tuple(s), "float32") for s in self.state_shapes
        ]
        with points.scope(scope):
            y, _ = core.run_step(self.source, x, states, self.host_pooling)
        self._step_output_shape = tuple(y.shape[1:])
        return scope.found, scope.aliases

    def build(self, input_shape=None):
        found, self.aliases = self._discover()
        self.points = found
        self.learned_points = [k for k, v in found.items() if v is None]
        self._index = {k: i for i, k in enumerate(self.learned_points)}
        n = max(len(self.learned_points), 1)
        self.ranges = self.add_weight(
            shape=(n, 2),
            initializer="zeros",
            trainable=False,
            name="ranges",
        )
        self.initialized = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="initialized"
        )
        self._decay = np.array(
            [
                self.layer_config(k.split("/")[0]).ema_decay
                for k in self.learned_points
            ]
            or [0.0],
            "float32",
        )
        self.built = True

    def _start(self, inputs, training):
        """`(x, zero states, mode, number of learned points, low, high)`:
        what `call` and `_call_steps` start from (`low`/`high`: empty
        observations)."""
        x = ops.cast(inputs, "float32")
        batch = ops.shape(x)[0]
        states = [
            ops.zeros((batch,) + tuple(s), "float32") for s in self.state_shapes
        ]
        n = len(self.learned_points)
        low = ops.full((n,), np.inf, "float32")
        high = ops.full((n,), -np.inf, "float32")
        return x, states, "train" if training else "infer", n, low, high

    def call(self, inputs, training=None):
        x, states, mode, n, low, high = self._start(inputs, training)
        scope = QuantizationScope(self, mode)
        with points.scope(scope):
            ys, _ = core.run_sequence(self.source, x, states, self.host_pooling)
        if mode == "train" and n:
            self._update_ranges(*scope.merge(low, high))
        return self._output(ys)

    def _call_steps(self, inputs, training=None):
        """`call` computed one time step at a time (`core.run_step` in a
        scan): the reference that `call` equals."""
        x, states, mode, n, low, high = self._start(inputs, training)

        def body(x_t, carry):
            states, low, high = carry
            scope = QuantizationScope(self, mode)
            with points.scope(scope):
                y, new = core.run_step(
                    self.source, x_t, states, self.host_pooling
                )
            if mode == "train" and n:
                low, high = scope.merge(low, high)
            return y, [list(new), low, high]

        ys, (_, low, high) = points.scan_time(body, [states, low, high], x)
        if mode == "train" and n:
            self._update_ranges(low, high)
        return self._output(ys)

    def _output(self, ys):
        """The source model's output from the per-step outputs `ys`
        `(batch, timesteps, ...)`."""
        if self.host_pooling:
            return ops.mean(ys, axis=1)
        if len(self.source.outputs[0].shape) == 2:
            return ys[:, -1]
        return ys

    def calibrate(self, data, batch_size=32):
        """Sets every learned range from a pass over `data`, as
        post-training quantization does.

        The float model (nothing fake-quantized) runs over whole
        input sequences, and each point's range becomes the min/max it
        takes over all of `data` (widened to include 0). Training then
        starts from the ranges of the post-training int8 file instead of
        the first batch's, and the moving averages continue from them.

        Args:
            data: array `(samples, timesteps, features)` of whole input
                sequences (e.g. a few dozen training sequences).
            batch_size: int, sequences per forward pass. Defaults to `32`.

        Returns:
            This model.
        """
        x = np.asarray(data)
        expected = tuple(self.source.inputs[0].shape[2:])
        if (
            x.ndim != 3
            or len(x) == 0
            or x.shape[1] == 0
            or x.shape[2:] != expected
            or not np.issubdtype(x.dtype, np.number)
        ):
            raise ValueError(
                "data must be a non-empty numeric array (samples, timesteps, "
                f"{', '.join(str(d) for d in expected)}) of whole input "
                f"sequences. Received: data with shape {x.shape} and dtype "
                f"{x.dtype}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(
                "data must be finite (NaN or infinite values would make "
                "every range infinite). Received: data with "
                f"{int(np.sum(~np.isfinite(x)))} non-finite values"
            )
        batch_size = _check_batch_size(batch_size)
        if not self.learned_points:
            self.initialized.assign(1.0)
            return self
        self.initialized.assign(0.0)  # observe in float
        self._calibration = types.SimpleNamespace(low=None, high=None)
        try:
            for start in range(0, len(x), batch_size):
                self(x[start : start + batch_size], training=True)
            low, high = self._calibration.low, self._calibration.high
        finally:
            self._calibration = None
        low = np.minimum(ops.convert_to_numpy(low), 0.0)
        high = np.maximum(ops.convert_to_numpy(high), 0.0)
        high = np.maximum(high, low + 1e-6)
        self.ranges.assign(np.stack([low, high], axis=1).astype("float32"))
        self.initialized.assign(1.0)
        return self

    def _update_ranges(self, low, high):
        calibration = getattr(self, "_calibration", None)
        if calibration is not None:
            # A calibration pass: the overall min/max, no moving average.
            if calibration.low is not None:
                low = ops.minimum(low, calibration.low)
                high = ops.maximum(high, calibration.high)
            calibration.low, calibration.high = low, high
            return
        low = ops.minimum(low, 0.0)
        high = ops.maximum(ops.maximum(high, 0.0), low + 1e-6)
        old = ops.copy(ops.convert_to_tensor(self.ranges))
        ready = ops.copy(ops.convert_to_tensor(self.initialized)) > 0
        decay = ops.convert_to_tensor(self._decay)
        new_low = ops.where(ready, decay * old[:, 0] + (1 - decay) * low, low)
        new_high = ops.where(
            ready, decay * old[:, 1] + (1 - decay) * high, high
        )
        # A batch with NaN or infinite values leaves the ranges as they
        # were (otherwise a single bad batch would ruin every range).
        finite = ops.logical_and(ops.isfinite(new_low), ops.isfinite(new_high))
        new_low = ops.where(finite, new_low, old[:, 0])
        new_high = ops.where(finite, new_high, old[:, 1])
        self.ranges.assign(ops.stack([new_low, new_high], axis=1))
        self.initialized.assign(ops.ones(()))

    def compute_output_shape(self, input_shape):
        return self.source.compute_output_shape(input_shape)

    def range_table(self):
        """`{point: (min, max)}` of every quantization point (learned and
        fixed), as Python floats; a point that shares another's range (a
        convolution FIFO and its input) is listed with that range."""
        ranges = ops.convert_to_numpy(self.ranges)
        table = {}
        for key, fixed in self.points.items():
            if fixed is None:
                low, high = ranges[self._index[key]]
                table[key] = (float(low), float(high))
            else:
                table[key] = (float(fixed[0]), float(fixed[1]))
        for key, target in self.aliases.items():
            table[key] = table[target]
        return table

    def get_config(self):
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.source),
            "config": {
                name: keras.saving.serialize_keras_object(c)
                for name, c in self.layer_configs.items()
            },
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        layer_configs = {
            name: keras.saving.deserialize_keras_object(c)
            for name, c in (config.pop("config") or {}).items()
        }
        return cls(model, layer_configs, **config)


_DEFAULT = QuantizeConfig()
# (weight bits, activation bits) of each file type.
_FILE_BITS = {"int8": (8, 8), "int16x8": (8, 16)}


def _resolve_config(model, config):
    if config is None:
        return {}
    if isinstance(config, QuantizeConfig):
        return {"*": config}
    if not isinstance(config, dict):
        raise ValueError(
            "config must be None, a QuantizeConfig or a dict {layer name: "
            f"QuantizeConfig}}. Received: config of type "
            f"{type(config).__name__}"
        )
    names = [INPUTS] + [layer.name for layer in model.layers]
    resolved = {}
    for name, value in config.items():
        if name not in names and name != "*":
            raise ValueError(
                f"config names a layer that is not in model {model.name!r}: "
                f"{name!r}. Layers: {names}"
            )
        if not isinstance(value, QuantizeConfig):
            raise ValueError(
                f"config[{name!r}] must be a QuantizeConfig. Received: "
                f"{value!r}"
            )
        resolved[name] = value
    return resolved


def _check_batch_size(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"batch_size must be a positive int. Received: batch_size={value!r}"
        )
    return value


def quantize_model(model, config=None, calibration_data=None):
    """A quantization-aware-training copy of a streamable sequence model.

    The returned `QuantizedModel` shares the weights of `model` (train it
    and the float model's weights change with it), runs the int8 step
    graph with fake quantization at every point where the int8 TFLite
    file quantizes, and learns the activation ranges during `fit`.
    `keras_mgrade.export.export_tflite(qat_model, path, quantize="int8")`
    then writes an int8 file from those ranges, without calibration data
    (`quantize="int16x8"` for a model with
    `QuantizeConfig(activation_bits=16)`).

    Args:
        model: a built sequence `keras.Model` that `streaming_model`
            accepts (no `Embedding`).
        config: `None` (8-bit weights and activations everywhere), a
            `QuantizeConfig` for every layer, or a dict `{layer name:
            QuantizeConfig}`; a name that is not a layer of `model` (or
            `"inputs"`) raises a ValueError.
        calibration_data: `None`, or whole input sequences `(samples,
            timesteps, features)` from which every learned range starts
            (`QuantizedModel.calibrate`): the QAT model then starts as the
            post-training int8 file and fine-tuning moves on from there.
            Recommended (a few dozen training sequences). Defaults to
            `None` (the first training batch sets the ranges).

    Returns:
        A built `QuantizedModel`.

    Example:

    >>> import numpy as np
    >>> from keras_mgrade.models import mgrade_classifier
    >>> model = mgrade_classifier(2, 3, units=8, num_layers=1, max_delay=4,
    ...                           kernel_taps=2)
    >>> qat = quantize_model(model)
    >>> qat.compile("adam", "sparse_categorical_crossentropy")
    >>> x = np.random.default_rng(0).normal(size=(8, 16, 2))
    >>> qat.fit(x, np.zeros(8), epochs=1, verbose=0).history["loss"][0] > 0
    True
    >>> low, high = qat.range_table()["mgrade_0/min_gru_cell/h"]
    >>> low <= 0.0 < high
    True
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            "quantize_model expects a keras.Model. Received: model of type "
            f"{type(model).__name__}"
        )
    qat = QuantizedModel(model, config)
    qat.build(model.inputs[0].shape)
    if calibration_data is not None:
        qat.calibrate(calibration_data)
    return qat


def is_quantized(model):
    """Whether `model` is a `QuantizedModel`."""
    return isinstance(model, QuantizedModel)
