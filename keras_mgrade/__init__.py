"""keras_mgrade: mGRADE sequence models for Keras 3, from training to
int8 streaming inference on microcontrollers.

Importing the package loads the layers, the builders, the memory
accounting and quantization-aware training (so that `.keras` files with
them load); the exporter (`keras_mgrade.export`, which needs TensorFlow to
convert) is imported on first use.
"""

from keras_mgrade import activations
from keras_mgrade import core
from keras_mgrade import layers
from keras_mgrade import memory
from keras_mgrade import models
from keras_mgrade import ops
from keras_mgrade import quantization

__version__ = "0.1.0.dev0"
