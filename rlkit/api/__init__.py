"""rlkit from Python: the same functions the commands call, for scripts and notebooks.

    import rlkit

    run = rlkit.train("cartpole", seed=0, steps=20_000)          # a run directory, like `rlkit train`
    rlkit.resume(run.run_dir, steps=30_000)                     # train it on to 30k steps
    score = rlkit.evaluate(run.run_dir, episodes=20)            # like `rlkit evaluate`
    video = rlkit.record(run.run_dir, episodes=1)               # like `rlkit record`
    model = rlkit.load(run.run_dir, model="best")               # an SB3 model, ready to predict
    study = rlkit.tune("cartpole", trials=10, steps=5_000)      # like `rlkit tune`

Every function validates its input as the CLI does and raises :class:`rlkit.RlkitError` with
one clear line (never ``SystemExit``); results are typed dataclasses. Nothing heavy is imported
until a function is called, so ``import rlkit`` stays instant. Overrides are a mapping of preset
keys (dotted for nesting) to values, or ``key=value`` strings as with ``--set``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.core.errors import RlkitError
from rlkit.core.seeds import SEED_MAX

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    from rlkit.analysis.doctor import Diagnosis
    from rlkit.analysis.evaluation import EvalResult
    from rlkit.analysis.video import Recording
    from rlkit.config.presets import Resolved
    from rlkit.training.train import TrainResult
    from rlkit.tuning.study import Prepared

Overrides = Mapping[str, Any] | Sequence[str] | None

MAX_SEED = SEED_MAX


def _assignments(overrides: Overrides) -> list[str]:
    """``{"a.b": 1}`` or ``["a.b=1"]`` as ``--set`` strings (values written as JSON, which YAML reads back)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise RlkitError("overrides must be a mapping or a list of 'key=value' strings, not one string")
    return [str(item) for item in overrides]


def _check_seed(seed: int | None, what: str = "seed") -> None:
    from rlkit.core.seeds import check_seed

    if seed is not None:
        check_seed(seed, what)


def _expect(required: tuple[str, ...] = (), /, **values: Any) -> None:
    """Each keyword's value is of its kind in ``_KINDS`` (or ``None``); anything else is a one-line :class:`RlkitError`."""
    for name, value in values.items():
        kinds, what = _KINDS[name]
        if value is None and name not in required:
            continue
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise RlkitError(f"{name} must be {what} (got {type(value).__name__} {value!r:.40})")


_PATH = (str, Path)
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "env": (_PATH, "a preset name, gymnasium id or preset file path"),
    "run_dir": (_PATH, "a run directory path"),
    "source": (_PATH, "a run directory or model .zip path"),
    "runs_root": (_PATH, "a folder path"),
    "config": (_PATH, "a YAML file path"),
    "init_from": (_PATH, "a run directory or model .zip path"),
    "out": (_PATH, "a file path"),
    "steps": ((int,), "a whole number of environment steps"),
    "episodes": ((int,), "a whole number of episodes"),
    "trials": ((int,), "a whole number of trials"),
    "jobs": ((int,), "a whole number of worker processes"),
    "seeds_per_trial": ((int,), "a whole number"),
    "evals_per_trial": ((int,), "a whole number"),
    "device": ((str,), "a device name: auto, cpu, cuda or cuda:N"),
    "model": ((str,), "a model name: auto, best, final or step-N"),
    "track": ((str,), "a tracker name: mlflow or wandb"),
    "sampler": ((str,), "a sampler name"),
    "pruner": ((str,), "a pruner name"),
    "study": ((str,), "a study name"),
    "storage": ((str,), "a storage URL"),
    "space": ((str,), "a search space name or file"),
    "callbacks": ((list, tuple), "a list of SB3 callbacks"),
    "imports": ((list, tuple), "a list of module names"),
    "quiet": ((bool,), "True or False"),
    "progress": ((bool,), "True or False"),
    "epsilon": ((int, float), "a number"),
    "fps": ((int, float), "a number"),
    "timeout": ((int, float), "a number of seconds"),
}


