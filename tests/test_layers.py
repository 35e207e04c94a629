"""The layers of ``rlkit/`` and the direction of imports between them.

Each folder of ``rlkit/`` is a layer; a module may import its own layer and the layers below,
never those above. Imports inside functions count (a deferred import is still a dependency),
and so do imports for type checking. The runtime import graph between modules has no cycle
(imports under ``if TYPE_CHECKING:`` never run, so they cannot make one).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rlkit"

LAYERS: list[set[str]] = [
    {"core"},  # errors, atomic writes, data paths, CPU threads
    {"config"},  # the schema and the preset catalogue: pure data
    {"environments"},  # gymnasium / SB3 / ALE envs from a preset
    {"replay"},  # replay buffers: prioritized, frame storage
    {"dqn"},  # the algorithms: loss, policies, gradient engine
    {"training"},  # the one path from a preset to a trained model
    {"analysis", "tuning"},  # what runs produce for people; Optuna studies (peers: neither imports the other)
    {"api"},  # the Python API
    {"cli"},  # the commands
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def modules_of(package: Path) -> dict[str, Path]:
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports_of(path: Path, modules: dict[str, Path], *, runtime_only: bool = False) -> set[str]:
    """The rlkit modules ``path`` imports (``from rlkit.x import y`` names ``rlkit.x.y`` when that is a module)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree) if runtime_only else set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("rlkit"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlkit") and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def upward_imports(modules: dict[str, Path]) -> list[str]:
    wrong = []
    for module, path in sorted(modules.items()):
        own = layer_of(module)
        if own is None:
            continue
        for target in sorted(imports_of(path, modules)):
            other = layer_of(target)
            if other is not None and other != own and RANK[other] >= RANK[own]:
                wrong.append(f"{module} ({own}) imports {target} ({other})")
    return wrong


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    graph = {m: imports_of(p, modules, runtime_only=True) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_every_folder_is_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(RANK), f"folders without a layer: {folders - set(RANK)}"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == [], f"modules outside any layer: {loose}"


def test_imports_point_down() -> None:
    assert upward_imports(modules_of(PACKAGE)) == []


def test_no_import_cycles() -> None:
    assert import_cycles(modules_of(PACKAGE)) == []


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    """An upward import (deferred inside a function) and a cycle in a small fake tree are both reported."""
    root = tmp_path / "rlkit"
    for folder in ("core", "training"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "core" / "x.py").write_text("def f():\n    from rlkit.training.loop import g\n")
    (root / "training" / "loop.py").write_text("from rlkit.core.x import f\n\ndef g():\n    pass\n")
    modules = modules_of(root)
    assert upward_imports(modules) == ["rlkit.core.x (core) imports rlkit.training.loop (training)"]
    assert import_cycles(modules) == [["rlkit.core.x", "rlkit.training.loop", "rlkit.core.x"]]


def test_state_json_has_one_writer() -> None:
    """Every change of a run's ``state.json`` is a transition of ``training/run_state.py`` (its one writer)."""
    writers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update_state":
                writers.append(path.relative_to(PACKAGE.parent).as_posix())
    assert writers and set(writers) == {"rlkit/training/run_state.py"}, sorted(set(writers))
