"""The structure rules of docs/architecture.md, checked on the source: layers import
downward only, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fcnkit"
# bottom to top; a module may import only its own layer or those before it
LAYERS = [
    {"io", "draw", "nn", "preprocessing", "config", "profile", "extras", "progress"},
    {"data"},
    {"models"},
    {"losses", "detection"},
    {"metrics"},  # pure tensors -> numbers; the trainer validates with it, so it sits below engine
    {"engine"},
    {"inference"},
    {"export"},
    {"serve"},
    {"demo"},
    {"cli", "__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in SRC.rglob("*.py")}


def _imports(module: str, path: Path, *, top_level_only: bool) -> set[str]:
    """fcnkit modules that ``module`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fcnkit"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fcnkit"))
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER[parts[1]] if len(parts) > 1 else len(LAYERS)  # the package root (public API) is on top


def test_every_module_is_in_a_layer() -> None:
    unknown = sorted({m.split(".")[1] for m in _modules() if "." in m} - set(LAYER))
    assert not unknown, f"add these to LAYERS (and docs/architecture.md): {unknown}"


def test_layers_import_downward_only() -> None:
    modules = _modules()
    upward = []
    for module, path in modules.items():
        if module == "fcnkit":
            continue
        for target in _imports(module, path, top_level_only=False):
            if target in modules and target != "fcnkit" and _layer(target) > _layer(module):
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    modules = _modules()
    # function-level imports count too: a lazy import that closes a circle is still a circle
    graph = {m: {t for t in _imports(m, p, top_level_only=False) if t in modules and t != m}
             for m, p in modules.items()}
    for m in graph:  # a package's __init__ runs before its submodules: not a cycle
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)
