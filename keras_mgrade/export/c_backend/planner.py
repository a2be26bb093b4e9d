"""The static memory plan: where every tensor of the step lives.

- `x` (the input) and `y` (the output) are the caller's buffers;
- each state lives in its field of the caller's `<name>_state`; the new
  state is written in place when no later kernel still reads the old one
  (otherwise it is computed in scratch and copied at the end of the step);
- constants are `static const` arrays;
- every other tensor gets an offset in one static scratch buffer, reused
  between tensors whose lifetimes do not overlap (greedy by size, as
  TFLite Micro's `GreedyMemoryPlanner`); views (reshapes, contiguous
  slices) share their base tensor's bytes.
"""

import dataclasses

from keras_mgrade.export.c_backend.program import Ref
from keras_mgrade.export.c_backend.program import Step

ALIGN = 4


@dataclasses.dataclass
class Plan:
    """Tensor locations and the scratch size.

    Attributes:
        location: tensor -> `(kind, index, byte offset)`, kind one of
            `"x"`, `"y"`, `"state"`, `"scratch"`, `"const"`.
        steps: the program's steps plus the end-of-step copies.
        scratch_bytes: size of the scratch buffer.
        in_place: state indices whose new value is written in place.
    """

    location: dict
    steps: list
    scratch_bytes: int
    in_place: list


def resolve(aliases, tensor):
    """`(root tensor, byte offset)` of a possibly aliased tensor."""
    offset = 0
    while tensor in aliases:
        tensor, extra = aliases[tensor]
        offset += extra
    return tensor, offset


def _accesses(steps, aliases):
    """root -> ([write step indices], [read step indices])."""
    table = {}
    for k, step in enumerate(steps):
        for kind, tensors in ((0, step.writes), (1, step.reads)):
            for t in tensors:
                root = resolve(aliases, t)[0]
                table.setdefault(root, ([], []))[kind].append(k)
    return table


def _fixed_roots(graph, aliases):
    """Roots that live outside the scratch: input, state inputs, consts."""
    location = {graph.inputs[0]: ("x", 0, 0)}
    for i, t in enumerate(graph.inputs[1:]):
        location[t] = ("state", i, 0)
    for t in graph.tensors:
        if t.is_const:
            location[t.index] = ("const", t.index, 0)
    return location


def _overwrites(step, aliases, root, state_root):
    """Whether `step` may write `root` over the storage of `state_root`."""
    if step.elementwise and len(step.writes) == 1:
        return True
    return any(
        resolve(aliases, out)[0] == root
        and resolve(aliases, into)[0] == state_root
        for out, into in step.overwrites.items()
    )


def _can_write_in_place(graph, steps, aliases, root, state_root, size):
    """Whether output `root` may be written straight into the state
    field that holds `state_root` (the old state)."""
    access = _accesses(steps, aliases)  # small graphs: recomputed per state
    t = graph.tensors[root]
    if t.nbytes != size or root not in access or not access[root][0]:
        return False
    writes = access[root][0]
    first = min(writes)
    for j in access.get(state_root, ([], []))[1]:
        if j > first:
            return False
        if j == first and not (
            len(writes) == 1
            and _overwrites(steps[j], aliases, root, state_root)
        ):
            return False
    return True


def _place_outputs(graph, steps, aliases, location):
    """Places y and the new states; returns the copies to append."""
    access = _accesses(steps, aliases)
    copies, in_place = [], []
    for k, out in enumerate(graph.outputs):
        root, offset = resolve(aliases, out)
        size = graph.tensors[out].nbytes
        kind = ("y", 0, 0) if k == 0 else ("state", k - 1, 0)
        if k == 0:
            ok = root not in location and offset == 0
            ok = ok and graph.tensors[root].nbytes == size
        else:
            state_root = graph.inputs[k]
            ok = root not in location and offset == 0
            ok = ok and _can_write_in_place(
                graph, steps, aliases, root, state_root, size
            )
        if ok:
            location[root] = kind
            if k:
                in_place.append(k - 1)
            continue
        if any(out in step.overwrites for step in steps):
            raise RuntimeError(
                f"Output #{out} must be written in place but its old value "
                "is read later: the lowering should not have fused it"
            )
        # As early as possible: once the value is complete and the old
        # state (if any) has been read for the last time.
        after = max(access.get(root, ([-1], []))[0] or [-1])
        if k:
            reads = access.get(graph.inputs[k], ([], []))[1]
            after = max([after, *reads])
        copies.append(
            (
                after,
                Step(
                    "mg_copy",
                    [("out", k), Ref(out), size],
                    reads=[out],
                    writes=[],
                    ops=[],
                    comment=f"output {k}: copy to its place",
                    sections=("copy",),
                ),
            )
        )
    return copies, in_place


def _lifetimes(steps, aliases, location):
    access = _accesses(steps, aliases)
    spans = {}
    for root, (writes, reads) in access.items():
        if root in location:
            continue
        start = min(writes) if writes else min(reads)
        end = max(reads) if reads else start
        spans[root] = (start, end)
    return spans


def _greedy(spans, sizes):
    """Offsets for buffers with lifetimes, largest first (first fit)."""
    order = sorted(spans, key=lambda r: (-sizes[r], spans[r][0], r))
    placed, offsets = [], {}
    for root in order:
        start, end = spans[root]
        size = -(-sizes[root] // ALIGN) * ALIGN
        busy = sorted(
            (offsets[o], offsets[o] + -(-sizes[o] // ALIGN) * ALIGN)
            for o in placed
            if not (spans[o][1] < start or end < spans[o][0])
        )
        offset = 0
        for low, high in busy:
            if offset + size <= low:
                break
            offset = max(offset, high)
        offsets[root] = offset
        placed.append(root)
    total = max(
        (offsets[r] + -(-sizes[r] // ALIGN) * ALIGN for r in offsets),
        default=0,
    )
    return offsets, total


def _insert(steps, copies):
    """`steps` with each `(after, step)` of `copies` placed after step
    index `after` (-1: first)."""
    result = []
    for k in range(-1, len(steps)):
        if k >= 0:
            result.append(steps[k])
        result.extend(step for after, step in copies if after == k)
    return result


def plan_memory(graph, steps, aliases):
    """The `Plan` of a lowered graph.

    Args:
        graph: the `Graph`.
        steps: the lowered `Step`s, in order.
        aliases: tensor -> (base tensor, byte offset) views.

    Returns:
        A `Plan`.
    """
    location = _fixed_roots(graph, aliases)
    copies, in_place = _place_outputs(graph, steps, aliases, location)
    steps = _insert(steps, copies)
    spans = _lifetimes(steps, aliases, location)
    sizes = {r: graph.tensors[r].nbytes for r in spans}
    offsets, total = _greedy(spans, sizes)
    for root, offset in offsets.items():
        location[root] = ("scratch", 0, offset)
    return Plan(location, steps, total, in_place)
