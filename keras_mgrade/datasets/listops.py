"""ListOps (Nangia & Bowman, 2018), as in the Long Range Arena.

The grammar and sampling follow the Long Range Arena generator (Tay et
al., 2021): operators `MAX`, `MIN`, `MED` (median, rounded down) and `SM`
(sum modulo 10) applied to 2 or more arguments, each a digit `0 ... 9` or a
nested expression, e.g. `[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]` = 9.
"""

import numbers

import numpy as np

from keras_mgrade.datasets import _checks

OPERATORS = ("MIN", "MAX", "MED", "SM")
END = "]"

# Token strings by id; id 0 is padding.
LISTOPS_VOCABULARY = (
    ("<pad>",)
    + tuple(str(d) for d in range(10))
    + tuple("[" + op for op in OPERATORS)
    + (END,)
)
_TOKEN_IDS = {token: i for i, token in enumerate(LISTOPS_VOCABULARY)}


class _TooLong(Exception):
    pass


def _apply(op, values):
    if op == "MIN":
        return min(values)
    if op == "MAX":
        return max(values)
    if op == "MED":
        # int(np.median(values)), as in the LRA generator.
        return int(np.median(values))
    return sum(values) % 10


def _parse(tokens):
    """Parses a token list into a tree (int or `(op, [children])`)."""
    position = 0

    def node():
        nonlocal position
        if position >= len(tokens):
            raise ValueError("unexpected end")
        token = tokens[position]
        position += 1
        if token.isdigit() and len(token) == 1:
            return int(token)
        if token.startswith("[") and token[1:] in OPERATORS:
            children = []
            while position < len(tokens) and tokens[position] != END:
                children.append(node())
            if position >= len(tokens) or not children:
                raise ValueError("unclosed operator or no arguments")
            position += 1
            return (token[1:], children)
        raise ValueError(f"unexpected token {token!r}")

    tree = node()
    if position != len(tokens):
        raise ValueError("trailing tokens")
    return tree


def _is_tree(tree):
    if isinstance(tree, numbers.Integral) and not isinstance(tree, bool):
        return 0 <= tree <= 9
    return (
        isinstance(tree, tuple)
        and len(tree) == 2
        and tree[0] in OPERATORS
        and isinstance(tree[1], (list, tuple))
        and len(tree[1]) >= 1
        and all(_is_tree(child) for child in tree[1])
    )


def _to_tree(tree_or_string, name):
    if isinstance(tree_or_string, str):
        # Parentheses (as in the LRA .tsv files) carry no information.
        tokens = tree_or_string.replace("(", " ").replace(")", " ").split()
        try:
            return _parse(tokens)
        except ValueError as error:
            _checks.fail(
                name, tree_or_string, f"a ListOps expression ({error})"
            )
    if isinstance(tree_or_string, np.ndarray):
        return _to_tree(listops_to_string(tree_or_string), name)
    if not _is_tree(tree_or_string):
        _checks.fail(
            name,
            tree_or_string,
            "a ListOps expression string, an array of token ids, a digit or "
            "a tree `(op, [children])` with op in " + str(OPERATORS),
        )
    return tree_or_string


def listops_evaluate(tree_or_string):
    """The value of a ListOps expression.

    Args:
        tree_or_string: a string such as `"[MAX 2 [SM 4 9 ] ]"` (tokens
            separated by spaces; parentheses are ignored), a 1-D numpy
            array of token ids (see `LISTOPS_VOCABULARY`; padding 0 is
            ignored), or a tree: a digit, or a tuple `(op, [children])` with
            `op` one of `"MIN"`, `"MAX"`, `"MED"`, `"SM"`.

    Returns:
        The int value in `0 ... 9`.

    Example:

    >>> listops_evaluate("[MAX 2 [SM 4 9 ] 0 ]")
    3
    >>> listops_evaluate(("MED", [1, 2, 7, 9]))
    4
    """
    tree = _to_tree(tree_or_string, "tree_or_string")

    def value(node):
        if not isinstance(node, tuple):
            return int(node)
        op, children = node
        return _apply(op, [value(child) for child in children])

    return value(tree)


def listops_to_string(tree_or_ids):
    """The string of a ListOps tree, or of an array of token ids.

    Args:
        tree_or_ids: a tree (a digit, or `(op, [children])`) or a 1-D
            sequence of token ids (padding 0 is dropped).

    Returns:
        The expression, tokens separated by single spaces.

    Example:

    >>> listops_to_string(("MAX", [2, ("SM", [4, 9])]))
    '[MAX 2 [SM 4 9 ] ]'
    >>> listops_to_string([12, 3, 5, 15, 0, 0])
    '[MAX 2 4 ]'
    """
    if _is_tree(tree_or_ids):
        tokens = []

        def emit(node):
            if isinstance(node, tuple):
                tokens.append("[" + node[0])
                for child in node[1]:
                    emit(child)
                tokens.append(END)
            else:
                tokens.append(str(int(node)))

        emit(tree_or_ids)
        return " ".join(tokens)
    ids = np.asarray(tree_or_ids)
    if (
        ids.ndim != 1
        or not np.issubdtype(ids.dtype, np.integer)
        or np.any(ids < 0)
        or np.any(ids >= len(LISTOPS_VOCABULARY))
    ):
        _checks.fail(
            "tree_or_ids",
            tree_or_ids,
            "a tree or a 1-D sequence of token ids in "
            f"[0, {len(LISTOPS_VOCABULARY) - 1}]",
        )
    return " ".join(LISTOPS_VOCABULARY[i] for i in ids.tolist() if i != 0)


