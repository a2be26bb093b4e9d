"""The lowered program: kernel calls over tensors, constant tables, and the
registry that maps each TFLite operator to its emitter.

An emitter turns one operator into `Step`s (kernel calls) and the constant
data they need; the registry is a dict looked up in one place
(`emitter_for`), so an operator without an emitter fails with an error
naming it.
"""

import dataclasses

import numpy as np

EMITTERS = {}
UNARY = {}


def register(*names, unary=None):
    """Registers an emitter for the TFLite operators `names`.

    Args:
        *names: builtin operator names (`"FULLY_CONNECTED"`, ...).
        unary: optional `f(graph, op) -> callable or None`: the exact int8
            function of the operator when it acts elementwise on a single
            int8 input (the others constant), for table lookup and fusion.
    """

    def decorator(fn):
        for name in names:
            EMITTERS[name] = fn
            if unary is not None:
                UNARY[name] = unary
        return fn

    return decorator


class UnsupportedOperatorError(NotImplementedError):
    """An operator (or an operator configuration) the C backend lacks."""


def emitter_for(op):
    """The registered emitter of `op`, or a clear error naming it."""
    fn = EMITTERS.get(op.name)
    if fn is None:
        raise UnsupportedOperatorError(
            f"The C backend has no kernel for the TFLite operator "
            f"{op.name} (operator #{op.index}). Expected one of "
            f"{sorted(EMITTERS)}. Received: op={op.name!r}"
        )
    return fn


def unsupported(op, what, value):
    """An `UnsupportedOperatorError` for a configuration of `op`."""
    return UnsupportedOperatorError(
        f"The C backend does not support {op.name} (operator #{op.index}) "
        f"with this {what}. Received: {what}={value!r}"
    )


@dataclasses.dataclass(frozen=True)
class Ref:
    """A pointer to tensor `tensor`'s data, `offset` bytes in."""

    tensor: int
    offset: int = 0


@dataclasses.dataclass
class Const:
    """A `static const` array of the generated source."""

    name: str
    ctype: str
    values: list
    comment: str = ""

    @property
    def nbytes(self):
        return len(self.values) * CTYPE_BYTES[self.ctype]


@dataclasses.dataclass
class Struct:
    """A `static const` parameter struct of the generated source."""

    name: str
    ctype: str
    fields: dict
    comment: str = ""


@dataclasses.dataclass
class Step:
    """One kernel call.

    Attributes:
        call: the C function.
        args: arguments: `Ref`, `Const`, `Struct` (passed by address),
            int, or a C expression string.
        reads: tensors read; writes: tensors written.
        ops: source operator indices (for the comment).
        comment: what the step computes.
        sections: kernel library sections it needs.
        macs: multiply-accumulates per call.
        elementwise: output element i depends only on input element i
            (so the output may overwrite a same-layout input).
        features: kernel variants it needs: macro names set to 1
            (`"MG_EXACT"`: requantization without the 2^30 bound;
            `"MG_FC_ROWS"`: rows outside 4-row blocks) or `(macro,
            value)` pairs, the largest value over all steps kept.
        overwrites: `{output: input}`: the output may be written over
            that input's storage (the kernel reads each byte first).
    """

    call: str
    args: list
    reads: list
    writes: list
    ops: list
    comment: str
    sections: tuple = ()
    macs: int = 0
    elementwise: bool = False
    features: tuple = ()
    overwrites: dict = dataclasses.field(default_factory=dict)


CTYPE_BYTES = {
    "int8_t": 1,
    "uint8_t": 1,
    "int16_t": 2,
    "uint16_t": 2,
    "int32_t": 4,
    "uint32_t": 4,
    "mg_requant": 8,
}


class Context:
    """What the emitters write into: steps, constants, structs, aliases."""

    def __init__(self, graph):
        self.graph = graph
        self.steps = []
        self.consts = []
        self.structs = []
        self.aliases = {}  # tensor -> (base tensor, byte offset)
        self._const_index = {}

    def tensor(self, index):
        return self.graph.tensors[index]

    def _shared(self, key, make, into):
        if key not in self._const_index:
            self._const_index[key] = make()
            into.append(self._const_index[key])
        return self._const_index[key]

    def const(self, ctype, values, name, comment=""):
        """A constant array, shared with an identical earlier one."""
        values = [v if isinstance(v, tuple) else int(v) for v in values]
        return self._shared(
            (ctype, tuple(values)),
            lambda: Const(name, ctype, values, comment),
            self.consts,
        )

    def struct(self, ctype, fields, name, comment=""):
        """A parameter struct, shared with an identical earlier one."""
        return self._shared(
            (ctype, tuple((k, _key(v)) for k, v in fields.items())),
            lambda: Struct(name, ctype, fields, comment),
            self.structs,
        )

    def alias(self, tensor, base, offset=0):
        """`tensor` is a view of `base`'s storage, `offset` bytes in."""
        self.aliases[tensor] = (base, offset)

    def emit(self, step):
        self.steps.append(step)


def _key(value):
    if isinstance(value, dict):
        return tuple((k, _key(v)) for k, v in value.items())
    return value.name if isinstance(value, Const | Struct) else value


def requant(multiplier, shift):
    """`(mult, left, right)` of a TFLite multiplier and shift."""
    return (int(multiplier), max(int(shift), 0), max(-int(shift), 0))


def shape_of(tensor):
    return tuple(tensor.shape)


def flat(values):
    return np.asarray(values).reshape(-1)
