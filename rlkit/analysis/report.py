"""A self-contained HTML report of one or many runs: opens offline, no external assets.

For each run: what was trained (env, preset, the launch command from ``command.txt``, the
hyperparameters from ``config.yaml`` grouped and sorted, those that differ from the shipped
preset highlighted, keys the run does not use left out), on what (versions and device from
``meta.json``), how it went (status, wall-clock and the step of the best model from
``state.json`` and ``evaluations.csv``), the periodic evaluations, the saved evaluations
(``evaluation-*.json``; one is made when there is none) and a video (the newest
``videos/*.mp4``; one episode is recorded when there is none). The learning curve of all runs
comes first; several runs get a comparison table whose evaluation column compares like with
like: every run's same model kind, greedy, over the same number of episodes (evaluated for the
report when a run has no such saved result). Images and videos are embedded as base64
``data:`` URIs and the CSS is inline.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.analysis.evaluation import EvalResult
from rlkit.config.schema import flatten
from rlkit.core import atomic
from rlkit.core.errors import RlkitError
from rlkit.training.rundir import RunDir

if TYPE_CHECKING:
    from rlkit.analysis.doctor import Diagnosis

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
    periodic: list[dict[str, float]] = field(default_factory=list)
    """The rows of ``evaluations.csv`` (periodic evaluations during training)."""
    commands: list[str] = field(default_factory=list)
    """The lines of ``command.txt``: every start and resume."""
    shipped: dict[str, Any] | None = None
    """The shipped preset of the same alias, resolved and flattened (None: no such preset)."""
    model: str = ""
    """The model evaluated by default: ``best``, else ``final``."""
    compared: EvalResult | None = None
    """The evaluation the comparison table shows (same model kind and episodes for every run)."""
    diagnosis: Diagnosis | None = None
    """What ``rlkit doctor`` finds in the run (None: it could not read the run, see ``doctor_error``)."""
    doctor_error: str = ""


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
    model = resolve_model(run)  # a run without any model fails here, before any work
    state = run.read_state()
    state["status"] = run.status(state)  # "running" only while its process lives
    facts = RunFacts(path, alias, seed, preset.env_id, to_plain(preset), run.read_meta(), state)
    facts.model = model.label
    facts.evaluations = saved_results(run)
    facts.periodic = run.read_evaluations()
    facts.commands = run.command.read_text().splitlines() if run.command.exists() else []
    facts.shipped = shipped_preset(alias)
    facts.diagnosis, facts.doctor_error = diagnose_run(path)
    if not facts.evaluations:
        notify(f"{path}: no saved evaluation; evaluating {episodes} episodes")
        result = evaluate_run(path, episodes=episodes)
        save_result(result)
        facts.evaluations = [result]
    if video:
        facts.video = newest_video(run) or record_one_episode(run, notify)
    return facts


def diagnose_run(path: Path) -> tuple[Diagnosis | None, str]:
    """``rlkit doctor`` on the run; a log it cannot read is a note in the page, not a failed report."""
    from rlkit.analysis.doctor import examine

    try:
        return examine(path), ""
    except RlkitError as exc:
        return None, str(exc)


def comparison_episodes(runs: list[RunFacts], default: int) -> int:
    """The most episodes over which every run has a saved greedy evaluation of its model, else ``default``."""
    common = set.intersection(
        *({r.episodes for r in f.evaluations if r.epsilon is None and r.model == f.model} for f in runs)
    )
    return max(common) if common else default


def make_comparable(runs: list[RunFacts], episodes: int, notify: Notify) -> None:
    """Give each run the evaluation the comparison shows: its model, greedy, over ``episodes`` episodes."""
    from rlkit.analysis.evaluation import evaluate_run, save_result

    for facts in runs:
        facts.compared = comparable(facts.evaluations, facts.model, episodes)
        if facts.compared is None:
            notify(f"{facts.path}: evaluating the {facts.model} model over {episodes} episodes for the comparison")
            facts.compared = evaluate_run(facts.path, episodes=episodes)
            save_result(facts.compared)
            facts.evaluations.append(facts.compared)


def comparable(results: list[EvalResult], model: str, episodes: int) -> EvalResult | None:
    """The newest greedy evaluation of ``model`` over ``episodes`` episodes, if one is saved."""
    same = [r for r in results if r.epsilon is None and r.model == model and r.episodes == episodes]
    return same[-1] if same else None


def shipped_preset(alias: str) -> dict[str, Any] | None:
    """The shipped preset ``alias`` as rlkit resolves it (env checked, completed), flattened; None when none ships."""
    from rlkit.config.presets import catalogue
    from rlkit.config.schema import to_plain
    from rlkit.environments.resolve import resolve

    if alias.lower() not in catalogue():
        return None
    try:
        return flatten(to_plain(resolve(alias).preset))
    except RlkitError:
        return None


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
code{background:#f3f5f9;padding:0 .25rem}mark{background:#fff2b3;padding:0 .2rem}
.params{display:grid;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));gap:0 1.5rem;align-items:start}pre{background:#f3f5f9;padding:.5rem .7rem;overflow-x:auto;
font-size:.85rem;white-space:pre-wrap;word-break:break-all}
.sev-critical{color:#b3261e;font-weight:700}.sev-warning{color:#8a5a00;font-weight:700}.sev-info{color:#0b57d0;font-weight:700}
.findings{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem}.nowrap{white-space:nowrap}
figure{margin:0}figure img{width:100%;border:1px solid #e3e7ee}figcaption{color:#5b6676;font-size:.85rem}
.doctor td:nth-child(2){min-width:20rem}.doctor td:nth-child(4){max-width:32rem}.doctor td code{white-space:pre-wrap;overflow-wrap:anywhere}
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


def solved_at_text(at: dict[str, Any]) -> str:
    """``12.3 s, at step 95,000 (mean 211.1 over 100 episodes)``: when the run was solved, confirmed."""
    try:
        text = (
            f"{float(at['wall_s']):.1f} s, at step {int(at['timesteps']):,} "
            f"(mean {float(at['mean_reward']):.1f} over {int(at['episodes'])} confirmation episodes"
        )
        if float(at.get("confidence") or 0) > 0:  # runs before the margin have none
            text += f"; {float(at['confidence']):.0%} lower bound {float(at['lower_bound']):.1f}"
        return esc(text + ")")
    except (KeyError, TypeError, ValueError):
        return "-"


def solved_model_text(facts: RunFacts) -> str:
    """Which model file is the one that solved: the final one when training stopped there."""
    state, at = facts.state, facts.state.get("solved_at")
    if not isinstance(at, dict) or not isinstance(at.get("timesteps"), (int, float)):
        return ""
    if state.get("status") == "finished" and state.get("num_timesteps") == at["timesteps"]:
        return " · that model is <code>model.zip</code> (training stopped there)"
    return ""


def model_file_step(facts: RunFacts, label: str) -> int | None:
    """The training step of a run's model file: the best model's evaluation, the final step, a checkpoint's."""
    if label == "best":
        row = best_row(facts.periodic)
        return None if row is None else int(row["timesteps"])
    if label == "final":
        steps = facts.state.get("num_timesteps")
        return int(steps) if isinstance(steps, (int, float)) else None
    if label.startswith("step-") and label[5:].isdigit():
        return int(label[5:])
    return None


