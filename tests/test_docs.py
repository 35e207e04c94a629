"""Every example in docs/*.md runs as written, each page top to bottom in a fresh folder.

A page is one session: its shell commands (`bash`, `console` with `$ ` prompts, plain fences, and
`$ ` lines of `text` fences) run in order, `rlkit ...` in-process and anything else (`cp`) in a
shell; its Python blocks run in one namespace. A fence just after an HTML comment is treated as
the comment says: `<!-- file: NAME -->` writes the block to NAME (an env module, a preset, a
search space), `<!-- not run: why -->` skips it (installs, a window, a network). A `console`
command whose shown output starts with `error:` must fail with that error; every other command
must succeed. A YAML fence without a marker fails the test: every example is run or says why not.
The pages use small budgets (they say so), so each runs in seconds to a minute.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ELSEWHERE = {"python-api.md": "tests/test_python_api.py runs it, checking its results"}
FENCE = re.compile(
    r"(?:<!--(?P<marker>[^>]*?)-->[ \t]*\n(?:[ \t]*\n)*)?^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n"
    r"(?P<body>.*?)^(?P=indent)```",
    re.S | re.M,
)
SHELL = {"", "bash", "sh", "shell", "console"}


@dataclass
class Block:
    lang: str
    body: str
    marker: str
    line: int


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(m["lang"], textwrap.dedent(m["body"]), (m["marker"] or "").strip(), text[: m.start()].count("\n") + 1)
        for m in FENCE.finditer(text)
    ]


def pages() -> list[str]:
    return sorted(p.name for p in DOCS.glob("*.md") if "```" in p.read_text() and p.name not in ELSEWHERE)


@dataclass
class Command:
    line: str
    error: str | None
    """The error the page shows after it (a `console` block), if any."""


def commands(block: Block) -> list[Command]:
    """The shell commands of a block, each with the error its shown output says it ends with."""
    prompted = block.lang in ("console", "text") or any(line.startswith("$ ") for line in block.body.splitlines())
    found: list[Command] = []
    for line in re.sub(r"\s*\\\n\s*", " ", block.body).splitlines():  # `\` at a line's end continues it
        if prompted:
            if line.startswith("$ "):
                found.append(Command(line[2:], None))
            elif found and found[-1].error is None and line.startswith("error:") and not found[-1].line.endswith("\\"):
                found[-1].error = line.removeprefix("error:").strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            found.append(Command(line, None))
    return found


class Session:
    """One page's folder, shell variables and Python namespace."""

    def __init__(self, folder: Path, page: str) -> None:
        self.folder = folder
        self.page = page
        self.vars: dict[str, str] = {}
        self.namespace: dict[str, object] = {}
        self.runner = CliRunner()

    def run(self, command: Command, where: str) -> None:
        words = shlex.split(command.line, comments=True)
        parts: list[list[str]] = [[]]
        for word in words:
            if word == "&&":
                parts.append([])
            else:
                parts[-1].append(word)
        for i, argv in enumerate(p for p in parts if p):
            last = i == len(parts) - 1
            started = time.perf_counter()
            self._one(argv, command.error if last else None, f"{where}: {command.line}")
            print(f"{time.perf_counter() - started:6.1f} s  {' '.join(argv)}")  # shown with -s: where the time goes

    def _one(self, argv: list[str], error: str | None, where: str) -> None:
        env: dict[str, str] = {}
        while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
            name, value = argv.pop(0).split("=", 1)
            env[name] = self._expand(value)
        if not argv:  # R=runs/...: a shell variable
            self.vars.update(env)
            return
        argv = [self._expand(word) for word in argv]
        if argv[0] == "rlkit":
            result = self.runner.invoke(_app(), argv[1:], env=env or None)
            code, output = result.exit_code, result.output
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise AssertionError(f"{where}: raised {result.exception!r}\n{output}") from result.exception
        else:
            done = subprocess.run(
                argv, cwd=self.folder, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
            )
            code, output = done.returncode, done.stdout + done.stderr
        if error is None:
            assert code == 0, f"{where} failed ({code}):\n{output}"
        else:
            assert code != 0, f"{where} should fail with: error: {error}\n{output}"
            shown = " ".join(error.split())[:60]
            assert shown in " ".join(output.split()), f"{where}: expected 'error: {shown}...' in:\n{output}"

    def _expand(self, word: str) -> str:
        return re.sub(
            r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: self.vars.get(m[1], os.environ.get(m[1], "")), word
        )

    def python(self, block: Block, where: str) -> None:
        exec(compile(block.body, where, "exec"), self.namespace)  # the page's own code, in order


