"""The crash points the code passes through, read from its source rather than from a list.

Every `crash_point(...)` call under orchestrator/ names a point, either with a literal, with a
module-level constant (of its file, or imported), or with an f-string whose placeholders are a
parameter of the enclosing function (`before_{action}` in `call_once`) or a field of a
parameter's annotated class (`{process.action}_request`, with `process: Process`). A
placeholder takes every value passed for it anywhere in the package, followed the same way; an
expression this cannot follow is an error, so a new point is never missed silently.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"


@dataclass(frozen=True)
class _Site:
    """An expression and where it is: its file and the function around it."""

    expr: ast.expr
    file: Path
    function: ast.FunctionDef | ast.AsyncFunctionDef | None


class _Source:
    """The package's syntax trees, with the lookups the resolution needs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trees = {path: ast.parse(path.read_text(), str(path)) for path in root.rglob("*.py")}

    def calls(
        self,
    ) -> Iterator[tuple[ast.Call, Path, ast.FunctionDef | ast.AsyncFunctionDef | None]]:
        """Every call in the package, with its file and enclosing function."""
        for path, tree in self.trees.items():
            yield from _calls_in(tree, path, None)

    def constant(self, path: Path, name: str) -> tuple[ast.expr, Path] | None:
        """The value of the module-level `name = ...` in the file at `path`, else in the one
        module of the package that defines it (imported from there), with that file."""
        found = [
            (node.value, file)
            for file, tree in sorted(self.trees.items(), key=lambda item: item[0] != path)
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(target, ast.Name) and target.id == name for target in node.targets)
        ]
        return found[0] if found else None

    def field_position(self, cls: str, name: str) -> int | None:
        """Where class `cls` declares the annotated field `name` among its fields, if it does."""
        for tree in self.trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name == cls:
                    declared = [
                        s.target.id
                        for s in node.body
                        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                    ]
                    if name in declared:
                        return declared.index(name)
        return None

    def arguments(self, callee: str, name: str, position: int) -> list[_Site]:
        """What every call of `callee` passes as its parameter `name` at `position`."""
        passed = []
        for call, path, function in self.calls():
            if _called_name(call) != callee:
                continue
            given = [k.value for k in call.keywords if k.arg == name]
            if not given and position < len(call.args):
                given = [call.args[position]]
            passed += [_Site(expr, path, function) for expr in given]
        return passed


def _calls_in(
    node: ast.AST, path: Path, function: ast.FunctionDef | ast.AsyncFunctionDef | None
) -> Iterator[tuple[ast.Call, Path, ast.FunctionDef | ast.AsyncFunctionDef | None]]:
    for child in ast.iter_child_nodes(node):
        inner = child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
        if isinstance(child, ast.Call):
            yield child, path, function
        yield from _calls_in(child, path, inner)


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _where(source: _Source, site: _Site) -> str:
    return f"{site.file.relative_to(source.root.parent)}:{site.expr.lineno}"


def _values(source: _Source, site: _Site) -> set[str]:
    """Every string the expression can be, followed through parameters and class fields."""
    expr = site.expr
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.JoinedStr):
        parts = [
            _values(source, _Site(part.value, site.file, site.function))
            if isinstance(part, ast.FormattedValue)
            else _values(source, _Site(part, site.file, site.function))
            for part in expr.values
        ]
        return {"".join(choice) for choice in itertools.product(*parts)}
    sites: list[_Site] = []
    function = site.function
    if isinstance(expr, ast.Name) and (constant := source.constant(site.file, expr.id)):
        sites = [_Site(constant[0], constant[1], None)]
    elif isinstance(expr, ast.Name) and function is not None:
        positional = [a.arg for a in function.args.args]
        if expr.id in positional or expr.id in [a.arg for a in function.args.kwonlyargs]:
            position = positional.index(expr.id) if expr.id in positional else len(positional)
            sites = source.arguments(function.name, expr.id, position)
    elif isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and function:
        annotations = {
            a.arg: a.annotation for a in (*function.args.args, *function.args.kwonlyargs)
        }
        annotation = annotations.get(expr.value.id)
        cls = annotation.id if isinstance(annotation, ast.Name) else None
        position = source.field_position(cls, expr.attr) if cls else None
        if cls and position is not None:
            sites = source.arguments(cls, expr.attr, position)
    if not sites:
        raise AssertionError(
            f"{_where(source, site)}: cannot tell which crash point {ast.unparse(expr)!r} names; "
            "write it as a literal, or teach tests/crash_points.py to follow it"
        )
    return set().union(*(_values(source, s) for s in sites))


def points_in_code(root: Path = PACKAGE) -> dict[str, str]:
    """Every crash point named under `root`, with where its (first) call is."""
    source = _Source(root)
    points: dict[str, str] = {}
    for call, path, function in source.calls():
        if _called_name(call) != "crash_point":
            continue
        [argument] = call.args
        site = _Site(argument, path, function)
        for point in _values(source, site):
            points.setdefault(point, _where(source, site))
    return points


def point_of(kill: str) -> str:
    """The point of an `ORCH_CRASH_AT` value: "after_deliver:4" -> "after_deliver"."""
    return kill.partition(":")[0]
