"""Using a study: the best trials, plots, and a trial exported as a preset ``rlkit train`` accepts."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.config.schema import did_you_mean
from rlkit.core.errors import RlkitError
from rlkit.core.paths import make_folder
from rlkit.tuning import storage as storages
from rlkit.tuning.space import SearchSpace, SpaceFile
from rlkit.tuning.study import OBJECTIVE_COLUMN, objective_label

if TYPE_CHECKING:
    import optuna


@dataclass
class Opened:
    """An existing study, its rlkit record and search space."""

    name: str
    study: optuna.Study
    record: dict[str, Any]
    space: SearchSpace
    url: storages.StorageUrl


def open_study(name: str, storage: str | None, runs_root: Path | None = None) -> Opened:
    """Load a study made by ``rlkit tune``; a missing one is a one-line error with a did-you-mean."""
    import optuna

    from rlkit.tuning.study import ATTR

    if storage is None:
        names = storages.local_studies(runs_root)
        if name not in names:
            where = storages.tune_root(runs_root)
            listing = f"studies there: {', '.join(names)}" if names else "there are none yet"
            raise RlkitError(f"no study '{name}' in {where}{did_you_mean(name, names)}; {listing} (or give --storage)")
    url = storages.parse(storage or storages.default_url(name, runs_root))
    rdb = storages.open_storage(url, create=False)
    names = storages.study_names(rdb)
    if name not in names:
        raise RlkitError(
            f"no study '{name}' in {url.shown}{did_you_mean(name, names)}; studies: {', '.join(names) or 'none'}"
        )
    study = optuna.load_study(study_name=name, storage=rdb)
    record = study.user_attrs.get(ATTR)
    if record is None:
        raise RlkitError(f"study '{name}' was not created by rlkit tune")
    space = SearchSpace(record.get("space_name", "?"), "study", SpaceFile.model_validate(record["space"]))
    return Opened(name, study, record, space, url)


@dataclass
class StudyRow:
    """One line of ``rlkit tune show`` without a name."""

    name: str
    env_id: str
    complete: int
    pruned: int
    failed: int
    running: int
    best: float | None
    storage: str


def list_studies(storage: str | None, runs_root: Path | None = None) -> list[StudyRow]:
    """Every rlkit study in ``storage``, or in every embedded file under ``runs/tune`` when None."""
    import optuna

    from rlkit.tuning.study import ATTR, count

    if storage is None:
        sources = [(name, storages.default_url(name, runs_root)) for name in storages.local_studies(runs_root)]
    else:
        url = storages.parse(storage)
        names = storages.study_names(storages.open_storage(url, create=False))
        sources = [(name, storage) for name in names]
    rows = []
    opened: dict[str, Any] = {}
    for name, address in sources:
        url = storages.parse(address)
        if url.url not in opened:
            opened[url.url] = storages.open_storage(url, create=False)
        rdb = opened[url.url]
        if name not in storages.study_names(rdb):
            continue  # an embedded file named after a study that lives elsewhere
        study = optuna.load_study(study_name=name, storage=rdb)
        record = study.user_attrs.get(ATTR) or {}
        counts = count(study)
        done = completed(study)
        rows.append(
            StudyRow(
                name=name,
                env_id=str(record.get("env_id", "? (not made by rlkit tune)")),
                complete=counts.complete,
                pruned=counts.pruned,
                failed=counts.failed,
                running=counts.running,
                best=done[0].value if done else None,
                storage=url.shown,
            )
        )
    return rows


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    return sorted(done, key=lambda t: -(t.value if t.value is not None and math.isfinite(t.value) else -math.inf))


MIN_TRIALS_FOR_IMPORTANCE = 10
"""fANOVA fits a random forest to the completed trials; with fewer than this its importances are noise."""


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's fANOVA parameter importances, or None below :data:`MIN_TRIALS_FOR_IMPORTANCE` completed trials."""
    import warnings

    import optuna

    if len(completed(study)) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError):
            return None


# ----------------------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------------------

PLOTS = ("history", "importances", "intermediate", "parallel")


