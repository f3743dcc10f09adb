"""The package's imports run one way (../shared/DESIGN.md): no import circle, and no module imports
from a layer above its own. Every import counts, also those inside functions."""

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "starlabel"

# From the ground up; a module may import from its own layer and the ones below.
LAYERS = [
    ("io", "grid", "labels", "lsf", "uncertainty", "cores", "continuum", "scheduler", "exclusion"),
    ("model", "similarity", "mock", "baseline"),
    ("evaluation", "validation"),
    ("plots",),
    ("stages", "prepare", "select", "demo", "report"),
    ("cli",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> set[str]:
    """Modules of the package that `path` imports (resolved to the deepest existing module)."""
    is_init = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_init else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out |= {f"{mod}.{a.name}" for a in node.names} | {mod}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("starlabel.")}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in files.items():
        targets = set()
        for t in imports(path, name):
            while t and t not in files:
                t = t.rpartition(".")[0]
            # a package's __init__ re-exports: importing it is not an edge between layers
            if t and t != name and files[t].name != "__init__.py":
                targets.add(t)
        edges[name] = targets
    return edges


def layer(name: str) -> int:
    top = name.split(".")[1] if "." in name else ""
    for i, members in enumerate(LAYERS):
        if top in members:
            return i
    return -1


def test_no_import_circle():
    edges = {k: v for k, v in graph().items() if not k.endswith("__init__")}
    try:
        tuple(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_imports_run_one_way():
    edges = graph()
    unplaced = sorted(m for m in edges if layer(m) < 0 and m != "starlabel" and not m.endswith("__init__")
                      and m.count(".") >= 1)
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets
              if layer(a) >= 0 and layer(b) > layer(a)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))