def _call(name: str, *args: Any, **kwargs: Any) -> list[str]:
    """How a run records a Python call in its command.txt."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if v is not None]
    return [f"rlkit.{name}({', '.join(shown)})"]


def train(
    env: str | Path,
    *,
    seed: int | None = None,
    steps: int | None = None,
    overrides: Overrides = None,
    config: str | Path | None = None,
    device: str = "auto",
    run_dir: str | Path | None = None,
    runs_root: str | Path | None = None,
    init_from: str | Path | None = None,
    progress: bool = False,
    quiet: bool = True,
    callbacks: list[Any] | None = None,
    track: str | None = None,
    imports: list[str] | None = None,
    command: list[str] | None = None,
    on_resolved: Callable[[Resolved], None] | None = None,
) -> TrainResult:
    """Train a new run, as ``rlkit train ENV``; returns its :class:`~rlkit.training.train.TrainResult`.

    :param env: a preset alias (``rlkit envs``), a gymnasium id or a preset ``.yaml`` file.
    :param seed: the run's seed; a random one is drawn (and recorded) when ``None``.
    :param steps: the training budget (overrides the preset's ``n_timesteps``).
    :param overrides: preset keys to change, e.g. ``{"learning_rate": 3e-4, "policy_kwargs.net_arch": [64, 64]}``.
    :param config: a YAML file of overrides laid over the preset (before ``overrides``).
    :param device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    :param run_dir: the run directory (default ``runs/<alias>/<time>-s<seed>``); ``runs_root`` moves ``runs/``.
    :param init_from: start from the weights of a run directory's final model or of a model ``.zip``.
    :param progress: show ``rlkit train``'s live display on stderr while it trains (the bar, steps/s,
        ETA, returns, what an evaluation is playing; the history of evaluations and checkpoints).
        Off by default: a library call prints nothing.
    :param quiet: the opposite of ``progress``, as the CLI's ``--quiet`` (``quiet=False`` is ``progress=True``).
    :param callbacks: extra SB3 callbacks, called at every step of the learn loop.
    :param track: ``mlflow`` or ``wandb``: mirror the run to that tracker, as ``--track`` (docs/tracking.md).
    :param imports: Python modules to import first (they register custom envs), as ``--import``;
        ``env`` may also be ``pkg.module:EnvId-v0`` (docs/custom-envs.md).
    :param command: what the run's ``command.txt`` records (the CLI passes its command line; by
        default the Python call).
    :param on_resolved: called with the checked configuration before the run directory is made.
    """
    if env is None:
        raise RlkitError("env is required: a preset name (rlkit envs), a gymnasium id or a preset .yaml file")
    _expect(
        env=env,
        steps=steps,
        config=config,
        device=device,
        run_dir=run_dir,
        runs_root=runs_root,
        init_from=init_from,
        progress=progress,
        quiet=quiet,
        callbacks=callbacks,
        track=track,
        imports=imports,
    )
    from rlkit.environments.resolve import resolve
    from rlkit.training import train as training

    if steps is not None and steps < 1:
        raise RlkitError(f"steps must be at least 1 (got {steps})")
    _check_seed(seed)
    assignments = _assignments(overrides)
    if steps is not None:
        assignments.append(f"n_timesteps={steps}")
    resolved = resolve(
        str(env), config_file=Path(config) if config is not None else None, overrides=assignments, imports=imports or []
    )
    if on_resolved is not None:
        from rlkit.training.rundir import RunDir

        # Where the run would go is checked first: a refusal there is the only line the user sees.
        RunDir.check_new(
            resolved.alias,
            Path(runs_root) if runs_root is not None else None,
            Path(run_dir) if run_dir is not None else None,
        )
        on_resolved(resolved)
    from rlkit.core.seeds import choose_seed

    chosen = choose_seed(seed)
    argv = command or _call(
        "train", str(env), seed=chosen, steps=steps, overrides=assignments or None, init_from=init_from
    )
    return training.start(
        resolved,
        seed=chosen,
        device=device,
        run_dir=Path(run_dir) if run_dir is not None else None,
        runs_root=Path(runs_root) if runs_root is not None else None,
        quiet=quiet and not progress,
        argv=argv,
        callbacks=callbacks,
        init_from=Path(init_from) if init_from is not None else None,
        track=track,
    )


def resume(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    device: str = "auto",
    progress: bool = False,
    quiet: bool = True,
    callbacks: list[Any] | None = None,
    track: str | None = None,
    without_buffer: bool = False,
    notify: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> TrainResult:
    """Continue an interrupted run, as ``rlkit train --resume RUN``; with ``steps``, train it on to that total.

    A run that already finished is returned as it is (its result read from ``state.json``)
    unless ``steps`` asks for more. ``without_buffer`` continues from a checkpoint whose replay
    buffer cannot be restored (the run records that the resume was not exact); ``notify`` gets
    each warning line (a skipped damaged checkpoint, say; default: stderr); ``command`` is what
    ``command.txt`` records. ``progress`` shows the live display, as :func:`train`.
    """
    _expect(
        ("run_dir",),
        run_dir=run_dir,
        steps=steps,
        device=device,
        progress=progress,
        quiet=quiet,
        callbacks=callbacks,
        track=track,
    )
    from rlkit.training import train as training

    path = Path(run_dir)
    argv = command or _call("resume", str(path), steps=steps)
    options: dict[str, Any] = {
        "device": device,
        "quiet": quiet and not progress,
        "argv": argv,
        "callbacks": callbacks,
        "track": track,
        "without_buffer": without_buffer,
        "notify": notify,
    }
    if steps is not None:
        return training.extend(path, steps, **options)
    result = training.resume(path, **options)
    return result if result is not None else training.finished_result(path)


def evaluate(
    run_dir: str | Path,
    env: str | None = None,
    *,
    model: str = "auto",
    episodes: int = 50,
    seed: int | None = None,
    epsilon: float | None = None,
    device: str = "cpu",
    save: bool = True,
    on_episode: Callable[[float, int], None] | None = None,
) -> EvalResult:
    """Evaluate a run's model, as ``rlkit evaluate``: greedy unless ``epsilon`` is given.

    :param env: with a bare model ``.zip`` instead of a run directory: the env it plays (preset alias,
        preset file or gymnasium id); the result is saved beside the file.
    :param model: ``auto`` (best if present, else final), ``best``, ``final`` or a checkpoint ``step-<N>``.
    :param save: also write the result as JSON into the run directory (as the CLI does).
    :param on_episode: called with each episode's return and length as it ends (a progress bar).
    """
    _expect(("run_dir",), run_dir=run_dir, env=env, model=model, episodes=episodes, epsilon=epsilon, device=device)
    from rlkit.analysis.evaluation import DEFAULT_EVAL_SEED, evaluate_run, save_result

    _check_seed(seed, "evaluation seed")
    result = evaluate_run(
        Path(run_dir),
        env_name=env,
        model_name=model,
        episodes=episodes,
        seed=DEFAULT_EVAL_SEED if seed is None else seed,
        epsilon=epsilon,
        device=device,
        on_episode=on_episode,
    )
    if save:
        save_result(result)
    return result


def doctor(run_dir: str | Path) -> Diagnosis:
    """What a run's own diagnostics say is wrong, as ``rlkit doctor``: findings worst first, each with
    its severity, the steps where it shows, the figures behind it and next commands (docs/doctor.md)."""
    _expect(("run_dir",), run_dir=run_dir)
    from rlkit.analysis.doctor import examine

    return examine(Path(run_dir))


def record(
    run_dir: str | Path,
    env: str | None = None,
    *,
    model: str = "auto",
    episodes: int = 1,
    out: str | Path | None = None,
    fps: float | None = None,
    gif: bool = False,
    seed: int | None = None,
    force: bool = False,
    on_episode: Callable[[float, int], None] | None = None,
) -> Recording:
    """Record greedy episodes of a run's model to MP4 (or GIF), as ``rlkit record``.

    The default file is ``RUN/videos/<model>-<N>ep.mp4`` (``.gif`` with ``gif``); an existing
    file is kept unless ``force``. A bare model ``.zip`` plays on ``env`` (videos/ beside it).
    """
    _expect(("run_dir",), run_dir=run_dir, env=env, model=model, episodes=episodes, out=out, fps=fps)
    from rlkit.analysis.evaluation import open_source
    from rlkit.analysis.video import check_request, default_video_path, record_run

    check_request(episodes, fps, seed)
    path = Path(run_dir)
    made_folder = None
    if out is None:
        target = default_video_path(path, open_source(path, env, model, command="record").label, episodes, gif)
        if episodes >= 1 and not target.parent.exists():
            target.parent.mkdir()
            made_folder = target.parent
    else:
        target = Path(out)
        if gif and target.suffix.lower() != ".gif":
            raise RlkitError(f"--gif writes a GIF but --out is {target.name}; give a .gif path or drop --gif")
    try:
        return record_run(
            path,
            target,
            env_name=env,
            model_name=model,
            episodes=episodes,
            fps=fps,
            seed=seed,
            force=force,
            on_episode=on_episode,
        )
    except BaseException:
        if made_folder is not None and not any(made_folder.iterdir()):
            made_folder.rmdir()  # a failed recording leaves nothing behind
        raise


def load(source: str | Path, model: str = "auto", device: str = "cpu", env: str | None = None) -> OffPolicyAlgorithm:
    """A trained model, ready for ``predict``: a run directory's ``model`` (as in :func:`evaluate`) or a ``.zip``.

    A ``.zip`` outside a run directory needs ``env``, the env it plays (preset alias, preset file or
    gymnasium id): its objects are rebuilt from that preset, never unpickled.
    """
    _expect(("source",), source=source, model=model, device=device, env=env)
    from rlkit.analysis.evaluation import load_run_model, load_source_model, open_source, resolve_model
    from rlkit.training.factory import load_model, resolve_device
    from rlkit.training.rundir import RunDir

    path = Path(source)
    torch_device = resolve_device(device)
    if path.is_file():
        if env is not None:
            return load_source_model(open_source(path, env, model, command="evaluate"), torch_device)
        return load_model(path, None, torch_device)
    run = RunDir.open(path)
    return load_run_model(run, resolve_model(run, model), torch_device)


@dataclass
class TuneSummary:
    """Where a study stands after :func:`tune`."""

    study: str
    storage: str
    outcome: str
    """``done``, ``timeout`` or ``interrupted``."""
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    """The objective (mean final evaluation return over the trial's seeds) of the best trial."""
    best_trial: int | None
    best_params: dict[str, Any] = field(default_factory=dict)


def prepare_tune(
    env: str | Path,
    *,
    trials: int = 20,
    steps: int | None = None,
    seeds_per_trial: int | None = None,
    evals_per_trial: int | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    study: str | None = None,
    storage: str | None = None,
    seed: int = 0,
    space: str | None = None,
    overrides: Overrides = None,
    config: str | Path | None = None,
    device: str = "cpu",
    jobs: int = 1,
    timeout: float | None = None,
    runs_root: str | Path | None = None,
    heartbeat: int | None = None,
    worker_index: int = 0,
    track: str | None = None,
    imports: list[str] | None = None,
) -> Prepared:
    """Check a tuning request and open (or create) its study: what :func:`tune` and ``rlkit tune`` run."""
    _expect(
        env=env,
        trials=trials,
        steps=steps,
        seeds_per_trial=seeds_per_trial,
        evals_per_trial=evals_per_trial,
        sampler=sampler,
        pruner=pruner,
        study=study,
        storage=storage,
        space=space,
        config=config,
        device=device,
        jobs=jobs,
        timeout=timeout,
        runs_root=runs_root,
        track=track,
        imports=imports,
    )
    from rlkit.training.factory import resolve_device
    from rlkit.tuning.storage import HEARTBEAT_S
    from rlkit.tuning.study import TuneRequest, prepare

    _check_seed(seed)
    request = TuneRequest(
        env=str(env),
        trials=trials,
        timeout=timeout,
        steps=steps,
        seeds_per_trial=seeds_per_trial,
        evals_per_trial=evals_per_trial,
        sampler=sampler,
        pruner=pruner,
        jobs=jobs,
        study=study,
        storage=storage,
        seed=seed,
        space=space,
        overrides=_assignments(overrides),
        config=Path(config) if config is not None else None,
        device=resolve_device(device),
        heartbeat=HEARTBEAT_S if heartbeat is None else heartbeat,
        runs_root=Path(runs_root) if runs_root is not None else None,
        worker_index=worker_index,
        track=track,
        imports=list(imports or []),
    )
    return prepare(request)


def tune(
    env: str | Path,
    *,
    trials: int = 20,
    steps: int | None = None,
    seeds_per_trial: int | None = None,
    evals_per_trial: int | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    study: str | None = None,
    storage: str | None = None,
    seed: int = 0,
    space: str | None = None,
    overrides: Overrides = None,
    device: str = "cpu",
    jobs: int = 1,
    timeout: float | None = None,
    runs_root: str | Path | None = None,
    track: str | None = None,
    imports: list[str] | None = None,
    progress: bool = False,
) -> TuneSummary:
    """Run (or continue) an Optuna study, as ``rlkit tune ENV``; returns where it stands (``imports``: ``--import``).

    ``progress`` shows ``rlkit tune``'s live view of the study on stdout (off by default).
    """
    from rlkit.tuning.display import live_view
    from rlkit.tuning.study import best_summary, count, spawn_workers, work

    _expect(progress=progress)
    prepared = prepare_tune(
        env,
        trials=trials,
        steps=steps,
        seeds_per_trial=seeds_per_trial,
        evals_per_trial=evals_per_trial,
        sampler=sampler,
        pruner=pruner,
        study=study,
        storage=storage,
        seed=seed,
        space=space,
        overrides=overrides,
        device=device,
        jobs=jobs,
        timeout=timeout,
        runs_root=runs_root,
        track=track,
        imports=list(imports or []),
    )
    if progress:
        with live_view(prepared) as display:
            outcome = spawn_workers(prepared, display=display)[0] if jobs > 1 else work(prepared, display=display)
    else:
        outcome = spawn_workers(prepared)[0] if jobs > 1 else work(prepared)
    counts = count(prepared.study)
    best = best_summary(prepared.study, prepared.space)
    return TuneSummary(
        study=prepared.study_name,
        storage=prepared.url.shown,
        outcome=outcome,
        complete=counts.complete,
        pruned=counts.pruned,
        failed=counts.failed,
        best_value=None if best is None else best[0],
        best_trial=None if best is None else best[1],
        best_params={} if best is None else dict(best[2]),
    )
