"""The analytic deploy-time memory footprint of a streaming model.

Deploy-time memory of a model run one sample at a time is

- **parameters** (flash): the constants the step graph stores. At int8,
  weights take 1 byte per element and the biases of matrix products 4 bytes
  (int32, as TFLite stores them); at float32 everything takes 4 bytes.
  Training-only weights (delay positions, `sigma`) are not deployed: the
  step graph uses the dense kernel they produce, or the tap weights and
  integer delays after `DCLSConv1D.round_positions()`.
- **state** (RAM, persistent): per layer the convolution FIFO
  (`(max_delay - 1) * channels`) and the MinGRU state (`units`), plus the
  running mean of mean pooling.
- **activations** (RAM, transient): the largest set of tensors alive at once
  while one step runs. With the state passed as inputs and outputs (the
  default export), the new states are outputs that stay alive until the
  step ends, so they count here in full; on top of them, the largest
  per-layer working set (the convolution window `max_delay * channels`, the
  MLP hidden vector, ...).

These numbers are what the exported TFLite Micro arena and flatbuffer are
checked against (`benchmarks/export_memory.py`).

Example:

>>> import keras_mgrade
>>> model = keras_mgrade.models.mgrade_classifier(
...     2, 4, units=16, num_layers=1, kernel_taps=4, max_delay=8)
>>> fp = keras_mgrade.memory.footprint(model)
>>> fp.state_bytes        # int8: FIFO 7 x 16 + h 16 + mean 4 + count 1
133
>>> print(fp.table())     # doctest: +ELLIPSIS
| layer ...
"""

import dataclasses

import keras

from keras_mgrade import layers as _layers  # noqa: F401  (registrations)
from keras_mgrade.core import registry

PRECISIONS = {"int8": 1, "float32": 4}

# (RAM bytes, flash bytes); None: no internal flash (external memory).
MCU_BUDGETS = {
    "STM32N6 (4.2 MB SRAM)": (4_200_000, None),
    "STM32H7 (1 MB RAM / 2 MB flash)": (1_048_576, 2_097_152),
    "Cortex-M4 class (256 KB / 1 MB)": (262_144, 1_048_576),
    "TinyMLPerf KWS class (20 KB / 50 KB)": (20_480, 51_200),
}


@dataclasses.dataclass
class LayerFootprint:
    """The footprint of one layer (elements, and bytes at `precision`)."""

    name: str
    kind: str
    parameters: int
    parameter_bytes: int
    state: int
    state_bytes: int
    activation_bytes: int


