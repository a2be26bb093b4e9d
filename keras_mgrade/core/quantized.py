"""The interface between quantization-aware training and the exporter.

A model trained with fake quantization (`keras_mgrade.quantization`)
derives from `QuantizedSteps`; the exporter and `streaming_model` accept
any such model and talk to it only through these members, so neither
imports the other.
"""


class QuantizedSteps:
    """A sequence model whose step graph runs with learned quantization.

    Subclasses set two attributes (not defined here: on the PyTorch
    backend a class attribute would hide a layer stored on the instance):

    - `source`: the float sequence model whose step graph is quantized;
    - `host_pooling`: bool, whether the host pools the per-step outputs
      (the source ends with a pooling layer the host can run);
    - `traced_ranges`: dict `{graph tensor name: m}` that the `"export"`
      scope fills, for 16-bit activations, with each marked tensor's
      symmetric range `[-m, m]` while TensorFlow traces the step graph
      (the 16x8 exporter imposes them on the converter's calibration).
    """

    def quantization_scope(self, mode):
        """A `keras_mgrade.core.points.Scope` that fake-quantizes every
        point of the step graph with the learned ranges; `mode` is
        `"export"` for the graph the converter sees."""
        raise NotImplementedError

    def check_exportable(self, quantize):
        """Raises a ValueError if the model cannot be written as a
        `quantize` (e.g. `"int8"`) file."""
        raise NotImplementedError


def quantized_steps(model):
    """`model` if it is a `QuantizedSteps`, else None."""
    return model if isinstance(model, QuantizedSteps) else None
