"""Evaluating a trained run: which model, how many episodes, the statistics users report.

Read top to bottom: :func:`resolve_model` maps ``--model best|final|<checkpoint>`` to a file,
:func:`open_source` takes a run directory or a bare SB3 model file plus an env name,
:func:`load_source_model` loads the model (and checks it fits the env), :func:`evaluate_run`
plays the episodes with SB3's ``evaluate_policy`` and :func:`summarize` turns returns and
lengths into the figures of the result file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.config.schema import Preset, did_you_mean
from rlkit.core import atomic
from rlkit.core.errors import RlkitError
from rlkit.training.rundir import RunDir, now_iso

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

DEFAULT_EVAL_SEED = 100_000
"""Evaluation episodes are seeded from this by default: the same starts for every run, none used in training."""

DEFAULT_EPSILON = 0.05
"""Epsilon of ``--stochastic`` (epsilon-greedy) evaluation unless ``--epsilon`` says otherwise."""

RESULT_GLOB = "evaluation-*.json"


@dataclass(frozen=True)
class ModelChoice:
    """A model file of a run and the short name it is reported under."""

    label: str
    """``best``, ``final`` or ``step-<N>``."""

    path: Path


@dataclass(frozen=True)
class Source:
    """What to play: one model (of a run, or a bare SB3 model file) and the env preset it plays on."""

    alias: str
    preset: Preset
    choice: ModelChoice
    run: RunDir | None
    """The run directory; ``None`` for a bare model file."""

    @property
    def label(self) -> str:
        return self.choice.label


@dataclass
class EvalResult:
    """One evaluation of one model; saved as JSON in the run directory."""

    run_dir: str
    alias: str
    env_id: str
    model: str
    model_path: str
    episodes: int
    seed: int
    policy: str
    """``deterministic`` (greedy) or ``epsilon-greedy``."""
    epsilon: float | None
    score_kind: str
    """What the returns are: plain episode returns, or Atari's real game score of full games."""
    mean: float
    std: float
    median: float
    min: float
    max: float
    mean_length: float
    solved_score: float | None
    solved_fraction: float | None
    """Fraction of episodes whose return is at or above the preset's solved score."""
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    length_unit: str = "steps"
    """``steps``, or ``emulator frames`` for Atari (Monitor sits below the frame skip)."""
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


# ----------------------------------------------------------------------------------------
# Choosing the model
# ----------------------------------------------------------------------------------------


def _checkpoint_label(folder: Path) -> str:
    return f"step-{int(folder.name.split('-')[1])}"


def available_models(run: RunDir) -> dict[str, Path]:
    """Every loadable model of a run by name: ``best``, ``final``, ``step-<N>`` (oldest first)."""
    models: dict[str, Path] = {}
    if run.best_model.is_file():
        models["best"] = run.best_model
    if run.final_model.is_file():
        models["final"] = run.final_model
    for folder in run.checkpoint_dirs():
        if (folder / "model.zip").is_file():
            models[_checkpoint_label(folder)] = folder / "model.zip"
    return models


def resolve_model(run: RunDir, name: str = "auto") -> ModelChoice:
    """``auto`` (best if present, else final), ``best``, ``final``, ``step-<N>``, ``<N>`` or a checkpoint folder."""
    models = available_models(run)
    if not models:
        status = run.status()
        raise RlkitError(
            f"{run.path} has no saved model yet (status: {status}); "
            "models appear after the first evaluation, checkpoint or the end of training"
        )
    if name == "auto":
        label = "best" if "best" in models else "final" if "final" in models else list(models)[-1]
        return ModelChoice(label, models[label])
    key = name.strip().lower()
    if key.isdigit():
        key = f"step-{int(key)}"
    elif key.startswith("step-") and key[5:].isdigit():
        key = f"step-{int(key[5:])}"
    if key in models:
        return ModelChoice(key, models[key])
    valid = list(models)
    known = {"best": run.best_model, "final": run.final_model}
    if key in known:
        raise RlkitError(f"{run.path} has no {key} model ({known[key].name} missing); available: {', '.join(valid)}")
    raise RlkitError(f"unknown --model '{name}'{did_you_mean(name, valid)}; available: {', '.join(valid)}")


def load_run_model(run: RunDir, choice: ModelChoice, device: str = "cpu") -> OffPolicyAlgorithm:
    """Load the chosen model on ``device`` with torch threads set as in training."""
    _, _, preset = run.read_config()
    return _load(preset, choice.path, device)


def _load(preset: Preset, path: Path, device: str) -> OffPolicyAlgorithm:
    from rlkit.environments.factory import policy_name
    from rlkit.training.factory import configure_threads, load_model, resolve_device

    torch_device = resolve_device(device)
    model = load_model(path, env=None, device=torch_device, preset=preset)
    configure_threads(preset, policy_name(preset, model.observation_space), torch_device)
    return model