@dataclasses.dataclass
class Footprint:
    """The deploy-time footprint of a model, see the module docstring.

    Attributes:
        precision: `"int8"` or `"float32"`.
        layers: list of `LayerFootprint`.
        parameters: number of deployed parameters.
        parameter_bytes: their bytes (flash).
        state_bytes: persistent state bytes (RAM).
        activation_bytes: peak transient bytes of one step (RAM).
        trainable_parameters: `model.count_params()` (every training-time
            weight, including positions and `sigma`), for reference.
    """

    precision: str
    layers: list
    parameters: int
    parameter_bytes: int
    state_bytes: int
    activation_bytes: int
    trainable_parameters: int

    @property
    def ram_bytes(self):
        """State + peak activations."""
        return self.state_bytes + self.activation_bytes

    @property
    def flash_bytes(self):
        """The deployed parameters."""
        return self.parameter_bytes

    @property
    def total_bytes(self):
        """Parameters + state + activations (the paper's measure)."""
        return self.parameter_bytes + self.ram_bytes

    def fits(self, budgets=None, ram_bytes=None, flash_bytes=None):
        """Which MCU budgets the model fits.

        Args:
            budgets: dict name -> `(ram, flash)` bytes (flash `None`: not
                checked). Defaults to `MCU_BUDGETS`.
            ram_bytes: the RAM to check (defaults to `ram_bytes`; pass a
                measured TFLite Micro arena instead).
            flash_bytes: the flash to check (defaults to `flash_bytes`;
                pass a measured flatbuffer size instead).

        Returns:
            dict name -> bool.
        """
        budgets = MCU_BUDGETS if budgets is None else budgets
        ram = self.ram_bytes if ram_bytes is None else ram_bytes
        flash = self.flash_bytes if flash_bytes is None else flash_bytes
        return {
            name: ram <= r and (f is None or flash <= f)
            for name, (r, f) in budgets.items()
        }

    def as_dict(self):
        """The footprint as plain numbers (JSON-serialisable)."""
        out = dataclasses.asdict(self)
        out.update(
            ram_bytes=self.ram_bytes,
            flash_bytes=self.flash_bytes,
            total_bytes=self.total_bytes,
        )
        return out

    def table(self):
        """A markdown table: one row per layer, then the totals."""
        rows = [
            "| layer | kind | parameters | param bytes | state bytes "
            "| peak activation bytes |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for f in self.layers:
            rows.append(
                f"| {f.name} | {f.kind} | {f.parameters} | "
                f"{f.parameter_bytes} | {f.state_bytes} | "
                f"{f.activation_bytes} |"
            )
        rows.append(
            f"| **total ({self.precision})** | | {self.parameters} | "
            f"{self.parameter_bytes} | {self.state_bytes} | "
            f"{self.activation_bytes} |"
        )
        return "\n".join(rows)


def footprint(model, precision="int8"):
    """The analytic deploy-time footprint of a streaming model.

    Args:
        model: a built `keras.Model` (Sequential or functional) made of
            streamable layers (`keras_mgrade.core.registry`: each kind's
            cost rule counts it).
        precision: `"int8"` (1 byte per weight and activation, int32 matrix
            biases) or `"float32"`.

    Returns:
        A `Footprint`.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            "Invalid `precision`. Expected one of "
            f"{sorted(PRECISIONS)}. Received: precision={precision!r}"
        )
    if not model.built:
        raise ValueError(
            "The model must be built. Received an unbuilt model: "
            f"model={model.name!r}"
        )
    nbytes = PRECISIONS[precision]
    rows = [
        _layer_footprint(layer, nbytes)
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    # The new states are step outputs alive until the step ends; add the
    # largest working set of one layer on top.
    state = sum(r.state_bytes for r in rows)
    peak = state + max([r.activation_bytes for r in rows] or [0])
    return Footprint(
        precision=precision,
        layers=rows,
        parameters=sum(r.parameters for r in rows),
        parameter_bytes=sum(r.parameter_bytes for r in rows),
        state_bytes=state,
        activation_bytes=peak,
        trainable_parameters=int(model.count_params()),
    )


def _layer_footprint(layer, nbytes):
    cost = registry.cost(layer, nbytes)
    return LayerFootprint(
        name=layer.name,
        kind=type(layer).__name__,
        parameters=cost.parameters,
        parameter_bytes=cost.parameter_bytes,
        state=cost.state,
        state_bytes=cost.state * nbytes,
        activation_bytes=cost.working_set * nbytes,
    )


def format_bytes(n):
    """`1536 -> '1.5 KiB'` (binary units)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} MiB"


def budget_table(ram_bytes, flash_bytes, budgets=None):
    """A markdown table: fits / does not fit each MCU budget.

    Args:
        ram_bytes: RAM the model needs (analytic or measured arena).
        flash_bytes: flash the model needs (parameters or flatbuffer).
        budgets: dict name -> `(ram, flash)`; defaults to `MCU_BUDGETS`.

    Returns:
        str.
    """
    budgets = MCU_BUDGETS if budgets is None else budgets
    rows = ["| MCU budget | RAM | flash | fits |", "|---|---:|---:|---|"]
    for name, (r, f) in budgets.items():
        ok = ram_bytes <= r and (f is None or flash_bytes <= f)
        flash = "external" if f is None else format_bytes(f)
        rows.append(
            f"| {name} | {format_bytes(r)} | {flash} | "
            f"{'yes' if ok else 'no'} |"
        )
    return "\n".join(rows)
