"""``rlkit benchmark``: several seeds of one configuration, trained, evaluated and summarised.

Read top to bottom: the resolved preset is written once into a results folder named after its
content (so the same configuration always lands in the same folder); each seed is a normal run
directory inside it, trained in its own process (``--jobs`` at a time) and reused when it has
already finished (resumed when it was interrupted); every final and best model is evaluated over
``episodes`` deterministic episodes; the figures across seeds (mean, median, IQM with 95%
bootstrap confidence intervals, seeds that solve, steps and wall-clock to solve, steps/s) go to
``benchmark.json``, ``benchmark.md`` and ``curves.png``.
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
from typing import Any

import yaml

from rlkit.config.presets import Resolved, read_yaml
from rlkit.config.schema import Preset, to_plain, validate
from rlkit.core import atomic
from rlkit.core.errors import Interrupted, RlkitError
from rlkit.core.paths import check_folder, make_folder, missing_folders
from rlkit.core.processes import describe_exit
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


@dataclass
class SeedResult:
    """One seed's figures."""

    seed: int
    run_dir: str
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
    """Train (or reuse, or resume) one seed, then evaluate its final and best models.

    With ``track`` the seed's training is a tracked run (a reused, already finished seed is not logged again).
    ``imports``: the modules the user asked for (the preset file records them as ``env_imports``).
    """
    from rlkit.analysis.evaluation import evaluate_run, save_result, saved_results
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
    figures: dict[str, float] = {}
    for label in ("final", "best"):
        cached = [r for r in saved_results(run) if r.model == label and r.episodes == episodes and r.epsilon is None]
        result = cached[-1] if cached else evaluate_run(run_path, model_name=label, episodes=episodes, device=device)
        if not cached:
            save_result(result)
        figures[label] = result.mean
    return {"seed": seed, "final": figures["final"], "best": figures["best"]}


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


def seed_status(
    run_path: Path, seed: int, total: int, episodes: int, *, started: bool, result: dict[str, Any] | None
) -> SeedStatus:
    """One seed's state from its run directory (cheap: state.json, Monitor CSVs, evaluations.csv).

    ``started``: its worker has taken it (it is ``starting`` until its run directory appears), else ``queued``.
    """
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
    elif started and run_path.exists():  # (the pool marks queued jobs as running before they start)
        if state.get("status") != "finished":
            status.state = "training"
        elif any(run_path.glob(f"evaluation-final-{episodes}ep-s*.json")):
            status.state = "evaluating best"
        else:
            status.state = "evaluating final"
    return status


