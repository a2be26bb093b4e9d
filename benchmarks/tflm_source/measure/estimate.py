"""Smallest TFLite Micro arena of a .tflite file from counts in the file.

estimate = max(planning peak, final) with
  planning peak = tail_plan + 12*(Nscr+12) + 4*S + 24*(T+Nscr) + pad16
                  + 40*(P+Nscr)   (32-bit)
  final         = tail_plan + tail_io + head
  tail_plan     = C + 8*S + 12*T + 32*O + sum_ops(params)
                  + sum_ops(r16(OpData))
                  + sum_{FC,DW per-channel} 2*r16(4*channels) + 4*Nscr
                  + sum_{GATHER} r16(4 + 4*rank(output))
                  (+ variables)
  tail_io       = 2*r16(4*n_io) + (32 + 20)*n_io
T tensors, O operators, S subgraphs, P planned tensors (not constant, not
variable, non-empty), Nscr scratch-buffer requests (3 per int8 MEAN;
CMSIS-NN: 1 per DEPTHWISE_CONV_2D with a buffer), head = greedy plan of
activations + scratch (host print_allocations() "head", equal on 32/64-bit
for the reference kernels; bounded above by the sum of planned tensor bytes).

For a 32-bit Cortex-M with the reference kernels this is the formula of
keras_mgrade.export.estimate.cortex_m_arena; this module adds the 64-bit host
and the CMSIS-NN builds (their OpData, scratch buffers and kernel sums), which
measure.py prints as the "formula estimate" row of every column.

usage: estimate.py FILE.tflite...
           (32-bit ref / CMSIS-NN M4 / CMSIS-NN M55, 64-bit ref)
       estimate.py --json FILE.tflite
           (one line of JSON per build, for measure.py)
"""

import collections
import sys

import numpy as np
from tensorflow.lite.tools import flatbuffer_utils as fu


def r(x, a):
    return (x + a - 1) // a * a


# (OpData bytes, builtin params bytes, params alignment):
# arm-none-eabi-gcc 12.2 32-bit / x86-64
OPS32 = {
    "FULLY_CONNECTED": (48, 5, 1),
    "DEPTHWISE_CONV_2D": (56, 28, 4),
    "ADD": (60, 2, 1),
    "SUB": (52, 2, 1),
    "MUL": (36, 1, 1),
    "LOGISTIC": (16, 0, 1),
    "TANH": (16, 0, 1),
    "MEAN": (44, 1, 1),
    "RSQRT": (28, 0, 1),
    "MINIMUM": (0, 0, 1),
    "MAXIMUM": (0, 0, 1),
    "CONCATENATION": (24, 8, 4),
    "STRIDED_SLICE": (84, 24, 4),
    "RESHAPE": (0, 36, 4),
    "QUANTIZE": (32, 0, 1),
    "GATHER": (0, 8, 4),
    "SQUARED_DIFFERENCE": (112, 0, 1),
    "VAR_HANDLE": (4, 8, 4),
    "ASSIGN_VARIABLE": (0, 0, 1),
    "READ_VARIABLE": (0, 0, 1),
    "CALL_ONCE": (8, 4, 4),
}
OPS64 = dict(OPS32)
OPS64.update(
    {
        "FULLY_CONNECTED": (64, 16, 4),
        "DEPTHWISE_CONV_2D": (72, 28, 4),
        "ADD": (60, 8, 4),
        "SUB": (52, 8, 4),
        "MUL": (36, 4, 4),
        "CONCATENATION": (40, 8, 4),
        "VAR_HANDLE": (4, 16, 8),
    }
)
# CMSIS-NN OpData (32-bit)
NN32 = {"FULLY_CONNECTED": 72, "DEPTHWISE_CONV_2D": 60, "ADD": 60}
ARCH = {
    32: dict(
        E=12,
        N=32,
        TT=32,
        Q=20,
        AI=24,
        SR=12,
        SH=4,
        SO=4,
        SUB=8,
        RV=20,
        RVS=12,
        C=132,
        OPS=OPS32,
    ),
    64: dict(
        E=24,
        N=64,
        TT=64,
        Q=32,
        AI=32,
        SR=16,
        SH=8,
        SO=8,
        SUB=16,
        RV=40,
        RVS=16,
        C=240,
        OPS=OPS64,
    ),
}
RESOURCE = 13  # TensorType.RESOURCE


