"""The step-graph core, below the layers: the streaming contract
(`StreamingLayer`), the registry of streamable layer kinds
(`register_streaming`), the quantization points (`points`), running the
step graph (`run_step`, `run_steps`, `run_sequence`, `check_streamable`),
and the interface between quantization-aware training and export
(`QuantizedSteps`).

Layers, quantization and export import this package; it imports none of
them.
"""

from keras_mgrade.core import points
from keras_mgrade.core.contract import StreamingLayer
from keras_mgrade.core.quantized import QuantizedSteps
from keras_mgrade.core.quantized import quantized_steps
from keras_mgrade.core.registry import LayerCost
from keras_mgrade.core.registry import StreamKind
from keras_mgrade.core.registry import find_kind
from keras_mgrade.core.registry import kind_of
from keras_mgrade.core.registry import register_streaming
from keras_mgrade.core.registry import registered
from keras_mgrade.core.registry import unregister_streaming
from keras_mgrade.core.stepping import check_streamable
from keras_mgrade.core.stepping import fold_time
from keras_mgrade.core.stepping import host_pooling_of
from keras_mgrade.core.stepping import run_sequence
from keras_mgrade.core.stepping import run_step
from keras_mgrade.core.stepping import run_steps
from keras_mgrade.core.stepping import state_specs
from keras_mgrade.core.stepping import stateful_layers