def _app() -> object:
    from rlkit.cli import app

    return app


SETUP = {
    # The Zoo's own file, as `git clone` (not run: the network) would give it.
    "zoo-import.md": [("tests/data/zoo_dqn.yml", "rl-baselines3-zoo/hyperparams/dqn.yml")],
}


@pytest.mark.parametrize("name", pages())
def test_every_example_of_the_page_runs_as_written(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(folder / "runs"))  # runs/ of the page's commands
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setattr(sys, "path", list(sys.path))  # rlkit puts the current folder first for --import
    for source, target in SETUP.get(name, []):
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, folder / target)
    session = Session(folder, name)
    written: list[str] = []
    try:
        for block in blocks(DOCS / name):
            where = f"docs/{name} line {block.line}"
            if block.marker.startswith("not run:"):
                assert len(block.marker) > len("not run: ") + 3, f"{where}: say why it is not run"
                continue
            if block.marker.startswith("file:"):
                target = block.marker.removeprefix("file:").strip()
                (folder / target).write_text(block.body)
                written.append(Path(target).stem)
                continue
            if block.lang == "python":
                session.python(block, where)
            elif block.lang in SHELL or (block.lang == "text" and "\n$ " in "\n" + block.body):
                for command in commands(block):
                    session.run(command, where)
            elif block.lang in ("yaml", "yml", "toml", "json"):
                raise AssertionError(
                    f"{where}: a {block.lang} example needs <!-- file: NAME --> or <!-- not run: why -->"
                )
    finally:
        _forget(written)


def _forget(modules: list[str]) -> None:
    """Modules the page wrote and imported, the envs they registered, W&B's settings (its folder):
    gone, as in a new process."""
    import gymnasium as gym

    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()  # it keeps the first run's WANDB_DIR for every later run

    from rlkit.environments import imports

    for module in modules:
        sys.modules.pop(module, None)
        if module in imports._imported:
            imports._imported.remove(module)
    for env_id in [e for e in gym.registry if e.startswith("LineWorld")]:
        gym.registry.pop(env_id, None)


def test_the_harness_reads_commands_outputs_and_markers() -> None:
    console = Block("console", "$ rlkit train x.yaml\nerror: x.yaml: env needs\nmore\n$ rlkit envs\nshown\n", "", 1)
    assert [(c.line, c.error) for c in commands(console)] == [
        ("rlkit train x.yaml", "x.yaml: env needs"),
        ("rlkit envs", None),
    ]
    bash = Block("bash", "R=runs/x\n# a comment\nrlkit evaluate $R   # 50 episodes\nrlkit a \\\n    --b 1\n", "", 1)
    assert [c.line for c in commands(bash)] == ["R=runs/x", "rlkit evaluate $R   # 50 episodes", "rlkit a --b 1"]
    page = "intro\n<!-- file: a.yaml -->\n```yaml\nx: 1\n```\n\n1. list\n\n   ```python\n   print(1)\n   ```\n"
    found = [(m["lang"], (m["marker"] or "").strip(), textwrap.dedent(m["body"])) for m in FENCE.finditer(page)]
    assert found == [("yaml", "file: a.yaml", "x: 1\n"), ("python", "", "print(1)\n")]
