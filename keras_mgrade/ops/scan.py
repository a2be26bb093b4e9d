"""First-order linear recurrences computed in parallel.

Every function here computes

    h_t = a_t * h_{t-1} + b_t,        t = 0 … T-1,   h_{-1} = h0 (or 0),

element-wise over inputs of shape `(batch, timesteps, features)`, and
returns all `h_t` with the same shape. The minGRU recurrence
(`a = 1 - z`, `b = z * g(h~)`, Feng et al. 2024, appendix B.3) is this
recurrence with `a` in (0, 1) and `b > 0`.

Four forms are provided, and `linear_scan` picks one:

- `sequential_scan`: one step per time step (`keras.ops.scan`). The plain
  reference, and the fastest form under JAX's compiled `lax.scan` on CPU.
- `chunked_scan`: a two-level scan. The sequence is cut into chunks of
  about `sqrt(T)` steps; every chunk is scanned at once (a loop of `C` steps,
  vectorised over all chunks), then the chunk carries are propagated (a loop
  of `T / C` steps) and folded back in. About `2 * sqrt(T)` vectorised steps
  in total, all in linear space, so it is as accurate as the sequential
  form. The fastest form on the TensorFlow and PyTorch CPU backends.
- `associative_scan`: `keras.ops.associative_scan` over the pairs `(a, b)`,
  in linear or log space: `O(log T)` depth, suited to accelerators.
- `log_scan`: the log-space form of Heinsen (2023):
  `a* = cumsum(log a)`, `log h = a* + logcumsumexp(log b - a*)`, computed
  with each backend's native cumulative log-sum-exp. `a*` grows linearly
  with `T`, so in float32 the cancellation in `a* + logcumsumexp(...)`
  costs about `|a*| * eps` of relative accuracy (1e-3 at T = 16384 in
  minGRU-pytorch). Here the sequence is chunked (64 steps by default) and
  the state is carried between chunks in log space, which keeps `|a*|`
  small.

Gradients. The backward pass of the recurrence is the same recurrence run
backwards: with `g_t = dL/dh_t`, the adjoint `l_t = g_t + a_{t+1} l_{t+1}`
gives `dL/db_t = l_t`, `dL/da_t = l_t h_{t-1}` and `dL/dh0 = a_0 l_0`. The
sequential and chunked forms use this adjoint as a custom gradient on
TensorFlow and PyTorch (automatic differentiation through their loops is
10-50x slower); on JAX `lax.scan`'s own gradient is used. The associative
and log forms are differentiated automatically.

Compilation. All forms run under `jax.jit`, `torch.compile` and, except
`associative_scan`, under TensorFlow XLA (`jit_compile=True`): the
TensorFlow implementation of `keras.ops.associative_scan` is not
XLA-compilable. With a time axis whose length is unknown when the graph is
built (a TensorFlow graph traced with `None` timesteps), the chunked form
cannot be unrolled and `"auto"` uses the sequential form;
`associative_scan` cannot run at all in that case and raises.

Reference:
    Heinsen, "Efficient Parallelization of a Ubiquitous Sequential
    Computation", 2023, https://arxiv.org/abs/2311.06281.
    Feng et al., "Were RNNs All We Needed?", 2024,
    https://arxiv.org/abs/2410.01201.
"""

import math

import keras
from keras import ops

METHODS = ("auto", "sequential", "chunked", "associative", "log")

# A finite stand-in for log(0): exp(LOG_ZERO) == 0 in float32, and unlike
# -inf it never produces NaN gradients through logaddexp/logcumsumexp.
LOG_ZERO = -1e30


