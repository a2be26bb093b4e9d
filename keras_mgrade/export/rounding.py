"""Weight rounding from calibration statistics, for post-training
quantization.

The converter rounds every int8 weight to the nearest point of its
per-channel grid (symmetric, scale `max|w| / 127`). Rounding to nearest
minimises each weight's own error, not the error of the layer's output:
for an output channel `w` (a column of a FULLY_CONNECTED kernel, or one
channel of a DEPTHWISE_CONV_2D filter) whose inputs `x` have the second
moment `H = E[x x^T]` over the calibration, the output's mean squared
error is `(w - q)^T H (w - q)`. `weight_rounding="gptq"` minimises it
greedily, as GPTQ does (Frantar et al., "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", ICLR 2023): the
weights of a channel are rounded one at a time and the error of each is
compensated on the ones not yet rounded, through `H^-1`.

The grid is the converter's own: the channel's largest weight is rounded
first (it lands on +-127 with no error, so `max|q| * scale` is the
channel's maximum again and the converter recomputes the same scale), the
others are clipped to [-127, 127], and each rounded weight is handed to
the converter as `q * scale`, which it stores as `q`. A channel keeps the
nearest rounding where that has the smaller output error on the
calibration data, so no channel gets worse.

`collect` runs the float step graph on the calibration samples and
records, for every weight that feeds a matrix product or a depthwise
convolution, the second moment of that product's input; `gptq_weights`
rounds them; `Substitute` gives the rounded weight in place of the float
one while the step graph is traced for the converter.
"""

import hashlib

import numpy as np
from keras import ops

from keras_mgrade import core
from keras_mgrade.core import points

QMAX = 127  # int8 weights: symmetric, narrow range
DAMPING = 0.01  # of the mean diagonal of H, as in GPTQ


def weight_key(prefix, owner, name, value):
    """Identifies a weight point by where it is and what it holds (a
    layer can mark two weights under one name, such as the MinGRU's gate
    and candidate halves of its kernel)."""
    digest = hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()
    return (prefix, getattr(owner, "name", None), name, value.shape, digest)


class _Collector(points.Scope):
    """Runs the float step graph (no quantization) and accumulates the
    second moment of the input of every product with a weight."""

    quantizes = False

    def __init__(self):
        self.weights = {}  # id(tensor) -> (tensor, key, value, axis)
        self.moments = {}  # key -> [kind, value, axis, H, count]

    def weight(self, owner, name, fn, axis):
        tensor = fn()
        if axis is not None:
            array = ops.convert_to_numpy(tensor)
            key = weight_key(self.prefix, owner, name, array)
            value = np.asarray(array, "float64")
            self.weights[id(tensor)] = (tensor, key, value, axis)
            # Kind None until a recognised product reads it.
            self.moments.setdefault(key, [None, value, axis, 0.0, 0])
        return tensor

    def requantized(self, owner, name, x, inputs, count=1):
        if len(inputs) != 2 or id(inputs[1]) not in self.weights:
            return x
        _, key, value, axis = self.weights[id(inputs[1])]
        a = np.asarray(ops.convert_to_numpy(inputs[0]), "float64")
        found = _moment(a, value, axis)
        if found is None:
            return x
        kind, h, n = found
        entry = self.moments[key]
        entry[0] = kind
        entry[3] = entry[3] + h
        entry[4] += n
        return x


def _moment(a, value, axis):
    """`(kind, sum of x x^T, number of rows)` of the product of `a` with
    the weight `value`, or None for a product this module does not
    recognise (left to nearest rounding)."""
    axis = axis % value.ndim
    if value.ndim == 2 and axis == 1 and a.ndim in (2, 3):
        # FULLY_CONNECTED on (batch, inputs), or on a window (batch,
        # taps, channels) flattened (a causal Conv1D without dilation).
        if int(np.prod(a.shape[1:])) != value.shape[0]:
            return None
        rows = a.reshape(a.shape[0], -1)
        return "dense", rows.T @ rows, rows.shape[0]
    if value.ndim == 4 and axis == 2 and value.shape[0] == 1:
        # DEPTHWISE_CONV_2D with a (1, D, C, 1) kernel on a (batch, 1, D,
        # C) window: channel c's inputs are the window's column c.
        _, d, c, m = value.shape
        if m != 1 or a.ndim != 4 or a.shape[1:] != (1, d, c):
            return None
        x = np.moveaxis(a[:, 0], 2, 0)  # (C, batch, D)
        return "depthwise", np.einsum("cbi,cbj->cij", x, x), a.shape[0]
    return None


