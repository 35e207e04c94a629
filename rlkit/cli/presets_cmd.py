"""``rlkit presets``: presets from the tools people already use (``import-zoo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rlkit.cli.common import one_line_errors, out

app = typer.Typer(
    name="presets",
    help="Make rlkit presets from other tools' files (RL Baselines3 Zoo hyperparameters).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("import-zoo")
@one_line_errors
def import_zoo(
    file: Annotated[Path, typer.Argument(help="An RL Baselines3 Zoo hyperparameter file, e.g. hyperparams/dqn.yml.")],
    env: Annotated[
        Optional[list[str]],
        typer.Option(
            "--env",
            metavar="ENV_ID",
            help="Entry to import (an env id in the file, or any Atari id through the 'atari' entry). "
            "Repeatable; default: every entry but 'atari'.",
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the <alias>.yaml presets (created if missing).")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite preset files that already exist.")] = False,
) -> None:
    """Turn Zoo DQN hyperparameters into validated rlkit presets, one <alias>.yaml per env."""
    from rlkit.config import zoo
    from rlkit.core import atomic
    from rlkit.core.errors import RlkitError
    from rlkit.environments.factory import registered_env_ids

    if not file.is_file():
        raise RlkitError(f"Zoo file not found: {file}")
    if out_dir.exists() and not out_dir.is_dir():
        raise RlkitError(f"--out {out_dir}: not a folder")
    imported, skipped = zoo.convert_file(file, env, env_ids=registered_env_ids)
    targets = [out_dir / f"{item.alias}.yaml" for item in imported]
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise RlkitError(
            f"{', '.join(existing)} already exist(s); use --force to overwrite or --out for another folder"
        )
    for item, path in zip(imported, targets, strict=True):
        atomic.write_text(path, zoo.preset_yaml(item, str(file)))
    for line in skipped:
        out.print(f"{file}: {line}")
    for item, path in zip(imported, targets, strict=True):
        out.print(f"{path}: {item.data['env_id']} from entry '{item.entry}'")
        for note in item.notes:
            out.print(f"  {note}")
    if imported:
        out.print(f"train one with: rlkit train {targets[0]}")