def run_seeds(
    folder: Path,
    resolved: Resolved,
    seeds: list[int],
    *,
    jobs: int,
    episodes: int,
    device: str,
    on_status: Callable[[list[SeedStatus]], None] | None = None,
    track: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Every seed in a worker process of its own, ``jobs`` at a time; returns the evaluation figures by seed.

    ``on_status`` gets every seed's :class:`SeedStatus` about once a second. The workers are
    :class:`~rlkit.core.processes.Children` of this process: a Ctrl-C, SIGTERM or SIGHUP here (or
    this process's end, however it ends) stops each with a checkpoint; the seeds finished so far are
    kept, and the same command continues the rest.
    """
    from rlkit.core.processes import Children
    from rlkit.core.threads import cores_per_job
    from rlkit.training.callbacks import StopOnSignal
    from rlkit.training.factory import worker_devices

    preset_file = str(write_preset(folder, resolved))
    devices = worker_devices(device, len(seeds))  # several GPUs: seeds spread over them
    cores = cores_per_job(jobs) if jobs > 1 else None  # seeds side by side share the cores
    jobs_of: dict[int, dict[str, Any]] = {
        s: {
            "preset_file": preset_file,
            "alias": resolved.alias,
            "seed": s,
            "run_dir": str(folder / f"seed-{s}"),
            "episodes": episodes,
            "device": devices[i],
            "track": track,
            "imports": list(resolved.preset.env_imports),
            "cores": cores,
            "result": str(folder / f".seed-{s}.result.json"),
        }
        for i, s in enumerate(seeds)
    }
    for job in jobs_of.values():
        Path(job["result"]).unlink(missing_ok=True)  # left by a benchmark that was killed
    done: dict[int, dict[str, Any]] = {}
    waiting = list(seeds)
    running: dict[int, Any] = {}
    shown = -math.inf
    with Children() as children, StopOnSignal() as stopper:
        try:
            while waiting or running:
                while waiting and len(running) < jobs and stopper.received is None:
                    seed = waiting.pop(0)
                    argv = [sys.executable, "-m", "rlkit.analysis.benchmark_worker", json.dumps(jobs_of[seed])]
                    running[seed] = children.start(argv)
                if stopper.received is not None:
                    children.stop(signal.SIGTERM)  # each saves a checkpoint (bounded wait, then killed)
                    _collect(running, jobs_of, done, stopping=True)
                    raise Interrupted(_stopped_message(done, len(seeds)), stopper.received)
                before = len(running)
                _collect(running, jobs_of, done, stopping=False)
                if on_status is not None and (len(running) != before or time.monotonic() >= shown + 1.0):
                    on_status(_statuses(folder, seeds, running, done, resolved.preset.n_timesteps, episodes))
                    shown = time.monotonic()
                time.sleep(0.2)
        except KeyboardInterrupt:  # a second Ctrl-C while the seeds were saving: they were killed
            raise Interrupted(_stopped_message(done, len(seeds), hurried=True), signal.SIGINT) from None
    return done


def _collect(
    running: dict[int, Any], jobs_of: dict[int, dict[str, Any]], done: dict[int, dict[str, Any]], *, stopping: bool
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
        elif stopping:
            continue  # stopped by us: it resumes from its checkpoint next time
        elif "error" in answer:
            raise RlkitError(f"seed {seed}: {answer['error']}")
        elif "interrupted" in answer:  # someone signalled the worker itself
            raise Interrupted(f"seed {seed}: {answer['interrupted']}; run the same benchmark again to continue")
        else:
            raise RlkitError(f"seed {seed}: its worker process {describe_exit(code)} (its output is above)")


def _stopped_message(done: dict[int, dict[str, Any]], total: int, *, hurried: bool = False) -> str:
    kept = f"{len(done)} of {total} seeds finished and kept"
    how = "seeds still training were stopped at once" if hurried else "seeds still training saved a checkpoint"
    return f"benchmark interrupted: {kept}; {how}. Run the same command again to continue."


def _statuses(
    folder: Path, seeds: list[int], running: dict[int, Any], done: dict[int, dict[str, Any]], total: int, episodes: int
) -> list[SeedStatus]:
    return [
        seed_status(folder / f"seed-{s}", s, total, episodes, started=s in running or s in done, result=done.get(s))
        for s in seeds
    ]


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
    return SeedResult(
        seed=seed,
        run_dir=str(run_path),
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


def summarize(resolved: Resolved, results: list[SeedResult], episodes: int) -> dict[str, Any]:
    """The benchmark's JSON document."""
    import statistics

    preset = resolved.preset
    solve_steps = [r.first_solved_step for r in results if r.first_solved_step is not None]
    solve_walls = [r.first_solved_wall_s for r in results if r.first_solved_wall_s is not None]
    return {
        "alias": resolved.alias,
        "env_id": preset.env_id,
        "n_timesteps": preset.n_timesteps,
        "seeds": [r.seed for r in results],
        "eval_episodes": episodes,
        "solved_score": preset.solved_score,
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
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
        "created": now_iso(),
    }


def markdown(doc: dict[str, Any], command: str) -> str:
    """A Markdown table of the benchmark, with the command that produced it."""
    n = len(doc["seeds"])
    header, rows = summary_rows(doc)
    lines = [
        f"### {doc['alias']} ({doc['env_id']}), {doc['n_timesteps']:,} steps, {n} seeds",
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
    lines += ["", time_to_solve_line(doc)]
    return "\n".join(lines) + "\n"


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
        f"Solved ({rule}) on {solved} of {n} seeds{stop}; median time to solve {median:.1f} s of training, "
        f"median {steps:,.0f} steps (an unsolved seed counts as never)."
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

    intervals = all(doc[label]["mean"].get("ci95") is not None for label in ("final", "best"))
    if intervals:
        header = ["model", "mean [95% CI]", "median [95% CI]", "IQM [95% CI]", "seeds solved"]
    else:
        header = ["model", "mean", "median", "min to max", "seeds solved"]
    rows = []
    for label in ("final", "best"):
        entry = doc[label]
        solved = f"{doc[f'seeds_solved_{label}']}/{n}"
        if intervals:
            rows.append([label, ci(entry["mean"]), ci(entry["median"]), ci(entry["iqm"]), solved])
        else:
            mean, median = entry["mean"]["value"], entry["median"]["value"]
            rows.append([label, f"{mean:.1f}", f"{median:.1f}", span(entry), solved])
    return header, rows


def seed_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-seed table (header, one row per seed)."""
    header = ["seed", "final", "best", "solved at (steps)", "time to solve (s)", "trained (steps)", "steps/s"]
    rows = []
    for r in doc["per_seed"]:
        step = "not solved" if r.get("solved_step") is None else f"{r['solved_step']:,}"
        wall = "-" if r.get("time_to_solve_s") is None else f"{r['time_to_solve_s']:.1f}"
        rows.append(
            [
                str(r["seed"]),
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
) -> tuple[Path, dict[str, Any]]:
    """Train and evaluate ``seeds`` seeds (0..seeds-1) and write the summary; returns folder and document.

    With ``track``, each seed trained is a tracked run and the summary is one more (:func:`track_summary`).
    """
    from rlkit.training.factory import resolve_device
    from rlkit.training.tracking import prepare_store

    check_request(seeds, episodes)
    resolve_device(device)
    prepare_store(track, f"rlkit-{resolved.alias}")  # once, before the seeds' processes share it
    jobs = max(1, min(jobs, seeds))
    folder = results_dir(resolved, out)
    started = time.perf_counter()
    figures = run_seeds(
        folder,
        resolved,
        list(range(seeds)),
        jobs=jobs,
        episodes=episodes,
        device=device,
        on_status=on_status,
        track=track,
    )
    results = [seed_result(folder / f"seed-{s}", s, figures[s], resolved.preset.solved_score) for s in sorted(figures)]
    doc = summarize(resolved, results, episodes)
    doc["benchmark_wall_s"] = time.perf_counter() - started
    written = write_outputs(folder, doc, command)
    if track is not None:
        track_summary(track, folder, resolved, doc, written)
    return folder, doc


def track_summary(track: str, folder: Path, resolved: Resolved, doc: dict[str, Any], files: list[Path]) -> str:
    """The benchmark's summary as one tracked run, grouped with its seeds' runs; its id."""
    from rlkit.config.schema import flatten
    from rlkit.training.tracking import log_finished

    summary: dict[str, Any] = {}
    for label in ("final", "best"):
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
        int(r["seed"]): {"seed_final_mean": r["final_mean"], "seed_best_mean": r["best_mean"]} for r in doc["per_seed"]
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
