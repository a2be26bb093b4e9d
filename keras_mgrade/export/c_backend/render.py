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

# Kernel library sections, in dependency order.
SECTION_ORDER = (
    "core",
    "copy",
    "gather",
    "lut",
    "lut_range",
    "fill",
    "bcast",
    "fc",
    "dwconv",
    "dwconv_window",
    "dwconv_general",
    "add",
    "mul",
    "sqdiff",
    "minmax",
    "mean",
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
    for k, filename in enumerate(("mg_kernels.h", "mg_kernels.c")):
        for name, body in _SECTION.findall(_resource("kernels", filename)):
            sections.setdefault(name, ["", ""])[k] = body
    return sections


def kernels_source(needed, flags=None):
    """The kernel code for the sections `needed` (core always), after the
    variant switches `flags` ({macro: 0 or 1})."""
    sections = kernel_sections()
    parts = [
        "\n".join(f"#define {k} {int(v)}" for k, v in (flags or {}).items())
    ]
    for name in SECTION_ORDER:
        if name == "core" or name in needed:
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
    return (
        f"{comment}static const {c.ctype} {c.name}[{len(values)}] = {{\n"
        + "\n".join(lines)
        + "\n};"
    )


def struct_source(s):
    fields = []
    for key, value in s.fields.items():
        if isinstance(value, Const):
            value = value.name
        elif not isinstance(value, str):
            value = _c_value(value)
        fields.append(f"    .{key} = {value},")
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
