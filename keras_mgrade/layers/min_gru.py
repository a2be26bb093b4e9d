"""MinGRU: the minimal gated recurrent unit, trained with a parallel scan."""

import dataclasses
import math

import keras
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

from keras_mgrade import _utils
from keras_mgrade.core import points
from keras_mgrade.core.contract import StreamingLayer
from keras_mgrade.core.registry import matrix_cost
from keras_mgrade.core.registry import register_streaming
from keras_mgrade.core.stepping import fold_time
from keras_mgrade.ops import scan as scan_ops


def candidate_activation(x):
    """The minGRU candidate activation `g` (Feng et al., appendix B.3).

    `g(x) = x + 0.5` for `x >= 0` and `sigmoid(x)` for `x < 0`, written as
    `relu(x) + minimum(sigmoid(x), 0.5)`: exactly equal, continuous, always
    positive, and made only of ops TFLite Micro runs in int8 (no SELECT).
    """
    return ops.relu(x) + ops.minimum(ops.sigmoid(x), 0.5)


def _step_candidate(owner, x):
    """`candidate_activation` for the step graph, with its quantization
    points: `maximum(x + 0.5, sigmoid(x))`, exactly `relu(x) +
    minimum(sigmoid(x), 0.5)` (for `x >= 0`, `x + 0.5 >= sigmoid(x)`; for
    `x < 0` the reverse). In a TFLite file: ADD, LOGISTIC (its output
    requantized to the candidate's grid) and MAXIMUM, with no second
    FULLY_CONNECTED for a fused RELU. The shifted input shares the
    candidate's quantization point (MAXIMUM reads both inputs on its own
    output grid); below it the maximum is the sigmoid anyway. The
    sigmoid's move to that grid is an int8 QUANTIZE, which rounds as a
    requantization does (`points.requantized`)."""
    shifted = points.activation(owner, "g", x + 0.5)
    sig = points.activation(
        owner, "g_sigmoid", ops.sigmoid(x), points.SIGMOID_RANGE
    )
    sig = points.requantized(owner, "g", sig, (sig,))
    return points.activation(owner, "g", ops.maximum(shifted, sig))


def log_candidate_activation(x):
    """`log(g(x))` computed without forming `g`: `log(x + 0.5)` for
    `x >= 0`, `-softplus(-x)` for `x < 0`. Both branches are finite
    everywhere, so the gradient of the `where` has no NaN."""
    return ops.where(x >= 0, ops.log(ops.relu(x) + 0.5), -ops.softplus(-x))


