"""C sources for TFLite Micro firmware: the model as a 16-byte aligned
array, and the exact `MicroMutableOpResolver` registration of its ops."""

import os

from keras_mgrade.export.tflm_ops import RESOLVER_METHODS


def resolver_source(ops, name="model", num_variables=0):
    """The C++ header registering exactly `ops` (TFLite op names), with
    `k<Name>NumVariables`: the resource variables a `state="variables"`
    file needs (`MicroResourceVariables::Create`), 0 for an `io` file."""
    missing = sorted(set(ops) - set(RESOLVER_METHODS))
    if missing:
        raise ValueError(
            f"No TFLite Micro resolver method known for ops {missing}. "
            f"Received: ops={sorted(ops)}"
        )
    ops = sorted(set(ops))
    guard = f"{name.upper()}_OPS_H_"
    lines = [
        f"// Op registration for {name}: exactly the ops the file uses.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
        f"constexpr int k{_camel(name)}NumOps = {len(ops)};",
        f"using {_camel(name)}OpResolver =",
        f"    tflite::MicroMutableOpResolver<k{_camel(name)}NumOps>;",
        f"constexpr int k{_camel(name)}NumVariables = {int(num_variables)};",
        "",
        f"inline TfLiteStatus Register{_camel(name)}Ops(",
        f"    {_camel(name)}OpResolver& resolver) {{",
    ]
    for op in ops:
        lines.append(
            f"  TF_LITE_ENSURE_STATUS(resolver.{RESOLVER_METHODS[op]}());"
        )
    lines += ["  return kTfLiteOk;", "}", "", f"#endif  // {guard}", ""]
    return "\n".join(lines)


def _camel(name):
    return "".join(p.capitalize() for p in name.replace("-", "_").split("_"))


def array_sources(flat, name="model"):
    """`(header, source)`: `g_<name>_data` (16-byte aligned) and
    `g_<name>_data_len`."""
    var = f"g_{name}_data"
    guard = f"{name.upper()}_DATA_H_"
    header = "\n".join(
        [
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            "#include <cstddef>",
            "",
            f"extern const unsigned char {var}[];",
            f"extern const unsigned int {var}_len;",
            f"constexpr unsigned int k{_camel(name)}DataLen = {len(flat)};",
            "",
            f"#endif  // {guard}",
            "",
        ]
    )
    rows = []
    for i in range(0, len(flat), 12):
        chunk = flat[i : i + 12]
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    source = "\n".join(
        [
            f'#include "{name}_data.h"',
            "",
            f"alignas(16) const unsigned char {var}[] = {{",
            *rows,
            "};",
            f"const unsigned int {var}_len = {len(flat)};",
            "",
        ]
    )
    return header, source


def write_c_sources(flat, ops, out_dir, name="model", num_variables=0):
    """Writes `<name>_data.h/.cc` and `<name>_ops.h` into `out_dir`;
    returns their paths. `num_variables`: `len(report["variables"])` for
    a `state="variables"` file."""
    os.makedirs(out_dir, exist_ok=True)
    header, source = array_sources(flat, name)
    paths = {
        "header": os.path.join(out_dir, f"{name}_data.h"),
        "source": os.path.join(out_dir, f"{name}_data.cc"),
        "ops": os.path.join(out_dir, f"{name}_ops.h"),
    }
    for key, text in (
        ("header", header),
        ("source", source),
        ("ops", resolver_source(ops, name, num_variables)),
    ):
        with open(paths[key], "w") as f:
            f.write(text)
    return paths
