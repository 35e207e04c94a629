"""``rlkit envs``: the preset catalogue as a table."""

from __future__ import annotations

from rlkit.cli.common import one_line_errors, out


@one_line_errors
def envs() -> None:
    """List the shipped presets: alias, env id, policy, budget and solved score."""
    from rich.table import Table

    from rlkit.presets import catalogue, load_preset_file

    table = Table(title="rlkit presets (envs/*.yaml)")
    for column in ("alias", "env id", "policy", "budget", "solved", "description"):
        table.add_column(column, no_wrap=column != "description")
    for alias, path in catalogue().items():
        preset = load_preset_file(path)
        names = ", ".join([alias, *preset.aliases])
        table.add_row(
            names,
            preset.env_id,
            preset.policy,
            f"{preset.n_timesteps:,}",
            "-" if preset.solved_score is None else f"{preset.solved_score:g}",
            preset.description,
        )
    out.print(table)
    out.print("Any gymnasium id works too (defaults, policy chosen from the observation space).")