def plot(opened: Opened, out_dir: Path, *, force: bool = False) -> tuple[list[Path], list[str]]:
    """Write the study's plots as PNG files; returns (written, skipped with reasons)."""
    existing = [
        out_dir / f"{opened.name}-{name}.png" for name in PLOTS if (out_dir / f"{opened.name}-{name}.png").exists()
    ]
    if existing and not force:
        raise RlkitError(f"{existing[0]} already exists; use --force to overwrite the plots in {out_dir}")
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    from rlkit.core import atomic

    study = opened.study
    n_done = len(completed(study))
    label = objective_label(opened.record)
    makers: dict[str, tuple[Callable[..., Any], int]] = {
        "history": (functools.partial(ovm.plot_optimization_history, target_name=label), 1),
        "importances": (functools.partial(ovm.plot_param_importances, target_name=label), MIN_TRIALS_FOR_IMPORTANCE),
        "intermediate": (ovm.plot_intermediate_values, 1),
        "parallel": (functools.partial(parallel_coordinates, opened), 2),
    }
    make_folder(out_dir, "--out-dir")
    written: list[Path] = []
    skipped: list[str] = []
    for name in PLOTS:
        maker, needs = makers[name]
        if n_done < needs:
            skipped.append(f"{name}: needs {needs} completed trial(s), the study has {n_done}")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = maker(study)
            except (RuntimeError, ValueError) as exc:
                skipped.append(f"{name}: {exc}")
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        if name == "history":  # optuna puts the legend beside the plot, squeezing it
            for ax in figure.axes:
                ax.legend(loc="best", fontsize=8)
        if name == "intermediate":
            for ax in figure.axes:
                ax.set_xlabel("training step (seed k: k x budget + step)")
                ax.set_ylabel("evaluation return (mean over episodes)")
        if name != "parallel":
            figure.set_size_inches(10, 6)
            figure.tight_layout()
        path = out_dir / f"{opened.name}-{name}.png"
        atomic.write_with(path, functools.partial(_save_png, figure))
        plt.close(figure)
        written.append(path)
    return written, skipped


def _save_png(figure: Any, path: Path) -> None:
    figure.savefig(path, format="png", dpi=100)


def parallel_coordinates(opened: Opened, study: optuna.Study) -> Any:
    """One line per completed trial across the tuned parameters, coloured by the objective.

    Matplotlib directly (Optuna's version overlaps its labels): one vertical axis per tuned
    parameter, scaled to [0, 1] (log scale for log-sampled numbers, categories evenly spaced and
    named), labels rotated, the best trial drawn last and thickest, a colour bar of the objective.
    """
    import math

    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    trials = completed(study)
    if len(trials) < 2:
        raise ValueError("needs 2 completed trials")
    keys = [k for k in opened.space.params if any(k in t.params for t in trials)]
    if not keys:
        raise ValueError("no tuned parameter in the completed trials")
    columns: list[list[float]] = []
    ticks: list[tuple[list[float], list[str]]] = []
    for key in keys:
        raw = [t.params.get(key) for t in trials]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw if v is not None)
        if numeric:
            values = [float(v) for v in raw if v is not None]
            low, high = min(values), max(values)
            log = low > 0 and high / low > 20
            scale = (lambda v: math.log10(v)) if log else (lambda v: v)
            lo, hi = scale(low), scale(high)
            span = (hi - lo) or 1.0
            columns.append([math.nan if v is None else (scale(float(v)) - lo) / span for v in raw])
            ticks.append(([0.0, 1.0], [f"{low:.3g}", f"{high:.3g}"]))
        else:
            names = sorted({str(v) for v in raw if v is not None})
            where = {n: (i / (len(names) - 1) if len(names) > 1 else 0.5) for i, n in enumerate(names)}
            columns.append([math.nan if v is None else where[str(v)] for v in raw])
            ticks.append((list(where.values()), [n if len(n) <= 14 else n[:13] + "~" for n in names]))
    objective = [float(t.value) for t in trials if t.value is not None]
    norm = colors.Normalize(vmin=min(objective), vmax=max(objective))
    cmap = cm.get_cmap("viridis") if hasattr(cm, "get_cmap") else plt.get_cmap("viridis")
    width = max(6.0, 1.6 * len(keys) + 2.5)
    figure, ax = plt.subplots(figsize=(width, 5.5))
    xs = list(range(len(keys)))
    order = sorted(range(len(trials)), key=lambda i: objective[i])  # best drawn last, on top
    for i in order:
        ys = [columns[c][i] for c in range(len(keys))]
        best = i == order[-1]
        ax.plot(xs, ys, color=cmap(norm(objective[i])), linewidth=2.8 if best else 1.2, alpha=1.0 if best else 0.7)
    for x, (positions, labels) in zip(xs, ticks, strict=True):
        ax.axvline(x, color="0.6", linewidth=0.8, zorder=0)
        for y, text in zip(positions, labels, strict=True):
            ax.annotate(text, (x, y), xytext=(4, 0), textcoords="offset points", fontsize=8, va="center")
    ax.set_xticks(xs)
    ax.set_xticklabels(keys, rotation=30, ha="right", fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(keys) - 0.4)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{opened.name}: {len(trials)} completed trials (best thickest)", fontsize=11)
    bar = figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(objective_label(opened.record), fontsize=9)
    figure.tight_layout()
    return ax