def model_cell(facts: RunFacts, result: EvalResult) -> str:
    """``best`` with its file and step: ``best_model.zip, step 8,000``; a result older than the file says so."""
    step = model_file_step(facts, result.model)
    where = Path(result.model_path).name + (f", step {step:,}" if step is not None else "")
    cell = f'{esc(result.model)} <span class="note">({esc(where)})</span>'
    try:
        from datetime import datetime

        newer = Path(result.model_path).stat().st_mtime > datetime.fromisoformat(result.created).timestamp() + 1
    except (OSError, ValueError, TypeError):
        newer = False
    if newer:
        cell += ' <span class="bad">(the file changed after this evaluation)</span>'
    return cell


def solved_text(result: EvalResult) -> str:
    if result.solved_fraction is None or result.solved_score is None:
        return "-"
    return f"{result.solved_fraction:.0%} (≥ {result.solved_score:g})"


def evaluation_table(results: list[EvalResult], facts: RunFacts | None = None) -> str:
    """The saved evaluations, each with the model file it is about and that file's step."""
    rows = [
        [
            esc(r.model) if facts is None else model_cell(facts, r),
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
    headers = [
        "model", "episodes", "policy", "mean ± std", "median", "min", "max", "mean length",
        "episodes at the solved score", "seed",
    ]  # fmt: skip
    kinds = sorted({f"{r.score_kind}; lengths in {r.length_unit}" for r in results})
    note = f'<p class="note">Score: {esc(" / ".join(kinds))}.</p>'
    return table(headers, rows, numeric={1, 3, 4, 5, 6, 7}) + note


def solved_story(facts: RunFacts) -> str:
    """One paragraph tying the solve, the periodic evaluations and the saved evaluations together."""
    score = facts.preset.get("solved_score")
    if score is None:
        return ""
    at = facts.state.get("solved_at")
    episodes = facts.preset.get("eval_episodes", "?")
    parts: list[str] = []
    if isinstance(at, dict) and isinstance(at.get("timesteps"), (int, float)):
        step = int(at["timesteps"])
        parts.append(
            f"The run was solved at step {step:,}: its periodic evaluation there reached {score:g}, and "
            f"{esc(at.get('episodes'))} more greedy episodes on their own seeds (the confirmation row above) "
            f"averaged {fmt_num(at.get('mean_reward'), '.1f')}."
        )
        if solved_model_text(facts):
            parts.append("Training stopped there, so the final model (<code>model.zip</code>) is that model.")
        best = best_row(facts.periodic)
        if best is not None:
            same = int(best["timesteps"]) == step
            parts.append(
                f"<code>best_model.zip</code> is the model of the highest periodic evaluation ({episodes} episodes), "
                f"at step {int(best['timesteps']):,}" + (": the same model." if same else ", not the one that solved.")
            )
    else:
        parts.append(f"The run was not solved: no evaluation reached {score:g} and held over the confirmation.")
    parts.append(
        "A saved evaluation replays one model file on other episodes (its seed column), so its mean differs "
        "from the confirmation's by chance even for the same model: by about std / √episodes. "
        f"“Episodes at the solved score” is the share of single episodes scoring {score:g} or more; "
        f"solved means the <em>mean</em> of the confirmation episodes reaching it."
    )
    return f'<p class="note">{" ".join(parts)}</p>'


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
        *(
            [["time to solve", solved_at_text(state["solved_at"]) + solved_model_text(facts)]]
            if isinstance(state.get("solved_at"), dict)
            else []
        ),
        ["speed", f"{fmt_num(state.get('steps_per_s'), '.0f')} steps/s" if state.get("steps_per_s") else "-"],
        ["best evaluation", best_text(best, facts.periodic)],
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


def best_row(rows: list[dict[str, float]]) -> dict[str, float] | None:
    """The periodic evaluation that saved ``best_model.zip``: the first with the highest mean."""
    best: dict[str, float] | None = None
    for row in rows:
        if best is None or row["mean_reward"] > best["mean_reward"]:
            best = row
    return best


def best_text(best: Any, rows: list[dict[str, float]]) -> str:
    if best is None:
        return "-"
    row = best_row(rows)
    if row is None:
        return fmt_num(best)
    return f"{fmt_num(best)} at step {int(row['timesteps']):,} (<code>best_model.zip</code>)"


def command_html(facts: RunFacts) -> str:
    """The launch command and every resume, from ``command.txt``."""
    if not facts.commands:
        return '<p class="note">No command.txt.</p>'
    lines = "\n".join(esc(line) for line in facts.commands)
    return f"<pre>{lines}</pre>"


def periodic_table(
    rows: list[dict[str, float]], confirmations: list[dict[str, Any]] | None = None, episodes: Any = "-"
) -> str:
    """Every periodic evaluation of ``evaluations.csv`` (``episodes`` each), the best model's row marked,
    each followed by the confirmation that checked it when it reached the solved score (``state.json``)."""
    if not rows:
        return '<p class="note">No periodic evaluation (eval_freq 0, or stopped before the first).</p>'
    best = best_row(rows)
    checks: dict[int, list[dict[str, Any]]] = {}
    for c in confirmations or []:
        if isinstance(c, dict) and isinstance(c.get("timesteps"), (int, float)):
            checks.setdefault(int(c["timesteps"]), []).append(c)
    body: list[list[str]] = []
    for r in rows:
        body.append(
            [
                f"{int(r['timesteps']):,}",
                "periodic",
                esc(episodes),
                f"{r['mean_reward']:.2f} ± {r['std_reward']:.2f}",
                f"{r['min_reward']:.2f}",
                f"{r['max_reward']:.2f}",
                f"{r['mean_ep_length']:.1f}",
                esc(fmt_duration(r.get("wall_s"))),
                '<span class="ok">best model</span>' if r is best else "",
            ]
        )
        for c in checks.pop(int(r["timesteps"]), []):
            body.append(_confirmation_row(c))
    headers = ["step", "evaluation", "episodes", "mean ± std", "min", "max", "mean length", "wall-clock", ""]
    return table(headers, body, numeric={0, 2, 3, 4, 5, 6, 7})


def _confirmation_row(c: dict[str, Any]) -> list[str]:
    std = c.get("std_reward")
    mean = fmt_num(c.get("mean_reward"))
    held = bool(c.get("held"))
    return [
        f"{int(c['timesteps']):,}",
        "<em>confirmation</em>",
        esc(c.get("episodes", "-")),
        f"{mean} ± {fmt_num(std)}" if std is not None else mean,
        fmt_num(c.get("min_reward", "-")),
        fmt_num(c.get("max_reward", "-")),
        fmt_num(c.get("mean_ep_length", "-"), ".1f"),
        esc(fmt_duration(c.get("wall_s"))),
        '<span class="ok">solved</span>' if held else '<span class="bad">not confirmed</span>',
    ]


PARAM_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Environment", ("env_id", "env_kwargs", "n_envs", "atari")),
    ("Network", ("policy", "policy_kwargs", "dueling", "noisy", "noisy_sigma0")),
    (
        "DQN",
        (
            "algo", "learning_rate", "learning_rate_schedule", "buffer_size", "learning_starts", "batch_size",
            "tau", "gamma", "train_freq", "gradient_steps", "target_update_interval", "exploration_fraction",
            "exploration_initial_eps", "exploration_final_eps", "max_grad_norm", "loss", "optimize_memory_usage",
            "frame_buffer", "frame_buffer_storage",
        ),
    ),
    ("Extensions", ("double_q", "n_steps", "prioritized_replay", "per_", "n_quantiles")),
    (
        "Budget, evaluation, checkpoints",
        (
            "n_timesteps", "eval_freq", "eval_episodes", "eval_envs", "solved_score", "solved_episodes",
            "solved_confidence", "solved_rounds", "stop_on_solved", "checkpoint_freq", "keep_checkpoints", "checkpoint_replay_buffer",
        ),
    ),
    ("Runtime and diagnostics", ("torch_threads", "diagnostics_interval", "divergence_q_bound", "search_space")),
]  # fmt: skip
"""Hyperparameter groups of the report, by key or key prefix; keys in none go to "Other"."""

NOT_PARAMETERS = {"description", "aliases"}


def param_group(key: str) -> str:
    for name, prefixes in PARAM_GROUPS:
        for prefix in prefixes:
            if key == prefix or key.startswith(prefix + ".") or (prefix.endswith("_") and key.startswith(prefix)):
                return name
    return "Other"


def unused(key: str, flat: dict[str, Any]) -> bool:
    """Keys that have no effect in this configuration (left out of the report)."""
    algo, cnn = flat.get("algo"), flat.get("policy") == "CnnPolicy"
    return (
        (key.startswith("per_") and not flat.get("prioritized_replay"))
        or (key == "noisy_sigma0" and not flat.get("noisy"))
        or (key.startswith("exploration_") and bool(flat.get("noisy")))  # NoisyNet: epsilon is 0
        or (key == "n_quantiles" and algo != "qrdqn")
        or (key == "loss" and algo == "qrdqn")  # QR-DQN always uses the quantile Huber loss
        or (key.startswith("atari") and flat.get("atari") is None and flat.get("atari.frame_skip") is None)
        or (key in ("policy_kwargs.features_dim", "policy_kwargs.normalize_images") and not cnn)
        or (
            key in ("stop_on_solved", "solved_episodes", "solved_confidence", "solved_rounds")
            and flat.get("solved_score") is None
        )
        or (key == "frame_buffer_storage" and not flat.get("frame_buffer"))
        or (key == "env_kwargs" and not flat.get("env_kwargs"))
        or (key == "search_space")  # rlkit tune's, not training's
    )


def hyperparameter_table(preset: dict[str, Any], shipped: dict[str, Any] | None, alias: str = "") -> str:
    """Grouped, sorted hyperparameters that matter for this run; those unlike the shipped preset highlighted."""
    flat = flatten(preset)
    grouped: dict[str, list[tuple[str, Any]]] = {}
    for key in sorted(flat):
        if key not in NOT_PARAMETERS and not unused(key, flat):
            grouped.setdefault(param_group(key), []).append((key, flat[key]))
    order = [name for name, _ in PARAM_GROUPS] + ["Other"]
    tables: list[str] = []
    changed = 0
    for name in order:
        if name not in grouped:
            continue
        rows: list[list[str]] = []
        differs = False
        for key, value in grouped[name]:
            cell = esc(json.dumps(value, default=str))
            diff = ""
            if shipped is not None and json.dumps(shipped.get(key), default=str) != json.dumps(value, default=str):
                changed += 1
                differs = True
                cell = f"<mark>{cell}</mark>"
                diff = esc(json.dumps(shipped.get(key), default=str)) if key in shipped else "(not in preset)"
            rows.append([f"<code>{esc(key)}</code>", cell, diff])
        if not differs:  # the shipped preset's value would repeat every cell: no column
            rows = [row[:2] for row in rows]
        head = [name, "value", *(["shipped preset's value"] if differs else [])]
        tables.append(f"<div>{table(head, rows)}</div>")
    if shipped is None:
        note = "No shipped preset of this name to compare with."
    elif changed:
        note = (
            f"{changed} value(s) differ from the shipped preset <code>{esc(alias)}</code> (highlighted, with "
            "the preset's value beside them; groups without a difference have no such column)."
        )
    else:
        note = f"Every value is the shipped preset <code>{esc(alias)}</code>'s."
    hidden = "Keys without effect in this configuration (e.g. per_* without prioritized replay) are left out."
    return f'<p class="note">{note} {hidden}</p><div class="params">{"".join(tables)}</div>'


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


def _figure_text(figures: dict[str, Any]) -> str:
    """``q at start 253.4 · gap 230.8``: a finding's figures, their names in words."""

    def value(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    return " · ".join(f"{k.replace('_', ' ')} {value(v)}" for k, v in figures.items())


def finding_png(finding: Any, diagnosis: Diagnosis) -> bytes | None:
    """The plot that shows ``finding`` as PNG (None for a finding about the settings alone)."""
    from rlkit.analysis.doctor_plots import finding_figure
    from rlkit.analysis.plots import figure_bytes

    fig = finding_figure(finding, diagnosis.evidence) if diagnosis.evidence is not None else None
    return figure_bytes(fig) if fig is not None else None


def doctor_section(facts: RunFacts) -> str:
    """``rlkit doctor``'s findings, worst first, and per finding the plot that shows it; or "no finding"."""
    diagnosis = facts.diagnosis
    if diagnosis is None:
        return f'<p class="note">The doctor could not read this run: {esc(facts.doctor_error)}</p>'
    read = diagnosis.read
    scope = (
        f"{read['rules']} rules over {read['evaluations']} evaluations, {read['training_episodes']:,} training "
        f"episodes and {read['diagnostics_records']:,} diagnostics records, {read['steps']:,} steps"
    )
    if diagnosis.healthy:
        return f'<p><span class="ok">No finding</span>: the run looks healthy ({esc(scope)}).</p>'
    rows = [
        [
            f'<span class="sev-{esc(f.severity)}">{esc(f.severity)}</span>',
            f"<strong>{esc(f.title)}</strong><br>{esc(_figure_text(f.figures))}",
            f'<span class="nowrap">{f.steps[0]:,}&ndash;{f.steps[1]:,}</span>',
            "<br>".join(f"<code>{esc(line)}</code>" for line in f.advice),
        ]
        for f in diagnosis.findings
    ]
    plots = []
    for finding in diagnosis.findings:
        png = finding_png(finding, diagnosis)
        if png is None:  # a finding about the settings alone: the table says it all
            continue
        data = base64.b64encode(png).decode("ascii")
        plots.append(
            f'<figure><img alt="{esc(finding.code)}" src="data:image/png;base64,{data}">'
            f"<figcaption><code>{esc(finding.code)}</code> · steps {finding.steps[0]:,}&ndash;{finding.steps[1]:,}"
            "</figcaption></figure>"
        )
    note = f'<p class="note">{esc(scope)}; the same as <code>rlkit doctor {esc(facts.path)}</code>.</p>'
    figures = f'<div class="findings">{"".join(plots)}</div>' if plots else ""
    findings = table(["severity", "finding and its figures", "steps", "what to try"], rows)
    return f'<div class="doctor">{findings}</div>{note}{figures}'


def run_section(facts: RunFacts) -> str:
    params = hyperparameter_table(facts.preset, facts.shipped, facts.alias)
    return (
        f'<section class="run"><h2>{esc(run_name(facts))}</h2>'
        f'<p class="sub">{esc(facts.path)}</p>'
        f"<h3>Launch command</h3>{command_html(facts)}"
        f'<div class="grid"><div><h3>Training</h3>{training_table(facts)}</div>'
        f"<div><h3>Video</h3>{video_html(facts)}</div></div>"
        f"<h3>Doctor</h3>{doctor_section(facts)}"
        f"<h3>Periodic evaluations</h3>"
        f"{periodic_table(facts.periodic, facts.state.get('confirmations'), facts.preset.get('eval_episodes', '-'))}"
        f"<h3>Saved evaluations</h3>{evaluation_table(facts.evaluations, facts)}{solved_story(facts)}"
        f"<h3>Hyperparameters</h3>{params}</section>"
    )


COMPARE_SKIP = {"env_id", "description", "aliases"}
"""Preset keys never shown as comparison columns (the env has its own column)."""

MAX_COMPARE_KEYS = 10


def differing_keys(flats: list[dict[str, Any]]) -> list[str]:
    """Hyperparameters whose values differ between runs (at most ``MAX_COMPARE_KEYS``)."""
    keys = set().union(*flats) - COMPARE_SKIP
    differ = sorted(k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1)
    return differ[:MAX_COMPARE_KEYS]


def comparison_table(runs: list[RunFacts], episodes: int) -> str:
    """One row per run; the evaluation column is the same model kind over the same episodes for all."""
    flats = [flatten(f.preset) for f in runs]
    keys = differing_keys(flats)
    rows = []
    for facts, flat in zip(runs, flats, strict=True):
        chosen = facts.compared
        best = best_row(facts.periodic)
        rows.append(
            [
                esc(run_name(facts)),
                f"<code>{esc(facts.env_id)}</code>",
                esc(facts.seed),
                fmt_num(facts.state.get("num_timesteps"), ","),
                esc(fmt_duration(facts.state.get("wall_s"))),
                esc(facts.state.get("status", "unknown")),
                "-" if chosen is None else esc(chosen.model),
                "-" if chosen is None else f"{chosen.mean:.2f} ± {chosen.std:.2f}",
                "-" if chosen is None else esc(solved_text(chosen)),
                "-"
                if best is None
                else f"{best['mean_reward']:.2f} at {int(best['timesteps']):,} ({flat.get('eval_episodes', '?')} ep)",
                *[esc(json.dumps(flat.get(k), default=str)) for k in keys],
            ]
        )
    headers = [
        "run", "env", "seed", "steps", "wall-clock", "status", "model", f"greedy, {episodes} episodes",
        "solved", "best periodic evaluation (step)", *keys,
    ]  # fmt: skip
    return table(headers, rows, numeric={3, 7, 9})


def render(runs: list[RunFacts], curve_png: bytes | None, created: str, episodes: int = 20) -> str:
    """The whole page."""
    envs = sorted({f.env_id for f in runs})
    title = f"rlkit report: {', '.join(envs)}"
    parts = [f"<h1>{esc(title)}</h1>", f'<p class="sub">{len(runs)} run(s) · generated {esc(created)}</p>']
    if len(runs) > 1:
        parts.append(f"<h2>Comparison</h2>{comparison_table(runs, episodes)}")
        parts.append(
            f'<p class="note">“greedy, {episodes} episodes”: each run\'s model of the “model” column (best model, '
            f"or the final one when a run has none) over the same {episodes} greedy episodes and evaluation seeds. "
            "Best periodic evaluation: the highest mean of the evaluations during training and its step. "
            "Columns after it are hyperparameters that differ between runs.</p>"
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
    compared = comparison_episodes(runs, episodes)
    if len(runs) > 1:
        make_comparable(runs, compared, say)
    page = render(runs, learning_curve_png(paths), now_iso(), compared)

    def write(tmp: Path) -> None:
        tmp.write_text(page, encoding="utf-8")
        os.chmod(tmp, 0o644)

    atomic.write_with(out, write)
    return out
