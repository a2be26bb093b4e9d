"""An interpreter-free C backend: an int8 streaming `.tflite` file as
plain C99, bit-exact with TFLite Micro.

`export_c` reads the file (the single source of truth), computes at
generation time everything TFLite Micro computes at start-up
(multipliers, shifts, folded zero points, tables of unary operators),
plans the memory statically and writes `<name>.h` and `<name>.c`.
"""

from keras_mgrade.export.c_backend.export import export_c
from keras_mgrade.export.c_backend.generator import generate
from keras_mgrade.export.c_backend.program import UnsupportedOperatorError
