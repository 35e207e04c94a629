"""``rlkit tune``: Optuna studies (``rlkit tune ENV``), and ``show``, ``plot``, ``export`` for their results.

``rlkit tune cartpole`` is short for ``rlkit tune run cartpole``: the group falls back to its
``run`` command whenever the first word is not one of its subcommands.
"""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from rlkit.cli.common import (
    DeviceOpt,
    ImportOption,
    TrackOpt,
    err,
    fail,
    note,
    one_line_errors,
    out,
    prose,
    seed_value,
    show_table,
    track_name,
    warn,
)


class DefaultRunGroup(TyperGroup):
    """A group whose first word is a subcommand, or else the arguments of ``run``."""

    default_command = "run"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's (vendored) click Context
        help_names = ctx.help_option_names
        if args and args[0] not in self.commands and args[0] not in help_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="tune",
    cls=DefaultRunGroup,
    help=(
        "Tune hyperparameters with Optuna. `rlkit tune ENV [OPTIONS]` runs (or continues) a study; "
        "`show`, `plot` and `export` use its results."
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Sampler(str, Enum):
    """Optuna samplers (``rlkit.tuning.study.SAMPLERS``)."""

    tpe = "tpe"
    random = "random"
    cmaes = "cmaes"
    gp = "gp"


class Pruner(str, Enum):
    """Optuna pruners (``rlkit.tuning.study.PRUNERS``)."""

    median = "median"
    halving = "halving"
    hyperband = "hyperband"
    none = "none"


def _choices(kind: type[Enum]) -> str:
    """``tpe, random, cmaes or gp``: an Enum's choices for a help text (the metavar names the kind)."""
    names = [str(member.value) for member in kind]
    return ", ".join(names[:-1]) + f" or {names[-1]}"


StorageOpt = Annotated[
    Optional[str],
    typer.Option(help="Study storage URL (default: the embedded file runs/tune/<study>.db)."),
]


@app.command("run")
@one_line_errors
def run(
    env: Annotated[
        str,
        typer.Argument(
            help="Preset alias (see `rlkit envs`), a gymnasium id (pkg.module:EnvId-v0 imports pkg.module), "
            "or a preset .yaml file."
        ),
    ],
    trials: Annotated[int, typer.Option(help="Finished (complete or pruned) trials the study should hold.")] = 20,
    timeout: Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")] = None,
    steps: Annotated[
        Optional[int], typer.Option(help="Training steps per seed in each trial (default: the preset's).")
    ] = None,
    seeds_per_trial: Annotated[
        Optional[int], typer.Option(help="Seeds trained per trial; the objective is their mean (default 1).")
    ] = None,
    evals_per_trial: Annotated[
        Optional[int], typer.Option(help="Evaluations per seed, reported to the pruner (default 5).")
    ] = None,
    sampler: Annotated[
        Sampler, typer.Option(metavar="SAMPLER", help=f"Optuna sampler: {_choices(Sampler)}; seeded with --seed.")
    ] = Sampler.tpe,
    pruner: Annotated[
        Pruner,
        typer.Option(
            metavar="PRUNER", help=f"Stops unpromising trials early, from their evaluations: {_choices(Pruner)}."
        ),
    ] = Pruner.median,
    jobs: Annotated[int, typer.Option(help="Local worker processes sharing the study.")] = 1,
    study: Annotated[Optional[str], typer.Option(help="Study name (default: the env's alias).")] = None,
    storage: StorageOpt = None,
    seed: Annotated[
        int,
        typer.Option(
            parser=seed_value,
            metavar="SEED",
            help="Seeds the sampler (and, for a new study, the trials' training seeds); 0 to 2**32-1.",
        ),
    ] = 0,
    space: Annotated[
        Optional[str], typer.Option(help="Search space: a name in tuning/ (classic, box2d, atari) or a .yaml file.")
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", metavar="KEY=VALUE", help="Override a key of the base preset: key=value (dotted keys). Repeatable."
        ),
    ] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML file of overrides laid over the base preset.")] = None,
    device: DeviceOpt = "auto",
    heartbeat: Annotated[
        int,
        typer.Option(
            help="Seconds between a running trial's heartbeats; a dead worker's trial is retried.", hidden=True
        ),
    ] = 20,
    worker_index: Annotated[
        int, typer.Option(help="Index of a --jobs worker (varies its sampler's seed).", hidden=True)
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live display; one line per finished trial.")] = False,
    track: TrackOpt = None,
    import_: ImportOption = None,
) -> None:
    """Run an Optuna study on ENV, or continue it (the same command again continues it)."""
    from rlkit import api
    from rlkit.core.seeds import check_seed
    from rlkit.tuning.study import spawn_workers, work

    check_seed(seed)
    prepared = api.prepare_tune(
        env,
        trials=trials,
        timeout=timeout,
        steps=steps,
        seeds_per_trial=seeds_per_trial,
        evals_per_trial=evals_per_trial,
        sampler=sampler.value,
        pruner=pruner.value,
        jobs=jobs,
        study=study,
        storage=storage,
        seed=seed,
        space=space,
        overrides=list(set_ or []),
        config=config,
        device=device,
        heartbeat=heartbeat,
        worker_index=worker_index,
        track=track_name(track),
        imports=list(import_ or []),
    )
    record = prepared.record
    _explain(prepared)
    verb = "created" if prepared.created else "continuing"
    prose(
        f"{verb} study '{prepared.study_name}' ({prepared.env_id}) in {prepared.url.shown}: "
        f"{record['steps']:,} steps x {record['seeds_per_trial']} seed(s) per trial, "
        f"{record['evals_per_trial']} evaluations each, space {prepared.space.name}, "
        f"sampler {sampler.value}, pruner {pruner.value}, {jobs} worker(s)"
    )
    if prepared.baseline is not None:
        prose(prepared.baseline)
    display = _display(prepared, quiet)
    problems: list[str] = []
    with display:
        if jobs > 1:
            outcome, problems = spawn_workers(prepared, display=display)
        else:
            outcome = work(prepared, display=display)
    for line in problems:
        err.print(f"[bold red]error:[/] {line}", markup=True, soft_wrap=True)
    _summary(prepared, outcome)
    if outcome == "interrupted":
        raise typer.Exit(130)
    if problems:
        raise typer.Exit(1)


def _explain(prepared: Any) -> None:
    """Say once which sized defaults an env without a preset got, and warn about useless settings."""
    from rlkit.config.schema import preset_warnings, validate

    record = prepared.record
    if prepared.defaults:
        filled = ", ".join(f"{key}={value}" for key, value in prepared.defaults.items())
        note(
            f"no preset for {record['env_id']}: base defaults sized to {record['base']['n_timesteps']:,} steps: "
            f"{filled}; change any with --set key=value or a preset file (docs/custom-envs.md)"
        )
    for line in preset_warnings(validate({**record["base"], "n_timesteps": record["steps"]}, "study base")):
        warn(line)
    tuned = prepared.space.params
    for item in prepared.request.overrides:
        key = item.split("=", 1)[0].strip()
        if key in tuned:
            warn(
                f"--set {item}: {key} is tuned by the search space '{prepared.space.name}', "
                "so each trial's sampled value replaces it (drop it, or use a --space without it)"
            )


def _display(prepared: Any, quiet: bool) -> Any:
    from rlkit.tuning.display import live_view

    return live_view(prepared, quiet=quiet, console=out)


def _continue_command(prepared: Any) -> str:
    argv = ["rlkit", *sys.argv[1:]] if sys.argv and "tune" in sys.argv[1:3] else []
    if not argv:
        argv = ["rlkit", "tune", prepared.request.env, "--study", prepared.study_name]
    return shlex.join(argv)


def _summary(prepared: Any, outcome: str) -> None:
    from rlkit.tuning.study import best_summary, count, objective_label

    counts = count(prepared.study)
    best = best_summary(prepared.study, prepared.space)
    best_text = (
        "no completed trial yet"
        if best is None
        else f"best {best[0]:.2f} (trial {best[1]}; {objective_label(prepared.record)})"
    )
    prose(
        f"{outcome}: {counts.finished}/{prepared.request.trials} trials finished "
        f"({counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed); {best_text}"
    )
    storage_opt = "" if prepared.request.storage is None else f" --storage {shlex.quote(prepared.url.shown)}"
    if outcome != "done":
        out.print(f"continue with: {_continue_command(prepared)}")
    prose(
        f"results: rlkit tune show {prepared.study_name}{storage_opt}; "
        f"export: rlkit tune export {prepared.study_name}{storage_opt}"
    )


@app.command("show")
@one_line_errors
def show(
    study: Annotated[Optional[str], typer.Argument(help="Study name (none: list the studies).")] = None,
    storage: StorageOpt = None,
    top: Annotated[int, typer.Option(help="How many of the best trials to list.")] = 5,
    csv: Annotated[
        Path | None,
        typer.Option(help="Also write every trial (state, objective, seed scores, parameters) to this .csv file."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --csv if it exists.")] = False,
) -> None:
    """The best trials, their parameters, and parameter importances; with no STUDY, the list of studies."""
    from rich.table import Table

    from rlkit.tuning.display import format_value
    from rlkit.tuning.results import MIN_TRIALS_FOR_IMPORTANCE, completed, importances, open_study, write_trials_csv
    from rlkit.tuning.study import count, objective_label

    if study is None:
        if csv is not None:
            raise fail("--csv needs a study name: rlkit tune show STUDY --csv FILE.csv")
        _list_studies(storage)
        return
    opened = open_study(study, storage)
    if csv is not None:
        rows = write_trials_csv(opened, csv, force=force)
        out.print(f"wrote {rows} trial(s) to {csv}")
    counts = count(opened.study)
    record = opened.record
    prose(
        f"study '{opened.name}': {record['env_id']} ({record['alias']}), {record['steps']:,} steps x "
        f"{record['seeds_per_trial']} seed(s) per trial; {counts.complete} complete, {counts.pruned} pruned, "
        f"{counts.failed} failed, {counts.running} running, {counts.waiting} waiting"
    )
    label = objective_label(record)
    prose(f"objective: {label} (higher is better)")
    best = completed(opened.study)[: max(1, top)]
    if not best:
        out.print("no completed trial yet")
        return
    decoded = [opened.space.decode(trial.params) for trial in best]
    columns = [
        (_trial_name(trial), [f"{trial.value:.2f}", *[format_value(p.get(k, "-")) for k in opened.space.params]])
        for trial, p in zip(best, decoded, strict=True)
    ]
    for table in trial_tables(["objective", *opened.space.params], columns, out.width, len(best)):
        show_table(table)
    weights = importances(opened.study)
    n_complete = len(completed(opened.study))
    if weights:
        imp = Table(title=f"parameter importances (fANOVA over {n_complete} completed trials)")
        imp.add_column("parameter")
        imp.add_column("importance", justify="right")
        for key, weight in weights.items():
            imp.add_row(key, f"{weight:.3f}")
        show_table(imp)
    else:
        prose(
            f"parameter importances: not shown, the study has {n_complete} completed trial(s); "
            f"fANOVA needs at least {MIN_TRIALS_FOR_IMPORTANCE} to say more than noise"
        )


def _trial_name(trial: Any) -> str:
    return f"trial {trial.number}" + (" (baseline)" if trial.user_attrs.get("baseline") else "")


def trial_tables(names: list[str], columns: list[tuple[str, list[str]]], width: int, shown: int) -> list[Any]:
    """The best trials side by side, as many tables as it takes to fit ``width`` columns.

    Parameter names and values are never cut: the name column is as wide as the longest name,
    every cell stays on one line, and trials that do not fit go to the next table.
    """
    from rich.table import Table

    name_width = max(len(n) for n in names)
    chunks: list[list[tuple[str, list[str]]]] = [[]]
    used = name_width + 4  # its padding and both borders
    for column in columns:
        need = max(len(column[0]), *(len(v) for v in column[1])) + 3  # padding and one border
        if chunks[-1] and used + need > width:
            chunks.append([])
            used = name_width + 4
        chunks[-1].append(column)
        used += need
    tables = []
    first = 1
    for chunk in chunks:
        last = first + len(chunk) - 1
        span = f"{first}" if first == last else f"{first}-{last}"
        part = f" ({span} of {shown})" if len(chunks) > 1 else ""
        table = Table(title=f"best {shown} trial(s){part}")
        table.add_column("parameter", no_wrap=True, min_width=name_width)
        for header, _ in chunk:
            table.add_column(header, justify="right", no_wrap=True)
        for i, name in enumerate(names):
            cells = [values[i] for _, values in chunk]
            table.add_row(f"[bold]{name}[/]" if i == 0 else name, *(f"[bold]{c}[/]" if i == 0 else c for c in cells))
        tables.append(table)
        first = last + 1
    return tables


def _list_studies(storage: str | None) -> None:
    from rich.table import Table

    from rlkit.tuning import storage as storages
    from rlkit.tuning.results import list_studies

    rows = list_studies(storage)
    where = storage if storage is not None else str(storages.tune_root())
    if not rows:
        out.print(f"no studies in {where} yet; start one with: rlkit tune ENV")
        return
    table = Table(title=f"studies in {rows[0].storage if storage is not None else where}")
    for column in ("study", "env", "complete", "pruned", "failed", "running", "best"):
        table.add_column(column, justify="right" if column not in ("study", "env") else "left")
    for row in rows:
        best = "-" if row.best is None else f"{row.best:.2f}"
        table.add_row(row.name, row.env_id, str(row.complete), str(row.pruned), str(row.failed), str(row.running), best)
    show_table(table)
    out.print("details: rlkit tune show STUDY")


@app.command("plot")
@one_line_errors
def plot(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    out_dir: Annotated[
        Optional[Path], typer.Option(help="Folder for the PNG files (default runs/tune/<study>-plots).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing plots.")] = False,
) -> None:
    """Optimization history, parameter importances, intermediate values and parallel coordinates as PNG."""
    from rlkit.tuning import storage as storages
    from rlkit.tuning.results import open_study
    from rlkit.tuning.results import plot as make_plots

    opened = open_study(study, storage)
    folder = out_dir or storages.tune_root() / f"{study}-plots"
    written, skipped = make_plots(opened, folder, force=force)
    for path in written:
        out.print(f"wrote {path}")
    for reason in skipped:
        out.print(f"skipped {reason}")


@app.command("export")
@one_line_errors
def export(
    study: Annotated[str, typer.Argument(help="Study name.")],
    out_file: Annotated[
        Optional[str],
        typer.Option(
            "--out",
            help="Preset file to write (.yaml), or - for stdout. Default: runs/tune/STUDY-best.yaml "
            "(STUDY-trialN.yaml with --trial).",
        ),
    ] = None,
    trial: Annotated[Optional[int], typer.Option(help="Trial number (default: the best completed trial).")] = None,
    storage: StorageOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Write a trial's configuration as a preset file that `rlkit train FILE.yaml` accepts.

    The tuned keys are the trial's; the budget keys (n_timesteps, eval_freq, eval_episodes,
    checkpoints) are the preset's own, not the shorter tuning budget's.
    """
    from rlkit.tuning.results import default_export_path, export_text, open_study, pick_trial
    from rlkit.tuning.results import export as write_preset

    opened = open_study(study, storage)
    if out_file == "-":
        chosen = pick_trial(opened, trial)
        sys.stdout.write(export_text(opened, chosen, "FILE.yaml"))
        return
    path = Path(out_file) if out_file is not None else default_export_path(opened, trial)
    chosen = write_preset(opened, trial, path, force=force)
    value = "-" if chosen.value is None else f"{chosen.value:.2f}"
    out.print(f"wrote {path}: trial {chosen.number} (objective {value}); train it with: rlkit train {path}")
