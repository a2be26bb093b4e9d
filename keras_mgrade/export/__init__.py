"""From a trained sequence model to a streaming TFLite file.

`streaming_model` builds the single-step model; `export_tflite` converts
it (`convert`), rewrites its I/O to the export contract (`rewrite`,
`variables`), leans the graph and the file for TFLite Micro (`passes`,
`shrink`), verifies it on TFLite Micro (`verify`, `arena`) and reports,
with the 32-bit Cortex-M arena estimate (`estimate`);
`StreamingInterpreter` runs a file on TFLite Micro or LiteRT; `c_source`
writes the C arrays for firmware; `export_c` writes an int8 file's step
as plain C without an interpreter (`c_backend`).
"""

from keras_mgrade.export.arena import find_arena_size
from keras_mgrade.export.c_backend import export_c
from keras_mgrade.export.micro import StreamingInterpreter
from keras_mgrade.export.micro import stream_file
from keras_mgrade.export.streaming import StreamingStep
from keras_mgrade.export.streaming import initial_states
from keras_mgrade.export.streaming import state_specs
from keras_mgrade.export.streaming import stream
from keras_mgrade.export.streaming import streaming_model
from keras_mgrade.export.tflite import export_tflite
