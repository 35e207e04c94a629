"""rlkit's one YAML reader: plain data, bounded, each refusal one line (the readers' tests: tests/test_faults.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rlkit.core import safe_yaml
from rlkit.core.errors import RlkitError
from rlkit.core.safe_yaml import YamlMalformed, YamlRefused

PACKAGE = Path(__file__).resolve().parent.parent / "rlkit"
LOADERS = {"safe_load", "load", "full_load", "unsafe_load", "load_all", "safe_load_all", "compose", "parse"}


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """A preset of a few hundred bytes whose ``env_kwargs`` expand to ``width ** levels`` strings."""
    items = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    items += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return f"env_id: CartPole-v1\nenv_kwargs: {{{', '.join(items)}}}\n"


HOSTILE = {
    "aliases": (billion_laughs(), "alias bomb"),
    "nesting": ("a: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than"),
    "scalar": ("a: " + "x" * 50_000 + "\n", "characters"),
    "binary": ("a: 1\n\0\0\0binary\n", "binary content"),
    "python-tag": ("!!python/object/apply:os.system ['touch pwned']\n", "YAML tag !!python/object/apply:os.system"),
    "size": ("k: v\n" * (safe_yaml.MAX_BYTES // 5 + 10), "too large"),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_yaml_is_one_line(tmp_path: Path, kind: str) -> None:
    text, fragment = HOSTILE[kind]
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(YamlRefused) as info:
        safe_yaml.load_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and fragment in message, message


def test_plain_yaml_reads_as_before() -> None:
    text = "base: &base {lr: 1.0e-3, net: [64, 64]}\nrun:\n  <<: *base\n  lr: !!float 2\nname: !!str 10\nwhen: null\n"
    assert safe_yaml.load_text(text, "x") == {
        "base": {"lr": 1e-3, "net": [64, 64]},
        "run": {"lr": 2.0, "net": [64, 64]},
        "name": "10",
        "when": None,
    }
    # anchors used a few times, as people write them, stay fine; only their expansion is bounded
    few = "a: &a [1, 2, 3]\n" + "".join(f"k{i}: *a\n" for i in range(50))
    assert len(safe_yaml.load_text(few, "x")) == 51


def test_malformed_is_not_refused_and_names_the_line() -> None:
    with pytest.raises(YamlMalformed, match=r"^f\.yaml: line 3: malformed YAML \("):
        safe_yaml.load_text("a: [1,\nb: 2\n", "f.yaml")
    with pytest.raises(YamlRefused, match="refers to itself"):
        safe_yaml.load_text("a: &a [*a]\n", "f.yaml")
    with pytest.raises(YamlRefused, match="cannot read"):
        safe_yaml.load_text("a: " + "9" * 5000 + "\n", "f.yaml")  # more digits than Python converts


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as handle:
        handle.truncate(4 * 2**30)  # 4 GiB, sparse: reading it would take long
    with pytest.raises(YamlRefused, match="too large"):
        safe_yaml.load_file(path)
    with pytest.raises(RlkitError, match="is not a file"):
        safe_yaml.load_file(tmp_path)


def _loader_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml"
        if named and isinstance(node, ast.Attribute) and node.attr in LOADERS:
            found.append(f"{path.name}:{node.lineno} yaml.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "yaml":
            found += [f"{path.name}:{node.lineno} from yaml import {a.name}" for a in node.names if a.name in LOADERS]
    return found


def test_no_module_but_the_safe_reader_parses_yaml() -> None:
    """Every YAML rlkit reads goes through rlkit.core.safe_yaml: nobody else calls yaml.safe_load and co."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PACKAGE / "core" / "safe_yaml.py":
            calls += _loader_calls(path)
    assert calls == []
    assert _loader_calls(PACKAGE / "core" / "safe_yaml.py"), "the check sees calls"
