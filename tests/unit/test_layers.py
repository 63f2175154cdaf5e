"""Calls only go downwards: every import in `orchestrator/` points to its own layer or a lower one,
and no stage module imports another (docs/architecture.md, "The rooms").

Imports are read with `ast`, wherever they stand (inside functions and `TYPE_CHECKING` blocks
too): a dependency is one whether it costs at start-up or not. Run this file alone to see every
arrow that runs back up: `python -m pytest tests/unit/test_layers.py -q`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli"),
    ("daemon_app",),
    ("web",),
    ("service",),
    ("workflow",),
    ("imagen", "transfer", "integrations", "store", "apicore", "sandbox"),
    (
        "spec",
        "config",
        "rules",
        "states",
        "retry",
        "progress",
        "crashpoints",
        "display",
        "words",
        "listening",
    ),
    ("imagen.models", "imagen.errors", "integrations.imagga_models"),
    ("errors",),
)
"""Top to bottom; a module belongs to the layer naming its longest prefix. The second to last
holds the clients' vocabularies that the job spec and the rules are written in (Imagen's edit
choices, Imagga's suggestions): they import only the root error."""

STAGES = frozenset({"project", "upload", "processing", "download", "tag", "review", "deliver"})
"""The stage modules of `workflow/`; above them only the modules that know every stage."""
ABOVE_STAGES = frozenset({"journey", "engine", "planning", "shoot_sync", "lease"})


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name, without the `orchestrator.` prefix."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:  # the package's own __init__ holds nothing to place
            found[".".join(parts)] = path
    return found


def imports(source: str, known: set[str]) -> set[str]:
    """The package's modules that `source` imports, by dotted name without the prefix."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from orchestrator.service import jobs` imports a module; `import Store` a name.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}".removeprefix("orchestrator.") in known
                else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            inner = name.removeprefix("orchestrator.")
            if name.startswith("orchestrator.") and inner in known:
                found.add(inner)
    return found


def layer_of(module: str) -> int:
    """The index in LAYERS of the layer naming the longest prefix of `module`."""
    best, best_length = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(f"{prefix}.")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best >= 0, f"orchestrator.{module} is in no layer: add it to LAYERS"
    return best


def graph() -> dict[str, set[str]]:
    """Each module's imports of the package's modules (no module imports itself)."""
    found = modules()
    known = set(found)
    return {
        name: imports(path.read_text(encoding="utf-8"), known) - {name}
        for name, path in found.items()
    }


def upward_arrows(imported: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer's module, as "importer -> imported"."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in imported.items()
        for target in targets
        if layer_of(target) < layer_of(module)
    )


def stage_arrows(imported: dict[str, set[str]]) -> list[str]:
    """Imports of a stage module from another stage module or from a module below the stages,
    and of a module above the stages from one below them."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in imported.items()
        if module.startswith("workflow.") and module.removeprefix("workflow.") not in ABOVE_STAGES
        for target in targets
        if target.startswith("workflow.")
        and target.removeprefix("workflow.") in STAGES | ABOVE_STAGES
    )


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_import_runs_back_up() -> None:
    arrows = upward_arrows(graph())
    assert not arrows, "arrows back up:\n" + "\n".join(arrows)


def test_no_stage_imports_another_stage() -> None:
    arrows = stage_arrows(graph())
    assert not arrows, "stage arrows:\n" + "\n".join(arrows)


def test_the_checks_see_what_they_look_for() -> None:
    source = """
from typing import TYPE_CHECKING
from orchestrator.service import jobs
if TYPE_CHECKING:
    from orchestrator.web.pages import pages_for
def late() -> None:
    import orchestrator.workflow.tag
"""
    known = {"service", "service.jobs", "web", "web.pages", "workflow", "workflow.tag"}
    assert imports(source, known) == {"service.jobs", "web.pages", "workflow.tag"}
    found = {
        "service.jobs": {"web.pages", "workflow.tag", "spec"},
        "workflow.deliver": {"workflow.download", "workflow.context"},
        "workflow.context": {"workflow.journey", "workflow.pipeline"},
        "workflow.journey": {"workflow.tag"},
    }
    assert upward_arrows(found) == ["service.jobs -> web.pages"]
    assert stage_arrows(found) == [
        "workflow.context -> workflow.journey",
        "workflow.deliver -> workflow.download",
    ]
