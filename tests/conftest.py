"""Shared test setup: quiet TensorFlow, seeded randomness, helpers on path.

The suite is written once and run once per backend:
`KERAS_BACKEND=tensorflow|jax|torch python -m pytest`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1337)
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"
