"""``rlkit benchmark``: train and evaluate several seeds of one configuration."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rlkit.cli.common import (
    DeviceOpt,
    ImportOption,
    TrackOpt,
    err,
    explain_resolved,
    one_line_errors,
    out,
    prose,
    show_table,
    track_name,
)


@one_line_errors
def benchmark(
    env: Annotated[
        str,
        typer.Argument(
            help="Preset alias, gymnasium id (pkg.module:EnvId-v0 imports pkg.module) or preset .yaml file."
        ),
    ],
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..K-1).")] = 5,
    steps: Annotated[
        Optional[int], typer.Option(min=1, help="Training budget per seed (overrides the preset).")
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1, help="Seeds trained at once, each in its own process.", show_default="the number of CPU cores"
        ),
    ] = max(1, os.cpu_count() or 1),
    episodes: Annotated[int, typer.Option(min=1, help="Evaluation episodes per final and best model.")] = 100,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="Override a preset key: key=value. Repeatable."),
    ] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML file of overrides laid over the preset.")] = None,
    device: DeviceOpt = "auto",
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Results folder (default: one per configuration in runs/benchmarks/, named alias-steps-hash).",
        ),
    ] = None,
    track: TrackOpt = None,
    import_: ImportOption = None,
    storage: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Share the seeds with other workers through one queue in this Optuna storage "
            "(postgresql://user@host/db, sqlite:///path.db): run the same command on every machine.",
        ),
    ] = None,
    wait: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="With --storage: how long a worker with no seed left waits for the others' seeds.",
        ),
    ] = 86_400,
) -> None:
    """Train every seed, re-score each final model on fresh episodes, report mean/median/IQM and solve times.

    The headline is the final models on fresh episodes (env seeds nothing in training used).
    Seeds that already finished in the results folder are reused; interrupted ones are resumed.
    """
    from rlkit.analysis.benchmark import benchmark as run_benchmark
    from rlkit.analysis.benchmark import check_request, headline
    from rlkit.environments.resolve import resolve

    check_request(seeds, episodes)
    overrides = list(set_ or [])
    if steps is not None:
        overrides.append(f"n_timesteps={steps}")
    resolved = resolve(env, config_file=config, overrides=overrides, imports=import_ or [])
    explain_resolved(resolved)
    argv = ["rlkit", "benchmark", env, "--seeds", str(seeds), "--episodes", str(episodes)]
    for module in import_ or []:
        argv += ["--import", module]
    if steps is not None:
        argv += ["--steps", str(steps)]
    for pair in set_ or []:
        argv += ["--set", pair]
    if config is not None:
        argv += ["--config", str(config)]
    command = shlex.join(argv)
    from rlkit.analysis.benchmark import few_seeds_warning, results_dir

    results_dir(resolved, out_dir)  # a results folder that cannot be: one line, before any warning or table
    queue = None
    if storage is not None:  # a bad URL or an unreachable server: one line, nothing written
        queue = _open_queue(storage, resolved, seeds, episodes, wait)
    warning = few_seeds_warning(seeds)
    if warning is not None:
        err.print(f"[bold yellow]warning:[/] {warning}", markup=True, soft_wrap=True)
    view = SeedView(
        seeds,
        resolved.preset.n_timesteps,
        episodes,
        jobs=max(1, min(jobs, seeds)),
        stop_on_solved=resolved.preset.stop_on_solved and resolved.preset.solved_score is not None,
    )
    with view:
        folder, doc = run_benchmark(
            resolved,
            seeds=seeds,
            jobs=jobs,
            episodes=episodes,
            device=device,
            out=out_dir,
            command=command,
            on_status=view.update,
            track=track_name(track),
            queue=queue,
            on_wait=view.waiting,
        )
    _print_tables(doc)
    if doc.get("warning"):
        err.print(f"[bold yellow]warning:[/] {doc['warning']}", markup=True, soft_wrap=True)
    prose(f"{headline(doc, short=True)}; results: {folder}/benchmark.json, benchmark.md, curves.png")


def _open_queue(url: str, resolved: Any, seeds: int, episodes: int, wait: float) -> Any:
    """The shared seed queue of this configuration and seed count in ``url`` (made by its first worker)."""
    from rlkit.analysis.benchmark import config_digest
    from rlkit.tuning.seed_queue import open_queue

    return open_queue(
        url,
        alias=resolved.alias,
        env_id=resolved.preset.env_id,
        digest=config_digest(resolved.preset),
        seeds=seeds,
        episodes=episodes,
        wait_s=wait,
    )


class SeedView:
    """Live per-seed status: a rich table on a terminal, else one line whenever a seed changes state.

    Every seed's total is its budget, and so is the footer's: a seed that stops once solved
    (``stop_on_solved``) ends below it, with a full bar, and the footer says so.
    """

    def __init__(self, seeds: int, steps: int, episodes: int, jobs: int = 1, stop_on_solved: bool = False) -> None:
        from rlkit.analysis.benchmark import SeedStatus

        self.episodes = episodes
        self.jobs = jobs
        self.stop_on_solved = stop_on_solved
        self.statuses = [
            SeedStatus(seed=s, state="starting" if s < jobs else "queued", steps=0, total=steps) for s in range(seeds)
        ]
        self._said: dict[int, str] = {}
        self._live: Any = None
        self.wait_line = ""
        """With a shared queue, once this worker has no seed left: whom it waits for."""

    def __enter__(self) -> SeedView:
        if out.is_terminal:
            from rich.live import Live

            self._live = Live(self, console=out, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, statuses: list[Any]) -> None:
        self.statuses = statuses
        if self._live is not None:
            return
        for status in statuses:  # not a terminal: a line per change of state
            if self._said.get(status.seed) != status.state and status.state not in ("queued", "starting"):
                self._said[status.seed] = status.state
                out.print(f"seed {status.seed}: {self._state_text(status)}")

    def waiting(self, line: str) -> None:
        """This worker waits for seeds on other workers: a footer line (a printed line without a terminal)."""
        self.wait_line = line
        if self._live is None:
            out.print(f"waiting: {line}")

    def _state_text(self, status: Any) -> str:
        if status.state == "elsewhere":
            return "taken by another worker"
        if status.state == "done" and status.fresh is not None:
            return (
                f"done: fresh {status.fresh:.1f}, final {status.final:.1f}, best {status.best:.1f} "
                f"({self.episodes} episodes each)"
            )
        if status.state == "done":
            return f"done: final {status.final:.1f}, best {status.best:.1f} ({self.episodes} episodes each)"
        if status.state == "evaluating fresh":
            return f"evaluating the final model on fresh episodes ({self.episodes})"
        if status.state.startswith("evaluating"):
            return f"{status.state} model ({self.episodes} episodes)"
        return status.state

    def _short_state(self, status: Any) -> str:
        if status.state.startswith("evaluating"):
            return f"eval {status.state.split()[-1]}"
        return {"starting": "starting*", "queued": "queued**", "elsewhere": "elsewhere"}.get(status.state, status.state)

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        from rlkit.training.display import fmt_steps

        table = Table(title="benchmark", title_justify="left", expand=False)
        table.add_column("seed", justify="right", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("steps", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("last eval", justify="right", no_wrap=True)
        table.add_column("fresh/final/best", justify="right", no_wrap=True)
        done_steps = 0
        for status in self.statuses:
            done_steps += min(status.steps, status.total)
            last = (
                "-" if status.last_eval is None else f"{status.last_eval:.1f} @ {fmt_steps(status.last_eval_step or 0)}"
            )
            shown = [v for v in (status.fresh, status.final, status.best) if v is not None]
            figures = "/".join(_short(v) for v in shown) if status.final is not None else "-"
            style = {"done": "green", "training": "cyan", "queued": "dim", "starting": "dim"}.get(
                status.state, "yellow"
            )
            bar_done = status.total if status.finished else min(status.steps, status.total)
            table.add_row(
                str(status.seed),
                f"[{style}]{self._short_state(status)}[/]",
                f"{fmt_steps(min(status.steps, status.total))}/{fmt_steps(status.total)}",
                ProgressBar(total=status.total, completed=bar_done, width=6),
                last,
                figures,
            )
        return Group(table, *self._footer(done_steps))

    def _footer(self, done_steps: int) -> list[str]:
        n = len(self.statuses)
        budget = sum(s.total for s in self.statuses)
        evaluated = sum(s.state == "done" for s in self.statuses)
        early = sum(s.finished and s.steps < s.total for s in self.statuses)
        lines = [
            f"seeds done {evaluated}/{n}; steps {done_steps:,} of a {budget:,} budget ({n} x {budget // n:,})",
            f"fresh/final/best: {self.episodes} greedy episodes each (fresh: final model, new episodes)",
        ]
        if self.stop_on_solved:
            lines.append(f"a seed stops once solved, below its budget (full bar): {early} so far")
        waiting = [s.state for s in self.statuses]
        if "starting" in waiting:
            lines.append("* starting: its worker process imports torch and SB3 and builds the env")
        if "queued" in waiting:
            lines.append(f"** queued: --jobs {self.jobs} seeds train at once")
        if "elsewhere" in waiting:
            lines.append("elsewhere: another worker of the shared queue trains it")
        if self.wait_line:
            lines.append(f"waiting: {self.wait_line}")
        return lines


def _short(value: float) -> str:
    """A mean for the live table: one decimal below 100, none from 100 on (``-123/-150/-99.5`` fits 80 columns)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _print_tables(doc: dict[str, Any]) -> None:
    """The summary and per-seed tables as rich tables (the Markdown goes to benchmark.md)."""
    from rlkit.analysis.benchmark import headline, rows_note, seed_rows, summary_rows, time_to_solve_line

    n = len(doc["seeds"])
    title = f"{doc['alias']} ({doc['env_id']}), {doc['n_timesteps']:,} steps, {n} seed{'s' if n != 1 else ''}"
    prose(headline(doc))
    for caption, (header, rows) in (
        (f"{title}: {doc['eval_episodes']} evaluation episodes per model", summary_rows(doc)),
        ("per seed", seed_rows(doc)),
    ):
        table = _table(caption, header, rows)
        if _too_wide(table):  # `499.8 [499.4, 500.0]`: the interval goes under its value, not cut at the comma
            table = _table(caption, header, [[cell.replace(" [", "\n[", 1) for cell in row] for row in rows])
        show_table(table)
    prose(rows_note(doc))
    prose(time_to_solve_line(doc))


def _table(caption: str, header: list[str], rows: list[list[str]]) -> Any:
    from rich.table import Table

    table = Table(title=caption, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _too_wide(table: Any) -> bool:
    """Whether ``table`` would wrap its cells to fit the terminal."""
    from rich.measure import Measurement

    return Measurement.get(out, out.options.update_width(10_000), table).maximum > out.width