@keras.saving.register_keras_serializable(package="keras_mgrade")
class TimescaleInitializer(keras.initializers.Initializer):
    """Initializes a MinGRU update-gate bias from a range of memories.

    The gate is `z = sigmoid(u W_z + b_z)` and `h_t = (1 - z) h_{t-1} +
    z h~_t`: at a zero input a unit keeps `1 - z` of its state per step,
    a memory of `tau = 1 / z` steps. This initializer draws one `tau` per
    unit in `[min_timescale, max_timescale]` and sets

        b_z = -log(tau - 1)            (so that 1 / z = tau),

    with `tau` log-uniform (`spacing="log"`: as many units per octave,
    the way S4D and Mamba initialise their step sizes) or uniform
    (`spacing="linear"`: Tallec & Ollivier's chrono initialization, most
    units slow). A zero bias instead gives every unit `z = 1/2`, a memory
    of 2 steps, and the gradient to an input hundreds of steps back
    vanishes until training has closed the gates.

    Args:
        min_timescale: float >= 2, the shortest initial memory in steps.
            Defaults to `2`.
        max_timescale: float > `min_timescale`, the longest (the range of
            dependencies expected). Defaults to `256`.
        spacing: `"log"` or `"linear"`. Defaults to `"log"`.
        seed: int or None, as in `keras.initializers.RandomUniform`.
            Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> init = TimescaleInitializer(max_timescale=100, seed=1)
    >>> b = keras.ops.convert_to_numpy(init((8,)))
    >>> tau = 1 + np.exp(-b)  # 1 / z at a zero input
    >>> bool(np.all((tau >= 2) & (tau <= 100)))
    True

    Reference:
        Tallec & Ollivier, "Can recurrent neural networks warp time?",
        ICLR 2018, https://arxiv.org/abs/1804.11188; Gu et al., "On the
        Parameterization and Initialization of Diagonal State Space
        Models", NeurIPS 2022, https://arxiv.org/abs/2206.11893.
    """

    def __init__(
        self, min_timescale=2.0, max_timescale=256.0, spacing="log", seed=None
    ):
        low = _utils.check_positive_float("min_timescale", min_timescale)
        high = _utils.check_positive_float("max_timescale", max_timescale)
        if low < 2 or high <= low:
            raise ValueError(
                "The timescales must satisfy 2 <= min_timescale < "
                f"max_timescale. Received: min_timescale={min_timescale}, "
                f"max_timescale={max_timescale}"
            )
        if spacing not in TIMESCALE_SPACINGS:
            raise ValueError(
                f"Unknown spacing. Expected one of {TIMESCALE_SPACINGS}. "
                f"Received: spacing={spacing!r}"
            )
        self.min_timescale = low
        self.max_timescale = high
        self.spacing = spacing
        self._uniform = keras.initializers.RandomUniform(0.0, 1.0, seed=seed)

    def __call__(self, shape, dtype=None):
        r = ops.cast(self._uniform(shape, dtype="float32"), "float32")
        low, high = self.min_timescale, self.max_timescale
        if self.spacing == "log":
            tau = ops.exp(math.log(low) + r * (math.log(high) - math.log(low)))
        else:
            tau = low + r * (high - low)
        return ops.cast(-ops.log(tau - 1.0), dtype or "float32")

    def get_config(self):
        return {
            "min_timescale": self.min_timescale,
            "max_timescale": self.max_timescale,
            "spacing": self.spacing,
            "seed": self._uniform.get_config()["seed"],
        }


TIMESCALE_SPACINGS = ("log", "linear")
# The names `gate_bias_initializer` accepts besides Keras initializers:
# `TimescaleInitializer()` and Tallec & Ollivier's chrono.
GATE_BIAS_INITIALIZERS = {
    "timescales": {},
    "chrono": {"spacing": "linear"},
}


def get_gate_bias_initializer(value, seed=None):
    """The initializer of the MinGRU gate bias that `value` names: None
    (the gate shares `bias_initializer`), `"timescales"` or `"chrono"`
    (a `TimescaleInitializer` with its defaults, log or linear spacing,
    and `seed`), or any Keras initializer or name."""
    if value is None or isinstance(value, TimescaleInitializer):
        return value
    if isinstance(value, str) and value in GATE_BIAS_INITIALIZERS:
        return TimescaleInitializer(**GATE_BIAS_INITIALIZERS[value], seed=seed)
    try:
        return initializers.get(value)
    except ValueError:
        raise ValueError(
            "Unknown gate_bias_initializer. Expected None, one of "
            f"{tuple(GATE_BIAS_INITIALIZERS)} or a Keras initializer. "
            f"Received: gate_bias_initializer={value!r}"
        ) from None


