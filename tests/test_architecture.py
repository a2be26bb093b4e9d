"""The package's architecture, read from its source: the layering of its
parts (drawn in the README's "Architecture" section), with lazy imports
inside functions included, and the length of its functions."""

import ast
import os

import pytest

PACKAGE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "keras_mgrade",
)

# A part may import the parts of lower levels, and itself.
LEVELS = {
    "_utils": 0,
    "activations": 0,
    "ops": 1,
    "core": 2,
    "layers": 3,
    "models": 4,
    "memory": 4,
    "callbacks": 4,
    "datasets": 4,
    "quantization": 5,
    "__init__": 6,  # the package root: everything but export and cli
    "export": 7,
    "cli": 8,
}
MAX_FUNCTION_LINES = 80


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, PACKAGE), path


def _part(relative):
    first = relative.split(os.sep)[0]
    return first[:-3] if first.endswith(".py") else first


def _imported_parts(tree):
    """`(line, part)` of every import of keras_mgrade, lazy ones too."""
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "keras_mgrade":
                names = [f"keras_mgrade.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "keras_mgrade":
                yield node.lineno, parts[1] if len(parts) > 1 else "__init__"


def _violations():
    found = []
    for relative, path in _modules():
        part = _part(relative)
        with open(path) as f:
            tree = ast.parse(f.read())
        for line, imported in _imported_parts(tree):
            if imported == part:
                continue
            if imported == "cli" or LEVELS[imported] >= LEVELS[part]:
                found.append(f"{relative}:{line} ({part}) imports {imported}")
    return found


def test_parts_import_only_lower_parts():
    assert _violations() == []


def test_every_part_has_a_level():
    parts = {_part(relative) for relative, _ in _modules()}
    assert parts <= set(LEVELS), parts - set(LEVELS)


def _code_lines(function):
    """Lines of code of a function: from `def` to its end, without its
    docstring, blank lines and comment-only lines."""
    lines = set(range(function.lineno, function.end_lineno + 1))
    body = function.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        lines -= set(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


@pytest.mark.parametrize("relative", sorted(r for r, _ in _modules()))
def test_functions_are_short(relative):
    path = os.path.join(PACKAGE, relative)
    with open(path) as f:
        source = f.read()
    text = source.splitlines()
    long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            count = sum(
                1
                for n in _code_lines(node)
                if text[n - 1].strip()
                and not text[n - 1].strip().startswith("#")
            )
            if count > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({count} lines)")
    assert long == [], f"{relative}: {long}"
