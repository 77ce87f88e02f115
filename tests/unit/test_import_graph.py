"""The packages depend on each other in one direction only, read from every import statement in the code.

common <- configs; the steps (stage, train, infer, evaluate, preflight) <- common; launch <- train (the worker's
option declaration, the torchrun runner) and common; pipelines <- everything. No step reaches into another
step, nothing imports pipelines, and there is no cycle between packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "common": set(),
    "configs": set(),
    "stage": {"common"},
    "train": {"common", "configs"},
    "infer": {"common", "configs"},
    "evaluate": {"common"},
    "preflight": {"common"},
    "launch": {"common", "train"},
    "validate": {"common", "train"},
    "importers": {"common", "validate"},
    "pipelines": {"common", "stage", "train", "infer", "evaluate", "preflight", "launch", "validate", "importers"},
}


def _package_of(path: Path) -> str:
    if path.is_relative_to(ROOT / "pipelines"):
        return "pipelines"
    rel = path.relative_to(ROOT / "components" / "savflow").parts
    return rel[0] if len(rel) > 1 else "savflow"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "savflow" and len(parts) > 1 and parts[1] in ALLOWED:
                found.add(parts[1])
    return found


def _graph() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the files that import it."""
    graph: dict[str, dict[str, set[str]]] = {}
    files = [*(ROOT / "components" / "savflow").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]
    for path in files:
        if "__pycache__" in path.parts:
            continue
        package = _package_of(path)
        for dep in _imports(path) - {package}:
            graph.setdefault(package, {}).setdefault(dep, set()).add(str(path.relative_to(ROOT)))
    return graph


def test_each_package_imports_only_what_it_may() -> None:
    wrong = {f"{pkg} -> {dep}": sorted(files) for pkg, deps in _graph().items() for dep, files in deps.items()
             if dep not in ALLOWED.get(pkg, set())}
    assert not wrong, wrong


def test_no_cycles_between_packages() -> None:
    graph = {pkg: set(deps) for pkg, deps in _graph().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in list(graph):
        if node not in state:
            visit(node, [node])
