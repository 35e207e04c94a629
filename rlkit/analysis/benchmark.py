"""``rlkit benchmark``: several seeds of one configuration, trained, evaluated and summarised.

Read top to bottom: the resolved preset is written once into a results folder named after its
content (so the same configuration always lands in the same folder); each seed is a normal run
directory inside it, trained in its own process (``--jobs`` at a time) and reused when it has
already finished (resumed when it was interrupted); every final and best model is evaluated over
``episodes`` deterministic episodes, and the final model once more on ``episodes`` **fresh**
episodes: env seeds of the seed's own ``"fresh"`` stream (:func:`rlkit.core.seeds.stream_seed`),
which neither training, the periodic evaluations (that chose the best model) nor the solve
confirmations drew from. The fresh figures are the headline: no selection touched those
episodes. The figures across seeds (mean, median, IQM with 95% bootstrap confidence intervals,
seeds that solve, steps and wall-clock to solve, steps/s) go to ``benchmark.json``,
``benchmark.md`` and ``curves.png``, with the machine's yardstick
(:mod:`rlkit.analysis.yardstick`) beside every absolute time.

Where the seeds come from is a :class:`SeedSource`: the seeds 0..N-1 of this process
(:class:`SeedList`), or a queue several workers share (``--storage``:
:class:`rlkit.tuning.seed_queue.SeedQueue`), whose figures come back from the queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from rlkit.config.presets import Resolved, read_yaml
from rlkit.config.schema import Preset, to_plain, validate
from rlkit.core import atomic
from rlkit.core.errors import Interrupted, RlkitError
from rlkit.core.paths import check_folder, make_folder, missing_folders
from rlkit.core.processes import describe_exit
from rlkit.core.seeds import stream_seed
from rlkit.training.rundir import RunDir, default_root, now_iso

BOOTSTRAP_SAMPLES = 10_000

MIN_SEEDS_FOR_INTERVALS = 5
"""Below this many seeds a bootstrap interval is little more than [min, max] and the IQM is the mean
or the median; the summary then shows mean, median and the min-max range instead (rliable's advice)."""


def few_seeds_warning(n: int) -> str | None:
    """The line shown when ``n`` seeds are too few for confidence intervals, else None."""
    if n >= MIN_SEEDS_FOR_INTERVALS:
        return None
    return (
        f"only {n} seed{'s' if n != 1 else ''}: 95% confidence intervals and the IQM mean little below "
        f"{MIN_SEEDS_FOR_INTERVALS} seeds, so the summary shows mean, median and the min-max range across "
        f"seeds instead; use --seeds {MIN_SEEDS_FOR_INTERVALS} or more for intervals"
    )


FRESH_STREAM = "fresh"
"""The seed stream of the fresh re-scoring episodes (``stream_seed(seed, FRESH_STREAM)``)."""


@dataclass
class SeedResult:
    """One seed's figures."""

    seed: int
    run_dir: str
    fresh_mean: float
    """The final model's mean return over ``fresh_episodes`` episodes no training, periodic evaluation
    or solve confirmation used (env seed ``fresh_seed``): the headline figure."""
    fresh_std: float
    fresh_min: float
    fresh_episodes: int
    fresh_seed: int
    solved_fresh: bool
    """``fresh_mean`` at or above the preset's solved score."""
    final_mean: float
    best_mean: float
    steps: int
    wall_s: float
    steps_per_s: float
    solved_final: bool
    solved_best: bool
    first_solved_step: int | None
    """First periodic evaluation (during training) at or above the solved score."""
    first_solved_wall_s: float | None
    solved_step: int | None = None
    """When the run was solved: an evaluation at the solved score confirmed over ``solved_episodes`` more."""
    time_to_solve_s: float | None = None
    """Training wall-clock until then (the confirming evaluation included); with ``stop_on_solved``
    the final model is the one that solved."""
    trained_by: str | None = None
    """``host:pid`` of the queue worker that trained it (``--storage``); ``None`` for a local benchmark."""
    machine: dict[str, Any] | None = None
    """That worker's machine (host, cores, yardstick); ``None`` for a local benchmark (the document's)."""


# ----------------------------------------------------------------------------------------
# The results folder
# ----------------------------------------------------------------------------------------


def config_digest(preset: Preset) -> str:
    """A short hash of the resolved configuration."""
    text = json.dumps(to_plain(preset), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def results_dir(resolved: Resolved, out: Path | None) -> Path:
    """``out``, or ``runs/benchmarks/<alias>-<n_timesteps>-<digest>``; a folder of another config is refused."""
    folder = (
        out
        or default_root()
        / "benchmarks"
        / f"{resolved.alias}-{resolved.preset.n_timesteps}-{config_digest(resolved.preset)}"
    )
    check_folder(folder, "--out" if out is not None else "results folder")
    preset_file = folder / "preset.yaml"
    if preset_file.exists():
        saved = validate(read_yaml(preset_file), str(preset_file))
        if to_plain(saved) != to_plain(resolved.preset):
            raise RlkitError(f"{folder} holds a benchmark of a different configuration; choose another --out")
    elif folder.exists() and any(folder.iterdir()):
        raise RlkitError(f"{folder} exists and is not a benchmark folder; choose another --out")
    return folder


def write_preset(folder: Path, resolved: Resolved) -> Path:
    """The resolved preset as a file every seed trains from (a failed write leaves no folder it made)."""
    made = missing_folders(folder)
    make_folder(folder, "results folder")
    path = folder / "preset.yaml"
    if not path.exists():
        header = f"# rlkit benchmark: resolved from '{resolved.alias}' ({resolved.source})\n"
        try:
            atomic.write_text(path, header + yaml.safe_dump(to_plain(resolved.preset), sort_keys=False))
        except OSError:
            for empty in made:
                with contextlib.suppress(OSError):
                    empty.rmdir()
            raise
    return path


# ----------------------------------------------------------------------------------------
# One seed (runs in a worker process)
# ----------------------------------------------------------------------------------------


def seed_job(
    preset_file: str,
    alias: str,
    seed: int,
    run_dir: str,
    episodes: int,
    device: str,
    track: str | None = None,
    imports: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train (or reuse, or resume) one seed, then evaluate its final and best models, and its final
    model on fresh episodes (:func:`fresh_seed`).

    With ``track`` the seed's training is a tracked run (a reused, already finished seed is not logged again).
    ``imports``: the modules the user asked for (the preset file records them as ``env_imports``).
    """
    from rlkit.analysis.evaluation import DEFAULT_EVAL_SEED
    from rlkit.environments.resolve import resolve
    from rlkit.training import train

    run_path = Path(run_dir)
    run = RunDir(run_path)
    state = run.read_state() if run.state_file.exists() else {}
    if state.get("status") != "finished":
        if run.checkpoint_dirs():
            train.resume(run_path, device=device, quiet=True, track=track)
        else:
            if run_path.exists():  # started, but died before its first checkpoint: start over
                with run.lock():  # unless another benchmark is training it right now (one line then)
                    shutil.rmtree(run_path)
            resolved = resolve(preset_file, imports=imports)
            resolved = Resolved(alias=alias, preset=resolved.preset, source=resolved.source)
            train.start(
                resolved,
                seed=seed,
                device=device,
                run_dir=run_path,
                quiet=True,
                argv=_argv(preset_file, seed, run_dir, imports),
                track=track,
            )
    final = _evaluation(run, "final", episodes, DEFAULT_EVAL_SEED, device)
    best = _evaluation(run, "best", episodes, DEFAULT_EVAL_SEED, device)
    fresh = _evaluation(run, "final", episodes, fresh_seed(seed), device)
    return {
        "seed": seed,
        "final": final.mean,
        "best": best.mean,
        "fresh": {"mean": fresh.mean, "std": fresh.std, "min": fresh.min, "episodes": episodes, "seed": fresh.seed},
    }


def fresh_seed(seed: int) -> int:
    """The env seed of a benchmark seed's fresh re-scoring episodes: its own stream, met by nothing else."""
    return stream_seed(seed, FRESH_STREAM)


def _evaluation(run: RunDir, label: str, episodes: int, seed: int, device: str) -> Any:
    """The saved greedy evaluation of ``label`` over ``episodes`` episodes from env seed ``seed``, else a new one."""
    from rlkit.analysis.evaluation import evaluate_run, save_result, saved_results

    for saved in reversed(saved_results(run)):
        if (saved.model, saved.episodes, saved.seed, saved.epsilon) == (label, episodes, seed, None):
            return saved
    result = evaluate_run(run.path, model_name=label, episodes=episodes, seed=seed, device=device)
    save_result(result)
    return result


def _argv(preset_file: str, seed: int, run_dir: str, imports: tuple[str, ...] = ()) -> list[str]:
    modules = [arg for module in imports for arg in ("--import", module)]
    return ["rlkit", "train", preset_file, *modules, "--seed", str(seed), "--run-dir", run_dir, "--quiet"]


# ----------------------------------------------------------------------------------------
# Running every seed
# ----------------------------------------------------------------------------------------


@dataclass
class SeedStatus:
    """Where one seed stands, read from its run directory while the benchmark runs."""

    seed: int
    state: str
    """``queued`` (waiting for a free worker: ``--jobs`` at a time), ``starting`` (its worker process
    imports torch and SB3 and builds the env: seconds to a minute on a busy machine), ``training``,
    ``evaluating final``, ``evaluating best``, ``done`` or ``failed``."""
    steps: int
    total: int
    """The seed's budget (``n_timesteps``); a run that stops once solved ends below it."""
    last_eval: float | None = None
    """Mean return of the newest periodic evaluation during training."""
    last_eval_step: int | None = None
    final: float | None = None
    best: float | None = None
    finished: bool = False
    """Training has ended (at the budget, or earlier once solved)."""
    fresh: float | None = None
    """The final model's mean on fresh episodes (the headline)."""


def seed_status(
    run_path: Path, seed: int, total: int, episodes: int, *, started: bool, result: dict[str, Any] | None
) -> SeedStatus:
    """One seed's state from its run directory (cheap: state.json, Monitor CSVs, evaluations.csv).

    ``started``: its worker has taken it (it is ``starting`` until its run directory appears), else ``queued``.
    """
    from rlkit.analysis.evaluation import DEFAULT_EVAL_SEED

    run = RunDir(run_path)
    rows = run.read_evaluations() if run.evaluations.exists() else []
    last = rows[-1] if rows else None
    status = SeedStatus(
        seed=seed,
        state="starting" if started else "queued",
        steps=_steps_done(run_path) if run_path.exists() else 0,
        total=total,
        last_eval=None if last is None else float(last["mean_reward"]),
        last_eval_step=None if last is None else int(last["timesteps"]),
    )
    state = run.read_state() if run.state_file.exists() else {}
    if state.get("status") == "finished":  # it may have stopped early (stop_on_solved), below its budget
        status.steps, status.finished = int(state.get("num_timesteps", status.steps)), True
    if result is not None:
        status.state, status.final, status.best = "done", float(result["final"]), float(result["best"])
        status.fresh = float(result["fresh"]["mean"]) if "fresh" in result else None
    elif started and run_path.exists():  # (the pool marks queued jobs as running before they start)
        if state.get("status") != "finished":
            status.state = "training"
        elif not (run_path / f"evaluation-final-{episodes}ep-s{DEFAULT_EVAL_SEED}.json").exists():
            status.state = "evaluating final"
        elif not (run_path / f"evaluation-best-{episodes}ep-s{DEFAULT_EVAL_SEED}.json").exists():
            status.state = "evaluating best"
        else:
            status.state = "evaluating fresh"
    return status


class SeedSource(Protocol):
    """Where a benchmark's seeds come from, and where their figures go.

    :class:`SeedList` hands out seeds 0..N-1 of this process; a shared queue
    (:class:`rlkit.tuning.seed_queue.SeedQueue`) hands each seed to one of many workers and keeps
    every worker's results. :func:`run_seeds` calls :meth:`tick` about five times a second.
    """

    seeds: list[int]
    """Every seed of the benchmark (this worker's and the others')."""

    machine: dict[str, Any]
    """This worker's machine (:func:`this_machine`), set before any seed is taken."""

    def take(self) -> int | None:
        """The next seed for this worker to train, or ``None`` when there is none to take now."""

    def pending(self) -> bool:
        """Whether seeds may still be taken (``take`` returned ``None`` only for now)."""

    def tick(self) -> None:
        """Called about five times a second while seeds run (a queue sends its heartbeats)."""

    def finished(self, seed: int, result: dict[str, Any]) -> None:
        """A seed this worker took is done: ``result`` is its :class:`SeedResult` as a dict."""

    def failed(self, seed: int, message: str) -> None:
        """A seed this worker took failed (one line); the benchmark stops."""

    def put_back(self, seed: int) -> None:
        """A seed this worker took was interrupted (it saved a checkpoint): someone may take it again."""

    def elsewhere(self) -> dict[int, dict[str, Any] | None]:
        """Seeds held by other workers: a seed's result dict when done there, ``None`` while it runs there."""

    def results(self) -> dict[int, dict[str, Any]]:
        """Every finished seed's result dict (this worker's and the others'), by seed."""

    def settle(self, on_wait: Callable[[str], None] | None) -> bool:
        """Once this worker has none left to take: wait for the seeds others hold (``on_wait`` gets a
        line whenever it changes). True when every seed is done; False when one came free to take."""


class SeedList:
    """The seeds of a local benchmark, all trained by this process's workers."""

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = list(seeds)
        self.machine: dict[str, Any] = {}
        self._waiting = list(seeds)
        self._results: dict[int, dict[str, Any]] = {}

    def take(self) -> int | None:
        return self._waiting.pop(0) if self._waiting else None

    def pending(self) -> bool:
        return bool(self._waiting)

    def tick(self) -> None:
        pass

    def finished(self, seed: int, result: dict[str, Any]) -> None:
        self._results[seed] = result

    def failed(self, seed: int, message: str) -> None:
        pass

    def put_back(self, seed: int) -> None:
        pass  # the same command continues it from its checkpoint

    def elsewhere(self) -> dict[int, dict[str, Any] | None]:
        return {}

    def results(self) -> dict[int, dict[str, Any]]:
        return dict(self._results)

    def settle(self, on_wait: Callable[[str], None] | None) -> bool:
        return True


def run_seeds(
    folder: Path,
    resolved: Resolved,
    source: SeedSource,
    *,
    jobs: int,
    episodes: int,
    device: str,
    on_status: Callable[[list[SeedStatus]], None] | None = None,
    track: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Every seed ``source`` hands out, in a worker process of its own, ``jobs`` at a time.

    Returns the evaluation figures of the seeds trained here, by seed; each finished seed's
    :class:`SeedResult` goes to ``source.finished``. ``on_status`` gets every seed's
    :class:`SeedStatus` about once a second. The workers are
    :class:`~rlkit.core.processes.Children` of this process: a Ctrl-C, SIGTERM or SIGHUP here (or
    this process's end, however it ends) stops each with a checkpoint; the seeds finished so far are
    kept (an interrupted one goes back to ``source``), and the same command continues the rest.
    """
    from rlkit.core.processes import Children
    from rlkit.core.threads import cores_per_job
    from rlkit.training.callbacks import StopOnSignal
    from rlkit.training.factory import worker_devices

    preset_file = str(write_preset(folder, resolved))
    devices = worker_devices(device, len(source.seeds))  # several GPUs: seeds spread over them
    cores = cores_per_job(jobs) if jobs > 1 else None  # seeds side by side share the cores
    jobs_of: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    running: dict[int, Any] = {}
    shown = -math.inf
    with Children() as children, StopOnSignal() as stopper:
        try:
            while True:
                source.tick()
                while len(running) < jobs and stopper.received is None:
                    seed = source.take()
                    if seed is None:
                        break
                    jobs_of[seed] = _job(folder, resolved, preset_file, seed, episodes, devices, track, cores)
                    Path(jobs_of[seed]["result"]).unlink(missing_ok=True)  # left by a benchmark that was killed
                    argv = [sys.executable, "-m", "rlkit.analysis.benchmark_worker", json.dumps(jobs_of[seed])]
                    running[seed] = children.start(argv)
                if stopper.received is not None:
                    children.stop(signal.SIGTERM)  # each saves a checkpoint (bounded wait, then killed)
                    _collect(running, jobs_of, done, source, folder, resolved, stopping=True)
                    raise Interrupted(_stopped_message(done, len(source.seeds)), stopper.received)
                before = len(running)
                _collect(running, jobs_of, done, source, folder, resolved, stopping=False)
                if not running and not source.pending():
                    break
                if on_status is not None and (len(running) != before or time.monotonic() >= shown + 1.0):
                    on_status(statuses(folder, source, running, done, resolved.preset.n_timesteps, episodes))
                    shown = time.monotonic()
                time.sleep(0.2)
        except KeyboardInterrupt:  # a second Ctrl-C while the seeds were saving: they were killed
            for seed in running:
                source.put_back(seed)
            raise Interrupted(_stopped_message(done, len(source.seeds), hurried=True), signal.SIGINT) from None
    if on_status is not None:
        on_status(statuses(folder, source, running, done, resolved.preset.n_timesteps, episodes))
    return done


def _job(
    folder: Path,
    resolved: Resolved,
    preset_file: str,
    seed: int,
    episodes: int,
    devices: list[str],
    track: str | None,
    cores: int | None,
) -> dict[str, Any]:
    """The JSON job of one seed's worker process (:mod:`rlkit.analysis.benchmark_worker`)."""
    return {
        "preset_file": preset_file,
        "alias": resolved.alias,
        "seed": seed,
        "run_dir": str(folder / f"seed-{seed}"),
        "episodes": episodes,
        "device": devices[seed % len(devices)],
        "track": track,
        "imports": list(resolved.preset.env_imports),
        "cores": cores,
        "result": str(folder / f".seed-{seed}.result.json"),
    }


def _collect(
    running: dict[int, Any],
    jobs_of: dict[int, dict[str, Any]],
    done: dict[int, dict[str, Any]],
    source: SeedSource,
    folder: Path,
    resolved: Resolved,
    *,
    stopping: bool,
) -> None:
    """Move the seeds whose process ended from ``running`` to ``done``; a seed that failed is one line.

    ``stopping``: this process stopped them, so a seed that ended without figures is expected.
    """
    for seed, proc in list(running.items()):
        code = proc.poll()
        if code is None:
            continue
        del running[seed]
        result = Path(jobs_of[seed]["result"])
        try:
            answer = json.loads(result.read_text())
        except (OSError, ValueError):
            answer = {}
        result.unlink(missing_ok=True)
        if "figures" in answer:
            done[seed] = answer["figures"]
            figures = seed_result(folder / f"seed-{seed}", seed, answer["figures"], resolved.preset.solved_score)
            source.finished(seed, asdict(figures))
            continue
        if stopping or "interrupted" in answer:
            source.put_back(seed)  # it resumes from its checkpoint next time
            if stopping:
                continue
            raise Interrupted(f"seed {seed}: {answer['interrupted']}; run the same benchmark again to continue")
        message = answer.get("error") or f"its worker process {describe_exit(code)} (its output is above)"
        source.failed(seed, message)
        raise RlkitError(f"seed {seed}: {message}")


def _stopped_message(done: dict[int, dict[str, Any]], total: int, *, hurried: bool = False) -> str:
    kept = f"{len(done)} of {total} seeds finished and kept"
    how = "seeds still training were stopped at once" if hurried else "seeds still training saved a checkpoint"
    return f"benchmark interrupted: {kept}; {how}. Run the same command again to continue."


def statuses(
    folder: Path,
    source: SeedSource,
    running: dict[int, Any],
    done: dict[int, dict[str, Any]],
    total: int,
    episodes: int,
) -> list[SeedStatus]:
    """Every seed's :class:`SeedStatus`: this worker's from their run directories, the others' from ``source``."""
    others = source.elsewhere()
    shown = []
    for s in source.seeds:
        status = seed_status(
            folder / f"seed-{s}", s, total, episodes, started=s in running or s in done, result=done.get(s)
        )
        if s in others and s not in running and s not in done:
            held = others[s]
            status.state = "elsewhere" if held is None else "done"
            if held is not None:
                status.final, status.best, status.fresh = held["final_mean"], held["best_mean"], held["fresh_mean"]
                status.steps, status.finished = int(held["steps"]), True
        shown.append(status)
    return shown


def _steps_done(run_path: Path) -> int:
    """Environment steps of finished episodes so far, from the Monitor CSVs (cheap to poll)."""
    total = 0
    for csv_path in (run_path / "monitor").glob("*.monitor.csv"):
        try:
            lines = csv_path.read_text().splitlines()[2:]
        except OSError:
            continue
        for line in lines:
            parts = line.split(",")
            if len(parts) >= 2 and parts[1].isdigit():
                total += int(parts[1])
    state = RunDir(run_path).read_state() if (run_path / "state.json").exists() else {}
    if state.get("status") == "finished":
        return int(state.get("num_timesteps", total))
    return total


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------


def iqm(values: list[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (rliable's robust aggregate; scipy's trim_mean(x, 0.25))."""
    ordered = sorted(values)
    cut = int(0.25 * len(ordered))
    middle = ordered[cut : len(ordered) - cut]
    return sum(middle) / len(middle)


def bootstrap_ci(values: list[float], statistic: Callable[[list[float]], float], seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap confidence interval of ``statistic`` across seeds."""
    import numpy as np

    if len(values) < 2:
        return (values[0], values[0]) if values else (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    picks = rng.integers(0, len(data), size=(BOOTSTRAP_SAMPLES, len(data)))
    stats = np.array([statistic(list(data[row])) for row in picks])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def aggregate(values: list[float]) -> dict[str, Any]:
    """Mean, median and IQM, each with its 95% bootstrap interval, and the min-max range.

    Below :data:`MIN_SEEDS_FOR_INTERVALS` values the intervals are ``None``: a bootstrap of 2 to 4
    values is essentially their range, which ``range`` states honestly.
    """
    import statistics

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    def median(v: list[float]) -> float:
        return float(statistics.median(v))

    enough = len(values) >= MIN_SEEDS_FOR_INTERVALS
    summary: dict[str, Any] = {
        name: {"value": fn(values), "ci95": list(bootstrap_ci(values, fn)) if enough else None}
        for name, fn in (("mean", mean), ("median", median), ("iqm", iqm))
    }
    summary["range"] = [min(values), max(values)] if values else [math.nan, math.nan]
    return summary


def seed_result(run_path: Path, seed: int, figures: dict[str, Any], solved: float | None) -> SeedResult:
    """Everything reported for one seed, from its run directory and evaluation figures."""
    run = RunDir(run_path)
    state = run.read_state()
    first_step: int | None = None
    first_wall: float | None = None
    if solved is not None:
        for row in run.read_evaluations():
            if row["mean_reward"] >= solved:
                first_step, first_wall = int(row["timesteps"]), float(row["wall_s"])
                break
    found = state.get("solved_at")
    at: dict[str, Any] = found if isinstance(found, dict) else {}
    solved_step, to_solve = at.get("timesteps"), at.get("wall_s")
    fresh = figures["fresh"]
    return SeedResult(
        seed=seed,
        run_dir=str(run_path),
        fresh_mean=float(fresh["mean"]),
        fresh_std=float(fresh["std"]),
        fresh_min=float(fresh["min"]),
        fresh_episodes=int(fresh["episodes"]),
        fresh_seed=int(fresh["seed"]),
        solved_fresh=solved is not None and fresh["mean"] >= solved,
        final_mean=float(figures["final"]),
        best_mean=float(figures["best"]),
        steps=int(state.get("num_timesteps", 0)),
        wall_s=float(state.get("wall_s", 0.0)),
        steps_per_s=float(state.get("steps_per_s", 0.0)),
        solved_final=solved is not None and figures["final"] >= solved,
        solved_best=solved is not None and figures["best"] >= solved,
        first_solved_step=first_step,
        first_solved_wall_s=first_wall,
        solved_step=int(solved_step) if isinstance(solved_step, (int, float)) else None,
        time_to_solve_s=float(to_solve) if isinstance(to_solve, (int, float)) else None,
    )


def median_or_none(values: list[float | None]) -> float | None:
    """The median over every seed, an unsolved seed counting as never: ``None`` when that is never."""
    import statistics

    if not values:
        return None
    middle = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(middle) else float(middle)


def summarize(
    resolved: Resolved, results: list[SeedResult], episodes: int, machine: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The benchmark's JSON document; ``machine``: where it ran (:func:`this_machine`, by default measured now)."""
    import statistics

    from rlkit.analysis.evaluation import DEFAULT_EVAL_SEED

    preset = resolved.preset
    solve_steps = [r.first_solved_step for r in results if r.first_solved_step is not None]
    solve_walls = [r.first_solved_wall_s for r in results if r.first_solved_wall_s is not None]
    return {
        "alias": resolved.alias,
        "env_id": preset.env_id,
        "n_timesteps": preset.n_timesteps,
        "seeds": [r.seed for r in results],
        "eval_episodes": episodes,
        "eval_seed": DEFAULT_EVAL_SEED,
        "solved_score": preset.solved_score,
        "fresh": aggregate([r.fresh_mean for r in results]),
        "seeds_solved_fresh": sum(r.solved_fresh for r in results),
        "fresh_episodes": episodes,
        "fresh_stream": FRESH_STREAM,
        "final": aggregate([r.final_mean for r in results]),
        "best": aggregate([r.best_mean for r in results]),
        "seeds_solved_final": sum(r.solved_final for r in results),
        "seeds_solved_best": sum(r.solved_best for r in results),
        "median_steps_to_solve": statistics.median(solve_steps) if solve_steps else None,
        "median_wall_s_to_solve": statistics.median(solve_walls) if solve_walls else None,
        "seeds_solved": sum(r.time_to_solve_s is not None for r in results),
        "median_time_to_solve_s": median_or_none([r.time_to_solve_s for r in results]),
        "median_steps_to_solve_confirmed": median_or_none(
            [None if r.solved_step is None else float(r.solved_step) for r in results]
        ),
        "solved_episodes": preset.solved_episodes,
        "stop_on_solved": preset.stop_on_solved,
        "steps_per_s": {"mean": sum(r.steps_per_s for r in results) / len(results)},
        "warning": few_seeds_warning(len(results)),
        "per_seed": [asdict(r) for r in results],
        "machine": machine if machine is not None else this_machine(preset),
        "created": now_iso(),
    }


def this_machine(preset: Preset) -> dict[str, Any]:
    """This machine: host, CPU cores, Python and its yardstick on the preset's env (about 1.5 s)."""
    import socket

    from rlkit.analysis.yardstick import measure

    return {
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "yardstick": measure(preset.env_id, dict(preset.env_kwargs)),
    }


def headline(doc: dict[str, Any], *, short: bool = False) -> str:
    """The benchmark in one line: ``solved on fresh episodes: k of n seeds (...)``; ``short``: without the (...).

    An older ``benchmark.json`` (before fresh re-scoring) has no such line: the final model's then.
    """
    n = len(doc["seeds"])
    if "fresh" not in doc:
        return f"final models: mean {doc['final']['mean']['value']:.1f} over {n} seeds (no fresh re-scoring)"
    fresh = doc["fresh"]
    if short:
        if doc.get("solved_score") is None:
            return f"on fresh episodes: mean {fresh['mean']['value']:.1f} over {n} seeds"
        return f"solved on fresh episodes: {doc['seeds_solved_fresh']} of {n} seeds"
    spread = _spread(fresh)
    what = (
        f"final models, {doc['fresh_episodes']} new episodes each that no training, evaluation or "
        f"confirmation used: mean {fresh['mean']['value']:.1f}, {spread}"
    )
    if doc.get("solved_score") is None:
        return f"on fresh episodes ({what}); the preset has no solved_score"
    return f"solved on fresh episodes: {doc['seeds_solved_fresh']} of {n} seeds ({what}; solved: mean >= {doc['solved_score']:g})"


def _spread(entry: dict[str, Any]) -> str:
    ci = entry["mean"].get("ci95")
    if ci is not None:
        return f"95% CI {ci[0]:.1f} to {ci[1]:.1f}"
    low, high = entry.get("range") or [math.nan, math.nan]
    return f"seeds from {low:.1f} to {high:.1f}"


def machine_note(doc: dict[str, Any]) -> str:
    """Where the absolute times were measured: ``on this machine (env 28,000 steps/s, matmul 9,000/s)``."""
    from rlkit.analysis.yardstick import describe

    machine = doc.get("machine") or {}
    figures = describe(machine.get("yardstick"))
    if not figures:
        return f"on a machine with {machine.get('cpu_count', '?')} CPU cores (no yardstick recorded)"
    note = f"; {machine['note']}" if machine.get("note") else ""
    return f"on {machine.get('label', 'this machine')} ({figures}{note})"


def markdown(doc: dict[str, Any], command: str) -> str:
    """A Markdown table of the benchmark, with the command that produced it."""
    n = len(doc["seeds"])
    header, rows = summary_rows(doc)
    lines = [
        f"### {doc['alias']} ({doc['env_id']}), {doc['n_timesteps']:,} steps, {n} seeds",
        "",
        f"**{_sentence(headline(doc))}**",
        "",
        f"Command: `{command}`  ",
        f"Date: {doc['created']}; machine: {doc['machine']['cpu_count']} CPU cores; "
        f"evaluation: {doc['eval_episodes']} deterministic episodes per model.",
        "",
    ]
    if doc.get("warning"):
        lines += [f"**Note:** {doc['warning']}.", ""]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    header, rows = seed_rows(doc)
    lines += ["", "| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", rows_note(doc), "", time_to_solve_line(doc)]
    return "\n".join(lines) + "\n"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def rows_note(doc: dict[str, Any]) -> str:
    """What the rows mean, and where the times and speeds were measured."""
    fresh = ""
    if "fresh" in doc:
        fresh = (
            f"fresh: the final model on {doc['fresh_episodes']} episodes of the seed's own '{doc['fresh_stream']}' "
            "env seeds, met by no training, periodic evaluation or confirmation; "
        )
    return (
        f"{fresh}final and best: {doc['eval_episodes']} episodes from env seed {doc.get('eval_seed', 100_000)} "
        "(the same for every seed; "
        f"the best model was chosen by the periodic evaluations). Times and steps/s {machine_note(doc)}."
    )


def time_to_solve_line(doc: dict[str, Any]) -> str:
    """One sentence: how many seeds were solved, the median time and steps to solve, and what that means."""
    if doc.get("solved_score") is None:
        return "The preset has no solved_score: no time to solve."
    n, solved = len(doc["seeds"]), doc.get("seeds_solved", 0)
    episodes = doc.get("solved_episodes", 0)
    rule = (
        f"an evaluation at {doc['solved_score']:g} or more, confirmed over {episodes} more deterministic episodes"
        if episodes
        else f"an evaluation at {doc['solved_score']:g} or more"
    )
    stop = " (training stopped there: the final model is the one that solved)" if doc.get("stop_on_solved") else ""
    median = doc.get("median_time_to_solve_s")
    if median is None:
        return f"Solved ({rule}) on {solved} of {n} seeds within {doc['n_timesteps']:,} steps: median time to solve not reached."
    steps = doc.get("median_steps_to_solve_confirmed")
    return (
        f"Solved ({rule}) on {solved} of {n} seeds{stop}; median time to solve {median:.1f} s of training "
        f"{machine_note(doc)}, median {steps:,.0f} steps (an unsolved seed counts as never)."
    )


def summary_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The summary table (header, one row per model): with 95% CIs, or the range when seeds are few."""
    n = len(doc["seeds"])

    def ci(entry: dict[str, Any]) -> str:
        low, high = entry["ci95"]
        return f"{entry['value']:.1f} [{low:.1f}, {high:.1f}]"

    def span(entry: dict[str, Any]) -> str:
        low, high = entry.get("range") or [math.nan, math.nan]
        return f"{low:.1f} to {high:.1f}"

    labels = [label for label in ("fresh", "final", "best") if label in doc]  # fresh: absent from older files
    intervals = all(doc[label]["mean"].get("ci95") is not None for label in labels)
    if intervals:
        header = ["model", "mean [95% CI]", "median [95% CI]", "IQM [95% CI]", "seeds solved"]
    else:
        header = ["model", "mean", "median", "min to max", "seeds solved"]
    rows = []
    for label in labels:
        entry = doc[label]
        solved = f"{doc[f'seeds_solved_{label}']}/{n}"
        name = "final, fresh" if label == "fresh" else label
        if intervals:
            rows.append([name, ci(entry["mean"]), ci(entry["median"]), ci(entry["iqm"]), solved])
        else:
            mean, median = entry["mean"]["value"], entry["median"]["value"]
            rows.append([name, f"{mean:.1f}", f"{median:.1f}", span(entry), solved])
    return header, rows


def seed_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-seed table (header, one row per seed)."""
    fresh = all("fresh_mean" in r for r in doc["per_seed"])
    header = ["seed", *(["fresh"] if fresh else []), "final", "best"]
    header += ["solved at (steps)", "time to solve (s)", "trained (steps)", "steps/s"]
    rows = []
    for r in doc["per_seed"]:
        step = "not solved" if r.get("solved_step") is None else f"{r['solved_step']:,}"
        wall = "-" if r.get("time_to_solve_s") is None else f"{r['time_to_solve_s']:.1f}"
        rows.append(
            [
                str(r["seed"]),
                *([f"{r['fresh_mean']:.1f}"] if fresh else []),
                f"{r['final_mean']:.1f}",
                f"{r['best_mean']:.1f}",
                step,
                wall,
                f"{r['steps']:,}",
                f"{r['steps_per_s']:.0f}",
            ]
        )
    return header, rows


def write_outputs(folder: Path, doc: dict[str, Any], command: str) -> list[Path]:
    """``benchmark.json``, ``benchmark.md`` and ``curves.png`` in the results folder."""
    from rlkit.analysis.plots import plot_runs

    json_path, md_path, png_path = folder / "benchmark.json", folder / "benchmark.md", folder / "curves.png"
    atomic.write_json(json_path, {**doc, "command": command})
    atomic.write_text(md_path, markdown(doc, command))
    plot_runs([Path(r["run_dir"]) for r in doc["per_seed"]], png_path, force=True)
    return [json_path, md_path, png_path]


MAX_SEEDS = 1000
"""``--seeds`` at most this many (seeds 0..N-1, all well inside the seed range [0, 2**32 - 1])."""


def check_request(seeds: int, episodes: int) -> None:
    """Reject impossible seed and episode counts before anything is resolved or shown."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise RlkitError(f"--seeds must be from 1 to {MAX_SEEDS} (seeds 0..N-1; got {seeds})")
    if episodes < 1:
        raise RlkitError(f"--episodes must be at least 1 (got {episodes})")


def benchmark(
    resolved: Resolved,
    *,
    seeds: int,
    jobs: int,
    episodes: int,
    device: str,
    out: Path | None,
    command: str,
    on_status: Callable[[list[SeedStatus]], None] | None = None,
    track: str | None = None,
    queue: SeedSource | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train and evaluate ``seeds`` seeds (0..seeds-1) and write the summary; returns folder and document.

    ``queue``: the seeds come from a queue other workers share (``--storage``); once none is left
    to take, this worker waits for the seeds others hold (``on_wait`` gets a line when it changes)
    and summarises every worker's figures. With ``track``, each seed trained is a tracked run and
    the summary is one more (:func:`track_summary`).
    """
    from rlkit.training.factory import resolve_device
    from rlkit.training.tracking import prepare_store

    check_request(seeds, episodes)
    resolve_device(device)
    prepare_store(track, f"rlkit-{resolved.alias}")  # once, before the seeds' processes share it
    jobs = max(1, min(jobs, seeds))
    folder = results_dir(resolved, out)
    started = time.perf_counter()
    machine = this_machine(resolved.preset)  # measured before this benchmark's own seeds load the machine
    source: SeedSource = queue if queue is not None else SeedList(list(range(seeds)))
    source.machine = machine  # a queued seed carries the figures of the machine that trained it
    while True:
        run_seeds(
            folder, resolved, source, jobs=jobs, episodes=episodes, device=device, on_status=on_status, track=track
        )
        if source.settle(on_wait):
            break
    found = source.results()
    results = [_seed_result(found[s]) for s in sorted(found)]
    doc = summarize(resolved, results, episodes, _doc_machine(machine, results))
    doc["benchmark_wall_s"] = time.perf_counter() - started
    written = write_outputs(folder, doc, command)
    if track is not None:
        track_summary(track, folder, resolved, doc, written)
    return folder, doc


def _seed_result(record: dict[str, Any]) -> SeedResult:
    """A :class:`SeedResult` from its dict (a queue's record may carry keys of a newer version: dropped)."""
    names = set(SeedResult.__dataclass_fields__)
    return SeedResult(**{k: v for k, v in record.items() if k in names})


def _doc_machine(local: dict[str, Any], results: list[SeedResult]) -> dict[str, Any]:
    """The document's machine: this one, or for a queue the machine of its lowest seed (every worker agrees).

    Each queued seed keeps its own machine's figures (``per_seed[].machine``).
    """
    queued = [r for r in results if r.machine is not None]
    if not queued:
        return {**local, "label": "this machine"}
    first = queued[0]
    assert first.machine is not None
    workers = sorted({r.trained_by or "" for r in queued})
    machine = {**first.machine, "label": str(first.machine.get("host", "?")), "workers": workers}
    if len(workers) > 1:
        machine["label"] += f", seed {first.seed}'s worker of {len(workers)}"
        machine["note"] = "each seed's own machine is in benchmark.json"
    return machine


def track_summary(track: str, folder: Path, resolved: Resolved, doc: dict[str, Any], files: list[Path]) -> str:
    """The benchmark's summary as one tracked run, grouped with its seeds' runs; its id."""
    from rlkit.config.schema import flatten
    from rlkit.training.tracking import log_finished

    summary: dict[str, Any] = {}
    for label in ("fresh", "final", "best"):
        for stat, entry in doc[label].items():
            if not isinstance(entry, dict):  # range: [min, max]
                summary[f"{label}_min"], summary[f"{label}_max"] = entry
                continue
            summary[f"{label}_{stat}"] = entry["value"]
            if entry.get("ci95") is not None:  # 95% intervals from 5 seeds on
                summary[f"{label}_{stat}_ci95_low"], summary[f"{label}_{stat}_ci95_high"] = entry["ci95"]
        summary[f"seeds_solved_{label}"] = doc[f"seeds_solved_{label}"]
    summary["median_steps_to_solve"] = doc["median_steps_to_solve"]
    summary["steps_per_s_mean"] = doc["steps_per_s"]["mean"]
    per_seed = {
        int(r["seed"]): {
            "seed_fresh_mean": r["fresh_mean"],
            "seed_final_mean": r["final_mean"],
            "seed_best_mean": r["best_mean"],
        }
        for r in doc["per_seed"]
    }
    return log_finished(
        track,
        project=f"rlkit-{resolved.alias}",
        name=f"{resolved.alias}-{folder.name}-summary",
        group=folder.name,
        params={
            **flatten(to_plain(resolved.preset)),
            "seeds": len(doc["seeds"]),
            "eval_episodes": doc["eval_episodes"],
        },
        steps=per_seed,
        summary=summary,
        files=files,
        tags={"rlkit.benchmark": str(folder.resolve())},
    )