def linear_scan(a, b, initial_state=None, method="auto"):
    """Computes `h_t = a_t * h_{t-1} + b_t` over the time axis.

    Args:
        a: tensor of shape `(batch, timesteps, features)`, the decay.
        b: tensor of the same shape, the input.
        initial_state: optional tensor `(batch, features)`, `h_{-1}`.
            Defaults to zeros.
        method: one of `"auto"`, `"sequential"`, `"chunked"`,
            `"associative"`, `"log"`. `"auto"` picks the fastest form for
            the backend and device (see `resolve_method`). `"log"` requires
            `a > 0`, `b >= 0` and `initial_state >= 0`.

    Returns:
        A tensor of the shape of `a`: every `h_t`, in float32 or float64
        (the computation dtype of `a`, upcast from 16-bit floats).

    Example:

    >>> import numpy as np
    >>> a = np.full((1, 4, 1), 0.5, "float32")
    >>> b = np.ones((1, 4, 1), "float32")
    >>> h = linear_scan(a, b)
    >>> np.round(keras.ops.convert_to_numpy(h)[0, :, 0], 4).tolist()
    [1.0, 1.5, 1.75, 1.875]
    """
    a, b, initial_state = _prepare(a, b, initial_state)
    method = resolve_method(method, timesteps=a.shape[1])
    if method == "sequential":
        return sequential_scan(a, b, initial_state)
    if method == "chunked":
        return chunked_scan(a, b, initial_state)
    if method == "associative":
        return associative_scan(a, b, initial_state)
    log_h0 = None
    if initial_state is not None:
        log_h0 = ops.log(initial_state + _tiny(initial_state.dtype))
    # b may be exactly 0 (a masked step); use the finite log-zero.
    log_b = ops.log(ops.maximum(b, 0.0) + _tiny(b.dtype))
    log_a = ops.log(a + _tiny(a.dtype))
    return ops.exp(log_scan(log_a, log_b, log_h0))


def resolve_method(method="auto", timesteps=None):
    """Returns the form that `linear_scan(method=method)` will use.

    `"auto"` picks, from measurements on a 2-core CPU (see
    `benchmarks/RESULTS.md`): `"sequential"` on JAX (`lax.scan` compiles
    to a tight loop), `"chunked"` on TensorFlow and PyTorch. On a GPU or TPU
    JAX uses `"associative"`. When `timesteps` is unknown (`None`) the
    chunked form cannot be unrolled and `"sequential"` is used.

    Args:
        method: a name from `METHODS`.
        timesteps: the static length of the time axis, or `None`.

    Returns:
        One of `"sequential"`, `"chunked"`, `"associative"`, `"log"`.
    """
    if method not in METHODS:
        raise ValueError(
            "Unknown scan method. Expected one of "
            f"{METHODS}. Received: method={method!r}"
        )
    if method == "associative" and timesteps is None:
        if keras.backend.backend() == "tensorflow":
            raise ValueError(
                "scan method 'associative' needs a static number of "
                "timesteps on the TensorFlow backend (keras.ops."
                "associative_scan cannot run over a dynamic axis). Use "
                "method='auto', 'chunked' or 'sequential', or give the "
                "input a fixed length. Received: timesteps=None"
            )
    if method != "auto":
        if method == "chunked" and timesteps is None:
            return "sequential"
        return method
    backend = keras.backend.backend()
    if backend == "jax":
        return "sequential" if _jax_on_cpu() else "associative"
    if timesteps is None:
        return "sequential"
    return "chunked"


def sequential_scan(a, b, initial_state=None):
    """The recurrence one time step at a time (`keras.ops.scan`).

    Args:
        a: tensor `(batch, timesteps, features)`.
        b: tensor of the same shape.
        initial_state: optional tensor `(batch, features)`.

    Returns:
        Every `h_t`, shape of `a`.
    """
    a, b, h0 = _prepare(a, b, initial_state)
    h0 = _zeros_state(a) if h0 is None else h0
    if keras.backend.backend() == "jax":
        return _sequential_kernel(a, b, h0)
    return _with_adjoint(_sequential_kernel)(a, b, h0)


