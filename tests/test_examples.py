"""The README's main command, at CI size: train, export int8, stream the
test set through TFLite Micro."""

import importlib.util
import os

import pytest
from helpers import BACKEND

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    path = os.path.join(ROOT, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="the demo runs on TensorFlow"
)
def test_quickstart_fast(tmp_path):
    quickstart = _load("quickstart")
    float_acc, micro_acc = quickstart.main(["--fast", "--out", str(tmp_path)])
    assert float_acc >= 90.0
    assert abs(float_acc - micro_acc) <= 2.0
    for name in (
        "model.keras",
        "model_int8.tflite",
        "model_int8.json",
        "model_data.cc",
        "model_data.h",
        "model_ops.h",
        "report.md",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "int8 TFLite Micro" in (tmp_path / "report.md").read_text()
