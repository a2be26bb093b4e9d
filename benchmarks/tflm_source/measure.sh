#!/bin/bash
# measure.sh FILE.tflite [--input X.npy] [--steps 96] [--configs "host m4 m4nn m55 m55nn"] [--harness-dir DIR] [--json OUT]
# Smallest working arena (exact, 1-byte bisection on the target), arena_used_bytes(), QEMU instruction
# counts per mgrade_step (mean over the steps), section sizes of the harness firmware, and a bit-exact
# comparison with keras_mgrade.export.StreamingInterpreter(FILE, "tflm").step_raw.
# Runs with $PYTHON (default python3), which must import keras_mgrade; outputs go to $TFLM_BUILD.
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$PYTHON" "$HERE/measure/measure.py" "$@"
