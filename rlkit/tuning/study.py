"""A study from start to finish: check the request, open or create the study, run workers.

``prepare`` validates everything (env, search space, sampler, pruner, storage) before anything
is written, then creates the study or re-opens it, refusing one that belongs to another env or
was run with another budget. ``work`` runs trials in this process until the study holds
``trials`` finished (complete or pruned) trials; ``--jobs N`` starts N such worker processes
on the same storage, which is exactly how workers on other machines join a PostgreSQL study.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rlkit.config.schema import did_you_mean, to_plain
from rlkit.core.errors import RlkitError
from rlkit.core.seeds import check_seed, derive_seed
from rlkit.tuning import storage as storages
from rlkit.tuning.space import SearchSpace

if TYPE_CHECKING:
    import optuna

    from rlkit.config.presets import Resolved


SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("median", "halving", "hyperband", "none")
ATTR = "rlkit"
"""Study user attribute holding rlkit's record of the study (env, base config, budget, space)."""

FINISHED = ("COMPLETE", "PRUNED")

OBJECTIVE_COLUMN = "mean_final_eval_return"
"""The objective's name in tables and files (CSV header), where ``value`` would say nothing."""


def objective_label(record: dict[str, Any]) -> str:
    """What a trial's value is, in words: ``mean final evaluation return over 2 seeds (10 episodes each)``."""
    seeds = int(record.get("seeds_per_trial", 1))
    episodes = record.get("base", {}).get("eval_episodes")
    each = f" ({episodes} episodes each)" if episodes else ""
    return f"mean final evaluation return over {seeds} seed{'s' if seeds != 1 else ''}{each}"


@dataclass
class TuneRequest:
    """What ``rlkit tune <env>`` was asked to do."""

    env: str
    trials: int = 20
    timeout: float | None = None
    steps: int | None = None
    seeds_per_trial: int | None = None
    evals_per_trial: int | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    jobs: int = 1
    study: str | None = None
    storage: str | None = None
    seed: int = 0
    space: str | None = None
    overrides: list[str] = field(default_factory=list)
    config: Path | None = None
    device: str = "cpu"
    heartbeat: int = storages.HEARTBEAT_S
    runs_root: Path | None = None
    worker_index: int = 0
    track: str | None = None
    """``mlflow`` or ``wandb``: one tracked run per finished trial (:class:`TrialTracking`)."""
    imports: list[str] = field(default_factory=list)
    """``--import`` modules (they register custom envs); passed on to ``--jobs`` workers."""


@dataclass
class Prepared:
    """A checked request and its open study."""

    request: TuneRequest
    study_name: str
    url: storages.StorageUrl
    alias: str
    env_id: str
    space: SearchSpace
    record: dict[str, Any]
    study: optuna.Study
    created: bool
    defaults: dict[str, Any] = field(default_factory=dict)
    """For an env without a preset: the sized defaults the base preset got (shown once)."""
    baseline: str | None = None
    """For a new study: whether trial 0 is the base preset's own values, and if not, why not (shown once)."""


