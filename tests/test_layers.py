"""The layers hold: a walk over every import in deqlab (module level and inside functions; only
``if TYPE_CHECKING:`` blocks are exempt) fails on a broken layer rule or an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "deqlab"
FRAMEWORKS = ("typer", "hydra", "omegaconf", "click")
#: the library: knows nothing of the command line, the demos, the reports or the terminal
LIBRARY = ("deqlab.solvers", "deqlab.implicit", "deqlab.models", "deqlab.nethessian", "deqlab.lowrank",
           "deqlab.sysid", "deqlab.errors", "deqlab.npz_files", "deqlab.solver_options", "deqlab.benchmarks")
ABOVE_LIBRARY = ("deqlab.cli", "deqlab.demos", "deqlab.report", "deqlab.settings")
#: inside the library, each package may import only those listed before it
LIBRARY_ORDER = ("deqlab.errors", "deqlab.npz_files", "deqlab.solver_options", "deqlab.solvers", "deqlab.implicit", "deqlab.models",
                 "deqlab.sysid")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):   # `if TYPE_CHECKING:` blocks import for annotations only
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names if (ROOT.parent / f"{name}.{a.name}".replace(".", "/")).exists()
                      or (ROOT.parent / (f"{name}.{a.name}".replace(".", "/") + ".py")).exists()}
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layer_rules(module):
    imported = MODULES[module]
    if not within(module, ("deqlab.cli",)):
        bad = sorted(i for i in imported if within(i, FRAMEWORKS))
        assert not bad, f"{module} imports {bad}: only deqlab.cli may import Typer, Hydra or OmegaConf"
    if within(module, LIBRARY):
        bad = sorted(i for i in imported if within(i, ("rich",) + ABOVE_LIBRARY))
        assert not bad, f"library module {module} imports {bad}"
        rank = next((i for i, p in enumerate(LIBRARY_ORDER) if within(module, (p,))), None)
        if rank is not None:
            later = LIBRARY_ORDER[rank + 1:]
            bad = sorted(i for i in imported if within(i, later))
            assert not bad, f"{module} imports {bad}, a layer above it ({' <- '.join(LIBRARY_ORDER)})"
    if within(module, ("deqlab.settings",)):
        allowed = ("deqlab.settings", "deqlab.errors", "deqlab.solver_options")
        bad = sorted(i for i in imported if i.startswith("deqlab") and not within(i, allowed) or within(i, ("torch", "numpy")))
        assert not bad, f"{module} imports {bad}: settings are standard library only"
    if within(module, ("deqlab.demos", "deqlab.report")):
        bad = sorted(i for i in imported if within(i, ("deqlab.cli",)))
        assert not bad, f"{module} imports {bad}: data flows one way (cli -> demos -> library)"
    if within(module, ("deqlab.report",)):
        bad = sorted(i for i in imported if within(i, ("deqlab.demos",)))
        assert not bad, f"{module} imports {bad}"


def test_no_import_cycles():
    graph = {m: {i for i in imps if i in MODULES and i != m} for m, imps in MODULES.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    # a package's __init__ re-exporting its own submodules is not a cycle of ideas
    real = [c for c in cycles if not _only_package_reexports(c)]
    assert not real, f"import cycles: {real}"


def _only_package_reexports(component: list[str]) -> bool:
    """A cycle made only of a package and its own submodules through the package's ``__init__``."""
    packages = [m for m in component if (ROOT.parent / m.replace(".", "/") / "__init__.py").exists()]
    return len(packages) == 1 and all(m == packages[0] or m.startswith(packages[0] + ".") for m in component)


def test_the_walk_sees_lazy_imports():
    """The walk would have seen today's rule breakers: a function-level import counts."""
    assert "deqlab.implicit.mondeq" in MODULES["deqlab.models.mondeq"]
    assert "rich.console" in MODULES["deqlab.cli.execute"]   # imported inside execute() only
    assert "typer" in MODULES["deqlab.cli.errors"]


PUBLIC_API = {
    "deqlab.implicit": ["fixed_point", "SolveOptions", "deq_hessian", "deq_hessian_parts", "deq_gradient",
                        "DEQHessianOperator", "extreme_eigenvalues", "hutchinson_trace", "model_params", "flatten",
                        "unflatten", "GROUPS"],
    "deqlab.solvers": ["anderson", "broyden", "fixed_point_iteration", "newton", "scipy_root", "scipy_fsolve",
                       "get_solver", "SolverResult"],
    "deqlab.nethessian": ["input_derivatives", "laplacian", "make_mlp"],
    "deqlab.lowrank": ["rank_k_recovery", "least_change", "symmetric_procrustes", "seed_method"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC_API))
def test_public_api_is_re_exported(package):
    import importlib

    module = importlib.import_module(package)
    for name in PUBLIC_API[package]:
        assert hasattr(module, name), f"{package}.{name}"
        assert name in getattr(module, "__all__", [name]), f"{name} missing from {package}.__all__"


def test_readme_examples_use_only_the_public_api():
    """Every ``from deqlab... import`` in the README's Python examples names a package, not a private module,
    and every imported name exists there."""
    import importlib
    import re

    readme = (ROOT.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    imports = [m for block in blocks for m in re.findall(r"^from (deqlab[\w.]*) import \(?([^)\n]*(?:\n[^)\n]*)*?)\)?$",
                                                          block, re.M)]
    assert imports
    for module_name, names in imports:
        module = importlib.import_module(module_name)
        assert module_name == "deqlab" or hasattr(module, "__path__"), f"README imports private module {module_name}"
        for name in re.findall(r"\b\w+\b", re.sub(r"#[^\n]*", "", names)):
            assert hasattr(module, name), f"{module_name}.{name}"
