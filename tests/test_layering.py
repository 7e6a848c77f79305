"""The package's layering, read from its imports (module- and function-level alike)."""

import ast
import os
from typing import Dict, List, Set, Tuple

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modelzoo")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _modules() -> Dict[str, str]:
    out = {}
    for root, _, names in os.walk(PKG):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                out[_module_name(path)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports() -> List[Tuple[str, str, str]]:
    """``(importer, imported module, imported name or "")`` for every import in the package."""
    modules = _modules()
    found = []
    for module, path in modules.items():
        tree = ast.parse(open(path).read(), path)
        is_package = path.endswith("__init__.py")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append((module, alias.name, ""))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_package, node)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # "from . import db": a module, not a name
                        found.append((module, sub, ""))
                    else:
                        found.append((module, target, alias.name))
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_dataset_and_engine_do_not_import_each_other_both_ways():
    edges: Set[Tuple[str, str]] = {(a, b) for a, b, _ in _imports()}
    engine_to_dataset = [(a, b) for a, b in edges if _within(a, "modelzoo.engine") and b == "modelzoo.dataset"]
    assert not engine_to_dataset, f"the engine imports dataset.py: {engine_to_dataset}"


def test_no_cycles_between_dataset_and_engine():
    edges: Dict[str, Set[str]] = {}
    for a, b, _ in _imports():
        if a.startswith("modelzoo") and b.startswith("modelzoo"):
            edges.setdefault(a, set()).add(b)

    def reaches(start: str, goal_pkg: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for n in edges.get(m, ()):
                if _within(n, goal_pkg):
                    return True
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return False

    engine_modules = [m for m in _modules() if _within(m, "modelzoo.engine")]
    assert not any(reaches(m, "modelzoo.dataset") for m in engine_modules)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_another_modules_private_names():
    offenders = [
        f"{importer} imports {module}.{name}"
        for importer, module, name in _imports()
        if module.startswith("modelzoo") and _private(name)
    ]
    assert not offenders, "\n".join(offenders)


def test_no_module_uses_private_methods_defined_in_another():
    """``other._name`` where ``_name`` is a function, method or class defined
    only in another module of the package (``self._x`` / ``cls._x`` are fine)."""
    defined: Dict[str, Set[str]] = {}
    trees = {m: ast.parse(open(p).read(), p) for m, p in _modules().items()}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
                defined.setdefault(node.name, set()).add(module)
    offenders = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr in defined and module not in defined[node.attr]):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            offenders.append(f"{module}:{node.lineno} uses {node.attr} (defined in {sorted(defined[node.attr])})")
    assert not offenders, "\n".join(offenders)
