"""`QuantizeConfig`: how one layer is fake-quantized during training."""

import math

import keras


@keras.saving.register_keras_serializable(package="keras_mgrade")
class QuantizeConfig:
    """How the quantization points of one layer are fake-quantized.

    Plays the role of `QuantizeConfig` in tensorflow-model-optimization:
    pass one to `quantize_model` for every layer, or a dict
    `{layer name: QuantizeConfig}` for some layers.

    Args:
        weight_bits: int in `[2, 16]`, bits of the weights (symmetric, per
            output channel for matrix products and convolutions, per tensor
            for the constants of elementwise products). Defaults to `8`.
        activation_bits: int in `[2, 16]`, bits of the activations and
            states (asymmetric, per tensor; 16 bits symmetric with zero
            point 0, as TFLite's int16 activations). Defaults to `8`.
        ranges: dict `{point name: (min, max)}` of fixed ranges (`min <= 0
            <= max`, `min < max`) that replace the learned ones; a name
            matches every point of the layer whose name ends with it, e.g.
            `{"h": (0.0, 4.0)}` fixes the MinGRU state of the layer.
            Defaults to `None` (all ranges learned).
        skip: bool, leave the layer in float: its tensors are not
            fake-quantized (the exported file then computes it in float
            between `DEQUANTIZE` and `QUANTIZE`). Defaults to `False`.
        ema_decay: float in `[0, 1)`, the decay of the moving averages that
            track the activation ranges during training. Defaults to
            `0.99`.

    8-bit weights and activations export to an int8 TFLite file, 8-bit
    weights and 16-bit activations to a 16x8 one (`quantize="int16x8"`);
    other bit widths are for training studies.

    Example:

    >>> config = QuantizeConfig(ranges={"h": (0.0, 4.0)})
    >>> config.activation_bits
    8
    >>> QuantizeConfig(weight_bits=1)
    Traceback (most recent call last):
    ...
    ValueError: weight_bits must be an int in [2, 16]. Received: weight_bits=1
    """

    def __init__(
        self,
        weight_bits=8,
        activation_bits=8,
        ranges=None,
        skip=False,
        ema_decay=0.99,
    ):
        self.weight_bits = _check_bits("weight_bits", weight_bits)
        self.activation_bits = _check_bits("activation_bits", activation_bits)
        self.ranges = _check_ranges(ranges)
        self.skip = bool(skip)
        if not (
            isinstance(ema_decay, int | float)
            and not isinstance(ema_decay, bool)
            and 0.0 <= ema_decay < 1.0
        ):
            raise ValueError(
                "ema_decay must be a float in [0, 1). Received: "
                f"ema_decay={ema_decay!r}"
            )
        self.ema_decay = float(ema_decay)

    def fixed_range(self, key):
        """The fixed range of point `key`, or None if it is learned."""
        for name, value in self.ranges.items():
            if key == name or key.endswith("/" + name):
                return value
        return None

    def get_config(self):
        return {
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "skip": self.skip,
            "ema_decay": self.ema_decay,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"QuantizeConfig({args})"


def _check_bits(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        ok = False
    else:
        ok = 2 <= value <= 16
    if not ok:
        raise ValueError(
            f"{name} must be an int in [2, 16]. Received: {name}={value!r}"
        )
    return int(value)


def _check_ranges(ranges):
    if ranges is None:
        return {}
    if not isinstance(ranges, dict):
        raise ValueError(
            "ranges must be a dict {point name: (min, max)}. Received: "
            f"ranges={ranges!r}"
        )
    checked = {}
    for name, value in ranges.items():
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"ranges[{name!r}] must be a pair (min, max). Received: "
                f"{value!r}"
            ) from e
        if not (
            math.isfinite(low) and math.isfinite(high) and low <= 0 <= high
        ) or (low >= high):
            raise ValueError(
                f"ranges[{name!r}] must satisfy min <= 0 <= max and min < "
                f"max (zero must be exactly representable). Received: "
                f"({low}, {high})"
            )
        checked[str(name)] = (low, high)
    return checked
