"""Writes the lowered, planned program as `<name>.h` and `<name>.c`: the
templates in `templates/` filled with data, and the kernel library
sections the program uses."""

import importlib.resources
import re
import string

from keras_mgrade.export.c_backend.planner import resolve
from keras_mgrade.export.c_backend.program import Const
from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Struct

# Kernel library sections, in dependency order, and the sections each
# one uses.
SECTION_ORDER = (
    "core",
    "copy",
    "gather",
    "lut",
    "fill",
    "requant",
    "fc",
    "window",
    "dwconv_general",
    "bcast",
    "add_math",
    "add",
    "mul_math",
    "mul",
    "sqdiff",
    "minmax",
    "mean_math",
    "mean",
    "norm",
)
SECTION_NEEDS = {
    "fc": ("requant",),
    "window": ("requant",),
    "add": ("bcast", "add_math"),
    "mul": ("bcast", "mul_math"),
    "sqdiff": ("bcast",),
    "minmax": ("bcast",),
    "mean": ("mean_math",),
    "norm": ("add_math", "mul_math", "mean_math"),
}
KERNEL_FILES = (
    "mg_kernels.h",
    "mg_kernels.c",
    "mg_fc.c",
    "mg_window.c",
    "mg_elementwise.c",
)
_SECTION = re.compile(r"/\* @section (\w+) \*/\n(.*?)/\* @end \*/\n", re.S)


def _resource(*parts):
    base = importlib.resources.files("keras_mgrade.export.c_backend")
    for p in parts:
        base = base / p
    return base.read_text()


def kernel_sections():
    """{section: (declarations, definitions)} from the kernel library."""
    sections = {}
    for filename in KERNEL_FILES:
        k = 0 if filename.endswith(".h") else 1
        for name, body in _SECTION.findall(_resource("kernels", filename)):
            sections.setdefault(name, ["", ""])[k] += body
    return sections


def kernels_source(needed, flags=None):
    """The kernel code for the sections `needed` and those they use (core
    always), after the variant switches `flags` ({macro: value})."""
    sections = kernel_sections()
    needed = set(needed) | {"core"}
    needed |= {n for s in needed for n in SECTION_NEEDS.get(s, ())}
    parts = [
        "\n".join(f"#define {k} {int(v)}" for k, v in (flags or {}).items())
    ]
    for name in SECTION_ORDER:
        if name in needed:
            declarations, definitions = sections[name]
            parts.append((declarations + definitions).strip("\n"))
    return "\n\n".join(parts)


def _c_value(v, ctype=None):
    if isinstance(v, tuple):
        return "{" + ", ".join(str(int(x)) for x in v) + "}"
    if ctype == "uint32_t":
        return f"0x{int(v):08x}u"
    return str(int(v))


def const_source(c):
    """`static const <type> <name>[n] = {...};` with a comment."""
    per_line = {"mg_requant": 4, "uint32_t": 6}.get(c.ctype, 12)
    values = [_c_value(v, c.ctype) for v in c.values]
    lines = [
        "  " + ", ".join(values[i : i + per_line]) + ","
        for i in range(0, len(values), per_line)
    ]
    comment = f"/* {c.comment} */\n" if c.comment else ""
    align = " MG_ALIGNED" if c.ctype == "int8_t" else ""
    return (
        f"{comment}static const {c.ctype} {c.name}[{len(values)}]{align} = "
        "{\n" + "\n".join(lines) + "\n};"
    )


def _field_value(value):
    if isinstance(value, Const):
        return value.name
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f".{k} = {_field_value(v)}" for k, v in value.items())
            + "}"
        )
    return value if isinstance(value, str) else _c_value(value)


def struct_source(s):
    """`static const <type> <name> = {...};`, one field per line."""
    fields = [f"    .{k} = {_field_value(v)}," for k, v in s.fields.items()]
    return (
        f"static const {s.ctype} {s.name} = {{\n" + "\n".join(fields) + "\n};"
    )


class Renderer:
    """Turns `Ref`s into C expressions, from the plan."""

    def __init__(self, ctx, plan):
        self.ctx = ctx
        self.plan = plan
        self.tensor_consts = {}

    def pointer(self, ref):
        root, offset = resolve(self.ctx.aliases, ref.tensor)
        offset += ref.offset
        kind, index, base = self.plan.location[root]
        if kind == "const":
            t = self.ctx.tensor(root)
            c = self.ctx.const(
                "int8_t", t.data.reshape(-1), f"tensor{root}", str(t.shape)
            )
            expr = c.name
        else:
            expr = {
                "x": "x",
                "y": "y",
                "state": f"state->s{index}",
                "scratch": "scratch",
            }[kind]
            offset += base
        return f"{expr} + {offset}" if offset else expr

    def argument(self, arg):
        if isinstance(arg, Ref):
            return self.pointer(arg)
        if isinstance(arg, Const):
            return arg.name
        if isinstance(arg, Struct):
            return "&" + arg.name
        if isinstance(arg, tuple) and arg[0] == "out":
            return "y" if arg[1] == 0 else f"state->s{arg[1] - 1}"
        return str(arg)

    def step_source(self, step):
        args = ", ".join(self.argument(a) for a in step.args)
        ops = ", ".join(f"#{i}" for i in step.ops)
        comment = f"{ops} {step.comment}".strip()
        return f"  {step.call}({args});  /* {comment} */"


def fill_template(filename, values):
    return string.Template(_resource("templates", filename)).substitute(values)