def _check_choice(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise RlkitError(f"unknown {kind} '{value}'{did_you_mean(value, list(valid))}; valid: {', '.join(valid)}")


def sampler_seed(seed: int, trials_so_far: int, worker_index: int) -> int:
    """The sampler's seed: reproducible for a fresh study, yet new for each continuation and worker.

    A sampler seeded alike in a second run would replay the first run's random start-up trials.
    """
    import numpy as np

    return int(np.random.SeedSequence([seed, trials_so_far, worker_index]).generate_state(1)[0])


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The seeded sampler; CMA-ES and GP fall back to TPE for categorical parameters."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ModuleNotFoundError:
            raise RlkitError("--sampler cmaes needs the 'cmaes' package (pip install cmaes)") from None
        return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=optuna.samplers.TPESampler(seed=seed))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, independent_sampler=optuna.samplers.TPESampler(seed=seed))
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def make_pruner(name: str, steps: int, seeds: int, evals: int) -> optuna.pruners.BasePruner:
    """The pruner, in units of training steps (``k * budget + t`` for seed k)."""
    import optuna

    first = max(1, steps // evals)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=steps * seeds, reduction_factor=3)
    return optuna.pruners.NopPruner()


def prepare(request: TuneRequest) -> Prepared:
    """Validate the whole request, then open (or create) the study; nothing is written on error."""
    import optuna

    from rlkit.environments.resolve import resolve
    from rlkit.tuning import space as spaces

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    check_seed(request.seed)
    _check_choice("sampler", request.sampler, SAMPLERS)
    _check_choice("pruner", request.pruner, PRUNERS)
    for name, value in (("--trials", request.trials), ("--jobs", request.jobs)):
        if value < 1:
            raise RlkitError(f"{name} must be at least 1 (got {value})")
    for name, opt in (("--steps", request.steps), ("--seeds-per-trial", request.seeds_per_trial)):
        if opt is not None and opt < 1:
            raise RlkitError(f"{name} must be at least 1 (got {opt})")
    if request.evals_per_trial is not None and request.evals_per_trial < 1:
        raise RlkitError(f"--evals-per-trial must be at least 1 (got {request.evals_per_trial})")
    if request.timeout is not None and request.timeout <= 0:
        raise RlkitError(f"--timeout must be positive seconds (got {request.timeout:g})")

    resolved = resolve(request.env, config_file=request.config, overrides=request.overrides, imports=request.imports)
    if resolved.defaults and request.steps is not None:  # no preset: size the defaults to the trials' budget
        sized = [*request.overrides, f"n_timesteps={request.steps}"]
        resolved = resolve(request.env, config_file=request.config, overrides=sized, imports=request.imports)
    base = to_plain(resolved.preset)
    space_name = request.space or preset_space(resolved.preset.search_space, resolved.source)
    space_name = space_name or spaces.family(resolved.preset.env_id)
    space = spaces.load(space_name, base)
    study_name = request.study or resolved.alias
    url = storages.parse(request.storage or storages.default_url(study_name, request.runs_root))
    make_sampler(request.sampler, request.seed)  # a missing optional package fails here, before any write
    from rlkit.training.tracking import prepare_store

    prepare_store(request.track, f"rlkit-{resolved.alias}")  # so does a missing tracker; --jobs workers share the store

    storage = storages.open_storage(
        url, heartbeat_s=request.heartbeat, grace_s=max(3 * request.heartbeat, 3), runs_root=request.runs_root
    )
    wanted = {
        "steps": request.steps,
        "seeds_per_trial": request.seeds_per_trial,
        "evals_per_trial": request.evals_per_trial,
    }
    existing = study_name in storages.study_names(storage)
    said: str | None = None
    if existing:
        study = optuna.load_study(study_name=study_name, storage=storage)
        record = study.user_attrs.get(ATTR)
        if record is None:
            # Another worker may have just created it; give it a moment to record itself.
            time.sleep(1.0)
            study = optuna.load_study(study_name=study_name, storage=storage)
            record = study.user_attrs.get(ATTR)
        if record is None:
            raise RlkitError(
                f"study '{study_name}' in {url.shown} was not created by rlkit tune; choose another --study"
            )
        resolved, base, space = _sized_as_recorded(request, resolved, record, space_name, base, space)
        _check_same(study_name, record, resolved.preset.env_id, wanted, base, space)
    else:
        steps = request.steps or resolved.preset.n_timesteps
        seeds = request.seeds_per_trial or 1
        evals = request.evals_per_trial or 5
        record = {
            "alias": resolved.alias,
            "env_id": resolved.preset.env_id,
            "source": resolved.source,
            "base": base,
            "steps": steps,
            "seeds_per_trial": seeds,
            "evals_per_trial": evals,
            "train_seeds": [derive_seed(request.seed * 1000, k) for k in range(seeds)],
            "space_name": space.name,
            "space": space.to_plain(),
        }
        study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
        if ATTR not in study.user_attrs:
            study.set_user_attr(ATTR, record)
            baseline = space.baseline(base)
            if baseline is not None:  # trial 0 is the starting point: what the search must beat
                study.enqueue_trial(baseline, user_attrs={"baseline": True})
                said = f"trial 0 is the baseline: the base preset's own values of the {len(baseline)} searched keys"
            else:
                said = (
                    f"no baseline trial: {space.baseline_problem(base)}, so the preset's own values are not a "
                    "trial of this space; trial 0 is sampled like the others"
                )
        else:  # a concurrent worker created it first
            record = study.user_attrs[ATTR]
            resolved, base, space = _sized_as_recorded(request, resolved, record, space_name, base, space)
            _check_same(study_name, record, resolved.preset.env_id, wanted, base, space)
    seed = sampler_seed(request.seed, len(study.get_trials(deepcopy=False)), request.worker_index)
    study.sampler = make_sampler(request.sampler, seed)
    study.pruner = make_pruner(request.pruner, record["steps"], record["seeds_per_trial"], record["evals_per_trial"])
    return Prepared(
        request,
        study_name,
        url,
        record["alias"],
        record["env_id"],
        space,
        record,
        study,
        not existing,
        resolved.defaults,
        said,
    )


def _sized_as_recorded(
    request: TuneRequest, resolved: Resolved, record: dict[str, Any], space_name: str, base: dict[str, Any], space: Any
) -> tuple[Resolved, dict[str, Any], Any]:
    """An env without a preset has defaults sized to the budget: size them as the study's base was.

    (A ``--jobs`` worker, or a continuation without ``--steps``, would otherwise size them anew.)
    """
    from rlkit.environments.resolve import resolve
    from rlkit.tuning import space as spaces

    recorded = record.get("base", {}).get("n_timesteps")
    if not resolved.defaults or recorded is None or recorded == base.get("n_timesteps"):
        return resolved, base, space
    sized = [*request.overrides, f"n_timesteps={recorded}"]
    resolved = resolve(request.env, config_file=request.config, overrides=sized, imports=request.imports)
    base = to_plain(resolved.preset)
    return resolved, base, spaces.load(space_name, base)


def preset_space(name: str | None, source: str) -> str | None:
    """A preset's own ``search_space``; a relative file path is relative to the preset file."""
    if name is None or not name.endswith((".yaml", ".yml")) or Path(name).is_absolute():
        return name
    beside = Path(source).parent / name
    return str(beside) if beside.is_file() else name


def _check_same(
    name: str,
    record: dict[str, Any],
    env_id: str,
    wanted: dict[str, int | None],
    base: dict[str, Any],
    space: SearchSpace,
) -> None:
    """A study continues only with the env, budget, base preset and space it was started with."""
    if record.get("env_id") != env_id:
        raise RlkitError(
            f"study '{name}' tunes {record.get('env_id')} ({record.get('alias')}), not {env_id}; "
            "choose another --study or the same env"
        )
    for key, value in wanted.items():
        if value is not None and record.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise RlkitError(
                f"study '{name}' was run with {flag} {record.get(key)}, not {value}; "
                f"use the same value (or leave it out) to continue it, or choose another --study"
            )
    changed = _first_difference(_current_form(record.get("base", {})), base)
    if changed is not None:
        key, was, now = changed
        raise RlkitError(
            f"study '{name}' was run with base preset {key}={was!r}, now {now!r}; "
            "use the same --set/--config to continue it, or choose another --study"
        )
    if record.get("space") != space.to_plain():
        raise RlkitError(
            f"study '{name}' was run with another search space ({record.get('space_name')}) than {space.source}; "
            "use the same space to continue it, or choose another --study"
        )


def _current_form(base: dict[str, Any]) -> dict[str, Any]:
    """A study's recorded base preset as this version writes it (keys added since filled with their defaults)."""
    from rlkit.config.schema import validate

    try:
        return to_plain(validate(base, "the study's base preset"))
    except RlkitError:
        return base


def _first_difference(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> tuple[str, Any, Any] | None:
    for key in sorted(set(old) | set(new)):
        was, now = old.get(key), new.get(key)
        if isinstance(was, dict) and isinstance(now, dict):
            found = _first_difference(was, now, f"{prefix}{key}.")
            if found is not None:
                return found
        elif was != now:
            return f"{prefix}{key}", was, now
    return None


# ----------------------------------------------------------------------------------------
# Counting and stopping
# ----------------------------------------------------------------------------------------


@dataclass
class Counts:
    """Trials by state."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    surplus: int = 0
    """Started by two workers at once beyond the target, and ended at once (see ``objective.Surplus``)."""

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def count(study: optuna.Study) -> Counts:
    """How many trials are in each state."""
    counts = Counts()
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name
        if state == "COMPLETE":
            counts.complete += 1
        elif state == "PRUNED":
            counts.pruned += 1
        elif state == "FAIL" and trial.user_attrs.get("surplus"):
            counts.surplus += 1
        elif state == "FAIL":
            counts.failed += 1
        elif state == "RUNNING":
            counts.running += 1
        elif state == "WAITING":
            counts.waiting += 1
    return counts


def fail_stale(study: optuna.Study) -> None:
    """Fail (and re-queue) trials whose worker stopped sending heartbeats."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def requeue(study: optuna.Study, number: int) -> None:
    """Queue an interrupted trial again, with the same parameters (as heartbeats do for dead workers)."""
    import warnings

    import optuna

    trial = study.get_trials(deepcopy=False)[number]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=storages.MAX_RETRY)(study, trial)


Outcome = Literal["done", "timeout", "interrupted"]


def work(prepared: Prepared, *, display: Any = None) -> Outcome:
    """Run trials in this process until the study has enough finished trials (or time/signal)."""
    import optuna

    from rlkit.core.errors import Interrupted
    from rlkit.training.callbacks import StopOnSignal
    from rlkit.tuning.objective import Objective, Surplus, TrialSettings

    # Optuna would log an interrupted trial's traceback; rlkit reports trials itself.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    request, study, record = prepared.request, prepared.study, prepared.record
    settings = TrialSettings(
        base=record["base"],
        steps=int(record["steps"]),
        seeds=[int(s) for s in record["train_seeds"]],
        evals=int(record["evals_per_trial"]),
        device=request.device,
        progress=display.on_progress if display is not None else None,
        target=request.trials,
    )
    deadline = None if request.timeout is None else time.monotonic() + request.timeout
    with StopOnSignal() as stopper:  # the first Ctrl-C, SIGTERM or SIGHUP ends the running trial (re-queued)
        objective = Objective(prepared.space, settings, stopper)
        tracked = [TrialTracking(prepared)] if request.track else []

        def enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if display is not None:
                display.progress = None
                display.refresh(study)
            counts = count(study)
            if counts.finished + counts.running >= request.trials or stopper.received is not None:
                study.stop()

        while True:
            fail_stale(study)
            counts = count(study)
            if display is not None:
                display.refresh(study)
            if counts.finished >= request.trials:
                return "done"
            if stopper.received is not None:
                return "interrupted"
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return "timeout"
            if counts.finished + counts.running >= request.trials:
                # The rest are running on other workers; wait for them (or for their heartbeats to go stale).
                time.sleep(min(2.0, remaining if remaining is not None else 2.0))
                continue
            try:
                study.optimize(
                    objective, timeout=remaining, callbacks=[*tracked, enough], gc_after_trial=True, catch=(Surplus,)
                )
            except Interrupted:
                requeue(study, _last_interrupted(study))
                return "interrupted"


class TrialTracking:
    """Optuna callback: each finished trial becomes one tracked run (MLflow or W&B).

    Params are the sampled values (preset keys), metrics the evaluations reported to the pruner
    (at the pruner's steps) and the objective; the run is grouped by study, tagged with its state.
    """

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from rlkit.training.tracking import log_finished

        state = trial.state.name
        if state not in ("COMPLETE", "PRUNED", "FAIL") or trial.user_attrs.get("surplus"):
            return  # surplus: a trial two workers started beyond the target, ended at once, never counted
        prepared = self.prepared
        assert prepared.request.track is not None
        params = {**prepared.space.decode(trial.params), "trial": trial.number, "study": prepared.study_name}
        log_finished(
            prepared.request.track,
            project=f"rlkit-{prepared.alias}",
            name=f"{prepared.study_name}-trial-{trial.number}",
            group=prepared.study_name,
            params=params,
            steps={int(step): {"eval/mean_reward": value} for step, value in trial.intermediate_values.items()},
            summary={"objective": trial.value} if trial.value is not None else None,
            tags={"optuna.state": state, "optuna.study": prepared.study_name, "rlkit.env_id": prepared.env_id},
            status="failed" if state == "FAIL" else "finished",
        )


def _last_interrupted(study: optuna.Study) -> int:
    me = storages.worker_name()
    for trial in reversed(study.get_trials(deepcopy=False)):
        if trial.user_attrs.get("interrupted") and trial.user_attrs.get("worker") == me:
            return trial.number
    raise RuntimeError("interrupted trial not found")  # pragma: no cover


# ----------------------------------------------------------------------------------------
# Local worker processes (--jobs)
# ----------------------------------------------------------------------------------------


def worker_command(prepared: Prepared, index: int) -> list[str]:
    """The ``rlkit tune`` command line of local worker ``index`` (its sampler gets its own seed)."""
    from rlkit.training.factory import worker_devices

    request = prepared.request
    cmd = [
        sys.executable,
        "-m",
        "rlkit",
        "tune",
        "run",
        request.env,
        "--study",
        prepared.study_name,
        "--storage",
        prepared.url.url,
        "--trials",
        str(request.trials),
        "--sampler",
        request.sampler,
        "--pruner",
        request.pruner,
        "--seed",
        str(request.seed),
        "--worker-index",
        str(index),
        "--device",
        worker_devices(request.device, index + 1)[index],  # several GPUs: workers spread over them
        "--heartbeat",
        str(request.heartbeat),
        "--space",
        prepared.space.source,
        "--quiet",
    ]
    if request.timeout is not None:
        cmd += ["--timeout", str(request.timeout)]
    if request.config is not None:
        cmd += ["--config", str(request.config)]
    for item in request.overrides:
        cmd += ["--set", item]
    if request.track is not None:
        cmd += ["--track", request.track]
    for module in request.imports:
        cmd += ["--import", module]
    return cmd


def spawn_workers(prepared: Prepared, *, display: Any = None) -> tuple[Outcome, list[str]]:
    """Start ``--jobs`` worker processes on the study's storage and wait for them.

    Their output goes to ``runs/tune/<study>.logs/worker-<i>.log``. The workers are
    :class:`~rlkit.core.processes.Children` of this process: Ctrl-C, SIGTERM or SIGHUP here is passed
    on as one SIGINT to each (it re-queues its running trial), with a bounded wait, then a kill; a
    second Ctrl-C kills them at once; and they stop the same way if this process dies.
    """
    from rlkit.core.processes import Children
    from rlkit.core.threads import job_environment
    from rlkit.training.callbacks import StopOnSignal

    request = prepared.request
    logs = storages.tune_root(request.runs_root) / f"{prepared.study_name}.logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[Any, Path]] = []
    interrupted = False
    with Children() as children, StopOnSignal() as stopper:  # Ctrl-C, SIGTERM, SIGHUP: stop every worker
        try:
            for index in range(request.jobs):
                if stopper.received is not None:
                    break
                log = logs / f"worker-{index}.log"
                env = job_environment(request.jobs)  # workers share the cores (RLKIT_CORES)
                procs.append((children.start(worker_command(prepared, index), env=env, log=log), log))
            while children.running() and stopper.received is None:
                if display is not None:
                    display.refresh(prepared.study)
                time.sleep(0.2)
            interrupted = stopper.received is not None
            if interrupted:
                children.stop(signal.SIGINT)
        except KeyboardInterrupt:  # a second Ctrl-C while they were stopping: they were killed
            interrupted = True
    if display is not None:
        display.refresh(prepared.study)
    problems = []
    for index, (proc, log) in enumerate(procs):
        if proc.returncode not in (0, 130, -signal.SIGINT, -signal.SIGKILL if interrupted else 0):
            lines = log.read_text(errors="replace").strip().splitlines()
            problems.append(f"worker {index} exited with {proc.returncode}: {lines[-1] if lines else ''} (log: {log})")
    if interrupted or any(proc.returncode in (130, -signal.SIGINT) for proc, _ in procs):
        return "interrupted", problems
    counts = count(prepared.study)
    return ("done" if counts.finished >= request.trials else "timeout"), problems


def best_summary(study: optuna.Study, space: SearchSpace) -> tuple[float, int, dict[str, Any]] | None:
    """(value, trial number, decoded params) of the best trial, or None before any completes."""
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    if not completed:
        return None
    best = max(completed, key=lambda t: t.value if t.value is not None and math.isfinite(t.value) else -math.inf)
    assert best.value is not None
    return best.value, best.number, space.decode(best.params)
