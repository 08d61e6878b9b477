"""The package's floors, read from its own imports with ``ast`` (every ``import`` statement, also those inside
functions: a lazy import is still a dependency).

Rules: no import circle between modules; no two packages that import each other; every import across packages
goes to a lower floor of :data:`FLOORS` (packages on one floor do not import each other). ``python
tests/test_layout.py`` prints the numbers (circles, mutual pairs, upward imports, Python lines per package).
"""

from __future__ import annotations

import ast
import functools
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "earn_export"

# lowest first; a "package" is a sub-package or a top-level module of earn_export
FLOORS = [
    {"errors", "lazy_import"},  # the standard library only
    {"atomic"},  # atomic output directories
    {"data", "search"},  # numpy; item catalog, trie, prompts; beam search
    {"engine"},  # the engine directory format: manifest, prompt pieces, trie files, attention mode
    {"ops"},  # earn::CompactedAttention: torch op, ONNX node, compiled libraries
    {"model"},  # the one model definition, checkpoints
    {"cli_args"},  # argument types and checks shared by the commands
    {"analysis", "convert", "runtime"},  # attention analysis; pretrained -> EARN; Recommender
    {"export", "serve", "tensorrt"},  # ONNX export + parity check; Triton serving; TensorRT engines
    {"train"},  # training and evaluation (also of exported and quantized engines)
    {"workflow", "bench", "cli"},  # the end-to-end workflow (demo), benchmarks, the command line
]
# circles that another branch of the redesign removes; the test fails once one is gone (then delete it here)
PENDING_CIRCLES: list[set[str]] = []  # none left


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the earn_export modules it imports (``from pkg import name`` counts as ``pkg.name`` when that is a
    module, else as ``pkg``)."""
    mods = modules()
    graph = defaultdict(set)
    for name, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                if target != "earn_export" and not target.startswith("earn_export."):
                    continue
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    graph[name].add(target)
    return graph


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "": the root package (imported by every submodule anyway)


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for start in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(comp)
    return found


def package_edges(graph) -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the module imports behind it."""
    edges = defaultdict(list)
    for a, targets in graph.items():
        for b in targets:
            pa, pb = package(a), package(b)
            if pa != pb and pb:
                edges[(pa, pb)].append(f"{a} -> {b}")
    return edges


def floor_of(pkg: str) -> int | None:
    return next((i for i, floor in enumerate(FLOORS) if pkg in floor), None)


@functools.lru_cache(maxsize=1)
def report() -> dict:
    graph = import_graph()
    edges = package_edges(graph)
    mutual = sorted({tuple(sorted(pair)) for pair in edges if pair[::-1] in edges})
    upward = {pair: why for pair, why in edges.items()
              if pair[0] and floor_of(pair[0]) is not None and floor_of(pair[1]) is not None
              and floor_of(pair[1]) >= floor_of(pair[0])}
    lines = defaultdict(int)
    for name, (path, _) in modules().items():
        lines[package(name) or "__init__"] += len(path.read_text().splitlines())
    return {"circles": circles(graph), "mutual": mutual, "upward": upward, "lines": dict(lines),
            "packages": sorted({package(m) for m in modules()} - {""})}


def test_every_package_has_a_floor():
    missing = [p for p in report()["packages"] if floor_of(p) is None]
    assert not missing, f"packages without a floor: {missing} — add them to FLOORS in {__file__}"


def test_no_import_circle():
    found = report()["circles"]
    pending = [c for c in PENDING_CIRCLES if c not in found]
    assert not pending, f"{pending} no longer exist: remove them from PENDING_CIRCLES"
    new = [sorted(c) for c in found if c not in PENDING_CIRCLES]
    assert not new, f"import circles: {new}"


def test_no_mutual_package_pair():
    assert not report()["mutual"], report()["mutual"]


def test_imports_go_down_the_floors():
    upward = report()["upward"]
    assert not upward, "imports to the same or a higher floor:\n" + "\n".join(
        f"{a} -> {b}: {why[:3]}" for (a, b), why in sorted(upward.items()))


def test_no_test_module_imports_another():
    """Shared test code lives in tests/helpers.py (and the other non-test modules), not in test modules."""
    found = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith(("test_", "conftest"))]
    assert not found, found


if __name__ == "__main__":
    r = report()
    print(f"module circles: {len(r['circles'])}")
    for c in r["circles"]:
        print("  ", sorted(c))
    print(f"mutual package pairs: {len(r['mutual'])} {r['mutual']}")
    print(f"upward package imports: {len(r['upward'])}")
    for (a, b), why in sorted(r["upward"].items()):
        print(f"   {a} -> {b}: {why[:2]}")
    print("python lines per package:", dict(sorted(r["lines"].items())), "total", sum(r["lines"].values()))
    sys.exit(0)
