"""The 32-bit Cortex-M arena estimate against arenas measured on TFLite
Micro built from source for Cortex-M4 (`benchmarks/tflm_source/`, see
`benchmarks/RESULTS.md`): the quickstart architecture's int8 file needs
17,468 B with the reference kernels (17,552 B with
`lookup_tables=False`). The estimate depends on the graph's
structure (operators, tensors, channels, the planned head), not on the
weights, so an untrained model of the same architecture must land on it."""

import importlib.util
import os

import numpy as np
import pytest
from helpers import BACKEND

from keras_mgrade.export import estimate
from keras_mgrade.export import export_tflite

# Smallest working arena, reference kernels: the default file (int8
# activations as table lookups) and the file with LOGISTIC.
MEASURED_CORTEX_M4 = {True: 17468, False: 17552}


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="conversion runs on TensorFlow"
)
@pytest.mark.parametrize(
    "lookup_tables, operators, tensors", [(True, 64, 105), (False, 66, 102)]
)
def test_estimate_of_the_quickstart_architecture(
    lookup_tables, operators, tensors, tmp_path
):
    path = os.path.join(
        os.path.dirname(__file__), "..", "..", "examples", "quickstart.py"
    )
    spec = importlib.util.spec_from_file_location("quickstart", path)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    model = quickstart.build(seed=0)
    # Off its initial values (a unit scale or a zero shift would be
    # folded away by the converter), as after training.
    rng = np.random.default_rng(1)
    for w in model.weights:
        value = w.numpy()
        w.assign(value + 0.05 * rng.normal(size=value.shape))
    x = np.random.default_rng(0).normal(size=(16, 48, 2)).astype("float32")
    path = str(tmp_path / "q.tflite")
    report = export_tflite(
        model,
        path,
        quantize="int8",
        representative_data=x,
        lookup_tables=lookup_tables,
        verbose=False,
    )
    assert report["operators"] == operators
    with open(path, "rb") as f:
        data = f.read()
    counts = estimate.counts(data)
    assert (counts["T"], counts["O"], counts["S"]) == (tensors, operators, 1)
    found = report["arena"]
    assert found["cortex_m_estimate"]["head"] == 1600
    measured = MEASURED_CORTEX_M4[lookup_tables]
    error = found["cortex_m_estimate_bytes"] / measured - 1
    assert abs(error) <= 0.005, found
    # Recomputed from the file and the head alone.
    again, parts = estimate.cortex_m_arena(data, 1600)
    assert again == found["cortex_m_estimate_bytes"]
    assert again == -(-max(parts["plan"], parts["final"]) // 4) * 4
