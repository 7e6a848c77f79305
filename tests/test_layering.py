"""The package's layering, read from its imports (module- and function-level alike).

The rule (docs/architecture.md, "The layering rule"): no module of the core
imports a feature package, at module level or inside a function; the one
exception is ``Dataset``'s FiftyOne-named methods listed in
``modelzoo.dataset.FEATURE_DELEGATES``, each a lazy import and one call. And
no two packages import each other, directly or through others.
"""

import ast
import os
from typing import Dict, List, NamedTuple, Set, Tuple

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modelzoo")

#: the core: what runs a model over a dataset and stores its labels
CORE = (
    "modelzoo.models", "modelzoo.mixins", "modelzoo.engine", "modelzoo.loaders", "modelzoo.storage",
    "modelzoo.sample", "modelzoo.labels", "modelzoo.zoo", "modelzoo.db", "modelzoo.dataset", "modelzoo.recipes",
)
#: features: they stand beside the core and import it, never the other way
FEATURES = (
    "modelzoo.ray", "modelzoo.serving", "modelzoo.bundles", "modelzoo.tungsten", "modelzoo.vessl",
    "modelzoo.evaluation", "modelzoo.formats", "modelzoo.drawing", "modelzoo.app",
)

class Import(NamedTuple):
    importer: str   # the importing module
    scope: str      # the enclosing "Class.method" / "function" ("" at module level)
    module: str     # the imported module
    name: str       # the imported name ("" for ``import x`` and for submodules)
    lineno: int
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: no edge at run time


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


def _parse(path: str) -> ast.Module:
    with open(path) as f:
        return ast.parse(f.read(), path)


def _imports() -> List[Import]:
    """Every import in the package, with the function or method it sits in."""
    modules = _modules()
    found: List[Import] = []
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")

        def visit(
            node: ast.AST, scope: str, typing_only: bool = False, module: str = module, is_package: bool = is_package
        ) -> None:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(Import(module, scope, alias.name, "", node.lineno, typing_only))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_package, node)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # "from . import db": a module, not a name
                        found.append(Import(module, scope, sub, "", node.lineno, typing_only))
                    else:
                        found.append(Import(module, scope, target, alias.name, node.lineno, typing_only))
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                children = [(c, True) for c in node.body] + [(c, typing_only) for c in node.orelse]  # else runs
            else:
                children = [(c, typing_only) for c in ast.iter_child_nodes(node)]
            for child, flag in children:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(child, f"{scope}.{child.name}" if scope else child.name, flag)
                else:
                    visit(child, scope, flag)

        visit(_parse(path), "")
    return found


def _within(module: str, packages: Tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _package(module: str) -> str:
    """``modelzoo.engine.run`` -> ``modelzoo.engine``; ``modelzoo.dataset`` stays."""
    return ".".join(module.split(".")[:2])


def _feature_delegates() -> Dict[str, str]:
    """``modelzoo.dataset.FEATURE_DELEGATES``, read from the source (no import)."""
    for node in _parse(os.path.join(PKG, "dataset.py")).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "FEATURE_DELEGATES":
            return ast.literal_eval(node.value)  # type: ignore[arg-type]
    raise AssertionError("modelzoo/dataset.py has no FEATURE_DELEGATES table")


def _core_to_feature() -> List[Import]:
    return [i for i in _imports() if _within(i.importer, CORE) and _within(i.module, FEATURES)]


def test_no_module_of_the_core_imports_a_feature():
    delegates = _feature_delegates()
    offenders = []
    for i in _core_to_feature():
        if i.importer == "modelzoo.dataset" and delegates.get(i.scope) == i.module:
            continue  # a listed delegate (its shape is checked below)
        where = f"{i.importer}:{i.lineno}" + (f" ({i.scope})" if i.scope else "")
        offenders.append(f"{where} imports {i.module}{'.' + i.name if i.name else ''}")
    assert not offenders, (
        "The core imports feature packages (docs/architecture.md, the layering rule). Move the logic into the "
        "feature, or let the feature register itself in a table the core holds:\n" + "\n".join(offenders)
    )


def test_the_scan_sees_imports_inside_methods_with_their_scope():
    """The rule is only as good as the scan: a method-level import is found, with its method."""
    found = {(i.importer, i.scope, i.module, i.name) for i in _imports()}
    assert ("modelzoo.dataset", "SampleCollection.evaluate_detections", "modelzoo.evaluation", "evaluate_detections") in found
    assert ("modelzoo.dataset", "", "modelzoo.engine", "apply_model") in found


def _methods(tree: ast.Module) -> Dict[str, ast.FunctionDef]:
    out = {}
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef):
            for node in cls.body:
                if isinstance(node, ast.FunctionDef):
                    out[f"{cls.name}.{node.name}"] = node
    return out


