"""Print the import cycles among bench's modules (the plugin folders included, as bench.detectors and
bench.generators), counting module-level imports, function-level (lazy) ones and those only for type checkers
(under ``if TYPE_CHECKING:``, which never run but still tie the modules together).

    python benchmarks/import_cycles.py [ROOT]

ROOT is a checkout (default: this one), e.g. a ``git worktree`` of an older revision. For each strongly connected
group of modules it prints the elementary cycles, each edge marked ``->`` (module level), ``~>`` (lazy: inside a
function) or ``..>`` (type checking only); an edge is as strong as the strongest import along it, a cycle as weak
as its weakest edge. Figures: cycles by kind.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import networkx as nx

PACKAGES = {"bench": "bench", "bench.detectors": "detectors", "bench.generators": "generators"}


def modules(root: Path) -> dict[str, Path]:
    """Every module of bench and its plugin folders under ``root``, by dotted name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((root / folder).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, known: set[str]) -> set[str]:
    """The known modules an import statement in ``module`` imports."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    base = node.module or ""
    if node.level:
        package = module.split(".")[: -node.level] if module not in PACKAGES else module.split(".")[: 1 - node.level]
        base = ".".join([*package, *([base] if base else [])])
    found = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    return found | ({base} if base in known and len(found) < len(node.names) else set())


KINDS = ("module level", "lazy", "type checking only")  # strongest first
ARROWS = ("->", "~>", "..>")


def imports(module: str, path: Path, known: set[str]) -> dict[str, int]:
    """The known modules ``module`` imports, each with the index in :data:`KINDS` of its strongest import."""
    edges: dict[str, int] = {}

    def visit(node: ast.AST, kind: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.body:
                    visit_one(other, 2)
                for other in child.orelse:
                    visit_one(other, kind)
                continue
            visit_one(child, kind)

    def visit_one(child: ast.AST, kind: int) -> None:
        if isinstance(child, ast.Import | ast.ImportFrom):
            for target in _targets(child, module, known) - {module}:
                edges[target] = min(edges.get(target, kind), kind)
        inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        visit(child, max(kind, 1) if inner else kind)

    visit(ast.parse(path.read_text()), 0)
    return edges


def graph(root: Path) -> nx.DiGraph:
    """Modules as nodes, imports as edges with their ``kind`` (an index in :data:`KINDS`)."""
    found = modules(root)
    known = set(found)
    result = nx.DiGraph()
    result.add_nodes_from(found)
    for module, path in found.items():
        for target, kind in imports(module, path, known).items():
            result.add_edge(module, target, kind=kind)
    return result


def report(root: Path) -> list[int]:
    """Print the cycles of ``root``'s modules; return how many there are of each kind in :data:`KINDS`."""
    imports_graph = graph(root)
    counts = [0] * len(KINDS)
    edge_counts = [sum(data["kind"] == k for *_, data in imports_graph.edges(data=True)) for k in range(len(KINDS))]
    print(f"{root}: {imports_graph.number_of_nodes()} modules, {imports_graph.number_of_edges()} imports between them ("
          + ", ".join(f"{n} {kind}" for n, kind in zip(edge_counts, KINDS, strict=True)) + ")")
    groups = [sorted(group) for group in nx.strongly_connected_components(imports_graph) if len(group) > 1]
    for group in sorted(groups):
        print(f"  group of {len(group)}: {', '.join(group)}")
        for cycle in sorted(nx.simple_cycles(imports_graph.subgraph(group)), key=lambda c: (len(c), c)):
            ring = [*cycle, cycle[0]]
            kinds = [imports_graph.edges[a, b]["kind"] for a, b in zip(ring, ring[1:], strict=False)]
            shown = ring[0] + "".join(f" {ARROWS[k]} {b}" for k, b in zip(kinds, ring[1:], strict=True))
            print(f"    {KINDS[max(kinds)]}: {shown}")
            counts[max(kinds)] += 1
    print(f"cycles: {sum(counts)} (" + ", ".join(f"{n} {kind}" for n, kind in zip(counts, KINDS, strict=True)) + ")")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent)
    report(parser.parse_args().root)


if __name__ == "__main__":
    main()
