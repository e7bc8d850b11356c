"""The structure rules of docs/architecture.md, checked on the source: layers import
downward only, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fcnkit"
# bottom to top; a module may import only its own layer or those before it
LAYERS = [
    {"io", "draw", "nn", "preprocessing", "heads", "config", "profile", "extras", "progress"},
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


# --- the model contract (docs/architecture.md, "A model is a spec plus weights") ----------------
TASK_WORDS = {"segmentation", "detection", "joint"}
SPEC_MODULES = {"fcnkit.heads", "fcnkit.models.spec"}  # where task words and heads are defined
MODEL_FACTS = {"task", "meta", "config", "num_classes", "det_classes", "preprocessing", "pad_multiple",
               "output_stride", "spec", "box_classes"}
OUTPUT_NAMES = {"out", "outs", "output", "outputs", "logits", "maps", "pred", "preds"}


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {s for e in node.elts for s in _strings(e)}
    return set()


def _contract_breaches(module: str, path: Path) -> list[str]:
    """Task-word comparisons, branches on a model output's type, ``.get("seg")`` on outputs and
    ``getattr``/``hasattr`` of a model's facts: what the spec replaced."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{module}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Compare):
            # a == "joint", kind in ("segmentation", "joint"); not "detection" in results (a dict key)
            equal = any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
            sides = (node.left, *node.comparators) if equal else node.comparators
            words = set().union(*(_strings(n) for n in sides)) & TASK_WORDS
            if words:
                found.append(f"{where} compares with the task word(s) {sorted(words)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = node.args
            if node.func.id == "isinstance" and args and isinstance(args[0], ast.Name) and args[0].id in OUTPUT_NAMES:
                found.append(f"{where} branches on the type of {args[0].id!r}")
            if node.func.id in ("getattr", "hasattr") and len(args) >= 2 and _strings(args[1]) & MODEL_FACTS:
                found.append(f"{where} {node.func.id}s {sorted(_strings(args[1]))[0]!r}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and isinstance(node.func.value, ast.Name) and node.func.value.id in OUTPUT_NAMES):
            found.append(f"{where} looks a key up in {node.func.value.id!r} with .get (outputs have fixed keys)")
    return found


def test_code_asks_the_spec_not_strings_types_or_attributes() -> None:
    breaches = [b for m, p in _modules().items() if m not in SPEC_MODULES for b in _contract_breaches(m, p)]
    assert not breaches, "ask fcnkit.models.spec / fcnkit.heads instead:\n" + "\n".join(sorted(breaches))


def test_the_contract_check_finds_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('if model.task == "detection": pass\n'
                   'seg = out if isinstance(out, Tensor) else out.get("seg")\n'
                   'n = getattr(model, "num_classes", 21)\n'
                   'ok = kind in ("segmentation", "joint")\n'
                   'fine = "detection" in results\n')
    found = _contract_breaches("bad", bad)
    assert len(found) == 5, found
