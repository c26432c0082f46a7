"""Code figures for refactoring notes: app -> app imports (and cycles), Django imports in labseg/ml, and the
longest functions. ``python scripts/code_metrics.py [ROOT]``; reads the source with ``ast``, runs nothing."""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
SKIP = ("migrations", "node_modules", ".venv")


def package_of(module: str) -> str | None:
    """apps.X.* -> apps.X; labseg.ml.* -> labseg.ml; labseg.jobs.* -> labseg.jobs; labseg.* -> labseg."""
    parts = module.split(".")
    if parts[0] == "apps" and len(parts) > 1:
        return ".".join(parts[:2])
    if parts[0] == "labseg":
        return ".".join(parts[:2]) if len(parts) > 1 and (ROOT / "labseg" / parts[1]).is_dir() else "labseg"
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(tree: ast.AST, module: str, is_pkg: bool) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


files = [p for d in ("apps", "labseg") for p in (ROOT / d).rglob("*.py") if not any(s in p.parts for s in SKIP)]
edges: dict[tuple[str, str], list[str]] = defaultdict(list)
django_in_ml, functions = [], []
for path in sorted(files):
    tree = ast.parse(path.read_text(), str(path))
    mod = module_name(path)
    src = package_of(mod)
    for name, line in imports(tree, mod, path.name == "__init__.py"):
        dst = package_of(name)
        if src and dst and dst != src:
            edges[(src, dst)].append(f"{path.relative_to(ROOT)}:{line}")
        if src == "labseg.ml" and (name.startswith("django") or name.startswith("rest_framework")
                                   or name.startswith("apps")):
            django_in_ml.append(f"{path.relative_to(ROOT)}:{line} {name}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))

print("app -> app imports (package -> package: count of import statements)")
for (a, b), where in sorted(edges.items()):
    print(f"  {a} -> {b}: {len(where)}")
graph = defaultdict(set)
for a, b in edges:
    graph[a].add(b)
cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph.get(b, ())})
print("two-way pairs (cycles of length 2):", ", ".join(f"{a} <-> {b}" for a, b in cycles) or "none")
for a, b in cycles:
    for x, y in ((a, b), (b, a)):
        print(f"  {x} -> {y}: " + ", ".join(edges[(x, y)]))


def has_cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


cycle = has_cycle()
print("any cycle:", " -> ".join(cycle) if cycle else "none")
print("Django/DRF/apps imports in labseg/ml:", django_in_ml or "none")
print("10 longest functions (lines):")
for n, where in sorted(functions, reverse=True)[:10]:
    print(f"  {n:4d} {where}")
