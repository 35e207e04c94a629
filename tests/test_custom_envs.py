"""Custom environments: a user's module imported when asked (and said so), recorded, re-imported by a run's readers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rlkit.core.errors import RlkitError
from tests.clitools import assert_one_line_error, invoke

LINEWORLD = '''
"""LineWorld-v0: walk left or right on a line of 7 cells; the right end pays 1."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class LineWorld(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, size: int = 7) -> None:  # no render_mode argument
        self.size = size
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.pos = self.steps = 0

    def _obs(self):
        return np.array([self.pos / (self.size - 1)], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.steps = self.size // 2, 0
        return self._obs(), {}

    def step(self, action):
        self.pos = min(self.size - 1, max(0, self.pos + (1 if action == 1 else -1)))
        self.steps += 1
        reward = 1.0 if self.pos == self.size - 1 else 0.0
        return self._obs(), reward, self.pos in (0, self.size - 1), self.steps >= 30, {}


gym.register(id="LineWorld-v0", entry_point=LineWorld)
'''

TINY = ["--steps", "400", "--set", "eval_episodes=2", "--quiet"]


def _forget(module: str) -> None:
    """As if in a new process: the module unimported, its env unregistered."""
    import gymnasium as gym

    from rlkit.environments import imports

    sys.modules.pop(module, None)
    if module in imports._imported:
        imports._imported.remove(module)
    gym.registry.pop("LineWorld-v0", None)


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder holding the user's ``lineworld.py``, as the current folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "lineworld.py").write_text(LINEWORLD)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the current folder is added to a copy
    _forget("lineworld")
    yield folder
    _forget("lineworld")


@pytest.mark.parametrize("how", [["lineworld:LineWorld-v0"], ["LineWorld-v0", "--import", "lineworld"]])
def test_train_a_custom_env_then_evaluate_it(user_folder: Path, how: list[str]) -> None:
    run = user_folder / "run"
    result = invoke("train", *how, "--seed", "3", "--run-dir", run, *TINY)
    assert result.exit_code == 0, result.output
    assert "imported Python module 'lineworld' from lineworld.py" in result.stderr
    assert "no preset for LineWorld-v0: defaults sized to 400 steps" in result.stderr
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["preset"]["env_id"] == "LineWorld-v0"
    assert config["preset"]["env_imports"] == ["lineworld"]
    assert config["preset"]["target_update_interval"] == 4, "sized to the budget, not SB3's 10000"

    _forget("lineworld")  # evaluate in a fresh process: the run's config names the module
    evaluated = invoke("evaluate", run, "--episodes", "3", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert "imported Python module 'lineworld' from lineworld.py (env_imports of LineWorld-v0)" in evaluated.stderr
    assert '"env_id": "LineWorld-v0"' in evaluated.stdout
    assert_one_line_error(invoke("record", run), "LineWorld-v0 cannot render frames")
    assert not (run / "videos").exists(), "nothing written"


def test_a_preset_naming_a_module_needs_the_opt_in(user_folder: Path) -> None:
    (user_folder / "marker.py").write_text("open('IMPORTED', 'w').close()\n")
    preset = user_folder / "mine.yaml"
    preset.write_text("env_id: marker:CartPole-v1\n")
    refused = assert_one_line_error(invoke("train", preset), "needs Python module 'marker'", "--import marker")
    assert "docs/security.md" in refused
    assert_one_line_error(invoke("train", "cartpole", "--set", "env_id=marker:CartPole-v1"), "--import marker")
    assert_one_line_error(invoke("train", "cartpole", "--set", "env_imports=[marker]"), "--import marker")
    assert not (user_folder / "IMPORTED").exists(), "nothing was imported"
    assert not (user_folder / "runs").exists()


def test_a_module_that_fails_to_import_is_one_line(user_folder: Path) -> None:
    (user_folder / "broken.py").write_text("x = 1\nraise ValueError('no config here')\n")
    assert_one_line_error(invoke("train", "broken:X-v0"), "importing Python module 'broken' failed", "broken.py line 2")
    assert_one_line_error(invoke("train", "X-v0", "--import", "nowhere_to_be_found"), "no module named")
    assert_one_line_error(invoke("train", "cartpole", "--import", "a b"), "not a Python module name")
    assert_one_line_error(invoke("train", "broken.py"), "is a Python file", "--import broken")


def test_an_env_without_render_mode_is_made_without_it_and_cannot_record(user_folder: Path) -> None:
    from rlkit.environments.factory import accepts_render_mode, make_env
    from rlkit.environments.resolve import resolve

    resolved = resolve("lineworld:LineWorld-v0")
    assert not accepts_render_mode("LineWorld-v0") and accepts_render_mode("CartPole-v1")
    make_env(resolved.preset, seed=0).close()
    with pytest.raises(RlkitError, match="takes no render_mode argument"):
        make_env(resolved.preset, seed=0, render_mode="rgb_array")


def test_defaults_without_a_preset_follow_the_budget_and_yield_to_the_user() -> None:
    from rlkit.environments.resolve import resolve

    resolved = resolve("CartPole-v0", overrides=["n_timesteps=3000", "eval_freq=0"])
    preset = resolved.preset
    assert (preset.learning_starts, preset.target_update_interval, preset.buffer_size) == (150, 30, 3000)
    assert preset.eval_freq == 0 and "eval_freq" not in resolved.defaults
    assert resolved.defaults["target_update_interval"] == 30
    assert resolve("cartpole").defaults == {}, "a preset keeps its own values"


def test_benchmark_seeds_reimport_the_module_in_their_own_processes(user_folder: Path) -> None:
    out = user_folder / "bench"
    args = ["--seeds", "1", "--jobs", "1", "--episodes", "2", "--steps", "300", "--out", out]
    result = invoke("benchmark", "lineworld:LineWorld-v0", *args)
    assert result.exit_code == 0, result.output
    assert "env_imports:\n- lineworld" in (out / "preset.yaml").read_text()
    assert "--import lineworld" in (out / "seed-0" / "command.txt").read_text()
    assert json.loads((out / "benchmark.json").read_text())["env_id"] == "LineWorld-v0"


def test_tune_workers_get_the_imports() -> None:
    from types import SimpleNamespace

    from rlkit.tuning.study import worker_command

    request = SimpleNamespace(
        env="LineWorld-v0", trials=4, sampler="tpe", pruner="median", seed=0, device="cpu", heartbeat=60,
        timeout=None, config=None, overrides=[], steps=300, seeds_per_trial=None, evals_per_trial=None,
        runs_root=None, imports=["lineworld", "pkg.more"], track=None,
    )  # fmt: skip
    prepared = SimpleNamespace(request=request, study_name="s", url=SimpleNamespace(url="sqlite:///x.db"),
                               space=SimpleNamespace(source="classic"))  # fmt: skip
    command = worker_command(prepared, 0)  # type: ignore[arg-type]
    assert command[-4:] == ["--import", "lineworld", "--import", "pkg.more"]
