"""Driver behind measure.sh (see there and README.md).

Paths: the tool's outputs go to $TFLM_BUILD (default: build/ next to
measure.sh), the harness sources default to the repository's tflite/, and the
helper scripts run with this interpreter (sys.executable), which must import
keras_mgrade.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))
)  # benchmarks/tflm_source
TB = os.path.abspath(
    os.environ.get("TFLM_BUILD") or os.path.join(HERE, "build")
)
HARNESS_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "tflite"))
PY = sys.executable
BOARD = {
    "m4": "mps2-an386",
    "m4nn": "mps2-an386",
    "m55": "mps3-an547",
    "m55nn": "mps3-an547",
}
LABEL = {
    "host": "host x86-64, reference",
    "m4": "Cortex-M4, reference",
    "m4nn": "Cortex-M4, CMSIS-NN",
    "m55": "Cortex-M55, reference",
    "m55nn": "Cortex-M55, CMSIS-NN",
}
QEMU = [
    "-nographic",
    "-monitor",
    "none",
    "-semihosting-config",
    "enable=on,target=native",
]


def sh(cmd, **kw):
    return subprocess.run(
        cmd, shell=isinstance(cmd, str), capture_output=True, text=True, **kw
    )


def build(cfg, run, kind, out, harness=None, arena=None):
    args = [f"{HERE}/build_prog.sh", cfg, run, kind, out] + (
        [harness, str(arena)] if harness else []
    )
    r = sh(args, env=dict(os.environ, TFLM_BUILD=TB))
    if r.returncode:
        sys.exit(f"build failed ({cfg} {kind}):\n{r.stdout}\n{r.stderr}")


def execute(cfg, elf, plugin=False):
    if cfg == "host":
        r = sh([elf], timeout=600)
        return r.returncode, r.stdout, r.stderr
    cmd = ["qemu-system-arm", "-M", BOARD[cfg]] + QEMU + ["-kernel", elf]
    if plugin:
        nm = sh(["arm-none-eabi-nm", elf]).stdout
        mark = [
            line.split()[0]
            for line in nm.splitlines()
            if line.endswith(" prof_mark")
        ][0]
        cmd += ["-plugin", f"{plugin_path()},mark=0x{mark}", "-d", "plugin"]
    r = sh(cmd, timeout=1200)
    return r.returncode, r.stdout, r.stderr


def plugin_path():
    """The instruction-counting QEMU plugin, built from measure/insnmark.c on
    first use."""
    so = f"{TB}/libinsnmark.so"
    c = f"{HERE}/measure/insnmark.c"
    if not os.path.exists(so) or os.path.getmtime(c) > os.path.getmtime(so):
        os.makedirs(TB, exist_ok=True)
        r = sh(
            [
                os.environ.get("HOST_CC", "cc"),
                "-shared",
                "-fPIC",
                "-O2",
                c,
                "-o",
                so,
            ]
        )
        if r.returncode:
            sys.exit(
                f"building the QEMU plugin failed:\n{r.stdout}\n{r.stderr}"
            )
    return so


def sections(cfg, elf):
    tool = "size" if cfg == "host" else "arm-none-eabi-size"
    out = {}
    for line in sh([tool, "-A", elf]).stdout.splitlines():
        p = line.split()
        if len(p) >= 2 and p[0] in (".text", ".rodata", ".data", ".bss"):
            out[p[0]] = int(p[1])
    return out


def text_by_origin(mapfile):
    """.text bytes by origin from the linker map: TFLM library, C/C++ runtime,
    program."""
    agg = {"tflm": 0, "runtime": 0, "program": 0}
    cur = None
    try:
        lines = (
            open(mapfile)
            .read()
            .split("Linker script and memory map", 1)[1]
            .splitlines()
        )
    except (OSError, IndexError):
        return agg
    for ln in lines:
        m = re.match(r"^ (\.\S+)\s*$", ln)
        if m:
            cur = m.group(1)
            continue
        m = re.match(r"^ (\.\S+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+(\S+)$", ln)
        if m:
            name, size, f = m.group(1), int(m.group(2), 16), m.group(3)
        else:
            m = re.match(r"^\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+(\S+)$", ln)
            if not (m and cur):
                cur = None
                continue
            name, size, f = cur, int(m.group(1), 16), m.group(2)
        cur = None
        if not name.startswith(".text"):
            continue
        key = (
            "tflm"
            if "microlite" in f
            else "program"
            if f.startswith(f"{TB}/runs")
            else "runtime"
        )
        agg[key] += size
    return agg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument(
        "--input",
        help=(
            "float .npy (T, features) or (N, T, features): the streamed samples"
        ),
    )
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--configs", default="host m4 m4nn m55 m55nn")
    ap.add_argument("--harness-dir", default=HARNESS_DIR)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    data = open(a.file, "rb").read()
    tag = (
        os.path.splitext(os.path.basename(a.file))[0]
        + "-"
        + hashlib.sha256(data).hexdigest()[:8]
    )
    run = f"{TB}/runs/{tag}"
    cmd = [
        PY,
        f"{HERE}/measure/prepare.py",
        a.file,
        run,
        "--steps",
        str(a.steps),
    ]
    if a.input:
        cmd += ["--input", a.input]
    r = sh(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if r.returncode:
        sys.exit("prepare failed:\n" + r.stderr[-3000:])
    info = json.load(open(f"{run}/info.json"))
    expected = [
        line.split()
        for line in open(f"{run}/expected.txt").read().split("\n")
        if line
    ]
    harness = os.path.join(
        a.harness_dir,
        "harness_variables.cc"
        if info["state"] == "variables"
        else "harness.cc",
    )
    r = sh(
        [PY, f"{HERE}/measure/estimate.py", "--json", a.file],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    est = (
        json.loads(r.stdout.strip().splitlines()[-1])
        if r.returncode == 0
        else {}
    )
    results = {}
    for cfg in a.configs.split():
        env = f"{TB}/flags/{cfg}.env"
        if not os.path.exists(env):
            print(f"[{cfg}] not built, skipped", file=sys.stderr)
            continue
        lib = re.search(r"LIB='([^']*)'", open(env).read()).group(1)
        if not os.path.exists(lib):
            print(f"[{cfg}] library missing, skipped", file=sys.stderr)
            continue
        print(f"[{cfg}] probe ...", file=sys.stderr)
        res = {"label": LABEL[cfg]}
        elf = f"{run}/{cfg}/probe.elf"
        build(cfg, run, "probe", elf)
        rc, out, err = execute(cfg, elf)
        open(f"{run}/{cfg}/probe.out", "w").write(out + err)
        m = re.search(r"smallest_arena (\d+)", out)
        if rc or not m:
            sys.exit(
                f"[{cfg}] probe failed rc={rc}\n{out[-2000:]}\n{err[-2000:]}"
            )
        S = int(m.group(1))
        res["smallest_arena"] = S
        if cfg in est:
            res["estimate"], res["estimate_terms"] = est[cfg]
        res["arena_used_bytes_at_smallest"] = int(
            re.search(r"arena_used_bytes (\d+)", out).group(1)
        )
        hashes = re.findall(r"^H \d+ ([0-9a-f]{8})$", out, re.M)
        res["all_outputs_identical"] = hashes == [e[1] for e in expected]
        rec = {}
        for name, used, req, cnt in re.findall(
            r"'([^']+)' used (\d+) bytes with alignment overhead "
            r"\(requested (\d+) bytes for (\d+)",
            out + err,
        ):
            rec[name] = [int(used), int(req), int(cnt)]
        for k in ("total", "head", "tail"):
            mm = re.search(rf"Arena allocation {k} (\d+) bytes", out + err)
            if mm:
                rec[k] = int(mm.group(1))
        res["recording"] = rec
        print(f"[{cfg}] firmware (harness, arena {S}) ...", file=sys.stderr)
        elf = f"{run}/{cfg}/fw.elf"
        build(cfg, run, "fw", elf, harness, S)
        rc, out, err = execute(cfg, elf, plugin=cfg != "host")
        open(f"{run}/{cfg}/fw.out", "w").write(out + err)
        ys = re.findall(r"^Y ([0-9a-f]+)$", out, re.M)
        res["harness_setup_at_smallest"] = int(
            re.search(r"^setup (\d+)", out, re.M).group(1)
        )
        mm = re.search(r"arena_used_bytes (\d+)", out)
        res["harness_arena_used_bytes"] = int(mm.group(1)) if mm else None
        res["y_identical"] = rc == 0 and ys == [e[0] for e in expected]
        res["reset_repeats"] = bool(re.search(r"reset_repeats 1", out))
        if cfg != "host":
            deltas = [
                int(d)
                for n, d in re.findall(r"mark (\d+): \+(\d+) insns", err)
                if int(n) % 2 == 1
            ]
            res["insns_per_step_mean"] = (
                round(sum(deltas) / len(deltas)) if deltas else None
            )
            res["insns_per_step_min"] = min(deltas) if deltas else None
            res["insns_per_step_max"] = max(deltas) if deltas else None
        res["sections"] = sections(cfg, elf)
        res["text_by_origin"] = text_by_origin(elf + ".map")
        # one byte less must fail in the harness too (setup returns 3)
        elf2 = f"{run}/{cfg}/fw_minus1.elf"
        build(cfg, run, "fw", elf2, harness, S - 1)
        rc2, out2, err2 = execute(cfg, elf2)
        mm = re.search(r"^setup (\d+)", out2, re.M)
        res["harness_setup_at_smallest_minus_1"] = (
            int(mm.group(1)) if mm else None
        )
        codes = [
            re.search(rf"{k} (\d+)", o)
            for k, o in (
                ("step_before_setup", out),
                ("reset_before_setup", out),
                ("setup_again", out),
                ("step_after_failed_setup", out2),
            )
        ]
        res["harness_error_codes"] = "/".join(
            c.group(1) if c else "?" for c in codes
        )
        # the harness's default arena (no -DMGRADE_ARENA_BYTES)
        elf3 = f"{run}/{cfg}/fw_default.elf"
        build(cfg, run, "fw", elf3, harness, "")
        rc3, out3, err3 = execute(cfg, elf3)
        mm = re.search(r"^setup (\d+)", out3, re.M)
        ys3 = re.findall(r"^Y ([0-9a-f]+)$", out3, re.M)
        res["harness_default_arena_ok"] = bool(
            mm and mm.group(1) == "0" and ys3 == [e[0] for e in expected]
        )
        bss = sections(cfg, elf3).get(".bss", 0)
        res["harness_default_arena_bss"] = bss
        results[cfg] = res
    report(info, results)
    if a.json:
        json.dump(
            {"info": info, "results": results}, open(a.json, "w"), indent=1
        )


def report(info, results):
    print(
        f"file: {info['file']}  ({info['bytes']} B, {info['state']} state, "
        f"{info['num_inputs']} inputs, "
        f"{info['num_outputs']} outputs, {info['steps']} steps)"
    )
    print(f"ops: {' '.join(info['ops'])}")
    cols = [c for c in ("host", "m4", "m4nn", "m55", "m55nn") if c in results]

    def estimate_cell(r):
        if not r.get("estimate"):
            return "-"
        S = r["smallest_arena"]
        return f"{r['estimate']} ({100 * (r['estimate'] - S) / S:+.2f} %)"

    rows = [
        ("smallest working arena (B)", lambda r: r["smallest_arena"]),
        ("  formula estimate (error)", estimate_cell),
        (
            "  harness setup at smallest / smallest-1",
            lambda r: (
                f"{r['harness_setup_at_smallest']} / "
                f"{r['harness_setup_at_smallest_minus_1']}"
            ),
        ),
        (
            "  harness default arena runs, bit-identical",
            lambda r: "yes" if r["harness_default_arena_ok"] else "NO",
        ),
        (
            "  codes: step,reset before setup/setup again/"
            "step after failed setup",
            lambda r: r["harness_error_codes"],
        ),
        (
            "arena_used_bytes() at smallest (B)",
            lambda r: r["arena_used_bytes_at_smallest"],
        ),
        (
            "  recorded head / tail (B)",
            lambda r: (
                f"{r['recording'].get('head')} / {r['recording'].get('tail')}"
            ),
        ),
        (
            "instructions/step, mean",
            lambda r: r.get("insns_per_step_mean", "-"),
        ),
        (
            "  min .. max",
            lambda r: (
                f"{r['insns_per_step_min']}..{r['insns_per_step_max']}"
                if r.get("insns_per_step_min")
                else "-"
            ),
        ),
        (".text (B)", lambda r: r["sections"].get(".text")),
        (
            "  of which TFLM lib / libc+libgcc / program",
            lambda r: "{tflm} / {runtime} / {program}".format(
                **r["text_by_origin"]
            ),
        ),
        (".rodata (B, incl. model)", lambda r: r["sections"].get(".rodata")),
        (".data (B)", lambda r: r["sections"].get(".data")),
        (".bss (B, incl. arena)", lambda r: r["sections"].get(".bss")),
        (
            "y bit-identical to Python runtime",
            lambda r: "yes" if r["y_identical"] else "NO",
        ),
        (
            "all outputs (states) bit-identical",
            lambda r: "yes" if r["all_outputs_identical"] else "NO",
        ),
        (
            "mgrade_reset() repeats the stream",
            lambda r: "yes" if r["reset_repeats"] else "NO",
        ),
    ]
    w = 42
    print(
        "| "
        + "quantity".ljust(w)
        + " | "
        + " | ".join(LABEL[c].rjust(22) for c in cols)
        + " |"
    )
    print(
        "|" + "-" * (w + 2) + "|" + "|".join("-" * 23 + ":" for c in cols) + "|"
    )
    for name, f in rows:
        print(
            "| "
            + name.ljust(w)
            + " | "
            + " | ".join(str(f(results[c])).rjust(22) for c in cols)
            + " |"
        )
    ok = all(
        results[c]["y_identical"] and results[c]["all_outputs_identical"]
        for c in cols
    )
    print(
        f"outputs bit-identical to the Python runtime: {'yes' if ok else 'no'}"
    )


if __name__ == "__main__":
    main()