def test_dataset_feature_delegates_are_one_lazy_import_and_one_call():
    delegates = _feature_delegates()
    methods = _methods(_parse(os.path.join(PKG, "dataset.py")))
    problems = []
    for qualname, module in delegates.items():
        assert _within(module, FEATURES), f"FEATURE_DELEGATES[{qualname!r}] = {module!r} is not a feature package"
        method = methods.get(qualname)
        if method is None:
            problems.append(f"{qualname}: listed in FEATURE_DELEGATES but not defined in modelzoo/dataset.py")
            continue
        body = list(method.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        shape_ok = (
            len(body) == 2
            and isinstance(body[0], ast.ImportFrom)
            and isinstance(body[1], (ast.Return, ast.Expr))
            and isinstance(body[1].value, ast.Call)
        )
        if not shape_ok:
            problems.append(f"{qualname}: must be a docstring, one lazy import of {module} and one call returned")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_packages():
    """Packages are ``modelzoo.<name>`` (a subpackage or a top-level module);
    the root ``modelzoo/__init__.py`` re-exports everything and is left out."""
    edges: Dict[str, Dict[str, str]] = {}
    for i in _imports():
        a, b = _package(i.importer), _package(i.module)
        if i.module.startswith("modelzoo.") and i.importer != "modelzoo" and a != b and not i.typing_only:
            edges.setdefault(a, {}).setdefault(b, f"{i.importer}:{i.lineno}")

    cycles = []
    for start in sorted(edges):
        # a path from one of start's imports back to start
        todo: List[Tuple[str, List[str]]] = [(b, [start, b]) for b in sorted(edges[start])]
        seen: Set[str] = set()
        while todo:
            node, path = todo.pop()
            if node == start:
                cycles.append(" -> ".join(f"{p} ({edges[p][q]})" for p, q in zip(path, path[1:])) + f" -> {start}")
                break
            if node in seen:
                continue
            seen.add(node)
            todo.extend((n, path + [n]) for n in sorted(edges.get(node, {})))
    assert not cycles, "Packages that import each other (each edge: where the import is):\n" + "\n".join(cycles)


def test_every_core_and_feature_package_exists():
    """The two lists name real packages (a renamed package must not slip out of the rule)."""
    modules = _modules()
    missing = [p for p in CORE + FEATURES if p not in modules and p != "modelzoo.app"]  # the viewer is to come
    assert not missing, f"not in modelzoo/: {missing}"


def test_no_module_imports_another_modules_private_names():
    offenders = [
        f"{i.importer} imports {i.module}.{i.name}"
        for i in _imports()
        if i.module.startswith("modelzoo") and _private(i.name)
    ]
    assert not offenders, "\n".join(offenders)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_uses_private_methods_defined_in_another():
    """``other._name`` where ``_name`` is a function, method or class defined
    only in another module of the package (``self._x`` / ``cls._x`` are fine)."""
    defined: Dict[str, Set[str]] = {}
    trees = {m: _parse(p) for m, p in _modules().items()}
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
