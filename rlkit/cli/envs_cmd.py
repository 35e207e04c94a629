"""``rlkit envs``: the preset catalogue as a table."""

from __future__ import annotations

from rlkit.cli.common import one_line_errors, out, prose, show_table


@one_line_errors
def envs() -> None:
    """List the shipped presets: alias, env id, policy, budget and solved score."""
    from rich import box
    from rich.table import Table

    from rlkit.config.presets import catalogue, load_preset_file

    wide = out.width >= 120
    table = Table(title="rlkit presets (envs/*.yaml)", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ["alias", "env id", "policy", "budget", "solved"] + (["description"] if wide else [])
    presets = {alias: load_preset_file(path) for alias, path in catalogue().items()}
    # The alias list wraps at ", " but keeps room for its longest name; the description wraps at
    # spaces; ids, policies and figures never wrap.
    longest = max((len(n) + 1 for a, p in presets.items() for n in [a, *p.aliases]), default=5)
    for column in columns:
        wraps = column in ("alias", "description")
        table.add_column(
            column,
            no_wrap=not wraps,
            min_width=longest if column == "alias" else None,
            justify="right" if column == "budget" else "left",
        )
    for alias, preset in presets.items():
        names = ", ".join([alias, *preset.aliases])
        table.add_row(
            names,
            preset.env_id,
            preset.policy,
            f"{preset.n_timesteps:,}",
            "-" if preset.solved_score is None else f"{preset.solved_score:g}",
            *([preset.description] if wide else []),
        )
    show_table(table)
    prose("Any gymnasium id works too (defaults, policy chosen from the observation space).")
