"""examples/qat.py at its --fast size: float, PTQ and QAT int8 accuracy."""

import importlib.util
import os

import pytest
from helpers import BACKEND

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the example converts")
def test_qat_example_fast(tmp_path):
    path = os.path.join(ROOT, "examples", "qat.py")
    spec = importlib.util.spec_from_file_location("qat_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    float_acc, qat_acc = module.main(["--fast", "--out", str(tmp_path)])
    assert float_acc >= 80.0
    assert qat_acc >= float_acc - 2.0
    assert (tmp_path / "model_qat_int8.tflite").stat().st_size > 0
    assert (tmp_path / "model_ptq_int8.json").stat().st_size > 0
