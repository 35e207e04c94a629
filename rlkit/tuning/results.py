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


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    return sorted(done, key=lambda t: -(t.value if t.value is not None and math.isfinite(t.value) else -math.inf))


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's fANOVA parameter importances, or None with too few completed trials."""
    import warnings

    import optuna

    if len(completed(study)) < 2:
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
    makers: dict[str, tuple[Callable[..., Any], int]] = {
        "history": (ovm.plot_optimization_history, 1),
        "importances": (ovm.plot_param_importances, 2),
        "intermediate": (ovm.plot_intermediate_values, 1),
        "parallel": (ovm.plot_parallel_coordinate, 2),
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
        figure.set_size_inches(10, 6)
        figure.tight_layout()
        path = out_dir / f"{opened.name}-{name}.png"
        atomic.write_with(path, functools.partial(_save_png, figure))
        plt.close(figure)
        written.append(path)
    return written, skipped


def _save_png(figure: Any, path: Path) -> None:
    figure.savefig(path, format="png", dpi=100)


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


def export(opened: Opened, number: int | None, out: Path, *, force: bool = False) -> optuna.trial.FrozenTrial:
    """Write the trial's full preset (the exact config it trained with) as YAML."""
    import yaml

    from rlkit.config.schema import validate
    from rlkit.core import atomic

    if out.suffix not in (".yaml", ".yml"):
        raise RlkitError(f"--out must be a .yaml file (got {out})")
    if out.exists() and not force:
        raise RlkitError(f"{out} already exists; use --force to overwrite it")
    trial = pick_trial(opened, number)
    config = _without_nulls(dict(trial.user_attrs["config"]))
    config.pop("aliases", None)  # an exported file is addressed by its path, not by the catalogue's names
    config["description"] = f"{opened.record.get('env_id')} tuned by rlkit: study {opened.name}, trial {trial.number}"
    validate(config, f"trial {trial.number}")
    value = "-" if trial.value is None else f"{trial.value:.2f}"
    seeds = trial.user_attrs.get("seeds", [])
    tuned = ", ".join(sorted(opened.space.decode(trial.params)))
    header = (
        f"# Exported by `rlkit tune export` from study '{opened.name}' ({opened.record.get('env_id')}), "
        f"trial {trial.number} ({trial.state.name.lower()}, objective {value} over seeds {seeds}).\n"
        f"# Tuned keys: {tuned}.\n"
        f"# n_timesteps is the per-trial budget it was tuned with; `rlkit train {out.name} --steps N` trains longer.\n"
        f"# Re-train exactly: rlkit train {out} --seed {seeds[0] if seeds else 0}\n"
    )
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, header + body)
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
            "value": trial.value,
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
    fields = list(rows[0]) if rows else ["number", "state", "value"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, buffer.getvalue())
    return len(rows)


def _without_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """Drop unset (null) keys, nested ones included: null is every such key's default."""
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}
