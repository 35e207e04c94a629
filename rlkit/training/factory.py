"""Turning a preset into a configured SB3 DQN (or QR-DQN), and choosing the device and threads.

With every extension off the model uses SB3's own policy and replay buffer classes, so its
saved file loads in plain ``stable_baselines3.DQN.load``; the algorithm class is always
:class:`rlkit.dqn.algorithms.RlkitDQN` (diagnostics and the divergence guard) or ``RlkitQRDQN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rlkit.config.schema import Preset
from rlkit.core.errors import RlkitError
from rlkit.environments.factory import policy_kwargs, policy_name

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

    from rlkit.core.threads import ThreadTuner
    from rlkit.dqn.engine import EngineOptions

DeviceChoice = Literal["auto", "cpu", "cuda"]


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def resolve_device(choice: str) -> str:
    """``auto`` means CUDA when present; ``cuda:N`` is the N-th visible GPU; a missing GPU is an error."""
    import torch

    valid = choice in ("auto", "cpu", "cuda") or (
        choice.startswith("cuda:") and choice[5:].isdigit() and str(int(choice[5:])) == choice[5:]
    )
    if not valid:
        raise RlkitError(f"unknown device '{choice}'; valid: {DEVICE_CHOICES}")
    if choice.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RlkitError(f"--device {choice}: no CUDA GPU is available on this machine (use --device cpu or auto)")
        if ":" in choice and int(choice[5:]) >= count:
            raise RlkitError(f"--device {choice}: this machine has {count} visible GPU(s): cuda:0 to cuda:{count - 1}")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def worker_devices(choice: str, jobs: int) -> list[str]:
    """The device of each of ``jobs`` parallel workers (tuning or benchmark seeds).

    With ``auto`` or ``cuda`` and several visible GPUs, workers are spread over them round
    robin (``cuda:0``, ``cuda:1``, ...); an explicit ``cuda:N`` or ``cpu`` puts every worker there.
    """
    import torch

    device = resolve_device(choice)
    count = torch.cuda.device_count() if device == "cuda" else 0
    if count <= 1:
        return [device] * jobs
    return [f"cuda:{i % count}" for i in range(jobs)]


def configure_threads(preset: Preset, policy: str, device: str) -> int:
    """Set torch's CPU threads to start with: the preset's, else 1 for MLPs and all cores for CNNs.

    "All cores" is :func:`rlkit.core.threads.available_cores`: the process's share (``RLKIT_CORES``).

    With ``torch_threads: 0`` an MLP's count may then change while it trains: see
    :func:`thread_tuner`.
    """
    import torch

    from rlkit.core.threads import available_cores

    threads = preset.torch_threads
    if threads == 0:
        threads = 1 if (policy == "MlpPolicy" or device.startswith("cuda")) else available_cores()
    torch.set_num_threads(threads)
    return threads


def thread_tuner(preset: Preset, model: OffPolicyAlgorithm) -> ThreadTuner | None:
    """A tuner that chooses the thread count by measuring it, where that cannot change results.

    Only for ``torch_threads: 0`` on the CPU with at least two cores, and for a Q-network whose
    gradient step is :class:`~rlkit.dqn.mlp_update.MlpUpdate` and gives bit-identical results at
    every candidate count (:func:`rlkit.dqn.invariance.thread_invariant`). ``None`` when the count
    stays as :func:`configure_threads` set it. The learn loop runs it through
    :class:`rlkit.training.callbacks.ThreadTuning`.
    """
    from rlkit.core.threads import ThreadTuner, available_cores, candidate_counts
    from rlkit.dqn.algorithms import RlkitAlgorithm
    from rlkit.dqn.invariance import thread_invariant

    cores = available_cores()
    candidates = candidate_counts(cores)
    eligible = (
        preset.torch_threads == 0
        and model.device.type == "cpu"
        and len(candidates) > 1
        and isinstance(model, RlkitAlgorithm)
        and model.engine.manual is not None
    )
    if not eligible or not thread_invariant(model, candidates):
        return None
    return ThreadTuner(candidates, cores=cores)


@dataclass
class Trainee:
    """What :func:`build` makes for one seed: the training env, the model, its threads and tuner."""

    env: VecEnv
    model: OffPolicyAlgorithm
    policy: str
    threads: int
    tuner: ThreadTuner | None
    device: str

    @property
    def threads_label(self) -> int | str:
        return threads_label(self.threads, self.tuner)


def build(
    preset: Preset,
    *,
    seed: int,
    device: str,
    env_seed: int | None = None,
    monitor_dir: Path | None = None,
    tensorboard_log: Path | None = None,
    checkpoint: Path | None = None,
) -> Trainee:
    """The one factory behind train, resume, tuning trials and benchmark seeds.

    Makes the training env (seeded ``env_seed``, default ``seed``; Monitor files in
    ``monitor_dir``), sets torch's threads, builds a fresh model (or loads ``checkpoint``'s
    ``model.zip`` onto the env) and decides on a thread tuner.
    """
    from rlkit.environments.factory import make_env

    env = make_env(
        preset,
        n_envs=preset.n_envs,
        seed=seed if env_seed is None else env_seed,
        monitor_dir=monitor_dir,
        resume=checkpoint is not None,
    )
    try:
        policy = policy_name(preset, env.observation_space)
        threads = configure_threads(preset, policy, device)
        if checkpoint is None:
            model = build_model(preset, env, seed=seed, device=device, tensorboard_log=tensorboard_log)
        else:
            model = load_model(checkpoint / "model.zip", env, device, preset=preset)
        return Trainee(env, model, policy, threads, thread_tuner(preset, model), device)
    except BaseException:
        env.close()  # subprocess envs: no worker outlives a build that failed
        raise


def threads_label(threads: int, tuner: ThreadTuner | None) -> int | str:
    """What ``meta.json`` and reports show: the fixed count, or ``auto 1/2`` with the candidates."""
    return threads if tuner is None else "auto " + "/".join(str(c) for c in tuner.candidates)


def build_model(
    preset: Preset,
    env: VecEnv,
    *,
    seed: int | None,
    device: str,
    tensorboard_log: Path | None,
    engine: EngineOptions | None = None,
) -> OffPolicyAlgorithm:
    """A fresh DQN or QR-DQN with every hyperparameter and extension switch taken from the preset.

    rlkit's switches (:func:`rlkit.dqn.algorithms.switch_names`) are passed by name from the
    preset field of the same name; ``engine`` picks the gradient step's fast paths (default: all).
    """
    from stable_baselines3.common.utils import LinearSchedule

    from rlkit.dqn.algorithms import RlkitDQN, RlkitQRDQN, switch_names

    policy = policy_name(preset, env.observation_space)
    lr: float | LinearSchedule = preset.learning_rate
    if preset.learning_rate_schedule == "linear":
        lr = LinearSchedule(preset.learning_rate, 0.0, 1.0)
    kwargs: dict[str, Any] = dict(
        learning_rate=lr,
        buffer_size=preset.buffer_size,
        learning_starts=preset.learning_starts,
        batch_size=preset.batch_size,
        tau=preset.tau,
        gamma=preset.gamma,
        train_freq=preset.train_freq,
        gradient_steps=preset.gradient_steps,
        n_steps=preset.n_steps,
        optimize_memory_usage=preset.optimize_memory_usage,
        target_update_interval=preset.target_update_interval,
        exploration_fraction=preset.exploration_fraction,
        exploration_initial_eps=0.0 if preset.noisy else preset.exploration_initial_eps,
        exploration_final_eps=0.0 if preset.noisy else preset.exploration_final_eps,
        max_grad_norm=preset.max_grad_norm,
        tensorboard_log=str(tensorboard_log) if tensorboard_log is not None else None,
        seed=seed,
        device=device,
        verbose=0,
        engine=engine,
        **{name: getattr(preset, name) for name in switch_names()},
    )
    kwargs.update(_replay_buffer(preset, device))
    # Fused Adam: the same update as SB3's default Adam in one kernel (measured ~14% off a gradient step).
    net_kwargs: dict[str, Any] = {**policy_kwargs(preset, policy), **_head_kwargs(preset)}
    net_kwargs["optimizer_kwargs"] = {"fused": True}
    if preset.distribution == "qr":
        import torch

        # sb3-contrib's own default (Adam, eps 0.01 / batch_size from the QR-DQN paper), fused.
        net_kwargs.update(optimizer_class=torch.optim.Adam, n_quantiles=preset.n_quantiles)
        net_kwargs["optimizer_kwargs"] = {"eps": 0.01 / preset.batch_size, "fused": True}
    if preset.adam_eps is not None:
        net_kwargs["optimizer_kwargs"]["eps"] = preset.adam_eps
    cls = RlkitQRDQN if preset.distribution == "qr" else RlkitDQN
    return cls(_policy_class(preset, policy), env, policy_kwargs=net_kwargs, **kwargs)


def _replay_buffer(preset: Preset, device: str) -> dict[str, Any]:
    """SB3's buffer (chosen by SB3 from n_steps), the prioritized one, or the frame buffer (uniform 1-step).

    The frame buffer keeps a copy of its frames on the model's device (``DeviceFrameReplayBuffer``)
    when ``frame_buffer_storage`` says ``device``, or ``auto`` and the model trains on CUDA.
    """
    options: dict[str, Any] = {"handle_timeout_termination": not preset.optimize_memory_usage}
    if preset.frame_buffer and not preset.prioritized_replay and preset.n_steps == 1:
        from rlkit.replay.buffers import DeviceFrameReplayBuffer, FrameReplayBuffer

        storage = preset.frame_buffer_storage
        on_device = storage == "device" or (storage == "auto" and str(device).startswith("cuda"))
        cls = DeviceFrameReplayBuffer if on_device else FrameReplayBuffer
        return {"replay_buffer_class": cls, "replay_buffer_kwargs": options}
    if not preset.prioritized_replay:
        return {"replay_buffer_kwargs": options}
    from rlkit.replay.buffers import PrioritizedReplayBuffer

    options.update(alpha=preset.per_alpha, eps=preset.per_eps)
    return {"replay_buffer_class": PrioritizedReplayBuffer, "replay_buffer_kwargs": options}


def _policy_class(preset: Preset, policy: str) -> Any:
    """SB3's (or sb3-contrib's) policy by name for a plain head; rlkit's for dueling, noisy or C51 heads."""
    if not _head_kwargs(preset):
        return policy
    from rlkit.dqn import policies

    if preset.distribution == "qr":
        return policies.RlkitQRCnnPolicy if policy == "CnnPolicy" else policies.RlkitQRDQNPolicy
    return policies.RlkitCnnPolicy if policy == "CnnPolicy" else policies.RlkitDQNPolicy


