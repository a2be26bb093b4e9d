"""MGRADE: delay convolution + minimal GRU + MLP, with residuals."""

import dataclasses

import keras
from keras import ops

from keras_mgrade import _utils
from keras_mgrade import activations
from keras_mgrade.core import points
from keras_mgrade.core import registry
from keras_mgrade.core.contract import StreamingLayer
from keras_mgrade.core.stepping import fold_time
from keras_mgrade.layers import streaming_ops
from keras_mgrade.layers.dcls_conv1d import DCLSConv1D
from keras_mgrade.layers.min_gru import MinGRU
from keras_mgrade.layers.min_gru import get_gate_bias_initializer

NORMS = ("layer", "rms", "batch", None)
# The moving averages of `norm="batch"` forget 10 % per training step: the
# small models here train for a few hundred steps, and with Keras' 0.99
# the statistics kept at inference would still lean on their initial
# values (mean 0, variance 1) after them.
BATCH_NORM_MOMENTUM = 0.9
# The factor of `sigmoid_gelu(x) = x sigmoid(1.702 x)`.
SIGMOID_GELU = 1.702


def _conv_kernel_initializer(value):
    """None (the convolution's own default) or a Keras initializer; a
    clear error otherwise."""
    if value is None:
        return None
    try:
        return keras.initializers.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "conv_kernel_initializer must be None or a Keras initializer "
            f"(a name such as 'zeros', a config or an instance). Received: "
            f"conv_kernel_initializer={value!r}"
        ) from error


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