MODEL_SUFFIX = ".zip"


def open_source(path: Path, env: str | None = None, model_name: str = "auto", command: str = "evaluate") -> Source:
    """A run directory (its env comes from its config) or a bare SB3 DQN/QR-DQN ``.zip`` plus an env name.

    The env name is a preset alias, preset file or gymnasium id, resolved (and checked) exactly
    as ``rlkit train`` resolves it; the bare model plays on that preset's evaluation env.
    """
    if path.suffix.lower() != MODEL_SUFFIX or path.is_dir():
        if env is not None:
            if not path.exists():
                raise RlkitError(f"not a run directory or model file: {path} does not exist")
            raise RlkitError(
                f"{path} is a run directory, which plays on the env of its own config; drop the env argument '{env}'"
            )
        run = RunDir.open(path)
        alias, _, preset = run.read_config()
        return Source(alias, preset, resolve_model(run, model_name), run)
    if not path.is_file():
        raise RlkitError(f"model file not found: {path}")
    if env is None:
        raise RlkitError(
            f"{path.name} is a bare model file: name the env it plays, e.g. `rlkit {command} {path} CartPole-v1` "
            "(a preset alias, preset file or gymnasium id)"
        )
    if model_name != "auto":
        raise RlkitError(f"--model picks a model of a run directory; {path} is one model file (drop --model)")
    from rlkit.analysis.model_file import fit_preset
    from rlkit.environments.resolve import resolve

    resolved = resolve(env)
    # The env's preset with the file's own network (read from its weights), so the loader rebuilds it exactly.
    return Source(resolved.alias, fit_preset(resolved.preset, path), ModelChoice(path.stem, path), None)


def load_source_model(source: Source, device: str = "cpu") -> OffPolicyAlgorithm:
    """Load the source's model on ``device`` with torch threads set as in training."""
    return _load(source.preset, source.choice.path, device)


def check_fits(model: OffPolicyAlgorithm, env: VecEnv, source: Source) -> None:
    """``env`` gives the observations the model was trained on and has its actions (a bare model on the wrong env)."""
    import gymnasium as gym
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    obs_space, act_space = env.observation_space, env.action_space
    if (
        isinstance(obs_space, gym.spaces.Box)
        and is_image_space(obs_space)
        and not is_image_space_channels_first(obs_space)
    ):
        obs_space = VecTransposeImage.transpose_space(obs_space)  # SB3 feeds images channel-first
    want, have = model.observation_space, obs_space
    n_model = getattr(model.action_space, "n", None)
    n_env = getattr(act_space, "n", None)
    if type(want) is not type(have) or want.shape != have.shape or n_model != n_env:
        raise RlkitError(
            f"{source.choice.path.name} does not fit {source.preset.env_id}: the model takes observations "
            f"{_space(want)} and {n_model} actions, the env gives {_space(have)} and {n_env} actions"
        )


def _space(space: Any) -> str:
    return f"{type(space).__name__}{tuple(space.shape)}" if getattr(space, "shape", None) is not None else str(space)


def length_unit(preset: Preset) -> str:
    """Unit of episode lengths: Atari's Monitor counts emulator frames (agent steps times the frame skip)."""
    return "emulator frames" if preset.atari is not None else "steps"


def score_kind(preset: Preset) -> str:
    """A sentence saying what the reported returns are."""
    if preset.atari is not None:
        return "real game score of full games (unclipped rewards, all lives)"
    return "episode return (sum of the environment's rewards)"


# ----------------------------------------------------------------------------------------
# Playing the episodes
# ----------------------------------------------------------------------------------------


