"""Writes the C sources and the Python-runtime reference for one .tflite file.

usage: prepare.py FILE.tflite OUTDIR [--input X.npy] [--steps N]
OUTDIR gets model_data.h/.cc, model_ops.h, input_data.h, info.json,
expected.txt (per step: y bytes in hex, FNV-1a 32 of all output bytes).
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np

from keras_mgrade.export import StreamingInterpreter
from keras_mgrade.export import c_source
from keras_mgrade.export.rewrite import op_name
from keras_mgrade.export.rewrite import op_names
from keras_mgrade.export.rewrite import read_graph


def fnv(parts):
    h = 0x811C9DC5
    for p in parts:
        for b in np.ascontiguousarray(p).view(np.uint8).ravel().tolist():
            h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


ap = argparse.ArgumentParser()
ap.add_argument("file")
ap.add_argument("out")
ap.add_argument("--input")
ap.add_argument("--steps", type=int, default=96)
a = ap.parse_args()
flat = open(a.file, "rb").read()
os.makedirs(a.out, exist_ok=True)
ops = op_names(flat)
graph = read_graph(flat)
names = set()
for s in graph.subgraphs:
    for op in s.operators:
        if op_name(graph, op) == "VAR_HANDLE":
            o = op.builtinOptions
            names.add(
                (
                    getattr(o, "container", b"") or b"",
                    getattr(o, "sharedName", b"") or b"",
                )
            )
nvar = len(names)
h, c = c_source.array_sources(flat)
open(os.path.join(a.out, "model_data.h"), "w").write(h)
open(os.path.join(a.out, "model_data.cc"), "w").write(c)
open(os.path.join(a.out, "model_ops.h"), "w").write(
    c_source.resolver_source(ops, num_variables=nvar)
)

interp = StreamingInterpreter(a.file, "tflm")
t0 = interp.inputs[0]
feat = t0.shape[1:]
if a.input:
    x = np.load(a.input)
    while x.ndim > len(feat) + 1:
        x = x[0]
else:
    x = (
        np.random.default_rng(0)
        .normal(size=(a.steps,) + feat)
        .astype("float32")
    )
x = x[: a.steps].astype("float32")
T = x.shape[0]
xs = [t0.to_file(x[t][None]) for t in range(T)]
interp.reset()
lines = []
for t in range(T):
    outs = interp.step_raw(xs[t])
    lines.append(
        np.ascontiguousarray(outs[0]).view(np.uint8).tobytes().hex()
        + f" {fnv(outs):08x}"
    )
open(os.path.join(a.out, "expected.txt"), "w").write("\n".join(lines) + "\n")
xb = b"".join(np.ascontiguousarray(v).view(np.uint8).tobytes() for v in xs)
in_bytes = len(xb) // T
out_bytes = (
    int(np.prod(interp.outputs[0].shape)) * interp.outputs[0].dtype.itemsize
)
with open(os.path.join(a.out, "input_data.h"), "w") as f:
    f.write("#pragma once\n#include <stdint.h>\n")
    f.write(
        f"#define MEASURE_STEPS {T}\n"
        f"#define MEASURE_IN_BYTES {in_bytes}\n"
        f"#define MEASURE_OUT_BYTES {out_bytes}\n"
    )
    f.write(f"#define MEASURE_NUM_VARIABLES {nvar}\n")
    f.write(
        f"alignas(16) static const uint8_t kInput[{len(xb)}] = "
        f"{{{','.join(str(b) for b in xb)}}};\n"
    )
info = dict(
    file=os.path.abspath(a.file),
    bytes=len(flat),
    ops=ops,
    num_variables=nvar,
    steps=T,
    in_bytes=in_bytes,
    out_bytes=out_bytes,
    num_inputs=len(interp.inputs),
    num_outputs=len(interp.outputs),
    state=interp.state,
)
json.dump(info, open(os.path.join(a.out, "info.json"), "w"), indent=1)
print(json.dumps(info))