def collect(source, samples, steps_per_invoke, host_pooling):
    """Second moments of the weighted products' inputs over `samples` (the
    per-invoke inputs `[x, *states]` of the calibration), as a dict
    `key -> (kind, float weight, axis, H)` (H the mean of `x x^T`) over
    every per-channel weight of the step; `kind` is `"dense"`,
    `"depthwise"` or None for a weight read by no product this module
    rounds (a dilated convolution's window, a per-tensor MUL)."""
    collector = _Collector()
    x = np.concatenate([s[0] for s in samples], 0)
    flat = [
        ops.convert_to_tensor(np.concatenate([s[i] for s in samples], 0))
        for i in range(1, len(samples[0]))
    ]
    with points.scope(collector):
        for t in range(steps_per_invoke):
            x_t = x if steps_per_invoke == 1 else x[:, t]
            _, flat = core.run_step(
                source, ops.convert_to_tensor(x_t), flat, host_pooling
            )
    return {
        key: (kind, value, axis, h / max(n, 1))
        for key, (kind, value, axis, h, n) in collector.moments.items()
    }


def round_channel(w, h):
    """The integer weights `q` (in [-127, 127]) of one output channel `w`
    with inputs' second moment `h`, on the grid `max|w| / 127`, and the
    scale: GPTQ's sequential rounding, the largest weight first; nearest
    rounding instead where that has the smaller output error."""
    scale = np.max(np.abs(w)) / QMAX
    if scale == 0.0:
        return np.zeros(w.shape, "int64"), scale
    nearest = _nearest(w, scale)
    diag = np.diag(h)
    if not np.all(np.isfinite(h)) or np.mean(diag) <= 0.0:
        return nearest.astype("int64"), scale
    first = int(np.argmax(np.abs(w)))
    rest = [i for i in np.argsort(-diag, kind="stable") if i != first]
    order = np.array([first] + rest)
    hp = h[np.ix_(order, order)] + DAMPING * np.mean(diag) * np.eye(len(w))
    try:
        upper = np.linalg.cholesky(np.linalg.inv(hp)).T
    except np.linalg.LinAlgError:
        return nearest.astype("int64"), scale
    v = w[order].copy()
    q = np.zeros_like(v)
    for i in range(len(v)):
        q[i] = np.clip(np.round(v[i] / scale), -QMAX, QMAX)
        error = (v[i] - q[i] * scale) / upper[i, i]
        v[i + 1 :] -= error * upper[i, i + 1 :]
    rounded = np.empty_like(q)
    rounded[order] = q
    if output_error(w, rounded, scale, h) > output_error(w, nearest, scale, h):
        rounded = nearest
    return rounded.astype("int64"), scale


def _nearest(w, scale):
    return np.clip(np.round(w / scale), -QMAX, QMAX)


def output_error(w, q, scale, h):
    """`(w - q scale)^T h (w - q scale)`: the mean squared change of the
    channel's output over inputs whose second moment is `h`."""
    e = w - q * scale
    return float(e @ h @ e)


def converter_factors(moments, float_flat):
    """The factors the converter multiplies into each weight's inputs.

    The converter fuses a MUL by a constant that only feeds a
    FULLY_CONNECTED into its kernel (the `gamma` of a LayerNormalization
    before the MLP or the decoder): the file holds `d[i] * w[i, j]`, and
    the int8 grid is that product's. Found by matching every weight of
    `moments` to a FULLY_CONNECTED (DEPTHWISE_CONV_2D) of the float file
    of the same step graph (`float_flat`, bytes).

    Returns:
        `key -> d` (float64, one factor per input row of the weight;
        ones where nothing was fused), or `key -> None` for a weight the
        file does not hold as `d[i] * w[i, j]` (it keeps nearest
        rounding).
    """
    from keras_mgrade.export.c_backend.graph import read_graph

    float_graph = read_graph(float_flat)
    constants = {"FULLY_CONNECTED": [], "DEPTHWISE_CONV_2D": []}
    for op in float_graph.operators:
        if op.name in constants and len(op.inputs) > 1:
            tensor = float_graph.tensors[op.inputs[1]]
            if tensor.data is not None and tensor.dtype == "float32":
                constants[op.name].append(np.asarray(tensor.data, "float64"))
    found = {}
    for key, (kind, value, _, _) in moments.items():
        found[key] = None
        if kind is None:
            continue
        if kind == "dense":  # the file's kernel is (outputs, inputs)
            candidates = [w.T for w in constants["FULLY_CONNECTED"]]
        else:  # (1, D, C, 1) here, (1, 1, D, C) in the file
            candidates = [
                w.reshape(value.shape) for w in constants["DEPTHWISE_CONV_2D"]
                if w.size == value.size
            ]  # fmt: skip
        for weight in candidates:
            if weight.shape != value.shape:
                continue
            if kind == "dense":
                d = _row_factors(value, weight)
            else:  # held as it is, or not at all
                d = _row_factors(value.reshape(1, -1), weight.reshape(1, -1))
                d = None if d is None or abs(d[0] - 1.0) > 1e-6 else d
            if d is not None:
                found[key] = d
                break
    return found