# ----------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------


def pick_trial(opened: Opened, number: int | None) -> optuna.trial.FrozenTrial:
    """The best completed trial, or trial ``number`` (which must have finished with a config)."""
    trials = opened.study.get_trials(deepcopy=False)
    if number is None:
        done = completed(opened.study)
        if not done:
            raise RlkitError(f"study '{opened.name}' has no completed trial yet")
        return done[0]
    if not 0 <= number < len(trials):
        raise RlkitError(f"study '{opened.name}' has no trial {number} (trials 0..{len(trials) - 1})")
    trial = trials[number]
    if "config" not in trial.user_attrs:
        raise RlkitError(f"trial {number} never started training ({trial.state.name.lower()}); nothing to export")
    return trial


BUDGET_KEYS = (
    "n_timesteps",
    "eval_freq",
    "eval_episodes",
    "eval_envs",
    "checkpoint_freq",
    "keep_checkpoints",
    "checkpoint_replay_buffer",
    "stop_on_solved",
    "solved_episodes",
    "solved_confidence",
    "solved_rounds",
)
"""How long and how a run trains, evaluates and saves: the preset's own, not the tuning budget's."""


def default_export_path(opened: Opened, number: int | None, runs_root: Path | None = None) -> Path:
    """``runs/tune/<study>-best.yaml``, or ``<study>-trial<N>.yaml`` for ``--trial N``."""
    suffix = "best" if number is None else f"trial{number}"
    return storages.tune_root(runs_root) / f"{opened.name}-{suffix}.yaml"


def preset_budget(record: dict[str, Any]) -> dict[str, Any]:
    """The budget keys of the preset the study started from (its file, before tuning's --set/--steps).

    Falls back to the study's base configuration when that file is gone.
    """
    from rlkit.config.presets import read_yaml
    from rlkit.config.schema import to_plain, validate

    base = dict(record.get("base", {}))
    source = str(record.get("source", ""))
    try:
        data = read_yaml(Path(source)) if source and Path(source).is_file() else {"env_id": record.get("env_id")}
        plain = to_plain(validate(data, source or "preset"))
    except (RlkitError, OSError, ValueError):
        plain = base
    return {key: plain.get(key, base.get(key)) for key in BUDGET_KEYS if key in plain or key in base}


def retrain_overrides(trial: optuna.trial.FrozenTrial, budget: dict[str, Any]) -> list[str]:
    """``--steps``/``--set`` pairs that make ``rlkit train`` of an export (with ``budget``) repeat the trial's."""
    config = trial.user_attrs["config"]
    argv = ["--steps", str(config["n_timesteps"])]
    for key in BUDGET_KEYS[1:]:
        if key in config and config[key] is not None and config[key] != budget.get(key):
            argv += ["--set", f"{key}={str(config[key]).lower() if isinstance(config[key], bool) else config[key]}"]
    return argv