def chunked_scan(a, b, initial_state=None, chunk_size=None):
    """The recurrence as a two-level (chunked) scan in linear space.

    Args:
        a: tensor `(batch, timesteps, features)`; `timesteps` must be known
            when the graph is built.
        b: tensor of the same shape.
        initial_state: optional tensor `(batch, features)`.
        chunk_size: steps per chunk; defaults to the power of two nearest
            `sqrt(timesteps)`.

    Returns:
        Every `h_t`, shape of `a`.
    """
    a, b, h0 = _prepare(a, b, initial_state)
    timesteps = a.shape[1]
    if timesteps is None:
        raise ValueError(
            "chunked_scan needs a static number of timesteps. Use "
            "sequential_scan for a dynamic time axis. Received: "
            f"input shape {tuple(a.shape)}"
        )
    if chunk_size is None:
        chunk_size = default_chunk_size(timesteps)
    elif int(chunk_size) < 1:
        raise ValueError(
            "chunk_size must be a positive integer. Received: "
            f"chunk_size={chunk_size}"
        )
    chunk_size = int(min(chunk_size, max(timesteps, 1)))
    h0 = _zeros_state(a) if h0 is None else h0

    def kernel(a, b, h0, reverse=False):
        return _chunked_kernel(a, b, h0, chunk_size, reverse)

    return _with_adjoint(kernel)(a, b, h0)


def associative_scan(a, b, initial_state=None, log_space=False):
    """The recurrence with `keras.ops.associative_scan` (log depth).

    Pairs compose as `(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)`; in log
    space `(la1 + la2, logaddexp(lb1 + la2, lb2))`. Differentiated
    automatically.

    Args:
        a: tensor `(batch, timesteps, features)`.
        b: tensor of the same shape.
        initial_state: optional tensor `(batch, features)`.
        log_space: combine in log space (requires `a > 0`, `b >= 0`,
            `initial_state >= 0`).

    Returns:
        Every `h_t`, shape of `a`.
    """
    a, b, h0 = _prepare(a, b, initial_state)
    if h0 is not None:
        # Fold h0 into the first input: b_0 <- b_0 + a_0 h0.
        b = ops.concatenate([b[:, :1] + a[:, :1] * h0[:, None], b[:, 1:]], 1)
    if log_space:
        la = ops.log(a)
        lb = ops.log(b + _tiny(b.dtype))

        def combine(x, y):
            return x[0] + y[0], ops.logaddexp(x[1] + y[0], y[1])

        _, lh = ops.associative_scan(combine, (la, lb), axis=1)
        h = ops.exp(lh)
    else:

        def combine(x, y):
            return x[0] * y[0], y[0] * x[1] + y[1]

        _, h = ops.associative_scan(combine, (a, b), axis=1)
    # The TensorFlow implementation loses the static shape (keras 3.15).
    return ops.reshape(h, ops.shape(a))


