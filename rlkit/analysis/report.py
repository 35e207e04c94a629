"""A self-contained HTML report of one or many runs: opens offline, no external assets.

For each run: what was trained (env, preset, resolved hyperparameters from ``config.yaml``),
on what (versions and device from ``meta.json``), how it went (status and wall-clock from
``state.json``), the saved evaluations (``evaluation-*.json``; one is made when there is
none) and a video (the newest ``videos/*.mp4``; one episode is recorded when there is none).
The learning curve of all runs comes first; several runs get a comparison table. Images and
videos are embedded as base64 ``data:`` URIs and the CSS is inline.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.analysis.evaluation import EvalResult
from rlkit.config.schema import flatten
from rlkit.core import atomic
from rlkit.core.errors import RlkitError
from rlkit.training.rundir import RunDir

MAX_VIDEO_BYTES = 40 * 1024 * 1024
"""Videos above this size are linked by path instead of embedded."""

Notify = Callable[[str], None]


@dataclass
class RunFacts:
    """Everything the report shows about one run."""

    path: Path
    alias: str
    seed: int
    env_id: str
    preset: dict[str, Any]
    meta: dict[str, Any]
    state: dict[str, Any]
    evaluations: list[EvalResult] = field(default_factory=list)
    video: Path | None = None


# ----------------------------------------------------------------------------------------
# Gathering
# ----------------------------------------------------------------------------------------


def check_output(path: Path, force: bool) -> None:
    """A writable new report path (see :func:`rlkit.core.atomic.check_new_output`)."""
    atomic.check_new_output(path, force, (".html", ".htm"), "report", "-o")


def newest_video(run: RunDir) -> Path | None:
    """The most recent MP4 under ``<run>/videos``."""
    folder = run.path / "videos"
    videos = sorted(folder.glob("*.mp4"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return videos[-1] if videos else None


def gather(path: Path, *, episodes: int, video: bool, notify: Notify) -> RunFacts:
    """Read one run; evaluate it and record a video when it has none yet."""
    from rlkit.analysis.evaluation import evaluate_run, resolve_model, save_result, saved_results
    from rlkit.config.schema import to_plain

    run = RunDir.open(path)
    alias, seed, preset = run.read_config()
    resolve_model(run)  # a run without any model fails here, before any work
    facts = RunFacts(path, alias, seed, preset.env_id, to_plain(preset), run.read_meta(), run.read_state())
    facts.evaluations = saved_results(run)
    if not facts.evaluations:
        notify(f"{path}: no saved evaluation; evaluating {episodes} episodes")
        result = evaluate_run(path, episodes=episodes)
        save_result(result)
        facts.evaluations = [result]
    if video:
        facts.video = newest_video(run) or record_one_episode(run, notify)
    return facts


def record_one_episode(run: RunDir, notify: Notify) -> Path | None:
    """Record one greedy episode into ``<run>/videos`` for a run that has no video yet.

    ``None`` (and a note) for a custom env that cannot render (its constructor takes no render_mode).
    """
    from rlkit.analysis.evaluation import resolve_model
    from rlkit.analysis.video import default_video_path, record_run
    from rlkit.environments.factory import accepts_render_mode
    from rlkit.environments.imports import ensure_imported

    _, _, preset = run.read_config()
    ensure_imported(preset)
    if not accepts_render_mode(preset.env_id):
        notify(f"{run.path}: {preset.env_id} cannot render frames (no render_mode argument); no video in the report")
        return None
    target = default_video_path(run.path, resolve_model(run).label, 1, gif=False)
    notify(f"{run.path}: no video; recording one episode to {target}")
    return record_run(run.path, target, create_folder=True).path


def learning_curve_png(paths: list[Path]) -> bytes | None:
    """The learning-curve figure of all runs as PNG, or None when no run has data yet."""
    from rlkit.analysis.plots import build_figure, figure_bytes, load_groups

    try:
        groups = load_groups(paths)
    except RlkitError:
        return None
    return figure_bytes(build_figure(groups, "steps"))


# ----------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2430;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #e3e7ee;padding-bottom:.3rem}
h3{margin-top:1.4rem}.sub{color:#5b6676;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d9dee7;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
img.curve{max-width:100%;border:1px solid #e3e7ee}video{max-width:100%;background:#000}
.note{color:#5b6676;font-size:.88rem}.ok{color:#137333}.bad{color:#b3261e}
.scroll{overflow-x:auto}details summary{cursor:pointer;font-weight:600;margin:.4rem 0}
code{background:#f3f5f9;padding:0 .25rem}
"""