def play(
    model: OffPolicyAlgorithm,
    env: VecEnv,
    episodes: int,
    *,
    epsilon: float | None,
    on_episode: Callable[[float, int], None] | None = None,
) -> tuple[list[float], list[int]]:
    """Episode returns and lengths from SB3's ``evaluate_policy``.

    ``epsilon=None`` is the greedy policy; a number plays epsilon-greedy with that epsilon
    (DQN's own ``predict(deterministic=False)`` with ``exploration_rate`` set).
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    if epsilon is not None:
        model.exploration_rate = epsilon  # type: ignore[attr-defined]  # DQN and QR-DQN both have it

    def callback(local: dict[str, Any], _globals: dict[str, Any]) -> None:
        info = local["info"]
        if on_episode is not None and local["done"] and "episode" in info:
            on_episode(float(info["episode"]["r"]), int(info["episode"]["l"]))

    rewards, lengths = evaluate_policy(
        model,
        env,
        n_eval_episodes=episodes,
        deterministic=epsilon is None,
        return_episode_rewards=True,
        callback=callback,
    )
    assert isinstance(rewards, list) and isinstance(lengths, list)
    return [float(r) for r in rewards], [int(n) for n in lengths]


def summarize(returns: list[float], lengths: list[int], solved_score: float | None) -> dict[str, float | None]:
    """Mean, population std (as SB3), median, min, max, mean length and solved fraction."""
    if not returns:
        raise RlkitError("no episode finished; nothing to summarize")
    n = len(returns)
    mean = sum(returns) / n
    return {
        "mean": mean,
        "std": math.sqrt(sum((r - mean) ** 2 for r in returns) / n),
        "median": float(statistics.median(returns)),
        "min": min(returns),
        "max": max(returns),
        "mean_length": sum(lengths) / n,
        "solved_fraction": None if solved_score is None else sum(r >= solved_score for r in returns) / n,
    }


def check_request(episodes: int, epsilon: float | None, seed: int = DEFAULT_EVAL_SEED) -> None:
    """Reject impossible episode counts, epsilons and seeds before anything is loaded."""
    from rlkit.core.seeds import check_seed

    check_seed(seed)
    if episodes < 1:
        raise RlkitError(f"--episodes must be at least 1 (got {episodes})")
    if epsilon is not None and not 0.0 <= epsilon <= 1.0:  # also refuses nan
        raise RlkitError(f"--epsilon must lie in [0, 1] (got {epsilon})")


def evaluate_run(
    run_path: Path,
    *,
    env_name: str | None = None,
    model_name: str = "auto",
    episodes: int = 50,
    seed: int = DEFAULT_EVAL_SEED,
    epsilon: float | None = None,
    device: str = "cpu",
    on_episode: Callable[[float, int], None] | None = None,
) -> EvalResult:
    """Evaluate one model of a run (or a bare model file on ``env_name``) on a fresh evaluation env."""
    from rlkit.environments.factory import make_env

    check_request(episodes, epsilon, seed)
    source = open_source(run_path, env_name, model_name)
    alias, preset, choice = source.alias, source.preset, source.choice
    model = load_source_model(source, device)
    if epsilon is not None:
        model.set_random_seed(seed)  # seeds the random actions of epsilon-greedy
    env = make_env(preset, n_envs=1, seed=seed, train=False)
    try:
        check_fits(model, env, source)
        returns, lengths = play(model, env, episodes, epsilon=epsilon, on_episode=on_episode)
    finally:
        env.close()
    stats = summarize(returns, lengths, preset.solved_score)
    return EvalResult(
        run_dir=str(source.run.path) if source.run is not None else "",
        alias=alias,
        env_id=preset.env_id,
        model=choice.label,
        model_path=str(choice.path.relative_to(source.run.path) if source.run is not None else choice.path),
        episodes=episodes,
        seed=seed,
        policy="deterministic" if epsilon is None else "epsilon-greedy",
        epsilon=epsilon,
        score_kind=score_kind(preset),
        solved_score=preset.solved_score,
        returns=returns,
        lengths=lengths,
        length_unit=length_unit(preset),
        created=now_iso(),
        **stats,  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------------------
# Result files
# ----------------------------------------------------------------------------------------


def result_path(run: RunDir | None, result: EvalResult) -> Path:
    """``evaluation-<model>-<N>ep[-eps<E>]-s<seed>.json`` in the run directory.

    A bare model file's result goes beside it: ``<stem>.evaluation-<alias>-<N>ep[-eps<E>]-s<seed>.json``.
    """
    policy = "" if result.epsilon is None else f"-eps{result.epsilon:g}"
    if run is None:
        model = Path(result.model_path)
        return model.parent / f"{model.stem}.evaluation-{result.alias}-{result.episodes}ep{policy}-s{result.seed}.json"
    return run.path / f"evaluation-{result.model}-{result.episodes}ep{policy}-s{result.seed}.json"


def save_result(result: EvalResult) -> Path:
    """Write the result atomically into its run directory (or beside a bare model); the same request replaces its own file."""
    path = result_path(RunDir(Path(result.run_dir)) if result.run_dir else None, result)
    atomic.write_json(path, result.to_dict())
    return path


def saved_results(run: RunDir) -> list[EvalResult]:
    """Every evaluation saved in a run, oldest first; unreadable files are skipped."""
    from rlkit.core import safe_json

    results: list[EvalResult] = []
    for path in sorted(run.path.glob(RESULT_GLOB), key=lambda p: p.stat().st_mtime):
        try:
            results.append(EvalResult.from_dict(safe_json.load_file(path)))
        except (OSError, ValueError, TypeError):
            continue
    return results