def _head_kwargs(preset: Preset) -> dict[str, Any]:
    """The head's options for rlkit's policies; empty for the plain heads SB3 and sb3-contrib build."""
    kwargs: dict[str, Any] = {}
    if preset.dueling or preset.noisy:
        kwargs.update(dueling=preset.dueling, noisy=preset.noisy, noisy_sigma0=preset.noisy_sigma0)
    if preset.distribution == "c51":
        kwargs.update(distribution="c51", n_atoms=preset.n_atoms, v_min=preset.v_min, v_max=preset.v_max)
    return kwargs


def saved_algo(path: Path) -> str:
    """``qrdqn`` or ``dqn``: read from the saved file's JSON data, without building the model."""
    data = _saved_data(path)
    if "rlkit_algo" in data:
        return str(data["rlkit_algo"])
    return "qrdqn" if "n_quantiles" in data else "dqn"


REBUILT = (
    "policy_class",
    "policy_kwargs",
    "observation_space",
    "action_space",
    "replay_buffer_class",
    "train_freq",
    "learning_rate",
    "lr_schedule",
    "exploration_schedule",
)
"""Serialized (cloudpickled) entries of an SB3 zip's ``data`` that rlkit rebuilds from the run's config."""

RUNTIME_STATE = ("_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer", "ep_success_buffer")
"""Serialized entries that are runtime state: dropped (reset on load; a resumed run resets its envs)."""