def _sample_tree(rng, max_depth, max_args, operator_probability, budget):
    """One tree, as in the LRA generator; raises `_TooLong` past `budget`."""
    length = 0

    def node(depth):
        nonlocal length
        # The root is always an operator; below it, an operator with
        # probability `operator_probability` while depth < max_depth.
        if depth == 0 or (
            depth < max_depth and rng.random() < operator_probability
        ):
            op = OPERATORS[rng.integers(len(OPERATORS))]
            length += 2
            children = [
                node(depth + 1)
                for _ in range(int(rng.integers(2, max_args + 1)))
            ]
            if length > budget:
                raise _TooLong
            return (op, children)
        length += 1
        if length > budget:
            raise _TooLong
        return int(rng.integers(10))

    tree = node(0)
    return tree, length


def listops(
    num_sequences,
    max_length=2000,
    max_depth=10,
    max_args=10,
    min_length=1,
    operator_probability=0.25,
    seed=0,
):
    """ListOps expressions and their values (Long Range Arena task).

    Each expression is sampled as in the LRA generator: the root is an
    operator; every argument is a nested operator with probability
    `operator_probability` (while the nesting is below `max_depth`) and a
    digit otherwise; an operator has `2 ... max_args` arguments drawn
    uniformly. Expressions with fewer than `min_length` or more than
    `max_length` tokens are rejected and drawn again. The LRA benchmark
    uses `max_length=2000`, `min_length=500`, `max_depth=10`,
    `max_args=10`.

    Tokens are mapped to ids by `LISTOPS_VOCABULARY` (`0` padding,
    `1 ... 10` digits 0-9, `11 ... 14` `[MIN`, `[MAX`, `[MED`, `[SM`,
    `15` `]`); sequences are padded with 0 at the end.

    Args:
        num_sequences: int >= 1, the number of expressions.
        max_length: int >= 4, the maximum number of tokens (and the
            width of `x`). Defaults to `2000`.
        max_depth: int >= 1, the maximum nesting of operators (`[MAX 1 2 ]`
            has depth 1). Defaults to `10`.
        max_args: int >= 2, the maximum number of arguments of an
            operator. Defaults to `10`.
        min_length: int in `[1, max_length]`, the minimum number of tokens.
            Defaults to `1`.
        operator_probability: float in `[0, 1]`, the probability that an
            argument is a nested operator. Defaults to `0.25` (LRA).
        seed: int >= 0, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y)`: `x` int32 `(num_sequences, max_length)` token ids,
        `y` int32 `(num_sequences,)` values in `0 ... 9`.

    Example:

    >>> x, y = listops(3, max_length=50, max_depth=3)
    >>> x.shape, y.shape
    ((3, 50), (3,))
    >>> bool(listops_evaluate(listops_to_string(x[0])) == y[0])
    True
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    max_length = _checks.check_int("max_length", max_length, minimum=4)
    max_depth = _checks.check_int("max_depth", max_depth)
    max_args = _checks.check_int("max_args", max_args, minimum=2)
    min_length = _checks.check_int("min_length", min_length)
    if min_length > max_length:
        _checks.fail(
            "min_length", min_length, f"an integer <= max_length={max_length}"
        )
    operator_probability = _checks.check_float(
        "operator_probability", operator_probability, 0.0, 1.0
    )
    rng = _checks.check_seed(seed)
    x = np.zeros((num_sequences, max_length), dtype="int32")
    y = np.zeros((num_sequences,), dtype="int32")
    max_attempts = 1000 * num_sequences + 10000
    attempts = 0
    i = 0
    while i < num_sequences:
        attempts += 1
        if attempts > max_attempts:
            _checks.fail(
                "min_length",
                min_length,
                "a length that the other settings can reach (too many "
                "expressions rejected)",
            )
        try:
            tree, length = _sample_tree(
                rng, max_depth, max_args, operator_probability, max_length
            )
        except _TooLong:
            continue
        if length < min_length:
            continue
        tokens = listops_to_string(tree).split()
        x[i, :length] = [_TOKEN_IDS[token] for token in tokens]
        y[i] = listops_evaluate(tree)
        i += 1
    return x, y
