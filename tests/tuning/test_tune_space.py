"""Search spaces: the shipped files validate, bad ones fail with one clear line, sampling round-trips."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from rlkit.config.schema import to_plain
from rlkit.core.errors import RlkitError
from rlkit.environments.resolve import resolve
from rlkit.tuning import space as spaces
from rlkit.tuning.study import preset_space

REQUIRED = {
    "learning_rate",
    "gamma",
    "batch_size",
    "buffer_size",
    "train_freq",
    "gradient_steps",
    "target_update_interval",
    "exploration_fraction",
    "exploration_final_eps",
    "learning_starts",
    "policy_kwargs.net_arch",
}


@pytest.mark.parametrize(("env", "family"), [("cartpole", "classic"), ("lunarlander", "box2d"), ("pong", "atari")])
def test_shipped_spaces_cover_the_issue_and_validate(env: str, family: str) -> None:
    preset = resolve(env).preset
    assert spaces.family(preset.env_id) == family
    space = spaces.load(family, to_plain(preset))
    assert set(space.params) >= REQUIRED


def test_a_preset_can_name_its_own_space(tmp_path: Path) -> None:
    own = tmp_path / "own.yaml"
    own.write_text("params:\n  gamma: {type: categorical, choices: [0.9, 0.99]}\n")
    preset_file = tmp_path / "mine.yaml"
    preset_file.write_text("env_id: CartPole-v1\nsearch_space: own.yaml\n")  # relative to the preset file
    resolved = resolve(str(preset_file))
    assert resolved.preset.search_space == "own.yaml"
    assert preset_space(resolved.preset.search_space, resolved.source) == str(own)
    assert preset_space("box2d", resolved.source) == "box2d"


def test_sampling_gives_real_values_and_decodes_stored_params() -> None:
    base = to_plain(resolve("cartpole").preset)
    space = spaces.load("classic", base)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        trial = study.ask()
        values = space.sample(trial)
        assert isinstance(values["policy_kwargs.net_arch"], list)
        assert isinstance(trial.params["policy_kwargs.net_arch"], str)  # what Optuna stores
        assert space.decode(trial.params) == values
        preset = spaces.build_preset(base, values, "trial")
        assert preset.policy_kwargs.net_arch == values["policy_kwargs.net_arch"]
        study.tell(trial, 0.0)


BAD = [
    ("params:\n  learning_rate: {type: float, low: 0.1, high: 0.01}\n", "learning_rate: low (0.1) must be below high"),
    ("params:\n  learning_rat: {type: float, low: 0.001, high: 0.01}\n", "did you mean 'learning_rate'?"),
    ("params:\n  batch_size: {type: categorical, choices: []}\n", "choices must not be empty"),
    ("params:\n  learning_rate: {type: float, low: 0.001, high: 2.0}\n", "learning_rate: Input should be less than"),
    ("params:\n  gamma: {type: normal, low: 0.9, high: 0.99}\n", "type must be float, int or categorical"),
    ("params:\n  gamma: {type: float, low: 0.9, hgh: 0.99}\n", "params.gamma.high: Field required"),
    ("params:\n  policy_kwargs.net_arch: {type: categorical, choices: [[64], [0]]}\n", "net_arch"),
    ("params:\n  env_id: {type: categorical, choices: [CartPole-v1]}\n", "not a tunable preset key"),
    ("params: {}\n", "at least one"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_malformed_spaces_fail_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RlkitError) as info:
        spaces.load(str(path), to_plain(resolve("cartpole").preset))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_space_name_suggests() -> None:
    with pytest.raises(RlkitError, match="did you mean 'classic'"):
        spaces.load("clasic", {})


# The LunarLander preset before it was tuned for time to solve: the values the lunarlander-100k
# space was searched around (the shipped preset's 8-step returns lie outside it).
PREVIOUS_LUNARLANDER = [
    "n_steps=3",
    "exploration_fraction=0.12",
    "policy_kwargs.net_arch=[256, 256]",
    "train_freq=4",
    "gradient_steps=-1",
]


def test_baseline_is_the_base_presets_values_when_the_space_holds_them() -> None:
    assert (
        spaces.load("lunarlander-100k", to_plain(resolve("lunarlander").preset)).baseline(
            to_plain(resolve("lunarlander").preset)
        )
        is None
    )  # n_steps 8 is not among the space's choices: no baseline to enqueue
    base = to_plain(resolve("lunarlander", overrides=PREVIOUS_LUNARLANDER).preset)
    space = spaces.load("lunarlander-100k", base)
    assert space.baseline(base) == {
        "learning_rate": base["learning_rate"],
        "target_update_interval": base["target_update_interval"],
        "exploration_fraction": base["exploration_fraction"],
        "exploration_final_eps": base["exploration_final_eps"],
        "n_steps": base["n_steps"],
        "batch_size": base["batch_size"],
    }
    wide = spaces.load("box2d", base).baseline(base)
    assert wide is not None and wide["policy_kwargs.net_arch"] == "[256, 256]"  # stored as Optuna stores choices
    outside = dict(base, learning_rate=0.5)
    assert space.baseline(outside) is None
    assert space.baseline(dict(base, batch_size=100)) is None


def test_a_new_study_enqueues_its_baseline_first(tmp_path: Path) -> None:
    from rlkit.tuning.study import TuneRequest, prepare

    request = TuneRequest(
        env="lunarlander", space="lunarlander-100k", runs_root=tmp_path, study="s", overrides=PREVIOUS_LUNARLANDER
    )
    prepared = prepare(request)
    waiting = prepared.study.get_trials(deepcopy=False)
    assert len(waiting) == 1 and waiting[0].state == optuna.trial.TrialState.WAITING
    assert waiting[0].user_attrs["baseline"] is True
    assert waiting[0].system_attrs["fixed_params"] == prepared.space.baseline(prepared.record["base"])
    assert len(prepare(request).study.get_trials(deepcopy=False)) == 1  # continuing does not enqueue again


def test_a_new_study_says_whether_trial_0_is_the_baseline_and_why_not(tmp_path: Path) -> None:
    """docs/tuning.md calls trial 0 the baseline; when a preset value lies outside the space it is not, and rlkit says so."""
    from rlkit.tuning.study import TuneRequest, prepare

    base = to_plain(resolve("lunarlander").preset)
    space = spaces.load("lunarlander-100k", base)
    problem = space.baseline_problem(base)
    assert problem is not None and "(and 1 more key)" in problem  # exploration_fraction and n_steps
    wrong_rate = space.baseline_problem(dict(base, n_steps=3, exploration_fraction=0.1, learning_rate=0.5))
    assert str(wrong_rate).startswith("learning_rate=0.5 lies outside the space's ")
    assert space.baseline_problem(dict(base, exploration_fraction=0.1)) == (
        "n_steps=8 is none of the space's choices (1, 3, 5)"
    )
    outside = prepare(TuneRequest(env="lunarlander", space="lunarlander-100k", runs_root=tmp_path, study="a"))
    assert (
        outside.baseline
        == f"no baseline trial: {problem}, so the preset's own values are not a trial of this space; trial 0 is sampled like the others"
    )
    inside = prepare(
        TuneRequest(
            env="lunarlander", space="lunarlander-100k", runs_root=tmp_path, study="b", overrides=PREVIOUS_LUNARLANDER
        )
    )
    assert inside.baseline == "trial 0 is the baseline: the base preset's own values of the 6 searched keys"
    again = prepare(
        TuneRequest(
            env="lunarlander", space="lunarlander-100k", runs_root=tmp_path, study="b", overrides=PREVIOUS_LUNARLANDER
        )
    )
    assert again.baseline is None  # said once, when the study is created
