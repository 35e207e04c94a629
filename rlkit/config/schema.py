"""The typed configuration schema shared by presets, overrides, tuning and run directories.

A preset (``envs/<alias>.yaml``) is a YAML mapping whose keys are the fields of :class:`Preset`.
Every value is plain data: numbers, strings, booleans and lists. Nothing is ever ``eval``'d.
Nested keys are addressed with dots everywhere (``--set policy_kwargs.net_arch=[64,64]``,
search spaces, exported presets), so one name means the same thing in every place.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rlkit.core.errors import RlkitError

ActivationName = Literal["relu", "tanh", "elu", "leaky_relu", "gelu", "silu"]
PolicyName = Literal["auto", "MlpPolicy", "CnnPolicy"]


class _Strict(BaseModel):
    # Numbers are finite: YAML's .nan and .inf are refused everywhere unless a field says otherwise.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
"""A dotted Python module name (``pkg.module``): what ``env_imports`` and ``module:EnvId`` may name."""


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``("pkg.module", "EnvId-v0")`` for gymnasium's ``pkg.module:EnvId-v0`` form, else ``(None, env_id)``."""
    if ":" not in env_id:
        return None, env_id
    module, _, name = env_id.partition(":")
    return module.strip(), name.strip()


class PolicyKwargs(_Strict):
    """Network shape, as plain data handed to SB3's policy."""

    net_arch: list[int] | None = None
    """Hidden layer sizes of the Q-network; unset means SB3's default ([64, 64] MLP, none after a CNN)."""

    activation_fn: ActivationName = "relu"
    """Activation between hidden layers."""

    features_dim: int | None = Field(default=None, ge=1)
    """CnnPolicy only: size of the NatureCNN output (SB3 default 512)."""

    normalize_images: bool = True
    """CnnPolicy only: divide pixel values by 255 before the network."""

    @model_validator(mode="after")
    def _positive_layers(self) -> PolicyKwargs:
        if self.net_arch is not None and any(size < 1 for size in self.net_arch):
            raise ValueError("every layer size in net_arch must be at least 1")
        return self