def file_counts(path):
    g = fu.read_model(path)
    c = collections.Counter()
    ops = []
    var_bytes = {}
    for s in g.subgraphs:
        handle_name = {}
        for op in s.operators:
            if fu.opcode_to_name(g, op.opcodeIndex) == "VAR_HANDLE":
                handle_name[op.outputs[0]] = op.builtinOptions.sharedName
        for op in s.operators:
            if fu.opcode_to_name(g, op.opcodeIndex) == "ASSIGN_VARIABLE":
                v = s.tensors[op.inputs[1]]
                var_bytes[handle_name.get(op.inputs[0])] = int(
                    np.prod(v.shape)
                ) * {9: 1, 7: 2}.get(v.type, 4)
        c["T"] += len(s.tensors)
        c["O"] += len(s.operators)
        c["S"] += 1
        for t in s.tensors:
            data = g.buffers[t.buffer].data
            const = data is not None and len(data) > 0
            if (
                not const
                and not t.isVariable
                and t.type != RESOURCE
                and t.shape is not None
                and np.prod(t.shape) > 0
            ):
                c["P"] += 1
        for op in s.operators:
            name = fu.opcode_to_name(g, op.opcodeIndex)
            info = {"name": name}
            if name in ("FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
                w = s.tensors[op.inputs[1]]
                q = w.quantization
                per_channel = (
                    q is not None and q.scale is not None and len(q.scale) > 1
                )
                info["channels"] = int(
                    w.shape[0] if name == "FULLY_CONNECTED" else w.shape[-1]
                )
                info["per_channel"] = per_channel or name == "DEPTHWISE_CONV_2D"
                if name == "DEPTHWISE_CONV_2D":
                    _, fh, fw, _ = (int(d) for d in w.shape)
                    cin = int(s.tensors[op.inputs[0]].shape[-1])
                    info["dw_scratch"] = {
                        "cmsis_nn_m4": 0
                        if (fh, fw) == (3, 3)
                        else 2 * cin * fh * fw,
                        "cmsis_nn_m55": 4 * 124 * fh * fw,
                    }
            if name == "GATHER":  # its output shape, copied to the tail
                info["rank"] = len(s.tensors[op.outputs[0]].shape)
            ops.append(info)
    c["n_io"] = len(g.subgraphs[0].inputs) + len(g.subgraphs[0].outputs)
    c["variables"] = len(var_bytes)
    c["variable_bytes"] = [var_bytes[k] for k in sorted(var_bytes)]
    return c, ops


def estimate(path, bits=32, kernels="ref", head=None):
    a = ARCH[bits]
    c, ops = file_counts(path)
    nscr = 3 * sum(o["name"] == "MEAN" for o in ops)
    dw_scratch = 0
    tail = a["C"] + a["SUB"] * c["S"] + a["E"] * c["T"] + a["N"] * c["O"]
    for o in ops:
        opdata, params, palign = a["OPS"].get(o["name"], (32, 0, 1))
        if kernels != "ref" and o["name"] in NN32:
            opdata = NN32[o["name"]]
        tail += r(params, max(palign, 1)) + (r(opdata, 16) if opdata else 0)
        if o.get("per_channel"):
            tail += 2 * r(4 * o["channels"], 16)
        if "rank" in o:  # TfLiteIntArray: int size, int data[rank]
            tail += r(4 + 4 * o["rank"], 16)
        if kernels == "cmsis_nn_m55" and o["name"] == "FULLY_CONNECTED":
            tail += r(4 * o["channels"], 16)  # kernel sums (MVE), persistent
        if kernels != "ref" and o.get("dw_scratch", {}).get(kernels):
            nscr += 1  # CMSIS-NN depthwise scratch (head)
            dw_scratch = max(dw_scratch, o["dw_scratch"][kernels])
    tail += a["SH"] * nscr
    if c[
        "variables"
    ]:  # MicroResourceVariables object, its array, one buffer per variable
        tail += (
            r(a["RVS"], 16)
            + r(a["RV"] * c["variables"], 16)
            + sum(r(b, 16) for b in c["variable_bytes"])
        )
    plan = a["SR"] * (nscr + 12) + a["SO"] * c["S"] + a["AI"] * (c["T"] + nscr)
    plan = r(plan, 16) + 40 * (c["P"] + nscr)
    tail_io = 2 * r(a["SH"] * c["n_io"], 16) + (a["TT"] + a["Q"]) * c["n_io"]
    if head is None:
        head = host_head(path)
    # CMSIS-NN: the depthwise scratch is live on top of the reference plan
    head += dw_scratch
    final = tail + tail_io + head
    return r(max(tail + plan, final), 4), dict(
        tail_plan=tail,
        plan_temps=plan,
        tail_io=tail_io,
        head=head,
        counts=dict(c),
        nscr=nscr,
    )


def host_head(path):
    """'Arena allocation head' of the host Python runtime's
    print_allocations()."""
    import subprocess

    code = (
        "from tflite_micro import runtime as r; "
        f"r.Interpreter.from_file({path!r}, arena_size=1 << 20)"
        ".print_allocations()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(__import__("os").environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    import re

    return int(
        re.search(
            r"Arena allocation head (\d+) bytes", out.stdout + out.stderr
        ).group(1)
    )


if __name__ == "__main__":
    import json

    if sys.argv[1] == "--json":  # all variants of one file, for measure.py
        head = host_head(sys.argv[2])
        out = {}
        for key, bits, k in (
            ("host", 64, "ref"),
            ("m4", 32, "ref"),
            ("m4nn", 32, "cmsis_nn_m4"),
            ("m55", 32, "ref"),
            ("m55nn", 32, "cmsis_nn_m55"),
        ):
            out[key] = estimate(sys.argv[2], bits, k, head)
        print(json.dumps(out))
        sys.exit(0)
    for p in sys.argv[1:]:
        for bits, k in (
            (32, "ref"),
            (32, "cmsis_nn_m4"),
            (32, "cmsis_nn_m55"),
            (64, "ref"),
        ):
            e, d = estimate(p, bits, k)
            print(p, bits, k, e, json.dumps(d))
