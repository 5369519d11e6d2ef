"""The package's import structure: no import runs from a lower layer to a higher one, and no
modules import each other in a circle. Read from the source (ast), function-local imports
included, so a deferred import cannot hide a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pose3d"

# Lower number = lower layer. The longest key that matches names a module's layer: a key
# matches itself and its submodules; a key ending in * matches every name it prefixes.
LAYERS = {
    "pose3d": 0, "pose3d.__init__": 0, "pose3d._C": 0, "pose3d.extension": 0,
    "pose3d.env_report": 0, "pose3d.device": 0, "pose3d.cliargs": 0, "pose3d.threads": 0,
    "pose3d.json_input": 0, "pose3d.out_folder": 0,
    "pose3d.ops": 1, "pose3d.geometry": 1, "pose3d.skeleton": 1,
    "pose3d.models": 2, "pose3d.losses": 2, "pose3d.data": 2,
    "pose3d.train": 3, "pose3d.eval": 3,
    "pose3d.demo": 4, "pose3d.experiment": 4, "pose3d.curves": 4, "pose3d.bench": 4,
    "pose3d.diagnostics": 4,
    "pose3d.cli": 4,
    "pose3d.__main__": 4,
    "pose3d.predict*": 4,  # pose3d/predict*.py and pose3d/predict/ (`pose3d predict`)
}
# Layers whose packages must not import one another (train and eval are peers).
PEERS = [("pose3d.train", "pose3d.eval")]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[str, int]:
    """(the LAYERS key, its layer) of the longest key that prefixes `module`."""
    best = None
    for key in LAYERS:
        if key.endswith("*"):
            match = module.startswith(key[:-1])
        else:
            match = module == key or module.startswith(key + ".")
        if match:
            if best is None or len(key) > len(best):
                best = key
    assert best is not None, f"{module} has no layer in tests/test_imports.py"
    return best, LAYERS[best]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The pose3d modules `path` imports (`from a import b` counts as a.b when a.b is a
    module, else a)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.add(full if full in known else source)
    return {m for m in found if m == "pose3d" or m.startswith("pose3d.")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) - {name} for name, path in mods.items()}


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    upward = []
    for name, targets in graph().items():
        _, low = layer_of(name)
        for target in targets:
            if target.startswith("pose3d._C"):
                continue
            if layer_of(target)[1] > low:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_train_and_eval_do_not_import_each_other():
    crossing = []
    for name, targets in graph().items():
        for a, b in PEERS:
            for src, dst in ((a, b), (b, a)):
                if name.startswith(src) and any(t.startswith(dst) for t in targets):
                    crossing.append(name)
    assert crossing == []


def test_no_import_circle():
    deps = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(deps.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(path[path.index(nxt):] + [node, nxt])
                               if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for name in sorted(deps):
        if name not in state:
            visit(name, [])
    assert circles == []


def test_the_checker_sees_function_local_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from pose3d.eval import report\n    import pose3d.train.loop\n")
    found = imports_of("pose3d.x.m", src, {"pose3d.eval.report"})
    assert found == {"pose3d.eval.report", "pose3d.train.loop"}