EXPECTED_GLOBALS = (
    "stable_baselines3.",
    "sb3_contrib.",
    "rlkit.",
    "gymnasium.spaces.",
    "numpy.",
    "torch.nn.",
    "torch.optim.",
    "collections.deque",
)
"""What the pickles SB3 writes for an rlkit model name. They are never unpickled (everything is
rebuilt); naming anything else (``builtins.exec``, ``os.system``, code pickled by value) marks
the file as crafted, and it is refused."""


def pickled_globals(blob: bytes) -> set[str]:
    """The ``module.name`` globals a pickle would import, found by reading its opcodes (nothing runs)."""
    import pickletools

    found: set[str] = set()
    strings: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(blob):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING"):
            strings.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg if isinstance(arg, int) else -1] = strings[-1] if strings else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(arg if isinstance(arg, int) else -1))
        elif op.name in ("GLOBAL", "INST"):
            found.add(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2] if len(strings) > 1 else '?'}.{strings[-1] if strings else '?'}")
    return found


def _unexpected_global(key: str, entry: dict[str, Any]) -> str | None:
    """The first global a serialized entry names that no rlkit model's pickle would, if any."""
    import base64
    import binascii

    try:
        blob = base64.b64decode(str(entry[":serialized:"]).encode(), validate=True)
        names = pickled_globals(blob)
    except (binascii.Error, ValueError, IndexError, TypeError) as exc:
        return f"an unreadable pickle ({exc})"
    for name in sorted(names):
        if not name.startswith(EXPECTED_GLOBALS):
            return name
    return None