class WrapperSpec(_Strict):
    """One gymnasium wrapper, applied to training and evaluation envs alike."""

    name: str = Field(min_length=1)
    """A class of ``gymnasium.wrappers`` (``TimeLimit``, ``ClipReward``, ``NormalizeObservation``, ...) or
    ``module:Class`` of a module the user imported explicitly (``--import module``); rlkit never imports it."""

    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the wrapper (plain data)."""


class AtariConfig(_Strict):
    """The standard DQN Atari preprocessing (Mnih et al. 2015; SB3's AtariWrapper)."""

    frame_skip: int = Field(default=4, ge=1)
    """Repeat each action this many frames (max-pooled over the last two)."""

    frame_stack: int = Field(default=4, ge=1)
    """Number of consecutive 84x84 grayscale frames fed to the network."""

    screen_size: int = Field(default=84, ge=16)
    """Side of the square, grayscale observation."""

    noop_max: int = Field(default=30, ge=0)
    """Up to this many no-op actions at reset, for varied starts."""

    terminal_on_life_loss: bool = True
    """Training only: end an episode at each life lost (evaluation always plays full games)."""

    clip_reward: bool = True
    """Training only: clip rewards to their sign (evaluation reports the real game score)."""

    backend: Literal["sb3", "ale"] = "sb3"
    """Training envs: ``sb3`` (SB3's AtariWrapper, DummyVecEnv, VecFrameStack) or ``ale`` (ale-py's threaded C++ AtariVectorEnv behind SB3's VecEnv, ``rlkit.environments.atari_vec``); evaluation always uses ``sb3``."""


class Preset(_Strict):
    """Everything needed to train DQN on one environment."""

    # --- environment -------------------------------------------------------------------
    env_id: str
    """Gymnasium environment id, e.g. ``LunarLander-v3`` or ``PongNoFrameskip-v4``. Gymnasium's
    ``pkg.module:EnvId-v0`` form is read as ``env_id: EnvId-v0`` with ``pkg.module`` in ``env_imports``."""

    env_imports: list[str] = Field(default_factory=list)
    """Python modules imported before the env is made (they register custom envs with gymnasium).
    Imported only when named on the command line (``--import``, or ``rlkit train pkg.module:EnvId-v0``);
    a run records them and its evaluate, record, report and resume import them again (docs/custom-envs.md)."""

    description: str = ""
    """One line shown by ``rlkit envs``."""

    aliases: list[str] = Field(default_factory=list)
    """Extra case-insensitive names for this preset (the file stem is always one)."""

    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to ``gymnasium.make``."""

    atari: AtariConfig | None = None
    """Atari preprocessing; filled in automatically for ALE environments."""

    n_envs: int = Field(default=1, ge=1)
    """Number of training environments stepped together."""

    vec_env: Literal["dummy", "subproc"] = "dummy"
    """How ``n_envs`` training envs step: ``dummy`` one after the other in this process (SB3's DummyVecEnv),
    ``subproc`` each in its own process (SubprocVecEnv; pays only for slow envs on several free cores)."""

    wrappers: list[WrapperSpec] = Field(default_factory=list)
    """Gymnasium wrappers around each env, innermost first, part of the task: Monitor files, evaluations and
    videos see what they return (Atari's preprocessing still wraps outside them)."""

    # --- algorithm and policy ----------------------------------------------------------
    algo: Literal["dqn", "qrdqn"] = "dqn"
    """The SB3 class ``distribution`` needs: ``qrdqn`` (sb3-contrib's QR-DQN) for ``qr``, else ``dqn``.
    Derived, and not written into configs; ``algo: qrdqn`` (the spelling before 0.2) means ``distribution: qr``."""

    distribution: Literal["none", "c51", "qr"] = "none"
    """The value head: ``none`` (Q-values), ``c51`` (Bellemare et al. 2017: a categorical distribution over
    ``n_atoms`` fixed returns in [``v_min``, ``v_max``], projected Bellman targets, KL loss) or ``qr``
    (QR-DQN, Dabney et al. 2018: ``n_quantiles`` quantiles, quantile Huber loss). Each combines with
    double_q, dueling, noisy, prioritized_replay and n_steps (all of them on is Rainbow)."""

    policy: PolicyName = "auto"
    """``auto`` picks CnnPolicy for image observations and MlpPolicy otherwise."""

    policy_kwargs: PolicyKwargs = Field(default_factory=PolicyKwargs)
    """Network shape."""

    # --- SB3 DQN hyperparameters (same names and meaning as stable_baselines3.DQN) -----
    learning_rate: float = Field(default=1e-4, gt=0, le=1)
    """Adam learning rate."""

    adam_eps: float | None = Field(default=None, gt=0)
    """Adam's epsilon; unset is torch's 1e-8 (QR-DQN: sb3-contrib's 0.01 / batch_size). Rainbow uses 1.5e-4."""

    learning_rate_schedule: Literal["constant", "linear"] = "constant"
    """``linear`` decays the learning rate to zero over the budget."""

    buffer_size: int = Field(default=1_000_000, ge=1)
    """Replay buffer capacity, in transitions."""

    learning_starts: int = Field(default=100, ge=0)
    """Environment steps collected before the first gradient step."""

    batch_size: int = Field(default=32, ge=1)
    """Minibatch size sampled from the replay buffer."""

    tau: float = Field(default=1.0, gt=0, le=1)
    """Target network update coefficient (1 = hard copy)."""

    gamma: float = Field(default=0.99, ge=0, le=1)
    """Discount factor."""

    train_freq: int = Field(default=4, ge=1)
    """Environment steps (per env) between two training phases."""

    gradient_steps: int = Field(default=1, ge=-1)
    """Gradient steps per training phase; -1 means as many as environment steps collected."""

    n_steps: int = Field(default=1, ge=1)
    """Multi-step returns: bootstrap after this many rewards."""

    target_update_interval: int = Field(default=10_000, ge=1)
    """Environment steps between target network syncs."""

    exploration_fraction: float = Field(default=0.1, gt=0)
    """Fraction of the budget over which epsilon decays linearly. Above 1 epsilon is still decaying
    when the budget ends: what a run trained on to a total below its first budget gets (a run that
    stopped once solved, ``--resume RUN --steps N``), its schedule staying anchored in absolute steps."""

    exploration_initial_eps: float = Field(default=1.0, ge=0, le=1)
    """Epsilon at the start of training."""

    exploration_final_eps: float = Field(default=0.05, ge=0, le=1)
    """Epsilon after the decay."""

    max_grad_norm: float = Field(default=10.0, gt=0)
    """Gradients are clipped to this global norm."""

    optimize_memory_usage: bool = False
    """Store each observation once in the replay buffer (SB3's memory-efficient variant)."""

    frame_buffer: bool = False
    """rlkit's replay buffer for image observations: each frame stack written once, timeouts handled, batches gathered once; uniform 1-step replay only (prioritized or n-step replay keep their own buffers)."""

    frame_buffer_storage: Literal["auto", "host", "device"] = "auto"
    """Where the frame buffer's batches are gathered: ``device`` also keeps the frames on the model's device
    (a GPU: no frame crosses the bus per gradient step; twice the memory, half of it on the GPU), ``host``
    in main memory only, ``auto`` on the device when training on CUDA."""

    # --- DQN extensions (rlkit.dqn); all off means SB3's vanilla DQN -------------------
    double_q: bool = False
    """Double DQN targets: the online network picks the next action, the target network values it."""

    dueling: bool = False
    """Dueling head (value and mean-subtracted advantage streams; per atom for distributional heads)."""

    noisy: bool = False
    """NoisyNet layers in the head replace epsilon-greedy exploration (epsilon is then 0)."""

    noisy_sigma0: float = Field(default=0.5, gt=0)
    """Initial noise scale of the NoisyNet layers (sigma0 / sqrt(fan-in) per weight)."""

    prioritized_replay: bool = False
    """Proportional prioritized replay (sum-tree, importance-sampling weights); works with n_steps."""

    per_alpha: float = Field(default=0.6, ge=0)
    """Prioritization exponent: 0 is uniform sampling, 1 fully proportional to |TD error|."""

    per_beta0: float = Field(default=0.4, ge=0, le=1)
    """Importance-sampling exponent at the start of training."""

    per_beta_final: float = Field(default=1.0, ge=0, le=1)
    """Importance-sampling exponent reached after ``per_beta_fraction`` of the budget."""

    per_beta_fraction: float = Field(default=1.0, gt=0)
    """Fraction of the budget over which beta anneals linearly from ``per_beta0`` to ``per_beta_final``
    (above 1, as ``exploration_fraction``: still annealing when the budget ends)."""

    per_eps: float = Field(default=1e-6, gt=0)
    """Added to |TD error| so that every transition keeps a non-zero priority."""

    loss: Literal["huber", "mse"] = "huber"
    """TD loss of a Q-value head (``distribution: none``): ``huber`` (SB3's smooth L1) or ``mse``."""

    n_quantiles: int = Field(default=50, ge=2)
    """``distribution: qr``: quantiles per action."""

    n_atoms: int = Field(default=51, ge=2)
    """``distribution: c51``: atoms of the return distribution (51 in the C51 and Rainbow papers)."""

    v_min: float = -10.0
    """``distribution: c51``: the smallest return of the support (Rainbow: -10; scale it to the env's returns)."""

    v_max: float = 10.0
    """``distribution: c51``: the largest return of the support (Rainbow: 10)."""

    diagnostics_interval: int = Field(default=100, ge=0)
    """Log TD-error, gradient and Q statistics under ``diag/`` every this many gradient steps (0 disables)."""

    divergence_q_bound: float = Field(default=1e6, gt=0, allow_inf_nan=True)
    """Stop training with an error when any |Q| exceeds this (or the loss is not finite); ``.inf`` checks only the loss."""

    # --- budget, evaluation and checkpoints ---------------------------------------------
    n_timesteps: int = Field(default=100_000, ge=1)
    """Training budget in environment steps (all envs together)."""

    eval_freq: int = Field(default=10_000, ge=0)
    """Evaluate every this many environment steps (0 disables periodic evaluation)."""

    eval_episodes: int = Field(default=10, ge=1)
    """Episodes per periodic evaluation (deterministic policy, separate env)."""

    eval_envs: int = Field(default=1, ge=1)
    """Envs a periodic evaluation plays at once, one batched action choice per step (SB3's ``evaluate_policy``
    splits the episodes evenly among them); the confirmation of ``solved_episodes`` plays on up to 10."""

    checkpoint_freq: int = Field(default=25_000, ge=0)
    """Write a resumable checkpoint every this many environment steps (0 disables)."""

    keep_checkpoints: int = Field(default=2, ge=1)
    """Only the newest this many checkpoints are kept."""

    checkpoint_replay_buffer: bool = True
    """Save the replay buffer with each checkpoint (needed for an exact resume)."""

    solved_score: float | None = None
    """Mean evaluation return at which the task counts as solved (a finite number)."""

    stop_on_solved: bool = False
    """Stop training once the run is solved (see ``solved_episodes``): the final model is then the one that solved."""

    solved_episodes: int = Field(default=100, ge=0)
    """An evaluation that reaches ``solved_score`` is confirmed over this many more deterministic episodes
    (a separate env; gymnasium's "solved" is a mean over 100 episodes) before the run counts as solved,
    its time to solve is recorded and, with ``stop_on_solved``, training stops; 0 trusts the evaluation alone.
    Each confirmation plays episodes from env seeds of its own, never those of the periodic evaluations."""

    solved_rounds: int = Field(default=2, ge=1, le=5)
    """Confirmation rounds: a round of ``solved_episodes`` that clears the bound is followed by another on
    fresh seeds, and the run is solved when the bound over all the rounds' episodes together still clears it.
    A first round is the one that passed among many tries (a lucky one, for a model near the score, whose
    few crashes also shrink its spread); the next round is not chosen, so pooling it in undoes the luck."""

    solved_confidence: float = Field(default=0.99, ge=0.0, lt=1.0)
    """A confirmation holds when the lower bound of a one-sided interval at this confidence for the
    confirming mean (``mean - z * std / sqrt(episodes)``) reaches ``solved_score``; 0 asks only the mean.
    The margin makes a model whose true mean is below the score rarely pass, even when a run confirms
    many times (docs/evaluate-record-plot-report.md gives the false-solved rate measured both ways)."""

    torch_threads: int = Field(default=0, ge=0)
    """CPU threads for torch; 0 lets an MLP's training loop measure 1 against 2 threads and keep the
    faster (re-measured as the load changes; bit-identical results either way), and gives CNNs all cores."""

    # --- tuning ------------------------------------------------------------------------
    search_space: str | None = None
    """``rlkit tune``'s search space: a name in ``tuning/`` (``classic``) or a YAML file; unset picks by family."""

    @model_validator(mode="before")
    @classmethod
    def _module_in_env_id(cls, data: Any) -> Any:
        """``env_id: pkg.module:EnvId-v0`` becomes ``env_id: EnvId-v0`` with the module in ``env_imports``."""
        if not isinstance(data, dict) or not isinstance(data.get("env_id"), str):
            return data
        module, name = split_env_id(data["env_id"])
        if module is None:
            return data
        if not MODULE_NAME.fullmatch(module) or not name or ":" in name:
            raise ValueError(
                f"env_id '{data['env_id']}' is not of the form pkg.module:EnvId-v0 (a module name, a colon, an env id)"
            )
        imports = data.get("env_imports") or []
        if not isinstance(imports, list):
            return data  # the field's own validation says what is wrong
        return {**data, "env_id": name, "env_imports": [*imports, *([module] if module not in imports else [])]}

    @model_validator(mode="before")
    @classmethod
    def _algo_follows_distribution(cls, data: Any) -> Any:
        """``algo`` is the class ``distribution`` needs; ``algo: qrdqn`` alone (configs before 0.2) is ``qr``."""
        if not isinstance(data, dict) or data.get("algo") not in ("dqn", "qrdqn", None):
            return data  # the field's own validation says what is wrong
        distribution = data.get("distribution", "qr" if data.get("algo") == "qrdqn" else "none")
        if data.get("algo") == "qrdqn" and distribution != "qr":
            raise ValueError(
                f"algo qrdqn is distribution qr, not {distribution}; set distribution alone (none, c51 or qr)"
            )
        if distribution not in ("none", "c51", "qr"):
            return data
        return {**data, "distribution": distribution, "algo": "qrdqn" if distribution == "qr" else "dqn"}

    @model_validator(mode="after")
    def _consistent(self) -> Preset:
        for module in self.env_imports:
            if not MODULE_NAME.fullmatch(module):
                raise ValueError(f"env_imports: '{module}' is not a Python module name (valid: pkg.module)")
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"buffer_size {self.buffer_size} is smaller than batch_size {self.batch_size}; "
                "the replay buffer must hold at least one batch"
            )
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ValueError("exploration_final_eps must not exceed exploration_initial_eps")
        if self.stop_on_solved and self.solved_score is None:
            raise ValueError("stop_on_solved needs a solved_score")
        if self.eval_envs > self.eval_episodes:
            raise ValueError(
                f"eval_envs {self.eval_envs} exceeds eval_episodes {self.eval_episodes}; "
                "each evaluation env plays at least one episode (valid: 1 to eval_episodes)"
            )
        if self.distribution != "none" and self.loss != "huber":
            raise ValueError(
                f"loss {self.loss} applies to Q-value heads only; distribution {self.distribution} has its own loss "
                "(valid: loss huber, or distribution none)"
            )
        if self.v_min >= self.v_max:
            raise ValueError(f"v_min {self.v_min:g} must be below v_max {self.v_max:g}")
        if self.optimize_memory_usage and (self.prioritized_replay or self.n_steps > 1):
            raise ValueError(
                "optimize_memory_usage works only with uniform 1-step replay (no prioritized_replay, n_steps 1)"
            )
        if self.frame_buffer and self.optimize_memory_usage:
            raise ValueError(
                "frame_buffer already stores each observation once; set optimize_memory_usage false with it"
            )
        if self.per_beta_final < self.per_beta0:
            raise ValueError("per_beta_final must be at least per_beta0 (beta anneals upwards)")
        return self


def preset_warnings(preset: Preset) -> list[str]:
    """Settings that are legal but make a run useless, one line each (shown once on the terminal)."""
    found: list[str] = []
    default_support = (preset.v_min, preset.v_max) == (-10.0, 10.0)
    big_returns = preset.solved_score is not None and abs(preset.solved_score) > preset.v_max
    if preset.distribution == "c51" and preset.atari is None and default_support and big_returns:
        found.append(
            f"distribution c51 on [-10, 10] is Rainbow's support for clipped Atari rewards, but this env's "
            f"returns reach {preset.solved_score:g} (solved_score): values beyond it are clipped; set v_min "
            "and v_max to cover its discounted returns (e.g. --set v_min=-100 --set v_max=200)"
        )
    if preset.learning_starts >= preset.n_timesteps:
        found.append(
            f"learning_starts {preset.learning_starts} >= n_timesteps {preset.n_timesteps}: no gradient step "
            "will be taken and the agent will not learn; lower it with --set learning_starts=N"
        )
    return found


# ----------------------------------------------------------------------------------------
# Keys, overrides and one-line error messages
# ----------------------------------------------------------------------------------------


def field_paths(model: type[BaseModel] = Preset, prefix: str = "") -> list[str]:
    """All dotted keys the schema accepts, nested models included."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        sub = _nested_model(info.annotation)
        if sub is not None:
            paths.extend(field_paths(sub, prefix=f"{path}."))
    return paths


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def did_you_mean(word: str, choices: list[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(data: dict[str, Any], source: str, prefix: str = "") -> None:
    """Reject unknown keys with a did-you-mean before pydantic sees them."""
    valid = field_paths()
    free_dicts = {"env_kwargs"}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path not in valid:
            raise RlkitError(f"{source}: unknown key '{path}'{did_you_mean(path, valid)}")
        if isinstance(value, dict) and path not in free_dicts:
            check_keys(value, source, prefix=f"{path}.")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the intermediate mappings."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``extra`` laid over ``base``, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "env_kwargs":
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key=value"`` with the value read as YAML (numbers, booleans, lists); malformed YAML stays a string.

    The value goes through :mod:`rlkit.core.safe_yaml`: an alias bomb, a tag or a huge value is one line.
    """
    from rlkit.core import safe_yaml

    if "=" not in text:
        raise RlkitError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise RlkitError(f"--set expects key=value, got '{text}'")
    try:
        value = safe_yaml.load_text(raw, f"--set {key}") if raw.strip() else ""
    except safe_yaml.YamlMalformed:
        value = raw
    return key, value


def validate(data: dict[str, Any], source: str) -> Preset:
    """Validate a mapping against the schema; any problem becomes one clear line."""
    check_keys(data, source)
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        raise RlkitError(f"{source}: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as ``key: message (got value)``."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"] if not isinstance(part, int))
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    if err["type"] == "missing":
        return f"missing required key '{loc}'"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}"


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys, the form ``--set`` and search spaces use."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_plain(preset: Preset) -> dict[str, Any]:
    """A JSON/YAML-ready dict of the resolved preset (``env_imports`` only when there are some)."""
    plain = preset.model_dump(mode="json", exclude={"algo"})  # derived from distribution
    if not plain["env_imports"]:
        del plain["env_imports"]  # configs, digests and studies of plain gymnasium envs stay as they were
    return plain
