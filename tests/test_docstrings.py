"""Every docstring example in the package runs (doctest), on each backend.

The export examples convert with TensorFlow; on the other backends that
goes through a TensorFlow subprocess, so they run on the TensorFlow
backend only.
"""

import doctest
import importlib
import pkgutil

import pytest
from helpers import BACKEND

import keras_mgrade

EXPORT_ONLY = (
    "keras_mgrade.export.micro",
    "keras_mgrade.export.tflite",
    "keras_mgrade.export.c_backend.export",
)
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(keras_mgrade.__path__, "keras_mgrade.")
    if m.name != "keras_mgrade.cli"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name in EXPORT_ONLY and BACKEND != "tensorflow":
        pytest.skip("conversion examples run on the TensorFlow backend")
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS, verbose=False, report=False
    )
    assert result.failed == 0, f"{result.failed} example(s) failed in {name}"
