"""Export from JAX or PyTorch: the model converted in a TensorFlow process.

The TFLite converter needs the TensorFlow backend. `export_in_subprocess`
saves the model to `.keras` (with the arrays of the request as `.npy`
files), runs `python -m keras_mgrade.export.worker REQUEST.json` with
`KERAS_BACKEND=tensorflow`, and returns the report; the worker loads the
model and calls `export_tflite` with the same arguments. An error in the
worker is raised again here with its type and message.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# Arguments passed as .npy files rather than JSON.
_ARRAYS = ("representative_data", "check_data")
_ERRORS = {"ValueError": ValueError, "ImportError": ImportError}


def export_in_subprocess(model, path, **kwargs):
    """`export_tflite(model, path, **kwargs)` in a TensorFlow process.

    Returns:
        The report dict.
    """
    with tempfile.TemporaryDirectory() as tmp:
        request = {
            "model": os.path.join(tmp, "model.keras"),
            "path": os.path.abspath(path),
            "result": os.path.join(tmp, "result.json"),
            "kwargs": {},
        }
        model.save(request["model"])
        for name, value in kwargs.items():
            if name in _ARRAYS and value is not None:
                request["kwargs"][name] = os.path.join(tmp, f"{name}.npy")
                np.save(request["kwargs"][name], value)
            else:
                request["kwargs"][name] = value
        request_path = os.path.join(tmp, "request.json")
        with open(request_path, "w") as f:
            json.dump(request, f)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        proc = subprocess.run(
            [sys.executable, "-m", __name__, request_path],
            env=env,
            capture_output=True,
            text=True,
        )
        return _result(request["result"], proc)


def _result(result_path, proc):
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        if "report" in result:
            return result["report"]
        error = _ERRORS.get(result["type"], RuntimeError)
        raise error(result["message"])
    raise RuntimeError(
        "The TensorFlow export process failed (exit code "
        f"{proc.returncode}):\n{proc.stderr[-4000:]}"
    )


def main(argv=None):
    """Runs one request (see the module docstring)."""
    (request_path,) = argv or sys.argv[1:]
    with open(request_path) as f:
        request = json.load(f)
    try:
        import keras

        import keras_mgrade  # noqa: F401  (registers the layers)
        from keras_mgrade.export.tflite import export_tflite

        kwargs = dict(request["kwargs"])
        for name in _ARRAYS:
            if kwargs.get(name) is not None:
                kwargs[name] = np.load(kwargs[name])
        model = keras.saving.load_model(request["model"], compile=False)
        result = {"report": export_tflite(model, request["path"], **kwargs)}
    except Exception as e:  # reported to the parent process
        result = {"type": type(e).__name__, "message": str(e)}
    with open(request["result"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