def _row_factors(value, weight, rtol=1e-5):
    """`d` with `weight == d[:, None] * value` (to `rtol` of the largest
    weight), or None."""
    norms = np.sum(value * value, axis=1)
    d = np.divide(
        np.sum(weight * value, axis=1),
        norms,
        out=np.zeros_like(norms),
        where=norms > 0,
    )
    fit = d[:, None] * value
    tolerance = rtol * max(float(np.max(np.abs(weight))), 1e-30)
    if np.max(np.abs(fit - weight)) > tolerance:
        return None
    return d


def gptq_weights(moments, factors):
    """The rounded weights, as `key -> (float32 array, output error of
    nearest rounding, output error of this rounding)`, the errors summed
    over channels (mean squared error on the calibration inputs).

    `factors` (`converter_factors`): a weight whose factor is None is
    left out; with factors `d` the rounding runs on the converter's
    product `d[i] * w[i, j]` (inputs `x[i] / d[i]`, the same product) and
    the weight returned is the rounded product divided by `d` again.
    """
    result = {}
    for key, (kind, value, axis, h) in moments.items():
        d = factors.get(key)
        if d is None:
            continue
        axis = axis % value.ndim
        w = np.moveaxis(value, axis, -1)
        flat = w.reshape(-1, w.shape[-1])  # (inputs, channels)
        if kind != "dense":
            d = np.ones(flat.shape[0])
        live = d != 0.0  # an input the converter multiplies by 0
        flat_eff = flat[live] * d[live, None]
        h = h[..., live, :][..., :, live] / np.outer(d[live], d[live])
        out = flat.astype("float32")
        before = after = 0.0
        for c in range(flat.shape[1]):
            hc = h if kind == "dense" else h[c]
            w_c = flat_eff[:, c]
            q, scale = round_channel(w_c, hc)
            out[live, c] = q.astype("float32") * np.float32(scale) / d[live]
            if scale:
                before += output_error(w_c, _nearest(w_c, scale), scale, hc)
                after += output_error(w_c, q, scale, hc)
        rounded = np.moveaxis(out.reshape(w.shape), -1, axis)
        result[key] = (rounded, before, after)
    return result


class Substitute:
    """`substitute(prefix, owner, name, value)`: the rounded weight for
    the float weight `value` of a point, or `value` itself (used by
    `points.FoldWeights` while the converter traces the step graph)."""

    def __init__(self, rounded):
        self.rounded = {key: r[0] for key, r in rounded.items()}
        self.used = set()

    def __call__(self, prefix, owner, name, value):
        value = np.asarray(value)
        if value.dtype != np.float32:
            return value
        key = weight_key(prefix, owner, name, value)
        if key in self.rounded:
            self.used.add(key)
            return self.rounded[key]
        return value


def report(moments, rounded, substitute):
    """What the rounding changed, for the export report: how many weights
    it rounded (`weights`; `nearest`: those left to the converter's
    nearest rounding), and the output errors on the calibration inputs
    summed over their channels."""
    return {
        "method": "gptq",
        "weights": len(substitute.used),
        "nearest": len(moments) - len(substitute.used),
        "output_mse_nearest": sum(r[1] for r in rounded.values()),
        "output_mse": sum(r[2] for r in rounded.values()),
    }
