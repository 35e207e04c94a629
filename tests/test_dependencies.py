"""Declared dependencies are exactly what rlkit imports.

Every third-party module imported anywhere in ``rlkit/`` (deferred imports included) must come
from a distribution declared in ``pyproject.toml`` (``[project].dependencies`` or an optional
extra), and every declared distribution must be imported by rlkit, unless it is listed below with
the reason rlkit needs it without importing it. Import names map to distributions through
``importlib.metadata.packages_distributions()``, so the installed environment (``rlkit[dev]``,
which holds every extra) is the reference.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rlkit"

DECLARED_NOT_IMPORTED = {
    "opencv-python-headless": "SB3's AtariWrapper resizes frames with OpenCV (cv2)",
    "psycopg": "SQLAlchemy's driver for postgresql:// study storages (the postgres extra)",
    "onnx": "torch.onnx's exporter writes the model with it (the export extra; rlkit checks it is present)",
    "onnxscript": "torch.onnx's dynamo exporter translates ops with it (the export extra; checked as present)",
}
"""Needed at run time by a library rlkit uses (a plugin or driver), never imported by rlkit itself."""

IMPORTED_NOT_DECLARED = {
    "psutil": "optional: the replay-buffer memory check runs only when psutil is there (as SB3's own)",
}
"""Imported inside ``try: ... except ImportError`` and used only when present."""

NOT_FOR_RLKIT = {
    "dev": "tests, lint and type checks",
    "bench": "bench/peers.py's peers (SBX on JAX), outside the rlkit package",
}
"""Extras for tests, tooling and benchmarks; rlkit's own code imports nothing from them."""


def normalize(name: str) -> str:
    """PEP 503 name: ``ImageIO`` and ``imageio``, ``sb3_contrib`` and ``sb3-contrib`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, str]:
    """Normalized distribution name -> where it is declared (``dependencies`` or ``extra <name>``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {normalize(Requirement(r).name): "dependencies" for r in project["dependencies"]}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        if extra in NOT_FOR_RLKIT:
            continue
        for requirement in requirements:
            found.setdefault(normalize(Requirement(requirement).name), f"extra {extra}")
    return found


def third_party_imports() -> dict[str, str]:
    """Top-level module name -> one file of rlkit that imports it (relative imports and rlkit skipped)."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("rlkit", "__future__"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@functools.cache
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {normalize(d) for d in _installed().get(module, [])}


def test_every_import_is_declared() -> None:
    wanted = declared()
    missing = []
    for module, where in sorted(third_party_imports().items()):
        if module in IMPORTED_NOT_DECLARED:
            continue
        dists = distributions_of(module)
        assert dists, f"{module} (imported in {where}) is not installed; install rlkit[dev], which holds every extra"
        if not dists & set(wanted):
            missing.append(f"{module} ({where}) from {sorted(dists)}")
    assert not missing, f"imported by rlkit but declared nowhere in pyproject.toml: {missing}"


def test_every_declared_dependency_is_imported_or_explained() -> None:
    imported = set()
    for module in third_party_imports():
        imported |= distributions_of(module)
    unused = [
        f"{name} ({where})"
        for name, where in sorted(declared().items())
        if name not in imported and name not in DECLARED_NOT_IMPORTED
    ]
    assert not unused, (
        f"declared in pyproject.toml but imported nowhere in rlkit/ (drop it or explain it here): {unused}"
    )


def test_the_exceptions_are_still_true() -> None:
    wanted, imports = declared(), third_party_imports()
    imported = set().union(*(distributions_of(module) for module in imports))
    for name in DECLARED_NOT_IMPORTED:
        assert name in wanted, f"{name} is listed as a run-time need but no longer declared; drop it from the list"
        assert name not in imported, f"rlkit imports {name} now; drop it from DECLARED_NOT_IMPORTED"
    for module in IMPORTED_NOT_DECLARED:
        assert module in imports, f"rlkit no longer imports {module}; drop it from IMPORTED_NOT_DECLARED"


def test_moviepy_is_gone() -> None:
    """rlkit writes videos with imageio (rlkit.analysis.video); nothing needs moviepy."""
    assert "moviepy" not in declared()
    assert "moviepy" not in third_party_imports()