def _saved_data(path: Path) -> dict[str, Any]:
    """The JSON ``data`` entry of an SB3 zip, parsed as plain JSON (nothing deserialized)."""
    import zipfile

    from rlkit.core import safe_json

    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():  # a zip bomb is refused before SB3 unpacks anything
                safe_json.member_size(archive, member, 4 * 2**30)
            safe_json.member_size(archive, "data")
            data = safe_json.loads(archive.read("data"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise RlkitError(f"cannot load model {path}: corrupted or not an SB3 model ({exc})") from None
    if not isinstance(data, dict):
        raise RlkitError(f"cannot load model {path}: its data entry is not a JSON object")
    return data


def _serialized_keys(data: dict[str, Any]) -> list[str]:
    return [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]


def find_run_preset(path: Path) -> Preset | None:
    """The config of the run a model file belongs to (``<run>/x.zip`` or ``<run>/checkpoints/step-N/x.zip``)."""
    from rlkit.training.rundir import RunDir

    for folder in (path.parent, path.parent.parent.parent):
        if (folder / "config.yaml").is_file():
            return RunDir(folder).read_config()[2]
    return None


def load_model(path: Path, env: VecEnv | None, device: str, preset: Preset | None = None) -> OffPolicyAlgorithm:
    """Load a saved DQN or QR-DQN with every switch restored, never unpickling anything from the file.

    SB3 stores schedules, spaces and classes in the zip as cloudpickle, and unpickling runs any
    code a crafted file names. Here every such entry is replaced (SB3's ``custom_objects``) by
    the object a fresh model built from ``preset`` (default: the config of the run the file is
    in) has, runtime state is dropped, and a serialized entry rlkit does not know is refused in
    one line naming it. The weights (``*.pth``) are read by SB3 with ``torch.load(weights_only=True)``.
    A bad file is a one-line error.
    """
    import warnings

    from rlkit.dqn.algorithms import RlkitDQN, RlkitQRDQN

    if not path.is_file():
        raise RlkitError(f"model file not found: {path}")
    data = _saved_data(path)
    serialized = _serialized_keys(data)
    unknown = [k for k in serialized if k not in REBUILT and k not in RUNTIME_STATE]
    if unknown:
        raise RlkitError(
            f"refusing to load {path}: its data entry '{unknown[0]}' is serialized code/objects that rlkit "
            "does not rebuild (loading it would unpickle data from the file)"
        )
    for key in serialized:
        odd = _unexpected_global(key, data[key])
        if odd is not None:
            raise RlkitError(
                f"refusing to load {path}: its data entry '{key}' names {odd}, which no rlkit model contains "
                "(a crafted or damaged file; rlkit never unpickles it)"
            )
    if preset is None:
        preset = find_run_preset(path)
        if preset is None:
            raise RlkitError(
                f"cannot load {path} safely: no run config (config.yaml) beside it to rebuild its "
                "objects from; load it from its run directory"
            )
    algo = saved_algo(path)
    if algo not in ("dqn", "qrdqn"):
        raise RlkitError(f"cannot load model {path}: rlkit_algo is {algo!r}; valid: dqn, qrdqn")
    if algo != preset.algo:
        raise RlkitError(f"cannot load model {path}: it is a {algo} model but the run's config says {preset.algo}")
    custom, known = _rebuilt_objects(preset, env, device)
    stranger = [k for k in data if k not in known]
    if stranger:
        raise RlkitError(
            f"refusing to load {path}: its data entry '{stranger[0]}' is not an attribute of an rlkit model"
        )
    cls = RlkitQRDQN if algo == "qrdqn" else RlkitDQN
    try:
        with warnings.catch_warnings():
            # A saved n-step model names SB3's NStepReplayBuffer with n_steps in its kwargs, which
            # SB3 then (wrongly) reports as "n_steps is ignored"; the buffer is built correctly.
            warnings.filterwarnings("ignore", message=".*is ignored because a custom `replay_buffer_class`")
            return cls.load(path, env=env, device=device, custom_objects=custom)
    except RlkitError:
        raise
    except Exception as exc:  # a crafted file can fail anywhere in SB3's load; it is still one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RlkitError(
            f"cannot load model {path}: corrupted or not this run's model ({type(exc).__name__}: {first})"
        ) from None


def _rebuilt_objects(preset: Preset, env: VecEnv | None, device: str) -> tuple[dict[str, Any], set[str]]:
    """The trusted objects (a fresh model's own; ``None`` for runtime state) and the attributes a model has."""
    from rlkit.environments.factory import make_env

    spaces_env = env if env is not None else make_env(preset, n_envs=1, seed=0, train=False)
    try:
        # A tiny buffer: only the model's schedules, spaces and classes are wanted.
        small = preset.model_copy(update={"buffer_size": max(preset.batch_size, 64)})
        fresh = build_model(small, spaces_env, seed=None, device=device, tensorboard_log=None)
    finally:
        if env is None:
            spaces_env.close()
    custom: dict[str, Any] = {key: None for key in RUNTIME_STATE}
    for key in REBUILT:
        custom[key] = getattr(fresh, key)
    known = {k for k in dir(fresh) if not k.startswith("__")}
    return custom, known
