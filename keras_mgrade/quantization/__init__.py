"""Quantization-aware training that exports to int8 TFLite without
calibration data.

`quantize_model(model)` returns a trainable copy of a streamable sequence
model that runs its int8 step graph in float with fake quantization at
every point where the int8 TFLite file quantizes (the points the layers
mark, `keras_mgrade.core.points`), and learns the activation ranges the
exporter writes into the file.
"""

from keras_mgrade.quantization.config import QuantizeConfig
from keras_mgrade.quantization.model import QuantizedModel
from keras_mgrade.quantization.model import is_quantized
from keras_mgrade.quantization.model import quantize_model

__all__ = ["QuantizeConfig", "QuantizedModel", "is_quantized"]
__all__ += ["quantize_model"]
