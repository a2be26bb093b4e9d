"""Quantization-aware training that exports to int8 TFLite without
calibration data.

`quantize_model(model)` returns a trainable copy of a streamable sequence
model that runs its int8 step graph in float with fake quantization at
every point where the int8 TFLite file quantizes (see `points`), and
learns the activation ranges the exporter writes into the file.
"""

from keras_mgrade.quantization import points  # noqa: F401

_LAZY = {
    "QuantizeConfig": "keras_mgrade.quantization.config",
    "QuantizedModel": "keras_mgrade.quantization.model",
    "quantize_model": "keras_mgrade.quantization.model",
    "is_quantized": "keras_mgrade.quantization.model",
}


def __getattr__(name):
    # The model and config modules import the layers, which import
    # `points`: loading them lazily keeps the import graph acyclic.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["QuantizeConfig", "QuantizedModel", "is_quantized", "points"]
__all__ += ["quantize_model"]
