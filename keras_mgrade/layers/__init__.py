"""Layers: the delay convolution, the minimal GRU, the mGRADE block and
streamable pooling heads. Importing this package also registers the
per-step forms of the stock Keras layers (`streaming_ops`) and of the
causal `keras.layers.Conv1D` (`causal_conv1d`) as streamable kinds."""

from keras_mgrade.layers import causal_conv1d
from keras_mgrade.layers import keras_rnn
from keras_mgrade.layers import streaming_ops
from keras_mgrade.layers.dcls_conv1d import DCLSConv1D
from keras_mgrade.layers.dcls_conv1d import PositionRange
from keras_mgrade.layers.last_timestep import LastTimestep
from keras_mgrade.layers.mgrade import MGRADE
from keras_mgrade.layers.min_gru import MinGRU
from keras_mgrade.layers.min_gru import MinGRUCell
from keras_mgrade.layers.min_gru import TimescaleInitializer
from keras_mgrade.layers.temporal_mean_pooling import TemporalMeanPooling
