"""keras_mgrade: mGRADE sequence models for Keras 3, from training to
int8 streaming inference on microcontrollers."""

from keras_mgrade import activations
from keras_mgrade import layers
from keras_mgrade import memory
from keras_mgrade import models
from keras_mgrade import ops
from keras_mgrade import quantization
from keras_mgrade.quantization import model as _quantized_model  # noqa: F401

__version__ = "0.1.0.dev0"
