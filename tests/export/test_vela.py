"""The int8 file without lookup tables compiles for an Arm Ethos-U NPU
with `vela` (the `ethos-u-vela` package) with every operator on the NPU."""

import csv
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import BACKEND

from keras_mgrade.export import export_tflite
from keras_mgrade.export.rewrite import op_names
from keras_mgrade.models import mgrade_classifier


def _vela():
    """The vela command: on PATH, or beside this Python."""
    return shutil.which("vela") or shutil.which(
        "vela", path=os.path.dirname(sys.executable)
    )


pytestmark = [
    pytest.mark.skipif(
        BACKEND != "tensorflow", reason="conversion runs on TensorFlow"
    ),
    pytest.mark.skipif(
        _vela() is None, reason="vela not installed (pip install ethos-u-vela)"
    ),
]


def test_int8_file_runs_on_the_npu(tmp_path):
    model = mgrade_classifier(
        2, 4, units=16, num_layers=2, kernel_taps=4, max_delay=12, seed=0
    )
    x = np.random.default_rng(0).normal(size=(32, 24, 2)).astype("float32")
    path = str(tmp_path / "m.tflite")
    # Ethos-U runs LOGISTIC itself (as a table): no GATHER lookups.
    report = export_tflite(
        model,
        path,
        quantize="int8",
        representative_data=x,
        lookup_tables=False,
        verbose=False,
    )
    vela = _vela()
    out = tmp_path / "vela"
    result = subprocess.run(
        [
            vela,
            path,
            "--accelerator-config",
            "ethos-u55-128",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPU operators = 0 (0.0%)" in result.stdout, result.stdout
    (summary,) = glob.glob(str(out / "*_summary_*.csv"))
    row = next(csv.DictReader(open(summary)))
    assert int(row["passes_before_fusing"]) >= report["operators"]
    assert float(row["nn_macs"]) > 0
    # The compiled file holds only the NPU's custom operator.
    (compiled,) = glob.glob(str(out / "*_vela.tflite"))
    with open(compiled, "rb") as f:
        data = f.read()
    assert op_names(data) == ["CUSTOM"]
    assert b"ethos-u" in data
