"""The library layer has no import cycles, between its packages or between the modules of one package (imports
inside functions count), no module reaches for another module's ``_private`` names, and nothing but ``__main__``
imports the CLI."""
import ast
import functools
from pathlib import Path

from conftest import REPO

ROOT = REPO / "qmlp_nncf"


@functools.cache
def _modules() -> dict[str, tuple[ast.Module, str, bool]]:
    """dotted module name -> (its parsed source, its path relative to the repository, is it a package)."""
    found = {}
    for f in sorted(ROOT.rglob("*.py")):
        mod = ".".join(f.relative_to(REPO).with_suffix("").parts)
        is_pkg = f.name == "__init__.py"
        found[mod.removesuffix(".__init__")] = (ast.parse(f.read_text()), str(f.relative_to(REPO)), is_pkg)
    return found


def _imports(mod: str) -> list[tuple[ast.ImportFrom | ast.Import, str, list[str]]]:
    """Every import of ``mod`` of a qmlp_nncf module, at any depth (function-local ones too):
    (node, the module it names, the names it takes from it)."""
    tree, _, is_pkg = _modules()[mod]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = mod.split(".")
            base = parts[: len(parts) - node.level + (1 if is_pkg else 0)]
            out.append((node, ".".join(base + ([node.module] if node.module else [])), [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == ROOT.name:
            out.append((node, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node, a.name, []) for a in node.names if a.name.split(".")[0] == ROOT.name]
    return out


def _targets(target: str, names: list[str]) -> list[str]:
    """The modules an import loads: ``from pkg import submodule`` loads the submodule, anything else ``target``."""
    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in _modules()]
    return subs if subs and len(subs) == len(names) else [target, *subs]


def _edges() -> dict[str, set[tuple[str, str]]]:
    """unit (sub-package or top module) -> {(imported unit, where)} for imports between units."""
    def unit(mod: str) -> str:
        parts = mod.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    edges: dict[str, set] = {}
    for mod, (_, path, _) in _modules().items():
        for node, target, names in _imports(mod):
            for t in _targets(target, names):
                if unit(mod) != unit(t):
                    edges.setdefault(unit(mod), set()).add((unit(t), f"{path}:{node.lineno}"))
    return edges


def _cycles(edges: dict[str, set[tuple[str, str]]]) -> list[str]:
    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, (*seen, n))) for n, _ in edges.get(a, ()))

    return sorted(f"{a} -> {b} ({where})" for a in edges for b, where in edges[a] if reaches(b, a))


def test_no_import_cycles_between_packages():
    cycles = _cycles(_edges())
    assert not cycles, cycles


def test_no_import_cycles_between_the_modules_of_a_package():
    """Inside each package, its modules (a sub-package counts as one) import each other without a cycle;
    a package's ``__init__`` counts as a module of it."""
    mods = _modules()
    packages = [m for m, (_, _, is_pkg) in mods.items() if is_pkg]
    cycles = []
    for pkg in packages:
        def member(mod: str):
            """The member of ``pkg`` that ``mod`` belongs to (``pkg.__init__`` for the package itself)."""
            if mod == pkg:
                return f"{pkg}.__init__"
            if not mod.startswith(pkg + "."):
                return None
            return ".".join(mod.split(".")[: pkg.count(".") + 2])

        edges: dict[str, set] = {}
        for mod, (_, path, _) in mods.items():
            a = member(mod)
            if a is None:
                continue
            for node, target, names in _imports(mod):
                for t in _targets(target, names):
                    b = member(t)
                    if b is not None and b != a:
                        edges.setdefault(a, set()).add((b, f"{path}:{node.lineno}"))
        cycles += _cycles(edges)
    assert not cycles, cycles


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_another_modules_private_names():
    """``from .x import _name`` and ``x._name`` (``x`` a qmlp_nncf module imported under that name) are
    reaching into another module: give what other modules use a public name."""
    found = []
    mods = _modules()
    for mod, (tree, path, _) in mods.items():
        aliases = {}  # local name -> the qmlp_nncf module it is bound to
        for node, target, names in _imports(mod):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if f"{target}.{a.name}" in mods:
                        aliases[a.asname or a.name] = f"{target}.{a.name}"
                    elif _private(a.name) and target != mod:
                        found.append(f"{path}:{node.lineno} imports {target}.{a.name}")
            else:
                aliases.update({a.asname: a.name for a in node.names if a.asname})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr) and aliases[node.value.id] != mod):
                found.append(f"{path}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not found, sorted(set(found))


def test_only_the_entry_point_imports_the_cli():
    users = sorted(where for a, deps in _edges().items() for b, where in deps if b == "cli" and a != "__main__")
    assert not users, users


def test_setup_cfg_installs_every_package():
    """A package missing from setup.cfg's explicit list installs nowhere (`pip install -e .` then fails or, for a
    regular install, leaves it out)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = {line.strip() for line in cfg["options"]["packages"].splitlines() if line.strip()}
    found = {".".join(p.parent.relative_to(REPO).parts) for p in ROOT.rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
    assert all((REPO / Path(*name.split("."))).is_dir() or name == "qmlp_nncf.recipes" for name in listed), listed
