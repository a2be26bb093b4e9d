"""DCLSConv1D: a causal convolution whose taps sit at learned delays."""

import keras
import numpy as np
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

from keras_mgrade import _utils
from keras_mgrade.core import points
from keras_mgrade.core.contract import StreamingLayer
from keras_mgrade.core.registry import LayerCost
from keras_mgrade.core.registry import register_streaming
from keras_mgrade.core.stepping import fold_time

POSITION_INITIALIZERS = ("evenly_spaced", "uniform")


@keras.saving.register_keras_serializable(package="keras_mgrade")
class PositionRange(keras.constraints.Constraint):
    """Clips a variable to `[min_value, max_value]` after every update.

    `DCLSConv1D` uses it to keep the (scaled) delays inside the window.

    Args:
        min_value: float, the lower bound.
        max_value: float, the upper bound.
    """

    def __init__(self, min_value, max_value):
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def __call__(self, w):
        return ops.clip(w, self.min_value, self.max_value)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value}


@keras.saving.register_keras_serializable(package="keras_mgrade")
class DCLSConv1D(StreamingLayer):
    """Causal 1D convolution with learnable delays (DCLS), depthwise by
    default.

    For each channel `c` the layer has `N = kernel_taps` taps with weight
    `w[n, c]` and a real-valued delay `p[n, c]` in `[0, max_delay - 1]`
    samples (0 = the current sample). The kernel over the window
    `tau = 0 … max_delay - 1` is a sum of Gaussians,

        k[tau, c] = sum_n w[n, c] * phi(tau - p[n, c]),
        phi(d) = exp(-d^2 / (2 sigma^2))   (optionally normalised per tap),

    and the output is the causal convolution

        y[t, c] = sum_tau k[tau, c] * x[t - tau, c] + bias[c],  x[<0] = 0.

    The Gaussian makes the output differentiable in the delays, so they
    are learned with the weights. `sigma` can be annealed during training
    (`keras_mgrade.callbacks.SigmaAnnealing`) so that the delays can then
    be rounded (`round_positions()`): the layer then uses the sparse kernel
    `k[tau, c] = sum_n w[n, c] [tau == p[n, c]]`, and streams with `N`
    multiply-adds per channel.

    The delays are stored as `p / positions_lr_multiplier` and scaled in
    the forward pass: with Adam-family optimizers they move
    `positions_lr_multiplier` times faster than the weights (with plain
    SGD, its square), with any Keras optimizer. Exclude them from weight
    decay (`optimizer.exclude_from_weight_decay(var_names=["positions"])`),
    which would pull every delay towards 0. After every update they are
    clipped to the window.

    With `filters=None` the convolution is depthwise (one kernel per
    channel, as in mGRADE). With `filters=F` it is a full convolution:
    weights and delays have shape `(N, channels, F)`.

    Streaming: the state is the last `max_delay - 1` inputs per channel
    (none when `max_delay == 1`); `step` runs one time step.

    Args:
        kernel_taps: int, taps per channel (`N`).
        max_delay: int, the window length (`Gamma`); delays lie in
            `[0, max_delay - 1]`.
        filters: int or None. `None` for a depthwise convolution (output
            width = input width), else the number of output channels.
            Defaults to `None`.
        sigma: float > 0, width of the Gaussian interpolation in samples.
            Defaults to `0.7` (as in the mGRADE reference code).
        normalize_taps: bool, divide each tap's Gaussian by its sum over
            the window (as the `dcls` package does). Defaults to `False`.
        use_bias: bool. Defaults to `True`.
        kernel_initializer: initializer of the tap weights, shape
            `(N, channels)` or `(N, channels, filters)`. Defaults to a
            truncated normal with variance `1 / N`.
        bias_initializer: Defaults to `"zeros"`.
        positions_initializer: `"evenly_spaced"` (taps spread over the
            window, `0 … max_delay - 1`), `"uniform"` (uniform in the
            window), or a Keras initializer giving delays in samples.
            Defaults to `"evenly_spaced"`.
        positions_lr_multiplier: float > 0, see above. Defaults to `5.0`
            (the mGRADE reference code's learning-rate ratio).
        kernel_regularizer: regularizer of the tap weights.
        bias_regularizer: regularizer of the bias.
        kernel_constraint: constraint of the tap weights.
        bias_constraint: constraint of the bias.
        rounded: bool, start in the rounded (sparse, integer-delay) mode;
            set by `round_positions()`. Defaults to `False`.
        return_state: bool, also return the final FIFO state. Defaults to
            `False`.
        stateful: bool, carry the FIFO between calls (static batch size);
            `reset_state()` clears it. Defaults to `False`.
        seed: int, seed of the default initializers. Defaults to `None`.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: tensor `(batch, timesteps, channels)`.
        initial_state: optional FIFO `(batch, max_delay - 1, channels)`
            (or a list holding it): the inputs before `inputs`, oldest
            first. Defaults to zeros (or the carried state if stateful).

    Input shape:
        `(batch, timesteps, channels)`.

    Output shape:
        `(batch, timesteps, channels)` (depthwise) or
        `(batch, timesteps, filters)`; with `return_state=True` a list
        `[output, fifo]`.

    Example:

    >>> import numpy as np
    >>> layer = DCLSConv1D(kernel_taps=1, max_delay=8, sigma=0.7)
    >>> x = np.zeros((1, 12, 2), "float32"); x[0, 0] = 1.0
    >>> layer.build(x.shape)
    >>> layer.set_positions(np.array([[3.0, 5.0]]))
    >>> layer.round_positions()
    >>> y = keras.ops.convert_to_numpy(layer(x))
    >>> w = keras.ops.convert_to_numpy(layer.tap_weights)
    >>> bool(np.allclose(y[0, 3, 0], w[0, 0]) and y[0, 5, 1] == w[0, 1])
    True

    Reference:
        Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated convolution
        with learnable spacings", ICLR 2023, https://arxiv.org/abs/2112.03740;
        Hammouamri et al., "Learning Delays in Spiking Neural Networks using
        Dilated Convolutions with Learnable Spacings", ICLR 2024,
        https://arxiv.org/abs/2306.17670.
    """

    def __init__(
        self,
        kernel_taps,
        max_delay,
        filters=None,
        sigma=0.7,
        normalize_taps=False,
        use_bias=True,
        kernel_initializer=None,
        bias_initializer="zeros",
        positions_initializer="evenly_spaced",
        positions_lr_multiplier=5.0,
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        rounded=False,
        return_state=False,
        stateful=False,
        seed=None,
        **kwargs,
    ):
        kernel_taps, max_delay = _utils.check_taps(kernel_taps, max_delay)
        if filters is not None:
            filters = _utils.check_positive_int("filters", filters)
        sigma = _utils.check_positive_float("sigma", sigma)
        try:
            multiplier = float(positions_lr_multiplier)
        except (TypeError, ValueError):
            multiplier = -1.0
        if not multiplier > 0:
            raise ValueError(
                "positions_lr_multiplier must be a float > 0. Received: "
                f"positions_lr_multiplier={positions_lr_multiplier!r}"
            )
        if isinstance(positions_initializer, str):
            if positions_initializer not in POSITION_INITIALIZERS:
                raise ValueError(
                    "Unknown positions_initializer. Expected one of "
                    f"{POSITION_INITIALIZERS} or a Keras initializer. "
                    f"Received: positions_initializer={positions_initializer!r}"
                )
        else:
            positions_initializer = initializers.get(positions_initializer)
        super().__init__(**kwargs)
        self.kernel_taps = kernel_taps
        self.max_delay = max_delay
        self.filters = filters
        self.initial_sigma = sigma
        self.normalize_taps = bool(normalize_taps)
        self.use_bias = bool(use_bias)
        self.seed = seed
        if kernel_initializer is None:
            kernel_initializer = initializers.VarianceScaling(
                1.0, "fan_in", "truncated_normal", seed=seed
            )
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.positions_initializer = positions_initializer
        self.positions_lr_multiplier = multiplier
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.rounded = bool(rounded)
        self.return_state = bool(return_state)
        self.stateful = bool(stateful)
        self.supports_masking = True

    # ------------------------------------------------------------------
    # Weights.

    def build(self, input_shape):
        input_shape = self.check_sequence_shape(input_shape)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                "The channel dimension of the inputs to DCLSConv1D must be "
                f"defined. Received: input_shape={input_shape}"
            )
        self.channels = channels
        shape = (self.kernel_taps, channels)
        if self.filters is not None:
            shape = shape + (self.filters,)
        self.kernel = self.add_weight(
            shape=shape,
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            name="kernel",
        )
        self.positions_raw = self.add_weight(
            shape=shape,
            initializer=self._raw_positions_initializer(),
            constraint=PositionRange(
                0.0, (self.max_delay - 1) / self.positions_lr_multiplier
            ),
            name="positions",
        )
        # Created trainable and then frozen (not created frozen), so that
        # the weight order is the same before and after rounding and
        # `.keras` files load either way.
        self.positions_raw.trainable = not self.rounded
        self.sigma_variable = self.add_weight(
            shape=(),
            initializer=initializers.Constant(self.initial_sigma),
            trainable=False,
            name="sigma",
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.output_channels,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                name="bias",
            )
        else:
            self.bias = None
        if self.stateful and self.max_delay > 1:
            self.add_state_variable(
                (self.max_delay - 1, channels), input_shape, "fifo"
            )

    def _raw_positions_initializer(self):
        init = self.positions_initializer
        scale = 1.0 / self.positions_lr_multiplier
        span = self.max_delay - 1
        seed = self.seed

        def initializer(shape, dtype=None):
            if init == "evenly_spaced":
                step = span / max(self.kernel_taps - 1, 1)
                p = np.arange(self.kernel_taps) * step
                p = np.broadcast_to(
                    p.reshape((-1,) + (1,) * (len(shape) - 1)), shape
                )
                return ops.convert_to_tensor(p * scale, dtype=dtype)
            if init == "uniform":
                return keras.random.uniform(
                    shape, 0.0, span * scale, dtype=dtype, seed=seed
                )
            return ops.clip(init(shape, dtype=dtype), 0.0, span) * scale

        return initializer

    @property
    def output_channels(self):
        return self.channels if self.filters is None else self.filters

    @property
    def positions(self):
        """The delays in samples, `(N, channels)` (or `(N, channels,
        filters)`); integers after `round_positions()`."""
        p = ops.convert_to_tensor(self.positions_raw) * (
            self.positions_lr_multiplier
        )
        p = ops.cast(p, "float32")
        return ops.round(p) if self.rounded else p

    @property
    def tap_weights(self):
        """The tap weights, same shape as `positions`."""
        return ops.convert_to_tensor(self.kernel)

    @property
    def sigma(self):
        """The current Gaussian width in samples (a float)."""
        return float(ops.convert_to_numpy(self.sigma_variable))

    @sigma.setter
    def sigma(self, value):
        self.sigma_variable.assign(_utils.check_positive_float("sigma", value))

    @property
    def state_shapes(self):
        """Shapes of the streaming states without the batch axis:
        `[(max_delay - 1, channels)]`, or `[]` when `max_delay == 1`."""
        if self.max_delay == 1:
            return []
        return [(self.max_delay - 1, self.channels)]

    def set_positions(self, positions):
        """Sets the delays (in samples).

        Args:
            positions: array of the shape of `positions`, values in
                `[0, max_delay - 1]`.
        """
        value = np.asarray(positions, dtype="float32")
        expected = tuple(self.positions_raw.shape)
        if value.shape != expected:
            raise ValueError(
                f"positions must have shape {expected}. Received: "
                f"positions.shape={value.shape}"
            )
        if not np.all(np.isfinite(value)) or (
            value.min() < 0 or value.max() > self.max_delay - 1
        ):
            raise ValueError(
                f"positions must lie in [0, max_delay - 1] = "
                f"[0, {self.max_delay - 1}]. Received: positions with "
                f"range [{value.min()}, {value.max()}]"
            )
        self.positions_raw.assign(value / self.positions_lr_multiplier)

    def round_positions(self):
        """Snaps every delay to the nearest integer and switches to the
        sparse kernel `k[tau, c] = sum_n w[n, c] [tau == p[n, c]]`.

        The delays are then no longer trainable; the tap weights are. Compile
        the model again before fine-tuning it.
        """
        p = np.round(ops.convert_to_numpy(self.positions))
        self.positions_raw.assign(p / self.positions_lr_multiplier)
        self.positions_raw.trainable = False
        self.rounded = True

    def dense_kernel(self):
        """The kernel over the window, `(max_delay, channels)` (or
        `(max_delay, channels, filters)`): `k[tau]` multiplies the input
        `tau` steps back."""
        taus = ops.arange(self.max_delay, dtype="float32")
        taus = ops.reshape(taus, (-1,) + (1,) * len(self.positions_raw.shape))
        p = self.positions[None]
        w = ops.cast(self.kernel, "float32")[None]
        if self.rounded:
            phi = ops.cast(ops.equal(taus, p), "float32")
        else:
            sigma = ops.cast(self.sigma_variable, "float32")
            phi = ops.exp(-ops.square(taus - p) / (2.0 * ops.square(sigma)))
            if self.normalize_taps:
                phi = phi / (ops.sum(phi, axis=0, keepdims=True) + 1e-7)
        return ops.sum(w * phi, axis=1)

    def _conv_kernel(self):
        # Oldest sample first: conv_kernel[k] = k[max_delay - 1 - k].
        kernel = ops.flip(self.dense_kernel(), axis=0)
        kernel = ops.cast(kernel, self.compute_dtype)
        if self.filters is None:
            return ops.expand_dims(kernel, -1)  # (window, channels, 1)
        return kernel  # (window, channels, filters)

    # ------------------------------------------------------------------
    # Sequence and step.

    def call(self, inputs, initial_state=None, training=None):
        self.check_inputs(inputs)
        fifo = self._initial_fifo(inputs, initial_state)
        window = self.max_delay - 1
        if window:
            if fifo is None:
                padded = ops.pad(inputs, [[0, 0], [window, 0], [0, 0]])
            else:
                padded = ops.concatenate(
                    [ops.cast(fifo, inputs.dtype), inputs], axis=1
                )
        else:
            padded = inputs
        if 0 in tuple(inputs.shape[:2]):
            # An empty batch or no time step (the FIFO unchanged): the
            # convolution kernels of some backends mishandle empty inputs.
            shape = tuple(ops.shape(inputs)[:2]) + (self.output_channels,)
            outputs = ops.zeros(shape, inputs.dtype)
        else:
            outputs = self._convolve(padded)
        final_fifo = None
        if window:
            final_fifo = padded[:, -window:]
            if self.stateful:
                self.state_variables[0].assign(ops.cast(final_fifo, "float32"))
        if self.return_state:
            return [outputs] + ([final_fifo] if window else [])
        return outputs

    def _convolve(self, padded):
        kernel = self._conv_kernel()
        if self.filters is None:
            outputs = ops.depthwise_conv(padded, kernel, padding="valid")
        else:
            outputs = ops.conv(padded, kernel, padding="valid")
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return outputs

    def step(self, inputs_t, states, training=False, residual=False):
        """Runs one time step for streaming inference.

        Dense mode: one depthwise convolution (or fully connected layer)
        over the window `[fifo, x_t]`. Rounded mode: a gather of the `N`
        tapped samples per channel, multiply, sum.

        Args:
            inputs_t: tensor `(batch, channels)`.
            states: `[fifo]`, `fifo` of shape `(batch, max_delay - 1,
                channels)`, oldest first (`[]` when `max_delay == 1`).
            training: unused.
            residual: bool, return `x_t + y_t` (the residual connection of
                an MGRADE block). In the dense depthwise mode it is folded
                into the kernel (1 is added to the current sample's tap),
                so a TFLite file computes it in the convolution itself.

        Returns:
            `(y_t, [new_fifo])`.
        """
        # Quantization points (identities unless quantization-aware
        # training is active): the input, the FIFO and the window share
        # one range, so the int8 FIFO is a plain copy of int8 samples.
        states = self.check_states(states)
        x = points.state(self, "fifo", inputs_t)
        if residual and (self.filters or self.channels) != self.channels:
            raise ValueError(
                "A residual step needs as many outputs as inputs. Received: "
                f"filters={self.filters}, channels={self.channels}"
            )
        if not self.rounded and self.filters is None:
            window, new_states = self._depthwise_window(x, states)
            return self._depthwise_output(window, residual), new_states
        window, new_states = self._window(x, states)
        return self._window_output(x, window, residual), new_states

    def step_sequence(self, inputs, states, residual=False):
        """`step` over every time step of `inputs` `(batch, timesteps,
        channels)` at once: `(y (batch, timesteps, out), [final fifo])`,
        with the step's quantization points.

        The FIFO holds delayed inputs only, so the window of every step is
        a slice of `[fifo, inputs]`: the dense depthwise mode convolves
        that whole sequence once; the other modes fold each step's window
        into the batch and run the step's own computation on it. Used by
        quantization-aware training.
        """
        states = self.check_states(states)
        x = points.state(self, "fifo", inputs)
        span = self.max_delay - 1
        if residual and (self.filters or self.channels) != self.channels:
            raise ValueError(
                "A residual step needs as many outputs as inputs. Received: "
                f"filters={self.filters}, channels={self.channels}"
            )
        padded, new_states = x, []
        if span:
            fifo = points.state(self, "fifo", states[0])
            padded = ops.concatenate([ops.cast(fifo, x.dtype), x], axis=1)
            padded = points.state(self, "fifo", padded)
            new_states = [padded[:, -span:]]
        if not self.rounded and self.filters is None:
            # One valid convolution over (batch, span + timesteps,
            # channels) gives every step's output (in 1-D: PyTorch's 2-D
            # depthwise gradient with a 1 x max_delay kernel is slow).
            kernel = points.weight(
                self, "kernel", lambda: self._step_kernel(residual), axis=2
            )
            y = ops.depthwise_conv(padded, kernel[0], padding="valid")
            if self.use_bias:
                y = y + ops.cast(self.bias, y.dtype)
            # DEPTHWISE_CONV_2D requantizes like MUL (per channel).
            y = points.requantized(self, "output", y, (padded, kernel))
            return y, new_states
        # Step t's window is padded[:, t : t + max_delay].
        windows = ops.stack(
            [padded[:, k : (k - span) or None] for k in range(span + 1)],
            axis=2,
        )

        def output(folded):
            return self._window_output(folded[0], folded[1], residual)

        y = fold_time(output, [x, windows])
        return y, new_states

    def _window_output(self, x, window, residual):
        """The step's output from the window `(batch, max_delay,
        channels)` (rounded or non-depthwise modes)."""
        if self.rounded:
            y = self._sparse_step(window)
        else:
            flat = ops.reshape(window, (-1, self.max_delay * self.channels))
            kernel = points.weight(
                self,
                "kernel",
                lambda: ops.reshape(
                    self._conv_kernel(),
                    (self.max_delay * self.channels, self.filters),
                ),
                axis=-1,
            )
            y = ops.matmul(flat, kernel)
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        if residual:
            y = x + points.activation(self, "convolution", y)
        return points.activation(self, "output", y)

    def _window(self, x, states):
        """`([fifo, x_t] (batch, max_delay, channels), [new fifo])`."""
        x = ops.expand_dims(x, 1)
        if self.max_delay == 1:
            return x, []
        fifo = points.state(self, "fifo", states[0])
        window = ops.concatenate([ops.cast(fifo, x.dtype), x], 1)
        window = points.state(self, "fifo", window)
        return window, [window[:, 1:]]

    def _depthwise_window(self, x, states):
        # In 4-D, the layout of TFLite's DEPTHWISE_CONV_2D: the window is
        # (batch, 1, max_delay, channels) and the output (batch, 1, 1,
        # channels), so the file needs no reshape around the convolution
        # (the exporter folds the reshapes of the FIFO into its state).
        span, c = self.max_delay - 1, self.channels
        x4 = ops.reshape(x, (-1, 1, 1, c))
        if not span:
            return x4, []
        fifo = points.state(self, "fifo", states[0])
        fifo = ops.reshape(ops.cast(fifo, x.dtype), (-1, 1, span, c))
        window = ops.concatenate([fifo, x4], axis=2)
        window = points.state(self, "fifo", window)
        return window, [ops.reshape(window[:, :, 1:], (-1, span, c))]

    def _depthwise_output(self, window, residual):
        """The depthwise convolution of the window `(batch, 1, max_delay,
        channels)`: `(batch, channels)`."""
        kernel = points.weight(
            self, "kernel", lambda: self._step_kernel(residual), axis=2
        )
        y = ops.depthwise_conv(window, kernel, padding="valid")
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        y = ops.reshape(y, (-1, self.channels))
        # DEPTHWISE_CONV_2D requantizes like MUL (per channel).
        return points.requantized(self, "output", y, (window, kernel))

    def _step_kernel(self, residual):
        """The depthwise kernel `(1, max_delay, channels, 1)`, oldest
        sample first; with `residual`, 1 added to the current sample's
        tap (`x_t + conv(x)_t` as one convolution)."""
        kernel = self._conv_kernel()  # (max_delay, channels, 1)
        if residual:
            current = ops.one_hot(self.max_delay - 1, self.max_delay)
            current = ops.cast(ops.reshape(current, (-1, 1, 1)), kernel.dtype)
            kernel = kernel + current
        return ops.expand_dims(kernel, 0)

    def _sparse_step(self, window):
        # Flat index of sample x[t - p[n, c], c] in the window (oldest
        # first): (max_delay - 1 - p) * channels + c, as int32 for TFLite.
        p = ops.cast(self.positions, "int32")
        c = ops.arange(self.channels, dtype="int32")
        c = ops.reshape(c, (1, -1) + (1,) * (len(p.shape) - 2))
        index = (self.max_delay - 1 - p) * self.channels + c
        flat = ops.reshape(window, (-1, self.max_delay * self.channels))
        taps = ops.take(flat, index, axis=1)
        # MUL takes a per-tensor int8 constant.
        kernel = points.weight(
            self, "tap_weights", lambda: ops.cast(self.kernel, taps.dtype)
        )
        weighted = points.activation(self, "weighted", taps * kernel[None])
        axis = 1 if self.filters is None else (1, 2)
        return points.activation(self, "tap_sum", ops.sum(weighted, axis))

    def _initial_fifo(self, inputs, initial_state):
        if initial_state is None:
            if self.stateful and self.max_delay > 1:
                return self.carried_states(inputs.shape[0])[0]
            return None
        states = self.check_states(
            initial_state, inputs.shape[0], "initial_state"
        )
        return states[0] if states else None

    def compute_output_shape(self, inputs_shape, initial_state_shape=None):
        width = self.filters or inputs_shape[-1]
        return self.sequence_output_shape(inputs_shape, width)

    def get_config(self):
        config = _utils.attributes(self, _CONFIG_ATTRIBUTES)
        config.update(
            sigma=self.initial_sigma,
            positions_initializer=_utils.serialize_choice(
                self.positions_initializer
            ),
            **_utils.serialize_options(self),
        )
        return {**super().get_config(), **config}


# Arguments that `get_config` returns as the layer keeps them.
_CONFIG_ATTRIBUTES = (
    "kernel_taps",
    "max_delay",
    "filters",
    "normalize_taps",
    "use_bias",
    "positions_lr_multiplier",
    "rounded",
    "return_state",
    "stateful",
    "seed",
)


def _cost(layer, nbytes):
    channels, out = layer.channels, layer.output_channels
    bias_bytes = 4 if nbytes == 1 else nbytes
    if layer.rounded:
        taps = int(np.prod(layer.kernel.shape))
        # Tap weights + int32 gather indices.
        params, pbytes = 2 * taps, taps * nbytes + taps * 4
    else:
        params = layer.max_delay * channels * (layer.filters or 1)
        pbytes = params * nbytes
    if layer.use_bias:
        params, pbytes = params + out, pbytes + out * bias_bytes
    return LayerCost(
        parameters=params,
        parameter_bytes=pbytes,
        state=(layer.max_delay - 1) * channels,
        # The window [fifo, x_t] and the output.
        working_set=layer.max_delay * channels + out,
    )


register_streaming(DCLSConv1D, cost=_cost, quantized_inside=True)