def log_scan(log_a, log_b, log_initial_state=None, chunk_size=64):
    """The recurrence in log space (Heinsen), chunked for float32 accuracy.

    Within a chunk of `C` steps: `a* = cumsum(log a)` and
    `log h = a* + logcumsumexp(log b - a*)`; between chunks the state is
    carried in log space, `log c' = logaddexp(A + log c, L)` with `A`, `L`
    the chunk's last `a*` and local `log h`.

    Args:
        log_a: tensor `(batch, timesteps, features)`, `log a_t`.
        log_b: tensor of the same shape, `log b_t` (use `LOG_ZERO`, not
            `-inf`, for `b_t = 0`).
        log_initial_state: optional tensor `(batch, features)`, `log h0`.
        chunk_size: steps per chunk (shorter chunks: smaller `|a*|`, more
            carry steps).

    Returns:
        `log h_t`, shape of `log_a`.
    """
    log_a, log_b, log_h0 = _prepare(log_a, log_b, log_initial_state)
    cumlogsumexp = _native_cumlogsumexp()
    batch, _, features = ops.shape(log_a)
    static_t = log_a.shape[1]
    if static_t is not None and static_t <= chunk_size:
        # One chunk: the plain Heinsen form.
        a_star = ops.cumsum(log_a, axis=1)
        log_h = a_star + cumlogsumexp(log_b - a_star, 1)
        if log_h0 is not None:
            log_h = ops.logaddexp(a_star + log_h0[:, None], log_h)
        return log_h
    if static_t is None:
        raise ValueError(
            "log_scan needs a static number of timesteps for sequences "
            f"longer than chunk_size={chunk_size}. Received: input shape "
            f"{tuple(log_a.shape)}"
        )
    n = -(-static_t // chunk_size)
    pad = n * chunk_size - static_t
    if pad:
        # Padded steps (a = 1, b = 1) come after every real step: they
        # cannot change the result and are cut off below.
        zeros = ops.zeros((batch, pad, features), log_a.dtype)
        log_a = ops.concatenate([log_a, zeros], 1)
        log_b = ops.concatenate([log_b, zeros], 1)
    shape4 = (-1, n, chunk_size, features)
    la = ops.reshape(log_a, shape4)
    lb = ops.reshape(log_b, shape4)
    a_star = ops.cumsum(la, axis=2)
    local = a_star + cumlogsumexp(lb - a_star, 2)
    chunk_a = a_star[:, :, -1]
    chunk_h = local[:, :, -1]
    if log_h0 is None:
        carry = ops.full((batch, features), LOG_ZERO, log_a.dtype)
    else:
        carry = log_h0
    carries = []
    for j in range(n):
        carries.append(carry)
        carry = ops.logaddexp(chunk_a[:, j] + carry, chunk_h[:, j])
    carries = ops.stack(carries, axis=1)
    log_h = ops.logaddexp(a_star + carries[:, :, None], local)
    log_h = ops.reshape(log_h, (-1, n * chunk_size, features))
    return log_h[:, :static_t]


def default_chunk_size(timesteps):
    """The chunk length `chunked_scan` uses: the power of two nearest
    `sqrt(timesteps)`, at least 1."""
    if timesteps <= 1:
        return 1
    return int(2 ** round(math.log2(math.sqrt(timesteps))))


# --------------------------------------------------------------------------
# Kernels (forward only) and the adjoint gradient.


def _sequential_kernel(a, b, h0, reverse=False):
    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    # One stacked input: keras' TensorFlow scan cannot take several inputs
    # over a time axis of unknown length (keras 3.15).
    xs = ops.stack([ops.moveaxis(a, 1, 0), ops.moveaxis(b, 1, 0)], axis=1)
    _, hs = ops.scan(step, h0, xs, reverse=reverse)
    return ops.moveaxis(hs, 0, 1)


def _chunked_kernel(a, b, h0, chunk_size, reverse=False):
    batch, _, features = ops.shape(a)
    timesteps = a.shape[1]
    n = -(-timesteps // chunk_size)
    pad = n * chunk_size - timesteps
    if pad:
        # Padding goes after the sequence in scan order.
        a_pad = ops.ones((batch, pad, features), a.dtype)
        b_pad = ops.zeros((batch, pad, features), b.dtype)
        if reverse:
            a = ops.concatenate([a_pad, a], 1)
            b = ops.concatenate([b_pad, b], 1)
        else:
            a = ops.concatenate([a, a_pad], 1)
            b = ops.concatenate([b, b_pad], 1)
    # (chunk position, batch, chunk, features): one contiguous slab per step.
    shape4 = (-1, n, chunk_size, features)
    a4 = ops.transpose(ops.reshape(a, shape4), (2, 0, 1, 3))
    b4 = ops.transpose(ops.reshape(b, shape4), (2, 0, 1, 3))
    order = range(chunk_size)
    if reverse:
        order = reversed(order)
    local = [None] * chunk_size  # scan of each chunk from a zero state
    decay = [None] * chunk_size  # product of a within the chunk so far
    h = p = None
    for i in order:
        if h is None:
            h, p = b4[i], a4[i]
        else:
            h = a4[i] * h + b4[i]
            p = a4[i] * p
        local[i], decay[i] = h, p
    # Propagate the state between chunks.
    chunk_a = ops.transpose(p, (1, 0, 2))
    chunk_h = ops.transpose(h, (1, 0, 2))
    order = range(n)
    if reverse:
        order = reversed(order)
    carries = [None] * n
    carry = h0
    for j in order:
        carries[j] = carry
        carry = chunk_a[j] * carry + chunk_h[j]
    carries = ops.stack(carries, axis=1)
    out = ops.stack(local) + ops.stack(decay) * carries[None]
    out = ops.reshape(
        ops.transpose(out, (1, 2, 0, 3)), (-1, n * chunk_size, features)
    )
    if pad:
        out = out[:, pad:] if reverse else out[:, :timesteps]
    return out


def _with_adjoint(kernel):
    """Wraps a forward kernel `kernel(a, b, h0, reverse=False)` into a
    function whose gradient is the adjoint recurrence run by the same
    kernel backwards in time."""

    @ops.custom_gradient
    def scan(a, b, h0):
        h = kernel(a, b, h0)

        def grad(*args, upstream=None):
            g = args[0] if upstream is None else upstream
            # l_t = g_t + a_{t+1} l_{t+1}
            a_next = ops.concatenate([a[:, 1:], ops.zeros_like(a[:, :1])], 1)
            lam = kernel(a_next, g, ops.zeros_like(h0), reverse=True)
            h_prev = ops.concatenate([h0[:, None], h[:, :-1]], 1)
            return lam * h_prev, lam, a[:, 0] * lam[:, 0]

        return h, grad

    return scan


# --------------------------------------------------------------------------
# Helpers.


def _prepare(a, b, h0):
    a = ops.convert_to_tensor(a)
    b = ops.convert_to_tensor(b)
    if len(a.shape) != 3:
        raise ValueError(
            "The scan inputs must have rank 3 (batch, timesteps, features). "
            f"Received: a.shape={tuple(a.shape)}"
        )
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            "`a` and `b` must have the same shape. Received: "
            f"a.shape={tuple(a.shape)}, b.shape={tuple(b.shape)}"
        )
    dtype = keras.backend.standardize_dtype(a.dtype)
    if dtype in ("float16", "bfloat16"):
        dtype = "float32"
    a = ops.cast(a, dtype)
    b = ops.cast(b, dtype)
    if h0 is not None:
        h0 = ops.cast(ops.convert_to_tensor(h0), dtype)
        if len(h0.shape) != 2 or (
            h0.shape[1] is not None
            and a.shape[2] is not None
            and h0.shape[1] != a.shape[2]
        ):
            raise ValueError(
                "initial_state must have shape (batch, features) = "
                f"(batch, {a.shape[2]}). Received: "
                f"initial_state.shape={tuple(h0.shape)}"
            )
    return a, b, h0


def _zeros_state(a):
    return ops.zeros_like(a[:, 0])


def _tiny(dtype):
    # exp(log(x + tiny)) == x for every normal float32 x > 0.
    return (
        1e-30
        if keras.backend.standardize_dtype(dtype) == "float32"
        else (1e-300)
    )


def _native_cumlogsumexp():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return lambda x, axis: tf.math.cumulative_logsumexp(x, axis=axis)
    if backend == "jax":
        import jax

        return lambda x, axis: jax.lax.cumlogsumexp(x, axis=axis)
    if backend == "torch":
        import torch

        return lambda x, axis: torch.logcumsumexp(x, dim=axis)
    # Any other backend: an associative scan of `logaddexp`, which is
    # stable on its own (no separate shift by a running maximum).
    return _cumlogsumexp_from_scan


def _cumlogsumexp_from_scan(x, axis):
    def combine(u, v):
        return ops.logaddexp(u, v)

    return ops.associative_scan(combine, x, axis=axis)


def _jax_on_cpu():
    import jax

    return jax.default_backend() == "cpu"
