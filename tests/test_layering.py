"""The library layer has no import cycles between its packages, and nothing but ``__main__`` imports the CLI."""
import ast

from conftest import REPO

ROOT = REPO / "qmlp_nncf"


def _edges() -> dict[str, set[tuple[str, str]]]:
    """unit (sub-package or top module) -> {(imported unit, where)} for relative imports."""
    def unit(mod: str) -> str:
        parts = mod.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    edges: dict[str, set] = {}
    for f in ROOT.rglob("*.py"):
        mod = ".".join(f.relative_to(REPO).with_suffix("").parts)
        is_pkg = f.name == "__init__.py"
        mod = mod[: -len(".__init__")] if is_pkg else mod
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = mod.split(".")[: len(mod.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
                for t in [target] if node.module else [f"{target}.{a.name}" for a in node.names]:
                    if unit(mod) != unit(t):
                        edges.setdefault(unit(mod), set()).add((unit(t), f"{f.relative_to(REPO)}:{node.lineno}"))
    return edges


def test_no_import_cycles_between_packages():
    edges = _edges()

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, (*seen, n))) for n, _ in edges.get(a, ()))

    cycles = sorted(f"{a} -> {b} ({where})" for a in edges for b, where in edges[a] if reaches(b, a))
    assert not cycles, cycles


def test_only_the_entry_point_imports_the_cli():
    users = sorted(where for a, deps in _edges().items() for b, where in deps if b == "cli" and a != "__main__")
    assert not users, users
