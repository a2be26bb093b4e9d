"""From the TFLite graph to kernel calls.

Operators are visited in the file's order and handed to their registered
emitters, with two exact rewrites first:

- a chain of unary int8 operators (LOGISTIC, QUANTIZE, MINIMUM with a
  constant, MUL by a constant, RSQRT, ...) whose intermediate results have
  no other reader becomes one 256-entry table lookup, unless every
  operator of the chain has a cheap run-time kernel (the arithmetic
  operators with a constant, `x * x`): then its 256 bytes of flash are
  saved;
- two FULLY_CONNECTED operators on the same input, weights and bias share
  one accumulation and requantize it twice.
"""

from keras_mgrade.export.c_backend import ops_arith  # noqa: F401
from keras_mgrade.export.c_backend import ops_elementwise  # noqa: F401
from keras_mgrade.export.c_backend import ops_movement  # noqa: F401
from keras_mgrade.export.c_backend import ops_unary
from keras_mgrade.export.c_backend.program import UNARY
from keras_mgrade.export.c_backend.program import Context
from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Step
from keras_mgrade.export.c_backend.program import emitter_for
from keras_mgrade.export.c_backend.program import unsupported

# Operators computed at run time rather than tabulated (flash over speed).
RUNTIME = {"ADD", "SUB", "MUL", "MINIMUM", "MAXIMUM", "SQUARED_DIFFERENCE"}


def tabulate(chain):
    """Whether a unary chain becomes a table (else its operators run)."""
    return any(op.name not in RUNTIME for op, _ in chain)


def unary_function(graph, op):
    """The exact int8 function of `op` if it is unary here, else None."""
    builder = UNARY.get(op.name)
    return None if builder is None else builder(graph, op)


def unary_chain(graph, op):
    """`[(op, f), ...]`: the longest chain of unary operators from `op`
    whose intermediate tensors have exactly one reader."""
    f = unary_function(graph, op)
    if f is None:
        return []
    chain = [(op, f)]
    while True:
        out = chain[-1][0].outputs[0]
        readers = graph.consumers(out)
        if out in graph.outputs or len(readers) != 1:
            return chain
        g = unary_function(graph, readers[0])
        if g is None:
            return chain
        chain.append((readers[0], g))


def _data_input(graph, op):
    inputs = [i for i in op.inputs if i >= 0 and not graph.tensors[i].is_const]
    return inputs[0]


def _trim(values):
    """`(lo, entries)`: the table over the inputs where it changes, or
    None when trimming saves too little (less than 32 bytes)."""
    by_input = [values[v & 0xFF] for v in range(-128, 128)]
    first, last = 0, 255
    while first < 255 and by_input[first + 1] == by_input[0]:
        first += 1
    while last > first and by_input[last - 1] == by_input[255]:
        last -= 1
    if 256 - (last - first + 1) < 32:
        return None
    return first - 128, by_input[first : last + 1]


def emit_table(ctx, chain):
    """One table lookup for a chain of unary operators."""
    functions = [f for _, f in chain]

    def composed(v):
        for f in functions:
            v = f(v)
        return v

    first, last = chain[0][0], chain[-1][0]
    names = " -> ".join(op.name for op, _ in chain)
    values = ops_unary.table(composed)
    source = _data_input(ctx.graph, first)
    n = ctx.tensor(last.outputs[0]).size
    name = f"op{first.index}_table"
    trimmed = _trim(values)
    if trimmed is None:
        call, section = "mg_lut", "lut"
        args = [ctx.const("int8_t", values, name, names), Ref(source)]
        args += [Ref(last.outputs[0]), n]
    else:
        lo, entries = trimmed
        table = ctx.const("int8_t", entries, name, f"{names}, inputs {lo}...")
        fields = {"table": table, "n": n, "lo": lo, "last": len(entries) - 1}
        params = ctx.struct("mg_lut_range_params", fields, f"op{first.index}")
        call, section = "mg_lut_range", "lut_range"
        args = [params, Ref(source), Ref(last.outputs[0])]
    ctx.emit(
        Step(
            call,
            args,
            reads=[source],
            writes=[last.outputs[0]],
            ops=[op.index for op, _ in chain],
            comment=names,
            sections=(section,),
            elementwise=True,
        )
    )


def _bias_key(graph, op):
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    return graph.tensors[op.inputs[2]].data.tobytes()


def fc_partners(graph):
    """{first op index: second op} for FULLY_CONNECTED pairs that share
    input, weights and bias values."""
    seen, partners = {}, {}
    for op in graph.operators:
        if op.name != "FULLY_CONNECTED":
            continue
        key = (op.inputs[0], op.inputs[1], _bias_key(graph, op))
        first = seen.get(key)
        if first is None or first.index in partners:
            seen[key] = op
            continue
        partners[first.index] = op
    return partners


def lower(graph):
    """The `Context` (steps, constants, views) of a graph."""
    for i in graph.inputs + graph.outputs:
        t = graph.tensors[i]
        if t.dtype != "int8":
            raise unsupported(
                graph.producer(i) or graph.operators[0],
                f"model input/output #{i} type",
                t.dtype,
            )
    ctx = Context(graph)
    ctx.fc_partner = fc_partners(graph)
    done = {op.index for op in ctx.fc_partner.values()}
    for op in graph.operators:
        if op.index in done:
            continue
        chain = unary_chain(graph, op)
        if chain and tabulate(chain):
            emit_table(ctx, chain)
            done.update(o.index for o, _ in chain)
            continue
        emitter_for(op)(ctx, op)
        done.add(op.index)
    return ctx