@keras.saving.register_keras_serializable(package="keras_mgrade")
class MinGRUCell(keras.layers.Layer):
    """One time step of the minimal gated recurrent unit (minGRU).

    With `u_t` the input and `h` the state (Feng et al. 2024, appendix B.3):

        z   = sigmoid(u_t W_z + b_z)            (update gate)
        h~  = g(u_t W_h + b_h)                  (candidate, g > 0)
        h_t = h_{t-1} + z * (h~ - h_{t-1})       (= (1 - z) h_{t-1} + z h~)

    The gates do not read `h_{t-1}`, so a sequence of steps is a linear
    recurrence that `MinGRU` computes with a parallel scan. The cell is the
    streaming form: it runs one step with only matrix multiply, logistic,
    relu, minimum, add, subtract and multiply, and works as the cell of
    `keras.layers.RNN`.

    Weights (the layout to use when porting from minGRU-pytorch or
    BorealisAI/minRNNs, whose `to_hidden_and_gate` weight is
    `[hidden; gate]` with shape `(2 * units, input_dim)`):

    - `kernel`: `(input_dim, 2 * units)`, columns `[gate z | candidate h]`;
    - `bias`: `(2 * units,)` in the same order.

    The step computes the gate and candidate pre-activations with two
    matrix products (two `FULLY_CONNECTED` ops in a TFLite file), so that
    each gets its own int8 scale: one shared scale, stretched over the
    gate's wide range, costs the candidate most of its resolution.

    Args:
        units: int, dimensionality of the state and output.
        use_bias: bool, whether the projections have a bias. Defaults to
            `True`.
        kernel_initializer: initializer for `kernel`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer for `bias`. Defaults to `"zeros"`.
        gate_bias_initializer: initializer for the gate half of `bias`
            (`b_z`): `"timescales"` (`TimescaleInitializer()`: initial
            memories log-uniform from 2 to 256 steps), `"chrono"`
            (uniform), a Keras initializer, or None to use
            `bias_initializer` for the whole bias. Defaults to `None`.
        kernel_regularizer: regularizer for `kernel`. Defaults to `None`.
        bias_regularizer: regularizer for `bias`. Defaults to `None`.
        kernel_constraint: constraint for `kernel`. Defaults to `None`.
        bias_constraint: constraint for `bias`. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, input_dim)`, one time step.
        states: list with one tensor `(batch, units)`, the previous state.
        training: unused (the cell has no dropout).

    Returns:
        `(h, [h])`, the new state as output and as state.

    Example:

    >>> import numpy as np
    >>> cell = MinGRUCell(4)
    >>> x = np.ones((2, 3), "float32")
    >>> h, [state] = cell(x, [np.zeros((2, 4), "float32")])
    >>> tuple(h.shape)
    (2, 4)
    >>> rnn = keras.layers.RNN(MinGRUCell(4))  # a (slow) step-by-step MinGRU
    """

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        gate_bias_initializer=None,
        **kwargs,
    ):
        units = _utils.check_positive_int("units", units)
        gate_init = get_gate_bias_initializer(gate_bias_initializer)
        super().__init__(**kwargs)
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.gate_bias_initializer = gate_init
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "The last dimension of the inputs to MinGRU must be "
                f"defined. Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            shape=(input_dim, 2 * self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            name="kernel",
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(2 * self.units,),
                initializer=self._bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                name="bias",
            )
        else:
            self.bias = None

    def _bias_initializer(self):
        if self.gate_bias_initializer is None:
            return self.bias_initializer
        gate, rest, units = (
            self.gate_bias_initializer,
            self.bias_initializer,
            self.units,
        )

        def initializer(shape, dtype=None):
            # [gate z | candidate h], as the kernel's columns.
            return ops.concatenate(
                [gate((units,), dtype=dtype), rest((units,), dtype=dtype)]
            )

        return initializer

    def project(self, inputs):
        """`inputs @ kernel + bias`: the gate and candidate pre-activations
        `[z | h]`, for one step or a whole sequence."""
        pre = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            pre = pre + self.bias
        return pre

    def call(self, inputs, states, training=None):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        state_dtype = h_prev.dtype
        # The quantization points mark what the int8 step graph stores
        # (identities unless quantization-aware training is active).
        pre_z, pre_h = self._pre_activations(inputs)
        h_prev = points.state(self, "h", ops.cast(h_prev, "float32"))
        z, g = self._gate_and_candidate(pre_z, pre_h)
        h = self._update(z, g, h_prev)
        return ops.cast(h, self.compute_dtype), [ops.cast(h, state_dtype)]

    def sequence(self, inputs, h0):
        """The steps of `call` over a whole sequence: `(h (batch,
        timesteps, units), final h)`, with the same quantization points
        and the same (straight-through) gradients.

        The gate and the candidate depend on the input only, so they are
        computed for every time step at once; only the state update runs
        one step at a time (`points.scan`), without gradient. The update
        is then recomputed for every step at once from the states the
        loop produced (which marks its points on whole sequences), and the
        gradient through the chain of states is its adjoint recurrence:
        with fake quantization `Q` passing the gradient where `m = 1`,
        `dh_t/dh_{t-1} = m_h(s_t) m_h(h_{t-1}) (1 - m_update m_diff z_t)`,
        a linear recurrence computed by `keras_mgrade.ops.linear_scan`.
        Used by quantization-aware training (the float `MinGRU` uses its
        parallel scan).
        """

        def gates(x):
            return self._gate_and_candidate(*self._pre_activations(x))

        z, g = fold_time(gates, inputs)
        h0 = ops.cast(h0, "float32")

        def gate(z):
            # Already on the logistic's grid (unchanged): marks it so
            # that the update's product rounds as the int8 MUL does.
            return points.activation(self, "z", z, fixed=points.SIGMOID_RANGE)

        def update(zg_t, states):
            h_prev = points.state(self, "h", states[0])
            h = self._update(gate(zg_t[0]), zg_t[1], h_prev)
            return h, [h]

        h, (last,) = points.scan(
            update,
            [ops.stop_gradient(h0)],
            [points.same_grid(ops.stop_gradient(t), t) for t in (z, g)],
            observe=False,
        )
        h = ops.stop_gradient(h)
        previous = ops.concatenate([h0[:, None], h[:, :-1]], axis=1)
        # The update of every step at once, from the loop's states:
        # the same values (its points observed here), and the gradient
        # of each step with the previous state held fixed.
        h_prev = points.state(self, "h", previous)
        local, diff, update, total = self._update_parts(gate(z), g, h_prev)
        a = (
            points.gradient_mask(self, "h", total, state=True)
            * points.gradient_mask(self, "h", previous, state=True)
            * (
                1.0
                - points.gradient_mask(self, "update", update)
                * points.gradient_mask(self, "diff", diff)
                * z
            )
        )
        # Zero-valued, with the derivative of the whole chain of states.
        chain = scan_ops.linear_scan(
            ops.stop_gradient(a),
            local - ops.stop_gradient(local),
            h0 - ops.stop_gradient(h0),
        )
        h = h + chain
        return ops.cast(h, self.compute_dtype), ops.cast(h[:, -1], h0.dtype)

    def _pre_activations(self, inputs):
        # The gate and candidate pre-activations are two matrix multiplies
        # (two FULLY_CONNECTED ops in the int8 file), so each gets its own
        # scale: the gate's only needs the logistic's input range, the
        # candidate's can be several times wider.
        # (Quantized per output channel, the two halves are the kernels
        # of the two FULLY_CONNECTED ops.)
        units = self.units
        kernel_z = points.weight(
            self, "kernel", lambda: self.kernel[:, :units], axis=-1
        )
        kernel_h = points.weight(
            self, "kernel", lambda: self.kernel[:, units:], axis=-1
        )
        pre_z = ops.matmul(inputs, kernel_z)
        pre_h = ops.matmul(inputs, kernel_h)
        if self.use_bias:
            pre_z = pre_z + self.bias[:units]
            pre_h = pre_h + self.bias[units:]
        pre_z = ops.cast(pre_z, "float32")
        pre_h = ops.cast(pre_h, "float32")
        pre_z = points.requantized(self, "pre_z", pre_z, (inputs, kernel_z))
        pre_h = points.requantized(self, "pre_h", pre_h, (inputs, kernel_h))
        return pre_z, pre_h

    def _gate_and_candidate(self, pre_z, pre_h):
        z = ops.sigmoid(pre_z)
        z = points.activation(self, "z", z, fixed=points.SIGMOID_RANGE)
        return z, _step_candidate(self, pre_h)

    def _update(self, z, g, h_prev):
        # h_prev: the state, already at its quantization point.
        return self._update_parts(z, g, h_prev)[0]

    def _update_parts(self, z, g, h_prev):
        """`(h, diff, update, h_prev + update)`, the last three before
        their quantization points (`z`: the gate at its point)."""
        diff = g - h_prev
        diff_q = points.activation(self, "diff", diff)
        update = z * diff_q
        total = h_prev + points.requantized(self, "update", update, (z, diff_q))
        return points.state(self, "h", total), diff, update, total

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def get_config(self):
        config = {
            "units": self.units,
            "use_bias": self.use_bias,
            **_utils.serialize_options(self),
            "gate_bias_initializer": _utils.serialize_choice(
                self.gate_bias_initializer
            ),
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="keras_mgrade")
class MinGRU(StreamingLayer):
    """Minimal gated recurrent unit over whole sequences (parallel scan).

    Computes, for every time step of `inputs` (Feng et al. 2024, B.3),

        z_t = sigmoid(u_t W_z + b_z),     h~_t = g(u_t W_h + b_h),
        h_t = (1 - z_t) * h_{t-1} + z_t * h~_t,

    with `g(x) = x + 0.5` for `x >= 0`, `sigmoid(x)` otherwise, so that
    `h_t > 0`. The gates do not depend on `h_{t-1}`: the recurrence
    `h_t = a_t h_{t-1} + b_t` (`a = 1 - z`, `b = z h~`) is computed for all
    steps at once by `keras_mgrade.ops.linear_scan`, in float32 even under
    a mixed-precision policy. The layer is causal: `h_t` depends on
    `u_0 … u_t` only.

    The same layer runs one step at a time for streaming inference
    (`step`), with the same weights: `call` on a sequence equals `step`
    looped over it (outputs and final state).

    Weights live in the cell (`layer.cell`) and are exposed as
    `layer.kernel` `(input_dim, 2 * units)`, columns `[gate z | candidate
    h]`, and `layer.bias` `(2 * units,)`. To port minGRU-pytorch weights
    (`to_hidden_and_gate.weight`, rows `[hidden; gate]`, no bias):
    `kernel = concatenate([W[units:], W[:units]]).T` with `use_bias=False`.

    Args:
        units: int, dimensionality of the state and output.
        use_bias: bool. Defaults to `True`.
        kernel_initializer: initializer for `kernel`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer for `bias`. Defaults to `"zeros"`.
        gate_bias_initializer: initializer for the gate half of `bias`:
            `"timescales"`, `"chrono"`, a Keras initializer, or None (see
            `MinGRUCell`).
            Defaults to `None`.
        kernel_regularizer: regularizer for `kernel`. Defaults to `None`.
        bias_regularizer: regularizer for `bias`. Defaults to `None`.
        activity_regularizer: regularizer for the output. Defaults to
            `None`.
        kernel_constraint: constraint for `kernel`. Defaults to `None`.
        bias_constraint: constraint for `bias`. Defaults to `None`.
        dropout: float in [0, 1), fraction of the input features dropped
            during training, with one mask per sequence (as in
            `keras.layers.GRU`). Defaults to `0.0`.
        return_sequences: bool, return the whole output sequence instead of
            the last output. Defaults to `False`.
        return_state: bool, also return the final state. Defaults to
            `False`.
        stateful: bool, carry the final state of each batch into the next
            call (needs a static batch size); `reset_state()` clears it.
            Defaults to `False`.
        scan: how the recurrence is computed: `"auto"` (fastest for the
            backend and device), `"sequential"`, `"chunked"`,
            `"associative"` or `"log"` (Heinsen log space, computed from
            the pre-activations with `softplus`). Defaults to `"auto"`.
        seed: int, seed for the dropout mask. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, timesteps, features)`.
        initial_state: optional tensor `(batch, units)` (or a list holding
            it), `h_{-1}`; values must be >= 0 (the state is positive by
            construction). Defaults to zeros, or to the carried state when
            `stateful=True`.
        mask: optional boolean tensor `(batch, timesteps)`; masked steps
            keep the previous state and output it.
        training: bool, whether dropout is applied.

    Input shape:
        `(batch, timesteps, features)`.

    Output shape:
        `(batch, timesteps, units)` with `return_sequences=True`, else
        `(batch, units)`; with `return_state=True` a list
        `[output, final_state]`.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 50, 8))
    >>> layer = MinGRU(16, return_sequences=True, return_state=True)
    >>> y, h = layer(x)
    >>> tuple(y.shape), tuple(h.shape)
    ((2, 50, 16), (2, 16))
    >>> # The same numbers, one step at a time:
    >>> [state] = layer.get_initial_state(2)
    >>> for t in range(50):
    ...     y_t, [state] = layer.step(x[:, t].astype("float32"), [state])
    >>> to_numpy = keras.ops.convert_to_numpy
    >>> bool(np.allclose(to_numpy(state), to_numpy(h), atol=1e-5))
    True

    Reference:
        Feng, Tung, Ahmed, Bengio, Hajimirsadeghi, "Were RNNs All We
        Needed?", 2024, https://arxiv.org/abs/2410.01201.
    """

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        return_sequences=False,
        return_state=False,
        stateful=False,
        scan="auto",
        seed=None,
        gate_bias_initializer=None,
        **kwargs,
    ):
        units = _utils.check_positive_int("units", units)
        if scan not in scan_ops.METHODS:
            raise ValueError(
                f"Unknown scan method. Expected one of {scan_ops.METHODS}. "
                f"Received: scan={scan!r}"
            )
        dropout = _utils.check_rate("dropout", dropout)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = units
        self.dropout = dropout
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.stateful = bool(stateful)
        self.scan = scan
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.cell = MinGRUCell(
            units,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            gate_bias_initializer=gate_bias_initializer,
            dtype=self.dtype_policy,
            name="min_gru_cell",
        )
        self.supports_masking = True

    # Weights, for porting and inspection.
    @property
    def kernel(self):
        return self.cell.kernel

    @property
    def bias(self):
        return self.cell.bias

    @property
    def use_bias(self):
        return self.cell.use_bias

    @property
    def state_shapes(self):
        """Shapes of the streaming states without the batch axis:
        `[(units,)]`."""
        return [(self.units,)]

    def build(self, input_shape):
        input_shape = self.check_sequence_shape(input_shape)
        self.cell.build((input_shape[0], input_shape[-1]))
        if self.stateful:
            self.add_state_variable((self.units,), input_shape, "state")

    def step(self, inputs_t, states, training=False):
        """Runs one time step for streaming inference.

        Uses only ops that TFLite Micro runs in int8 (fully connected,
        logistic, relu, minimum, add, sub, mul).

        Args:
            inputs_t: tensor `(batch, features)`.
            states: list `[h]`, `h` of shape `(batch, units)`.
            training: unused; the step is an inference op (no dropout).

        Returns:
            `(h_t, [h_t])`.
        """
        return self.cell(inputs_t, self.check_states(states))

    def step_sequence(self, inputs, states):
        """`step` over every time step of `inputs` `(batch, timesteps,
        features)`: `(h (batch, timesteps, units), [final h])`, with the
        step's quantization points (the gates at once, the state update
        scanned; see `MinGRUCell.sequence`)."""
        (h0,) = self.check_states(states)
        h, last = self.cell.sequence(inputs, h0)
        return h, [last]

    def call(self, inputs, initial_state=None, mask=None, training=None):
        self.check_inputs(inputs, mask)
        h0 = self._initial_state(inputs, initial_state)
        if training and self.dropout > 0:
            noise_shape = (ops.shape(inputs)[0], 1, ops.shape(inputs)[2])
            inputs = keras.random.dropout(
                inputs,
                self.dropout,
                noise_shape=noise_shape,
                seed=self.seed_generator,
            )
        pre = ops.cast(self.cell.project(inputs), "float32")
        if inputs.shape[1] == 0:  # no step: no output, the state unchanged
            return self._empty(inputs, h0)
        h = self._scan(pre, h0, mask)
        last = h[:, -1]
        if self.stateful:
            self.state_variables[0].assign(last)
        output = h if self.return_sequences else last
        output = ops.cast(output, self.compute_dtype)
        if self.return_state:
            return [output, ops.cast(last, self.compute_dtype)]
        return output

    def _empty(self, inputs, h0):
        if not self.return_sequences:
            raise ValueError(
                "MinGRU(return_sequences=False) outputs the last step, and "
                "there is none. Expected at least one time step. Received: "
                f"inputs.shape={tuple(inputs.shape)}"
            )
        batch = ops.shape(inputs)[0]
        last = ops.zeros((batch, self.units)) if h0 is None else h0
        output = ops.zeros((batch, 0, self.units), self.compute_dtype)
        if self.return_state:
            return [output, ops.cast(last, self.compute_dtype)]
        return output

    def _scan(self, pre, h0, mask):
        kz, kh = pre[..., : self.units], pre[..., self.units :]
        method = scan_ops.resolve_method(self.scan, pre.shape[1])
        if method == "log":
            # Heinsen: log(1 - z) = -softplus(kz), log z = -softplus(-kz).
            log_a = -ops.softplus(kz)
            log_b = -ops.softplus(-kz) + log_candidate_activation(kh)
            if mask is not None:
                m = ops.expand_dims(ops.cast(mask, "bool"), -1)
                log_a = ops.where(m, log_a, 0.0)
                log_b = ops.where(m, log_b, scan_ops.LOG_ZERO)
            log_h0 = None
            if h0 is not None:
                log_h0 = ops.log(h0 + 1e-30)
            return ops.exp(scan_ops.log_scan(log_a, log_b, log_h0))
        z = ops.sigmoid(kz)
        a = 1.0 - z
        b = z * candidate_activation(kh)
        if mask is not None:
            m = ops.expand_dims(ops.cast(mask, "bool"), -1)
            a = ops.where(m, a, 1.0)
            b = ops.where(m, b, 0.0)
        return scan_ops.linear_scan(a, b, h0, method=method)

    def _initial_state(self, inputs, initial_state):
        if initial_state is None:
            if self.stateful:
                return self.carried_states(inputs.shape[0])[0]
            return None
        (h0,) = self.check_states(
            initial_state, inputs.shape[0], "initial_state"
        )
        value = _utils.concrete_value(h0)
        if value is not None and (value < 0).any():
            raise ValueError(
                "initial_state must be >= 0: the MinGRU state is positive "
                "by construction (and the log-space scan needs it). "
                f"Received: initial_state with minimum {value.min()!r}"
            )
        return ops.cast(h0, "float32")

    def compute_output_shape(self, inputs_shape, initial_state_shape=None):
        return self.sequence_output_shape(inputs_shape, self.units)

    def get_config(self):
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype", "units"):
            cell_config.pop(key, None)
        config = {
            "units": self.units,
            **cell_config,
            **_utils.attributes(
                self,
                (
                    "dropout",
                    "return_sequences",
                    "return_state",
                    "stateful",
                    "scan",
                    "seed",
                ),
            ),
        }
        return {**super().get_config(), **config}


def _cost(layer, nbytes):
    # The [z | h~] projection, the gates and the new state.
    return dataclasses.replace(
        matrix_cost(layer.kernel, layer.bias, nbytes),
        state=layer.units,
        working_set=4 * layer.units,
    )


register_streaming(MinGRU, cost=_cost, quantized_inside=True)
