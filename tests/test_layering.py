"""The package's import graph: no cycles, and imports only ever point down the pipeline."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "parnet_deploy"

# lowest first: a module may import from its own layer's packages or from lower layers only
LAYERS = [
    {"errors", "hardware", "quiet"},
    {"models"},
    {"artifacts"},
    {"data", "compare"},
    {"reparam", "checkpoint"},
    {"export"},
    {"backends"},
    {"runtime"},
    {"precision"},
    {"engines"},
    {"bench"},
    {"train"},
    {"cli"},
    {"demo"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def imports_of(path: Path) -> set[str]:
    """Every parnet_deploy module this file imports, at any depth (function-level imports too),
    except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    me = module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    found = set()

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
    unknown = {layer_of(m) for m in g} - set(LAYER) - {"__root__"}
    assert unknown == set(), f"packages missing from LAYERS: {unknown}"
    upward = [(m, t) for m, targets in g.items() for t in targets
              if layer_of(m) != "__root__" and layer_of(t) != "__root__" and LAYER[layer_of(t)] > LAYER[layer_of(m)]]
    assert upward == []


def test_the_walker_sees_function_level_imports():
    # the check itself must be able to fail: an import inside a function is found
    probe = PACKAGE / "runtime" / "engines.py"
    assert "parnet_deploy.backends" in imports_of(probe)
    assert any(t.startswith("parnet_deploy.precision") for t in imports_of(PACKAGE / "engines" / "build.py"))


@pytest.mark.parametrize("module", ["parnet_deploy.runtime", "parnet_deploy.artifacts", "parnet_deploy.backends",
                                    "parnet_deploy.models", "parnet_deploy.engines.build", "parnet_deploy.cli.bench"])
def test_torch_free_modules(module):
    import subprocess
    import sys

    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imports torch"