@keras.saving.register_keras_serializable(package="keras_mgrade")
class MGRADE(StreamingLayer):
    """The mGRADE block: a learnable-delay convolution feeding a minimal
    GRU, then a position-wise MLP, each with a residual connection.

    For inputs `x` of width `units` (Torchet, Metzner et al. 2025):

        u   = x + DCLSConv1D(x)                     delay embedding
        v   = u + MinGRU(u)                         recurrence
        y   = v + Dense_H(act(Dense_rH(Norm(v))))   MLP (mlp_ratio r > 0)
        out = Norm(y)                               post-norm

    The convolution sees `max_delay` samples back through `kernel_taps`
    learned delays per channel; the MinGRU carries longer context in
    `units` numbers. Everything is causal, so the block streams: its state
    is the convolution FIFO (`max_delay - 1` inputs) and the MinGRU state,
    and `step` runs one time step with ops TFLite Micro has in int8 (no
    `where`, `exp` or `log`; the layer and RMS norms are written with
    MEAN, RSQRT, MUL). `call` over a sequence equals `step` looped over it
    (in inference mode).

    `norm="batch"` is the deployment-friendly choice: a
    `keras.layers.BatchNormalization` of each channel, whose statistics
    are taken over the batch and the time steps (the unmasked ones) in
    training and are moving averages at inference. There it is a fixed
    per-channel affine `x * scale + shift` that `step` folds into
    constants: the MLP's norm into the kernel and bias of `mlp_in` (no
    operator), the post-norm into `mlp_out` and one MUL of the residual
    (a MUL and an ADD without the MLP), where each LayerNorm is MEAN,
    SUB, MUL, MEAN, RSQRT, MUL in int8: 20 int8 operators per block
    instead of 31, and no MEAN or RSQRT.

    Args:
        units: int, the width of the block (input and output).
        kernel_taps: int, delays per channel in the convolution. Defaults
            to `8`.
        max_delay: int, the convolution window in samples. Defaults to
            `32`.
        sigma: float, the Gaussian width of the delays (see
            `DCLSConv1D`). Defaults to `0.7`.
        mlp_ratio: int >= 0, the MLP's hidden width in multiples of
            `units`; `0` removes the MLP. Defaults to `2`.
        norm: `"layer"`, `"rms"`, `"batch"` (batch statistics in
            training, a folded per-channel affine at inference; see above)
            or `None` (no normalisation). Defaults to `"layer"`.
        norm_epsilon: float, the epsilon of the norms. Defaults to `1e-5`.
        mlp_activation: activation of the MLP. Defaults to
            `"sigmoid_gelu"` (`x sigmoid(1.702 x)`: GELU has no TFLite
            Micro kernel).
        dropout: float in [0, 1), dropout on each residual branch in
            training. Defaults to `0.0`.
        use_conv: bool, include the delay convolution (set `False` for a
            MinGRU-only ablation). Defaults to `True`.
        use_recurrence: bool, include the MinGRU (set `False` for a
            convolution-only ablation, a TCN-like block). Defaults to
            `True`.
        project_inputs: bool. If the input width differs from `units`, add
            a Dense projection to `units` first (otherwise that is an
            error). Defaults to `False`.
        normalize_taps: bool, see `DCLSConv1D`. Defaults to `False`.
        positions_initializer: see `DCLSConv1D`. Defaults to
            `"evenly_spaced"`.
        positions_lr_multiplier: float, see `DCLSConv1D`. Defaults to
            `5.0`.
        rounded: bool, start with integer delays and the sparse kernel
            (see `DCLSConv1D.round_positions`); `get_config` records it
            after `keras_mgrade.callbacks.round_positions`, so a `.keras`
            file keeps the rounded block. Defaults to `False`.
        scan: the MinGRU scan form (see `MinGRU`). Defaults to `"auto"`.
        kernel_initializer: initializer of the Dense and MinGRU kernels.
            Defaults to `"glorot_uniform"`.
        gate_bias_initializer: initializer of the MinGRU's update-gate
            bias (see `MinGRU`). None: a zero bias (`z = 1/2`, memories of
            about 2 steps at initialization, as in Feng et al.).
            `"timescales"`: a `TimescaleInitializer` (initial memories
            log-uniform from 2 to 256 steps), which speeds up learning
            tasks that hold information for hundreds of steps while the
            convolution carries the fast dynamics, but costs accuracy on
            tasks that need short memories only (README, "Initialization
            for long memory"). `"chrono"`: the same with uniform spacing.
            `"auto"`: `"timescales"` when the block has its convolution,
            None without it (`use_conv=False`, where the MinGRU must also
            do the fast part). Or a Keras initializer. Defaults to `None`.
        conv_kernel_initializer: initializer of the convolution's tap
            weights, or None for `DCLSConv1D`'s default (a truncated normal
            of variance `1 / kernel_taps`). `"zeros"` starts the block
            without its convolution branch (`u = x`, the MinGRU-only block
            plus a zero delay line) and lets training grow it: on a task
            that must sample a value and hold it for hundreds of steps this
            learns the hold sooner, on tasks of fast dynamics it costs
            accuracy (README, "Initialization for long memory"). Defaults
            to `None`.
        return_sequences: bool, return the whole sequence (the usual case
            when blocks are stacked) or only the last step. Defaults to
            `True`.
        return_state: bool, also return the final states `[fifo, h]`.
            Defaults to `False`.
        stateful: bool, carry the states between calls (static batch
            size); `reset_state()` clears them. Defaults to `False`.
        seed: int, seed of the initializers and dropout. Defaults to
            `None`.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: tensor `(batch, timesteps, features)`.
        initial_state: optional list `[fifo, h]` with shapes
            `(batch, max_delay - 1, units)` and `(batch, units)` (`[h]`
            when `max_delay == 1`). Defaults to zeros.
        mask: optional boolean tensor `(batch, timesteps)`: the MinGRU
            keeps its state over masked steps, and with
            `return_sequences=False` the output is that of the last
            unmasked step.
        training: bool, whether dropout is applied.

    Example:

    >>> import numpy as np
    >>> block = MGRADE(16, kernel_taps=4, max_delay=8)
    >>> x = np.random.default_rng(0).normal(size=(2, 30, 16))
    >>> tuple(block(x).shape)
    (2, 30, 16)
    >>> [tuple(s) for s in block.state_shapes]
    [(7, 16), (16,)]

    Reference:
        Torchet, Metzner et al., "mGRADE: Minimal Recurrent Gating Meets
        Delay Convolutions for Lightweight Sequence Modeling", 2025,
        https://arxiv.org/abs/2507.01829.
    """

    def __init__(
        self,
        units,
        kernel_taps=8,
        max_delay=32,
        sigma=0.7,
        mlp_ratio=2,
        norm="layer",
        norm_epsilon=1e-5,
        mlp_activation="sigmoid_gelu",
        dropout=0.0,
        use_conv=True,
        use_recurrence=True,
        project_inputs=False,
        normalize_taps=False,
        positions_initializer="evenly_spaced",
        positions_lr_multiplier=5.0,
        rounded=False,
        scan="auto",
        kernel_initializer="glorot_uniform",
        gate_bias_initializer=None,
        conv_kernel_initializer=None,
        return_sequences=True,
        return_state=False,
        stateful=False,
        seed=None,
        **kwargs,
    ):
        units = _utils.check_positive_int("units", units)
        kernel_taps, max_delay = _utils.check_taps(kernel_taps, max_delay)
        sigma = _utils.check_positive_float("sigma", sigma)
        norm_epsilon = _utils.check_positive_float("norm_epsilon", norm_epsilon)
        mlp_ratio = _utils.check_positive_int("mlp_ratio", mlp_ratio, 0)
        dropout = _utils.check_rate("dropout", dropout)
        _check_parts(norm, use_conv, use_recurrence)
        if not _is_auto(gate_bias_initializer):
            get_gate_bias_initializer(gate_bias_initializer)  # fails early
        conv_kernel_initializer = _conv_kernel_initializer(
            conv_kernel_initializer
        )
        super().__init__(**kwargs)
        self.units = units
        self.kernel_taps = kernel_taps
        self.max_delay = max_delay
        self.initial_sigma = sigma
        self.mlp_ratio = mlp_ratio
        self.norm = norm
        self.norm_epsilon = float(norm_epsilon)
        self.mlp_activation = activations.get(mlp_activation)
        self.dropout = dropout
        self.use_conv = bool(use_conv)
        self.use_recurrence = bool(use_recurrence)
        self.project_inputs = bool(project_inputs)
        self.normalize_taps = bool(normalize_taps)
        self.positions_initializer = positions_initializer
        self.positions_lr_multiplier = positions_lr_multiplier
        self.rounded = bool(rounded)
        self.scan = scan
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.gate_bias_initializer = gate_bias_initializer
        self.conv_kernel_initializer = conv_kernel_initializer
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.stateful = bool(stateful)
        self.seed = seed
        self.supports_masking = True

        self._make_sublayers()
        # Checked here so that a bad activation fails at construction.
        self._mlp_step_activation = streaming_ops.step_activation(
            self.mlp_activation, "mlp_activation", owner=self
        )

    def _make_sublayers(self):
        policy, units = self.dtype_policy, self.units

        def init():
            return _utils.clone_initializer(self.kernel_initializer)

        self.input_projection = None
        if self.project_inputs:
            self.input_projection = keras.layers.Dense(
                units,
                kernel_initializer=init(),
                dtype=policy,
                name="input_projection",
            )
        self.conv = self.min_gru = None
        if self.use_conv:
            self.conv = DCLSConv1D(
                self.kernel_taps,
                self.max_delay,
                sigma=self.initial_sigma,
                normalize_taps=self.normalize_taps,
                positions_initializer=self.positions_initializer,
                positions_lr_multiplier=self.positions_lr_multiplier,
                rounded=self.rounded,
                kernel_initializer=(
                    None
                    if self.conv_kernel_initializer is None
                    else _utils.clone_initializer(self.conv_kernel_initializer)
                ),
                return_state=True,
                stateful=self.stateful,
                seed=self.seed,
                dtype=policy,
                name="conv",
            )
        if self.use_recurrence:
            self.min_gru = MinGRU(
                units,
                kernel_initializer=init(),
                gate_bias_initializer=self._gate_bias_initializer(),
                return_sequences=True,
                return_state=True,
                stateful=self.stateful,
                scan=self.scan,
                dtype=policy,
                name="min_gru",
            )
        self.mlp_norm = self.mlp_in = self.mlp_out = self.post_norm = None
        if self.mlp_ratio:
            self.mlp_norm = self._make_norm("mlp_norm")
            self.mlp_in = keras.layers.Dense(
                self.mlp_ratio * units,
                kernel_initializer=init(),
                dtype=policy,
                name="mlp_in",
            )
            self.mlp_out = keras.layers.Dense(
                units, kernel_initializer=init(), dtype=policy, name="mlp_out"
            )
        self.post_norm = self._make_norm("post_norm")
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, seed=self.seed, dtype=policy, name="dropout"
        )

    def _gate_bias_initializer(self):
        value = self.gate_bias_initializer
        if _is_auto(value):
            value = "timescales" if self.use_conv else None
        return get_gate_bias_initializer(value, seed=self.seed)

    def _make_norm(self, name):
        if self.norm is None:
            return None
        if self.norm == "rms":
            return keras.layers.RMSNormalization(
                epsilon=self.norm_epsilon, dtype=self.dtype_policy, name=name
            )
        if self.norm == "batch":
            return keras.layers.BatchNormalization(
                axis=-1,
                momentum=BATCH_NORM_MOMENTUM,
                epsilon=self.norm_epsilon,
                dtype=self.dtype_policy,
                name=name,
            )
        return keras.layers.LayerNormalization(
            epsilon=self.norm_epsilon, dtype=self.dtype_policy, name=name
        )

    @property
    def state_shapes(self):
        """Shapes of the streaming states without the batch axis:
        `[(max_delay - 1, units), (units,)]`: the convolution FIFO (absent
        when `max_delay == 1` or `use_conv=False`) and the MinGRU state
        (absent when `use_recurrence=False`)."""
        shapes = []
        if self._num_conv_states:
            shapes.append((self.max_delay - 1, self.units))
        if self.use_recurrence:
            shapes.append((self.units,))
        return shapes

    @property
    def _num_conv_states(self):
        return 1 if self.use_conv and self.max_delay > 1 else 0

    def build(self, input_shape):
        input_shape = self.check_sequence_shape(input_shape)
        width = input_shape[-1]
        if width != self.units and not self.project_inputs:
            raise ValueError(
                f"The input width ({width}) differs from units "
                f"({self.units}): the residual connections need them equal. "
                "Add a Dense layer before the block or pass "
                f"project_inputs=True. Received: inputs.shape={input_shape}"
            )
        shape = input_shape[:2] + (self.units,)
        if self.input_projection is not None:
            self.input_projection.build(input_shape)
        if self.conv is not None:
            self.conv.build(shape)
        if self.min_gru is not None:
            self.min_gru.build(shape)
        if self.mlp_ratio:
            if self.mlp_norm is not None:
                self.mlp_norm.build(shape)
            self.mlp_in.build(shape)
            self.mlp_out.build(shape[:2] + (self.mlp_ratio * self.units,))
        if self.post_norm is not None:
            self.post_norm.build(shape)

    def call(self, inputs, initial_state=None, mask=None, training=None):
        self.check_inputs(inputs, mask)
        conv_state, rnn_state = self._split_state(
            initial_state, inputs.shape[0]
        )
        x = inputs
        if self.input_projection is not None:
            x = self.input_projection(x)
        u, fifo, h = x, [], []
        if self.conv is not None:
            conv_out, *fifo = self.conv(x, initial_state=conv_state)
            u = x + self.dropout_layer(conv_out, training=training)
        v = u
        if self.min_gru is not None:
            rnn_out, *h = self.min_gru(
                u, initial_state=rnn_state, mask=mask, training=training
            )
            v = u + self.dropout_layer(rnn_out, training=training)
        y = v
        if self.mlp_ratio:
            z = self._normalize(self.mlp_norm, v, mask, training)
            z = self.mlp_out(self.mlp_activation(self.mlp_in(z)))
            y = v + self.dropout_layer(z, training=training)
        out = self._normalize(self.post_norm, y, mask, training)
        if not self.return_sequences:
            out = _utils.last_step(out, mask)
        if self.return_state:
            return [out] + list(fifo) + list(h)
        return out

    def _normalize(self, norm, x, mask, training):
        if norm is None:
            return x
        if self.norm == "batch":
            # Statistics over batch and time, masked steps left out.
            return norm(x, training=training, mask=mask)
        return norm(x)

    def step(self, inputs_t, states, training=False):
        """Runs one time step for streaming inference.

        Args:
            inputs_t: tensor `(batch, features)`.
            states: `[fifo, h]` as in `state_shapes`.
            training: unused (no dropout when streaming).

        Returns:
            `(y_t, [new_fifo, new_h])`.
        """
        states = self.check_states(states)
        n = self._num_conv_states
        x = ops.convert_to_tensor(inputs_t)
        if self.input_projection is not None:
            x = streaming_ops.dense(x, self.input_projection)
        u, fifo, h = x, [], []
        if self.conv is not None:
            # The residual is folded into the convolution (dense mode).
            u, fifo = self.conv.step(x, states[:n], residual=True)
        rnn_out = None
        if self.min_gru is not None:
            rnn_out, h = self.min_gru.step(u, states[n:])
        return self._step_tail(u, rnn_out), list(fifo) + list(h)

    def step_sequence(self, inputs, states):
        """`step` over every time step of `inputs` `(batch, timesteps,
        features)` at once: `(y (batch, timesteps, units), [fifo, h])`,
        with the step's quantization points. The position-wise parts run
        on the time steps folded into the batch, the convolution over the
        whole sequence, and only the MinGRU state update one step at a
        time (`MinGRU.step_sequence`). Used by quantization-aware
        training."""
        states = self.check_states(states)
        n = self._num_conv_states
        x = ops.convert_to_tensor(inputs)
        if self.input_projection is not None:
            x = fold_time(
                lambda t: streaming_ops.dense(t, self.input_projection), x
            )
        u, fifo, h = x, [], []
        if self.conv is not None:
            u, fifo = self.conv.step_sequence(x, states[:n], residual=True)
        if self.min_gru is None:
            return fold_time(lambda t: self._step_tail(t, None), u), fifo
        rnn_out, h = self.min_gru.step_sequence(u, states[n:])
        y = fold_time(lambda t: self._step_tail(t[0], t[1]), [u, rnn_out])
        return y, list(fifo) + list(h)

    def _step_tail(self, u, rnn_out):
        """The step after the recurrence: the residuals, the MLP and the
        post-norm (position-wise)."""
        v = u
        if rnn_out is not None:
            v = points.activation(self, "rnn_residual", u + rnn_out)
        if self.norm == "batch":
            return self._batch_norm_tail(v)
        y = v
        if self.mlp_ratio:
            y = points.activation(self, "mlp_residual", v + self._mlp_step(v))
        if self.post_norm is not None:
            y = streaming_ops.layer_norm(y, self.post_norm)
        return y

    def _batch_norm_tail(self, v):
        """`post_norm(v + mlp(mlp_norm(v)))` with the batch norms folded:
        `mlp_norm` into `mlp_in`, and `post_norm(y) = y * scale + shift`
        as `v * scale + mlp'(v)`, where `mlp_out'` holds the scale and the
        shift (one MUL besides the residual ADD)."""
        post = streaming_ops.batch_norm_affine
        if not self.mlp_ratio:
            return streaming_ops.batch_norm(v, self.post_norm)
        scale = points.weight(
            self.post_norm, "scale", lambda: post(self.post_norm)[0]
        )
        scaled = points.activation(self.post_norm, "scaled", v * scale)
        z = self._mlp_step(
            v,
            input_affine=lambda: post(self.mlp_norm),
            output_affine=lambda: post(self.post_norm),
        )
        return points.activation(self.post_norm, "output", scaled + z)

    def _mlp_step(self, v, input_affine=None, output_affine=None):
        z = v
        if self.mlp_norm is not None and input_affine is None:
            z = streaming_ops.layer_norm(z, self.mlp_norm)
        inner = {"input_affine": input_affine}
        outer = {"output_affine": output_affine}
        if streaming_ops.activation_name(self.mlp_activation) == "sigmoid_gelu":
            # z sigmoid(1.702 z) = silu(1.702 z) / 1.702: the factors fold
            # into the two kernels (no separate MUL in a TFLite file).
            z = streaming_ops.dense(
                z, self.mlp_in, output_scale=SIGMOID_GELU, **inner
            )
            z = streaming_ops.step_activation(
                "silu", "mlp_activation", owner=self
            )(z)
            return streaming_ops.dense(
                z, self.mlp_out, input_scale=SIGMOID_GELU, **outer
            )
        z = streaming_ops.dense(z, self.mlp_in, **inner)
        z = self._mlp_step_activation(z)
        return streaming_ops.dense(z, self.mlp_out, **outer)

    def _split_state(self, initial_state, batch_size):
        if initial_state is None:
            return None, None
        states = self.check_states(initial_state, batch_size, "initial_state")
        n = self._num_conv_states
        conv_state = states[:n] if n else None
        rnn_state = states[n] if self.use_recurrence else None
        return conv_state, rnn_state

    def compute_output_shape(self, inputs_shape, initial_state_shape=None):
        return self.sequence_output_shape(inputs_shape, self.units)

    def get_config(self):
        config = _utils.attributes(self, _CONFIG_ATTRIBUTES)
        config.update(
            sigma=self.initial_sigma,
            rounded=self.conv is not None and self.conv.rounded,
            mlp_activation=streaming_ops.activation_name(self.mlp_activation),
            positions_initializer=_utils.serialize_choice(
                self.positions_initializer
            ),
            kernel_initializer=_utils.serialize_choice(self.kernel_initializer),
            gate_bias_initializer=_utils.serialize_choice(
                self.gate_bias_initializer
            ),
            conv_kernel_initializer=_utils.serialize_choice(
                self.conv_kernel_initializer
            ),
        )
        return {**super().get_config(), **config}


