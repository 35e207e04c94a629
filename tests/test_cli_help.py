"""The CLI's help and usage errors: flags as flags, choices listed, full defaults, one-line refusals."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rlkit import __version__
from rlkit.cli import app
from rlkit.cli.tune_cmd import Pruner, Sampler
from rlkit.tuning.study import PRUNERS, SAMPLERS
from tests.clitools import assert_one_line_error, invoke

COMMANDS = [
    ["train"],
    ["benchmark"],
    ["evaluate"],
    ["record"],
    ["watch"],
    ["export"],
    ["plot"],
    ["report"],
    ["envs"],
    ["tune", "run"],
    ["tune", "show"],
    ["tune", "plot"],
    ["tune", "export"],
]


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_flags_as_flags_and_every_default_in_full(command: list[str]) -> None:
    text = help_text(*command)
    assert "<bool>" not in text and "--no-force" not in text  # a flag takes no value
    assert "…" not in text  # nothing cut off at 80 columns
    assert "--help" in text and "-h" in text


def test_quiet_is_a_flag_and_device_lists_its_choices() -> None:
    text = help_text("train")
    quiet = next(line for line in text.splitlines() if "--quiet" in line)
    assert "-q" in quiet and "<" not in quiet
    assert "auto, cpu, cuda, cuda:N" in " ".join(text.replace("│", " ").split())


def test_tune_help_lists_the_samplers_and_pruners() -> None:
    text = " ".join(help_text("tune", "run").replace("│", " ").split())
    assert "--sampler SAMPLER" in text and "tpe, random, cmaes or gp" in text
    assert "--pruner PRUNER" in text and "median, halving, hyperband or none" in text  # whole words
    assert [s.value for s in Sampler] == list(SAMPLERS) and [p.value for p in Pruner] == list(PRUNERS)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["tune", "cartpole", "--sampler", "tpee"], ["'tpee' is not one of", "(did you mean 'tpe'?)"]),
        (["tune", "cartpole", "--pruner", "medain"], ["'medain' is not one of", "(did you mean 'median'?)"]),
        (["train", "cartpole", "--device", "gpu"], ["unknown device 'gpu'"]),
        (["benchmark", "cartpole", "--device", "tpu"], ["unknown device 'tpu'"]),
        (["train", "cartpole", "--sed", "3"], ["No such option: --sed", "--seed", "rlkit train --help"]),
        (["tune", "show", "x", "--top", "many"], ["Invalid value for '--top'", "valid integer"]),
    ],
)
def test_a_wrong_choice_is_refused_in_one_line_with_exit_2(args: list[str], fragments: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert_one_line_error(result, *fragments)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = invoke(flag)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"rlkit {__version__} (Stable-Baselines3 ")
    assert "torch" in result.stdout and "Python" in result.stdout


def test_the_device_help_follows_resolve_device() -> None:
    from rlkit.cli.common import DEVICES
    from rlkit.training.factory import DEVICE_CHOICES

    assert DEVICES == DEVICE_CHOICES  # help is written without importing torch; resolve_device decides
