"""Tables and lines at 80 columns: wrapped at word boundaries or abbreviated on purpose, never cut mid-word."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import rlkit.cli.common as common
from tests.clitools import invoke
from tests.test_cli_help import help_text

ROOT = Path(__file__).resolve().parent.parent


def terminal(width: int) -> common.PipeSafeConsole:
    return common.PipeSafeConsole(
        width=width, force_terminal=True, file=io.StringIO(), color_system=None, highlight=False
    )


@pytest.fixture
def screen80(monkeypatch: pytest.MonkeyPatch) -> Console:
    """stdout as an 80-column terminal (the commands print through ``rlkit.cli.common``)."""
    console = terminal(80)
    monkeypatch.setattr(common, "out", console)
    return console


def _lines(console: Console) -> list[str]:
    return [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]


def _words_whole(lines: list[str], text: str) -> None:
    """Every word of ``text`` appears whole on some line (none was split across two)."""
    joined = " ".join(" ".join(lines).split())
    for word in text.split():
        assert f" {word} " in f" {joined} ", (word, lines)


def test_prose_wraps_at_word_boundaries_on_a_terminal_and_stays_one_line_in_a_pipe(screen80: Console) -> None:
    sentence = "score: episode return (sum of the environment's rewards); policy: greedy (deterministic); seed 100000"
    common.prose(sentence)
    lines = _lines(screen80)
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    _words_whole(lines, sentence)  # `determ|inistic` was the terminal cutting a soft-wrapped line
    pipe = common.PipeSafeConsole(width=80, file=io.StringIO())
    common.prose(sentence, pipe)
    assert pipe.file.getvalue() == sentence + "\n"  # type: ignore[attr-defined]


def test_benchmark_summary_at_80_columns(screen80: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    import rlkit.cli.benchmark_cmd as cmd

    monkeypatch.setattr(cmd, "out", screen80)
    doc = json.loads((ROOT / "docs/benchmarks/cartpole-solve/benchmark.json").read_text())
    cmd._print_tables(doc)
    lines = _lines(screen80)
    assert all(len(line) <= 80 for line in lines), lines
    text = "\n".join(lines)
    assert "…" not in text
    for whole in ("5 seeds:", "evaluation episodes", "training", "confirmed", "deterministic"):
        assert whole in " ".join(text.split()), whole  # `5 seed|s`, `t|raining` were cut mid-word
    assert re.search(r"│\s+\[\d+\.\d, \d+\.\d\] │", text)  # an interval under its value, whole


def test_tune_show_keeps_every_parameter_name_whole_at_80_columns() -> None:
    from rlkit.cli.tune_cmd import trial_tables

    names = ["objective", "exploration_fraction", "exploration_final_eps", "policy_kwargs.net_arch", "gamma"]
    columns = [
        (f"trial {k}" + (" (baseline)" if k == 0 else ""), ["35.30", "0.08727", "0.02465", "[256, 256]", "0.99"])
        for k in range(6)
    ]
    console = terminal(80)
    tables = trial_tables(names, columns, 80, 6)
    assert len(tables) == 2  # six trials do not fit beside the names: the rest go to a second table
    for table in tables:
        console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    for name in names:
        assert text.count(f"│ {name} ") == 2  # whole in both tables (not `exploration_f...` twice)
    assert "trial 0 (baseline)" in text and "(1-" in text and "of 6)" in text


def test_the_benchmark_live_view_fits_80_columns_and_explains_its_total() -> None:
    from rlkit.analysis.benchmark import SeedStatus
    from rlkit.cli.benchmark_cmd import SeedView

    view = SeedView(5, 50_000, 100, jobs=2, stop_on_solved=True)
    console = terminal(80)
    console.print(view)
    first = console.file.getvalue()  # type: ignore[attr-defined]
    assert "starting: its worker process imports torch and SB3" in first and "queued: --jobs 2" in first
    assert "of a 250,000 budget (5 x 50,000)" in first
    view.statuses = [
        SeedStatus(0, "done", 10_000, 50_000, 500.0, 10_000, 500.0, 500.0, finished=True),
        SeedStatus(1, "evaluating best", 12_000, 50_000, 500.0, 12_000, finished=True),
        SeedStatus(2, "training", 31_234, 50_000, 102.5, 30_000),
        SeedStatus(3, "starting", 0, 50_000),
        SeedStatus(4, "queued", 0, 50_000),
    ]
    console = terminal(80)
    console.print(view)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text, text
    assert "10k/50k" in text and "31k/50k" in text and "500.0 @ 10k" in text and "eval best" in text
    assert "of a 250,000 budget" in text and "a seed stops once solved" in text and ": 2 so far" in text


def test_help_names_values_not_python_types_and_lists_choices_whole() -> None:
    for command in (["train"], ["benchmark"], ["plot"], ["report"], ["tune", "run"], ["presets", "import-zoo"]):
        text = help_text(*command)
        assert "<list[" not in text, command
    tune = " ".join(help_text("tune", "run").replace("│", " ").split())
    assert "--set KEY=VALUE" in tune and "tpe, random, cmaes or gp" in tune
    assert "median, halving, hyperband or none" in tune
    assert "RUN <path>..." in " ".join(help_text("plot").replace("│", " ").split())


def test_evaluate_at_80_columns(screen80: Console, trained_runs: Any) -> None:
    result = invoke("evaluate", trained_runs[0], "--episodes", "2")
    assert result.exit_code == 0, result.output
    lines = _lines(screen80)
    assert all(len(line) <= 80 for line in lines) and "…" not in "\n".join(lines)
    _words_whole(lines, "policy: greedy (deterministic); seed 100000")