def export_text(opened: Opened, trial: optuna.trial.FrozenTrial, shown_as: str) -> str:
    """The trial's preset as YAML, with the preset's own budget and a header saying where it came from."""
    import shlex

    import yaml

    from rlkit.config.schema import validate

    config = _without_nulls(dict(trial.user_attrs["config"]))
    config.pop("aliases", None)  # an exported file is addressed by its path, not by the catalogue's names
    budget = preset_budget(opened.record)
    tuned_budget = {key: config.get(key) for key in budget}
    config.update({key: value for key, value in budget.items() if value is not None})
    config["description"] = f"{opened.record.get('env_id')} tuned by rlkit: study {opened.name}, trial {trial.number}"
    validate(config, f"trial {trial.number}")
    value = "-" if trial.value is None else f"{trial.value:.2f}"
    seeds = trial.user_attrs.get("seeds", [])
    tuned = ", ".join(sorted(opened.space.decode(trial.params)))
    differs = ", ".join(f"{k}={tuned_budget[k]}" for k in budget if tuned_budget[k] != budget[k])
    again = shlex.join(
        ["rlkit", "train", shown_as, "--seed", str(seeds[0] if seeds else 0), *retrain_overrides(trial, budget)]
    )
    header = (
        f"# Exported by `rlkit tune export` from study '{opened.name}' ({opened.record.get('env_id')}), "
        f"trial {trial.number} ({trial.state.name.lower()}).\n"
        f"# Objective {value}: {objective_label(opened.record)}, seeds {seeds}.\n"
        f"# Tuned keys: {tuned}.\n"
        f"# Budget keys ({', '.join(budget)}) are the preset's own; the trial trained with {differs or 'the same'}.\n"
        f"# Re-train exactly as the trial did: {again}\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def export(opened: Opened, number: int | None, out: Path, *, force: bool = False) -> optuna.trial.FrozenTrial:
    """Write the trial's preset (its tuned config with the preset's own budget) as a YAML file."""
    from rlkit.core import atomic

    if out.suffix not in (".yaml", ".yml"):
        raise RlkitError(f"--out must be a .yaml file or - for stdout (got {out})")
    if out.exists() and not force:
        raise RlkitError(f"{out} already exists; use --force to overwrite it (or --out another.yaml, or --out -)")
    trial = pick_trial(opened, number)
    text = export_text(opened, trial, str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, text)
    return trial


def trial_rows(opened: Opened) -> list[dict[str, Any]]:
    """Every trial as one flat row: number, state, objective, per-seed scores, parameters, reasons."""
    rows = []
    for trial in opened.study.get_trials(deepcopy=False):
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        last = max(trial.intermediate_values) if trial.intermediate_values else None
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name.lower(),
            "baseline": bool(trial.user_attrs.get("baseline", False)),
            OBJECTIVE_COLUMN: trial.value,
            "seed_scores": json.dumps(trial.user_attrs.get("seed_scores")),
            "last_reported_step": last,
            "last_reported_value": trial.intermediate_values[last] if last is not None else None,
            "duration_s": round(duration, 1) if duration is not None else None,
            "worker": trial.user_attrs.get("worker"),
            "pruned_reason": trial.user_attrs.get("pruned_reason"),
        }
        params = opened.space.decode(trial.params)
        for key in opened.space.params:
            value = params.get(key)
            row[key] = json.dumps(value) if isinstance(value, list) else value
        rows.append(row)
    return rows


def write_trials_csv(opened: Opened, out: Path, *, force: bool = False) -> int:
    """All trials (:func:`trial_rows`) as CSV, written atomically; the number of rows."""
    import csv
    import io

    from rlkit.core import atomic

    atomic.check_new_output(out, force, (".csv",), "trials table", flag="--csv")
    rows = trial_rows(opened)
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["number", "state", OBJECTIVE_COLUMN]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, buffer.getvalue())
    return len(rows)


def _without_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """Drop unset (null) keys, nested ones included: null is every such key's default."""
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}
