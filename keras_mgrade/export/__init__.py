"""From a trained sequence model to a streaming TFLite file."""

from keras_mgrade.export.micro import StreamingInterpreter
from keras_mgrade.export.micro import find_arena_size
from keras_mgrade.export.micro import stream_file
from keras_mgrade.export.streaming import StreamingStep
from keras_mgrade.export.streaming import initial_states
from keras_mgrade.export.streaming import state_specs
from keras_mgrade.export.streaming import stream
from keras_mgrade.export.streaming import streaming_model
from keras_mgrade.export.tflite import export_tflite
