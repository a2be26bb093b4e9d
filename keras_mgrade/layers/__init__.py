"""Layers: the delay convolution, the minimal GRU, the mGRADE block and
streamable pooling heads."""

from keras_mgrade.layers.dcls_conv1d import DCLSConv1D
from keras_mgrade.layers.dcls_conv1d import PositionRange
from keras_mgrade.layers.last_timestep import LastTimestep
from keras_mgrade.layers.mgrade import MGRADE
from keras_mgrade.layers.min_gru import MinGRU
from keras_mgrade.layers.min_gru import MinGRUCell
from keras_mgrade.layers.temporal_mean_pooling import TemporalMeanPooling