# Arguments that `get_config` returns as the block keeps them.
_CONFIG_ATTRIBUTES = (
    "units",
    "kernel_taps",
    "max_delay",
    "mlp_ratio",
    "norm",
    "norm_epsilon",
    "dropout",
    "use_conv",
    "use_recurrence",
    "project_inputs",
    "normalize_taps",
    "positions_lr_multiplier",
    "scan",
    "return_sequences",
    "return_state",
    "stateful",
    "seed",
)


def _check_parts(norm, use_conv, use_recurrence):
    if norm not in NORMS:
        raise ValueError(
            f"Unknown norm. Expected one of {NORMS}. Received: norm={norm!r}"
        )
    if not use_conv and not use_recurrence:
        raise ValueError(
            "An MGRADE block needs the convolution, the recurrence or "
            "both. Received: use_conv=False, use_recurrence=False"
        )


def _cost(layer, nbytes):
    total = registry.LayerCost()
    for sub in (
        layer.input_projection,
        layer.conv,
        layer.min_gru,
        layer.mlp_norm,
        layer.mlp_in,
        layer.mlp_out,
        layer.post_norm,
    ):
        if sub is None:
            continue
        part = registry.cost(sub, nbytes)
        if layer.norm == "batch" and layer.mlp_ratio:
            # Folded: the MLP's norm into mlp_in, the post-norm's shift into
            # mlp_out; the post-norm keeps its scale.
            if sub is layer.mlp_norm:
                continue
            if sub is layer.post_norm:
                part = registry.LayerCost(
                    layer.units, layer.units * nbytes, 0, 2 * layer.units
                )
        total = registry.LayerCost(
            parameters=total.parameters + part.parameters,
            parameter_bytes=total.parameter_bytes + part.parameter_bytes,
            state=total.state + part.state,
            working_set=max(total.working_set, part.working_set),
        )
    # x, the residual stream and the block output.
    return dataclasses.replace(
        total, working_set=total.working_set + 3 * layer.units
    )


registry.register_streaming(MGRADE, cost=_cost, quantized_inside=True)
