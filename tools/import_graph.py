"""The import graph of the package, read from the sources with ``ast`` (nothing is imported).

``core/``, ``gateway/`` and ``web/`` are seen as ``mbusgw.core``, ``mbusgw.gateway`` and
``mbusgw.web``. Imports inside functions count like the others (a lazy import is still an
arrow). ``python tools/import_graph.py`` prints the module count per layer, the arrows between
layers and every import circle; ``tests/test_layers.py`` checks the rules on the same graph.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "gateway", "web")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``mbusgw.x.y`` → its source file (``.py`` and Cython ``.pyx``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix not in (".py", ".pyx") or "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(["mbusgw", *parts])] = path
    return modules


def _imported(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> Iterable[str]:
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                name = ".".join(anchor + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            for alias in node.names:
                # ``from a import b``: an arrow to the module ``a.b`` when b is one, else to ``a``
                submodule = f"{name}.{alias.name}"
                yield submodule if submodule in modules else name


def _parse(path: Path) -> ast.AST:
    text = path.read_text()
    if path.suffix == ".pyx":
        # a Cython module is not Python: keep the module of each import line (cimports too)
        names = re.findall(r"^(?:from\s+(\S+)\s+c?import|c?import\s+(\S+))", text, re.M)
        text = "\n".join(f"import {a or b}" for a, b in names if not (a or b).startswith("."))
    return ast.parse(text, str(path))


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the package modules it imports (``from a import b`` names ``a.b`` when that
    is a module, else ``a``)."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in _imported(_parse(path), module, path.stem == "__init__", set(files)):
            if name in files and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def layer(module: str) -> str:
    return module.split(".")[1]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def summary(graph: dict[str, set[str]]) -> str:
    lines = []
    for package in PACKAGES:
        count = sum(1 for m in graph if layer(m) == package)
        lines.append(f"{package}: {count} modules")
    arrows: dict[tuple[str, str], int] = {}
    for module, targets in graph.items():
        for target in targets:
            if layer(module) != layer(target):
                key = (layer(module), layer(target))
                arrows[key] = arrows.get(key, 0) + 1
    for (source, target), count in sorted(arrows.items()):
        lines.append(f"{source} -> {target}: {count} imports")
    web_targets = {t for m, ts in graph.items() if layer(m) == "web" for t in ts}
    lines.append(
        f"gateway modules imported by web: {sum(layer(t) == 'gateway' for t in web_targets)}"
    )
    found = circles(graph)
    lines.append(f"import circles: {len(found)}")
    lines += ["  " + " <-> ".join(component) for component in found]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(import_graph(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)))
