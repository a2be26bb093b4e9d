"""Pure functions used by the layers: the parallel scans."""

from keras_mgrade.ops.scan import METHODS
from keras_mgrade.ops.scan import associative_scan
from keras_mgrade.ops.scan import chunked_scan
from keras_mgrade.ops.scan import default_chunk_size
from keras_mgrade.ops.scan import linear_scan
from keras_mgrade.ops.scan import log_scan
from keras_mgrade.ops.scan import resolve_method
from keras_mgrade.ops.scan import sequential_scan
