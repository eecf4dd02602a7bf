"""The package's import graph: no cycles, and imports only ever point down the pipeline."""

import ast
import fnmatch
import importlib.util
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "parnet_deploy"

# lowest first: a module may import from its own layer's packages or from lower layers only
LAYERS = [
    {"errors", "hardware", "quiet", "version"},
    {"models"},
    {"artifacts"},
    {"data", "compare"},
    {"reparam", "checkpoint", "partition"},
    {"export"},
    {"backends"},
    {"runtime"},
    {"precision"},
    {"engines"},
    {"bench"},
    {"train"},
    {"cli"},
    {"__root__"},  # parnet_deploy/__init__.py: the lazy public facade over the layers below
    {"demo"},  # the quick start's job, written as a user would: through the facade
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def all_modules() -> list[str]:
    return sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def _dict_values(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level ``NAME = {key: "string", ...}`` tables (lazy-import maps), by name."""
    tables = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and len(node.targets) == 1:
            values = [v.value for v in node.value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            if len(values) == len(node.value.values) and isinstance(node.targets[0], ast.Name):
                tables[node.targets[0].id] = values
    return tables


def _strings(node: ast.AST, me: str, tables: dict[str, list[str]]) -> list[str]:
    """The strings an ``import_module`` argument can take: literals, ``__name__``, lookups in a module-level
    table, f-strings of those; anything else is a ``*`` wildcard."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and node.id == "__name__":
        return [me]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in tables:
        return tables[node.value.id]
    if isinstance(node, ast.FormattedValue):
        return _strings(node.value, me, tables)
    if isinstance(node, ast.JoinedStr):
        return ["".join(parts) for parts in itertools.product(*(_strings(v, me, tables) for v in node.values))]
    return ["*"]


def lazy_imports_of(tree: ast.Module, me: str, package: str) -> set[str]:
    """Modules named by ``importlib.import_module(...)`` calls, wildcards matched against the package's modules."""
    tables, found = _dict_values(tree), set()
    for node in ast.walk(tree):
        called = getattr(node, "func", None)
        if not (isinstance(node, ast.Call) and getattr(called, "attr", getattr(called, "id", "")) == "import_module"
                and node.args):
            continue
        anchor = _strings(node.args[1], me, tables) if len(node.args) > 1 else [package]
        for name in _strings(node.args[0], me, tables):
            if name.startswith("."):  # relative to the package argument (``__name__`` of a package: itself)
                name = importlib.util.resolve_name(name, anchor[0])
            found.update(m for m in all_modules() if fnmatch.fnmatchcase(m, name))
    return found


def imports_of(path: Path) -> set[str]:
    """Every parnet_deploy module this file imports, at any depth (function-level imports too, and
    ``importlib.import_module`` lazy imports), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    me = module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    found = lazy_imports_of(tree, ".".join(me), ".".join(package))

    def visit(node):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("parnet_deploy"):
                submodules = {f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")}
                found.update(submodules)  # `from . import graph` imports that module, not the package's names
                if len(submodules) < len(node.names):
                    found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("parnet_deploy"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__root__"


def test_no_module_imports_in_a_cycle():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def dfs(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if nxt not in g:
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            dfs(node, [])
    assert cycles == []


def test_imports_point_down_the_pipeline():
    g = graph()
    unknown = {layer_of(m) for m in g} - set(LAYER)
    assert unknown == set(), f"packages or root modules missing from LAYERS: {unknown}"
    upward = [(m, t) for m, targets in g.items() for t in targets if LAYER[layer_of(t)] > LAYER[layer_of(m)]]
    assert upward == []


def test_the_walker_sees_function_level_imports():
    # the check itself must be able to fail: an import inside a function is found
    probe = PACKAGE / "runtime" / "engines.py"
    assert "parnet_deploy.backends" in imports_of(probe)
    assert any(t.startswith("parnet_deploy.precision") for t in imports_of(PACKAGE / "engines" / "build.py"))


def test_the_walker_sees_lazy_imports():
    # importlib.import_module with literals, __name__, lookups in a module-level table and f-strings of them
    assert {"parnet_deploy.models", "parnet_deploy.reparam", "parnet_deploy.checkpoint"} <= imports_of(
        PACKAGE / "__init__.py")
    assert {"parnet_deploy.models.parnet", "parnet_deploy.models._factory"} <= imports_of(
        PACKAGE / "models" / "__init__.py")
    backends = imports_of(PACKAGE / "backends" / "__init__.py")
    assert {f"parnet_deploy.backends.{b}.backend" for b in ("onnxruntime", "openvino", "tensorrt", "torch")} <= backends
    tree = ast.parse("import importlib\nM = {'a': '..runtime.api'}\nimportlib.import_module(M[k], __name__)\n"
                     "importlib.import_module(f'{__name__}.{x}')\n")
    assert lazy_imports_of(tree, "parnet_deploy.cli", "parnet_deploy.cli") == {
        "parnet_deploy.runtime.api", *(m for m in all_modules() if m.startswith("parnet_deploy.cli."))}


def test_every_root_module_has_a_layer():
    roots = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert roots and roots <= set(LAYER), f"root modules missing from LAYERS: {roots - set(LAYER)}"


@pytest.mark.parametrize("module", ["parnet_deploy.runtime", "parnet_deploy.artifacts", "parnet_deploy.backends",
                                    "parnet_deploy.models", "parnet_deploy.engines.build", "parnet_deploy.cli.bench"])
def test_torch_free_modules(module):
    import subprocess
    import sys

    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imports torch"


def test_one_version():
    import tomllib

    from parnet_deploy import __version__

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__