# Marks media as loaded (data-state) and reports failures on the console, so a headless
# browser can check the page.
SCRIPT = """
(function(){
  document.querySelectorAll('img').forEach(function(img){
    function ok(){img.dataset.state='loaded';}
    function bad(){img.dataset.state='error';console.error('image failed to load: '+img.alt);}
    if(img.complete){img.naturalWidth>0?ok():bad();}
    else{img.addEventListener('load',ok);img.addEventListener('error',bad);}
  });
  document.querySelectorAll('video').forEach(function(v){
    function ok(){v.dataset.state='ready';}
    function bad(){v.dataset.state='error';console.error('video failed to load: '+v.dataset.run);}
    if(v.error){bad();}else if(v.readyState>=2){ok();}
    else{v.addEventListener('loadeddata',ok);v.addEventListener('error',bad);}
  });
})();
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_num(value: Any, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else esc(value)


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; cells are already-escaped HTML."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table>{thead}<tbody>{body}</tbody></table></div>'


def run_name(facts: RunFacts) -> str:
    return f"{facts.alias}/{facts.path.name}"


def solved_text(result: EvalResult) -> str:
    if result.solved_fraction is None or result.solved_score is None:
        return "-"
    return f"{result.solved_fraction:.0%} (≥ {result.solved_score:g})"


def evaluation_table(results: list[EvalResult]) -> str:
    rows = [
        [
            esc(r.model),
            str(r.episodes),
            esc("greedy" if r.epsilon is None else f"ε-greedy, ε={r.epsilon:g}"),
            f"{r.mean:.2f} ± {r.std:.2f}",
            f"{r.median:.2f}",
            f"{r.min:.2f}",
            f"{r.max:.2f}",
            f"{r.mean_length:.1f}",
            esc(solved_text(r)),
            str(r.seed),
        ]
        for r in results
    ]
    headers = ["model", "episodes", "policy", "mean ± std", "median", "min", "max", "mean length", "solved", "seed"]
    kinds = sorted({f"{r.score_kind}; lengths in {r.length_unit}" for r in results})
    note = f'<p class="note">Score: {esc(" / ".join(kinds))}.</p>'
    return table(headers, rows, numeric={1, 3, 4, 5, 6, 7}) + note


def training_table(facts: RunFacts) -> str:
    state, meta = facts.state, facts.meta
    status = str(state.get("status", "unknown"))
    css = "ok" if status == "finished" else "bad"
    steps = state.get("num_timesteps")
    budget = state.get("n_timesteps", facts.preset.get("n_timesteps"))
    best = state.get("best_mean_reward")
    rows = [
        ["environment", f"<code>{esc(facts.env_id)}</code> (preset <code>{esc(facts.alias)}</code>)"],
        ["seed", esc(facts.seed)],
        ["status", f'<span class="{css}">{esc(status)}</span>' + (" · solved" if state.get("solved") else "")],
        ["steps", f"{fmt_num(steps, ',')} of {fmt_num(budget, ',')}"],
        ["wall-clock", esc(fmt_duration(state.get("wall_s")))],
        ["speed", f"{fmt_num(state.get('steps_per_s'), '.0f')} steps/s" if state.get("steps_per_s") else "-"],
        ["best evaluation", fmt_num(best) if best is not None else "-"],
        ["policy network", esc(meta.get("policy", "-"))],
        ["device", f"{esc(meta.get('device', '-'))} · torch threads {esc(meta.get('torch_threads', '-'))}"],
        ["started / finished", f"{esc(meta.get('created', '-'))} / {esc(state.get('finished', '-'))}"],
        [
            "machine",
            f"{esc(meta.get('host', '-'))} · {esc(meta.get('platform', '-'))} · {esc(meta.get('cpu_count', '-'))} CPUs",
        ],
        ["python", esc(meta.get("python", "-"))],
    ]
    versions = meta.get("versions", {})
    if isinstance(versions, dict):
        rows.append(["versions", esc(", ".join(f"{k} {v}" for k, v in versions.items()))])
    return table(["", ""], rows)


def hyperparameter_table(preset: dict[str, Any]) -> str:
    rows = [[f"<code>{esc(k)}</code>", esc(json.dumps(v, default=str))] for k, v in flatten(preset).items()]
    return table(["key", "value"], rows)


def video_html(facts: RunFacts) -> str:
    if facts.video is None:
        return '<p class="note">No video (record one with <code>rlkit record</code>).</p>'
    size = facts.video.stat().st_size
    if size > MAX_VIDEO_BYTES:
        return f'<p class="note">Video too large to embed ({size / 2**20:.0f} MiB): {esc(facts.video)}</p>'
    data = base64.b64encode(facts.video.read_bytes()).decode("ascii")
    return (
        f'<video controls muted loop playsinline preload="auto" data-run="{esc(run_name(facts))}" '
        f'src="data:video/mp4;base64,{data}"></video>'
        f'<p class="note">{esc(facts.video.name)} · greedy policy</p>'
    )


def run_section(facts: RunFacts) -> str:
    return (
        f'<section class="run"><h2>{esc(run_name(facts))}</h2>'
        f'<p class="sub">{esc(facts.path)}</p>'
        f'<div class="grid"><div><h3>Training</h3>{training_table(facts)}</div>'
        f"<div><h3>Video</h3>{video_html(facts)}</div></div>"
        f"<h3>Evaluation</h3>{evaluation_table(facts.evaluations)}"
        f"<details><summary>Resolved hyperparameters (config.yaml)</summary>{hyperparameter_table(facts.preset)}"
        "</details></section>"
    )


COMPARE_SKIP = {"env_id", "description", "aliases"}
"""Preset keys never shown as comparison columns (the env has its own column)."""

MAX_COMPARE_KEYS = 10


def headline(results: list[EvalResult]) -> EvalResult | None:
    """The evaluation a comparison shows: the newest greedy one, else the newest."""
    greedy = [r for r in results if r.epsilon is None]
    chosen = greedy or results
    return chosen[-1] if chosen else None


def differing_keys(flats: list[dict[str, Any]]) -> list[str]:
    """Hyperparameters whose values differ between runs (at most ``MAX_COMPARE_KEYS``)."""
    keys = set().union(*flats) - COMPARE_SKIP
    differ = sorted(k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1)
    return differ[:MAX_COMPARE_KEYS]


def comparison_table(runs: list[RunFacts]) -> str:
    flats = [flatten(f.preset) for f in runs]
    keys = differing_keys(flats)
    rows = []
    for facts, flat in zip(runs, flats, strict=True):
        latest = headline(facts.evaluations)
        rows.append(
            [
                esc(run_name(facts)),
                f"<code>{esc(facts.env_id)}</code>",
                esc(facts.seed),
                fmt_num(facts.state.get("num_timesteps"), ","),
                esc(fmt_duration(facts.state.get("wall_s"))),
                esc(facts.state.get("status", "unknown")),
                "-"
                if latest is None
                else f"{latest.mean:.2f} ± {latest.std:.2f} ({latest.episodes} ep, {esc(latest.model)})",
                "-" if latest is None else esc(solved_text(latest)),
                *[esc(json.dumps(flat.get(k), default=str)) for k in keys],
            ]
        )
    headers = ["run", "env", "seed", "steps", "wall-clock", "status", "evaluation", "solved", *keys]
    return table(headers, rows, numeric={3, 6})


def render(runs: list[RunFacts], curve_png: bytes | None, created: str) -> str:
    """The whole page."""
    envs = sorted({f.env_id for f in runs})
    title = f"rlkit report: {', '.join(envs)}"
    parts = [f"<h1>{esc(title)}</h1>", f'<p class="sub">{len(runs)} run(s) · generated {esc(created)}</p>']
    if len(runs) > 1:
        parts.append(f"<h2>Comparison</h2>{comparison_table(runs)}")
        parts.append(
            '<p class="note">Evaluation: the newest saved greedy evaluation of each run; '
            "columns after “solved” are hyperparameters that differ between runs.</p>"
        )
    parts.append("<h2>Learning curve</h2>")
    if curve_png is None:
        parts.append('<p class="note">No evaluation or training episodes recorded yet.</p>')
    else:
        data = base64.b64encode(curve_png).decode("ascii")
        parts.append(f'<img class="curve" alt="learning curve" src="data:image/png;base64,{data}">')
    parts.extend(run_section(f) for f in runs)
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n<script>{SCRIPT}</script></body></html>\n"
    )


def build_report(
    paths: list[Path],
    out: Path,
    *,
    episodes: int = 20,
    video: bool = True,
    force: bool = False,
    notify: Notify | None = None,
) -> Path:
    """Gather every run, render the page and write it atomically to ``out``."""
    from rlkit.training.rundir import now_iso

    if not paths:
        raise RlkitError("give at least one run directory")
    check_output(out, force)
    for path in paths:
        RunDir.open(path)  # every path is checked before any slow work
    say = notify or (lambda _message: None)
    runs = [gather(path, episodes=episodes, video=video, notify=say) for path in paths]
    page = render(runs, learning_curve_png(paths), now_iso())

    def write(tmp: Path) -> None:
        tmp.write_text(page, encoding="utf-8")
        os.chmod(tmp, 0o644)

    atomic.write_with(out, write)
    return out
