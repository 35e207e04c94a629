"""``rlkit report``: a self-contained HTML page, checked in a real headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clitools import assert_one_line_error, invoke

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/system-deps)")


def load_in_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after load (scripts run, media given time to decode) and the page's console messages."""
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


@pytest.fixture(scope="module")
def two_run_report(trained_runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = invoke("report", *trained_runs, "-o", out, "--episodes", "3")
    assert result.exit_code == 0, result.output
    assert "self-contained" in result.stdout
    return out


def test_report_is_self_contained_with_everything_users_need(
    two_run_report: Path, trained_runs: tuple[Path, Path]
) -> None:
    page = two_run_report.read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:)', page)  # every asset is embedded
    assert page.count('<img class="curve"') == 1
    assert page.count("<video") == 2 and page.count('src="data:video/mp4;base64,') == 2
    for text in (
        "Comparison",
        "CartPole-v1",
        "target_update_interval",  # resolved hyperparameters
        "stable-baselines3",  # versions
        "torch threads",  # device
        "wall-clock",
        "finished",  # status
        "mean ± std",  # evaluation table
        "Score: episode return",
        "<h3>Launch command</h3><pre>",
        "  pytest</pre>",  # command.txt (the fixture's argv)
        "<h3>Periodic evaluations</h3>",
        "best model</span>",  # the periodic evaluation that saved best_model.zip
        "at step ",  # ... and its step in the training table
        "greedy, 3 episodes",  # the comparison's one evaluation column
        "<mark>2000</mark>",  # n_timesteps differs from the shipped preset
        "<h3>Doctor</h3>",  # 2,000 steps: epsilon at its floor (180) before learning starts (200)
        '<img alt="exploration_ended_early" src="data:image/png;base64,',
    ):
        assert text in page, text
    for unused in ("per_alpha", "per_beta0", "noisy_sigma0", "n_quantiles", "atari.frame_skip", "search_space"):
        assert f"<code>{unused}</code>" not in page, unused
    dqn_group = page[page.index("<th>DQN</th>") :]
    dqn_group = dqn_group[: dqn_group.index("</table>")]
    keys = re.findall(r"<td><code>([a-z_.]+)</code></td>", dqn_group)
    assert keys == sorted(keys) and {"batch_size", "gamma", "train_freq"} <= set(keys)
    # The embedded videos are the runs' newest MP4s (recorded by the report), byte for byte.
    embedded = [base64.b64decode(data) for data in re.findall(r'src="data:video/mp4;base64,([^"]+)"', page)]
    newest = [max((run / "videos").glob("*.mp4"), key=lambda p: p.stat().st_mtime) for run in trained_runs]
    assert embedded == [path.read_bytes() for path in newest]


@needs_chromium
def test_report_loads_in_headless_chromium(two_run_report: Path, tmp_path: Path) -> None:
    dom, console = load_in_chromium(two_run_report, tmp_path)
    assert console == [], console
    assert re.search(r'<img class="curve"[^>]*data-state="loaded"', dom)
    videos = re.findall(r"<video[^>]*>", dom)
    assert len(videos) == 2
    assert all('data-state="ready"' in v for v in videos), [v[:200] for v in videos]


@needs_chromium
def test_the_browser_check_catches_a_broken_video(two_run_report: Path, tmp_path: Path) -> None:
    page = two_run_report.read_text()
    broken = re.sub(r'src="data:video/mp4;base64,[^"]+"', 'src="data:video/mp4;base64,AAAAAAAA"', page, count=1)
    damaged = tmp_path / "broken.html"
    damaged.write_text(broken)
    dom, console = load_in_chromium(damaged, tmp_path)
    assert any("video failed to load" in line for line in console), console
    assert 'data-state="error"' in dom


def test_single_run_report_evaluates_and_records_when_missing(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.html"
    result = invoke("report", run_copy, "-o", out, "--episodes", "2")
    assert result.exit_code == 0, result.output
    assert list(run_copy.glob("evaluation-best-2ep-*.json"))
    assert (run_copy / "videos" / "best-1ep.mp4").is_file()
    page = out.read_text()
    assert "Comparison" not in page and page.count("<video") == 1
    no_video = invoke("report", run_copy, "-o", tmp_path / "nv.html", "--no-video")
    assert no_video.exit_code == 0 and "<video" not in (tmp_path / "nv.html").read_text()


def test_bad_input(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("keep me")
    assert_one_line_error(invoke("report", run_copy, "-o", out), "already exists", "--force")
    assert out.read_text() == "keep me"
    assert_one_line_error(invoke("report", run_copy, "-o", tmp_path / "no" / "r.html"), "does not exist")
    assert_one_line_error(invoke("report", run_copy, "-o", tmp_path / "r.pdf"), ".html")
    assert_one_line_error(
        invoke("report", run_copy, tmp_path / "nope", "-o", tmp_path / "s.html"), "not a run directory"
    )
    (run_copy / "best_model.zip").unlink()
    (run_copy / "model.zip").unlink()
    shutil.rmtree(run_copy / "checkpoints")
    assert_one_line_error(invoke("report", run_copy, "-o", tmp_path / "s.html"), "no saved model yet")
    assert not (tmp_path / "s.html").exists()


def test_unused_keys_follow_the_switches() -> None:
    from rlkit.analysis.report import param_group, unused

    plain = {"algo": "dqn", "prioritized_replay": False, "noisy": False, "atari": None, "policy": "MlpPolicy"}
    assert unused("per_alpha", plain) and unused("noisy_sigma0", plain) and unused("n_quantiles", plain)
    assert unused("atari", plain) and unused("policy_kwargs.features_dim", plain)
    assert not unused("exploration_fraction", plain) and not unused("loss", plain)
    extended = {
        "algo": "qrdqn",
        "prioritized_replay": True,
        "noisy": True,
        "atari.frame_skip": 4,
        "policy": "CnnPolicy",
    }
    assert not unused("per_alpha", extended) and not unused("noisy_sigma0", extended)
    assert not unused("n_quantiles", extended) and not unused("atari.frame_skip", extended)
    assert unused("exploration_final_eps", extended) and unused("loss", extended)  # NoisyNet; quantile loss
    assert param_group("per_alpha") == "Extensions" and param_group("policy_kwargs.net_arch") == "Network"
    assert param_group("atari.frame_skip") == "Environment" and param_group("some_new_key") == "Other"


def test_best_model_step_is_the_first_highest_periodic_evaluation() -> None:
    from rlkit.analysis.report import best_row

    rows = [{"timesteps": float(t), "mean_reward": m} for t, m in ((1000, 10.0), (2000, 50.0), (3000, 50.0))]
    assert best_row(rows) == rows[1] and best_row([]) is None


def test_comparison_evaluates_runs_over_the_same_episodes(
    run_copy: Path, trained_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A run with only a 5-episode evaluation next to one with none: both get the same 2-episode one."""
    other = tmp_path / "other"
    shutil.copytree(trained_runs[1], other, ignore=shutil.ignore_patterns("evaluation-*", "videos", "*.png"))
    assert invoke("evaluate", run_copy, "--episodes", "5").exit_code == 0
    out = tmp_path / "cmp.html"
    result = invoke("report", run_copy, other, "-o", out, "--episodes", "2", "--no-video")
    assert result.exit_code == 0, result.output
    assert list(run_copy.glob("evaluation-best-2ep-*.json")) and list(other.glob("evaluation-best-2ep-*.json"))
    page = out.read_text()
    table = page[page.index("<h2>Comparison</h2>") : page.index("<h2>Learning curve</h2>")]
    assert "greedy, 2 episodes" in table and "(5 ep" not in table


def test_time_to_solve_is_shown_when_the_run_was_solved() -> None:
    from rlkit.analysis.report import solved_at_text

    at = {"timesteps": 95_000.0, "wall_s": 22.25, "mean_reward": 211.1, "episodes": 100.0}
    assert solved_at_text(at) == "22.2 s, at step 95,000 (mean 211.1 over 100 confirmation episodes)"
    assert solved_at_text({"timesteps": "x"}) == "-"  # a damaged record is a dash, not a crash


def _facts(periodic: list[dict[str, float]], state: dict[str, object]) -> object:
    from rlkit.analysis.report import RunFacts

    preset = {"solved_score": 200.0, "eval_episodes": 10, "stop_on_solved": True}
    return RunFacts(Path("runs/ll/x"), "lunarlander", 0, "LunarLander-v3", preset, {}, state, periodic=periodic)


def _row(step: int, mean: float) -> dict[str, float]:
    return {
        "timesteps": float(step), "mean_reward": mean, "std_reward": 5.0, "min_reward": mean - 9,
        "max_reward": mean + 9, "mean_ep_length": 300.0, "wall_s": step / 1000,
    }  # fmt: skip


def test_the_report_tells_one_solved_story() -> None:
    """The issue's LunarLander: best model at 80k (not confirmed), solved at 95k: which model is which."""
    from rlkit.analysis.evaluation import EvalResult
    from rlkit.analysis.report import evaluation_table, periodic_table, solved_story, training_table

    periodic = [_row(80_000, 240.0), _row(95_000, 210.0)]
    confirmations = [
        {"timesteps": 80_000, "wall_s": 20.0, "mean_reward": 190.4, "episodes": 100, "held": False},
        {"timesteps": 95_000, "wall_s": 24.0, "mean_reward": 215.9, "episodes": 100, "held": True,
         "std_reward": 40.0, "min_reward": 20.0, "max_reward": 290.0, "mean_ep_length": 280.0},
    ]  # fmt: skip
    state = {
        "status": "finished", "num_timesteps": 95_000, "solved": True, "confirmations": confirmations,
        "solved_at": {"timesteps": 95_000, "wall_s": 24.0, "mean_reward": 215.9, "episodes": 100},
    }  # fmt: skip
    facts = _facts(periodic, state)
    rows = re.findall(r"<tr>(.*?)</tr>", periodic_table(periodic, confirmations, 10))[1:]  # (the header)
    assert len(rows) == 4  # each periodic evaluation, then the confirmation that checked it
    assert "<em>confirmation</em>" in rows[1] and "not confirmed" in rows[1] and "190.40" in rows[1]
    assert "<em>confirmation</em>" in rows[3] and "215.90 ± 40.00" in rows[3] and ">solved<" in rows[3]
    assert "best model" in rows[0]
    assert "confirmation episodes) · that model is <code>model.zip</code>" in training_table(facts)  # type: ignore[arg-type]
    result = EvalResult(
        "runs/ll/x", "lunarlander", "LunarLander-v3", "best", "runs/ll/x/best_model.zip", 100, 100_000,
        "deterministic", None, "episode return", 186.86, 91.26, 220.0, -80.0, 300.0, 400.0, 200.0, 0.66,
    )  # fmt: skip
    saved = evaluation_table([result], facts)  # type: ignore[arg-type]
    assert "best_model.zip, step 80,000" in saved and "episodes at the solved score" in saved
    story = solved_story(facts)  # type: ignore[arg-type]
    assert "solved at step 95,000" in story and "averaged 215.9" in story
    assert "the final model (<code>model.zip</code>) is that model" in story
    assert "at step 80,000, not the one that solved" in story


def test_the_shipped_preset_column_is_only_where_a_value_differs() -> None:
    from rlkit.analysis.report import hyperparameter_table

    shipped = {"learning_rate": 1e-3, "gamma": 0.99, "n_envs": 1, "env_id": "CartPole-v1"}
    same = hyperparameter_table(dict(shipped), shipped, "cartpole")
    assert "shipped preset&#x27;s value" not in same and "Every value is the shipped preset" in same
    changed = hyperparameter_table({**shipped, "learning_rate": 3e-4}, shipped, "cartpole")
    dqn = changed[changed.index("<th>DQN</th>") :]
    assert "shipped preset&#x27;s value" in dqn[: dqn.index("</table>")] and "<mark>0.0003</mark>" in changed
    environment = changed[changed.index("<th>Environment</th>") :]
    assert "shipped preset" not in environment[: environment.index("</table>")]  # nothing differs there


def test_a_solved_run_records_its_confirmations_and_the_report_shows_them(tmp_path: Path) -> None:
    import json

    from rlkit.environments.resolve import resolve
    from rlkit.training.train import start
    from tests.conftest import tiny_overrides

    sets = tiny_overrides(
        1200, solved_score=9, solved_episodes=6, solved_confidence=0, stop_on_solved="true", eval_episodes=2
    )
    run = start(resolve("cartpole", overrides=sets), seed=0, run_dir=tmp_path / "run", quiet=True).run_dir
    confirmations = json.loads((run / "state.json").read_text())["confirmations"]
    assert confirmations[-1]["held"] and confirmations[-1]["episodes"] == 12  # two rounds of 6
    assert {"std_reward", "min_reward", "max_reward", "mean_ep_length"} <= set(confirmations[-1])
    out = tmp_path / "r.html"
    assert invoke("report", run, "-o", out, "--episodes", "2", "--no-video").exit_code == 0
    page = out.read_text()
    assert "<em>confirmation</em>" in page and "The run was solved at step" in page


def _diagnosis(evidence: object) -> object:
    from rlkit.analysis.doctor import Diagnosis
    from rlkit.training.findings import diagnose

    read = {"evaluations": 3, "training_episodes": 0, "diagnostics_records": 0, "rules": 8, "steps": 6000}
    return Diagnosis("runs/x", diagnose(evidence, "cartpole"), read, evidence)  # type: ignore[arg-type]


def _evidence(*sets: str, **kwargs: object) -> object:
    from rlkit.environments.resolve import resolve
    from rlkit.training.findings import Evidence

    kwargs.setdefault("evaluations", [])
    return Evidence(resolve("cartpole", overrides=list(sets)).preset, {}, **kwargs)  # type: ignore[arg-type]


def test_the_doctor_section_shows_each_finding_and_the_plot_that_shows_it() -> None:
    import numpy as np

    from rlkit.analysis.report import doctor_section
    from rlkit.training.findings import Series

    rows = [
        {"timesteps": 2000.0 * (i + 1), "mean_reward": 50.0 + 100 * i, "std_reward": 5.0, "episodes": 10.0,
         "q_start": q, "return_discounted": 20.0, "return_discounted_std": 4.0}
        for i, q in enumerate((30.0, 60.0, 90.0))
    ]  # fmt: skip
    dormant = Series(np.arange(1.0, 11.0) * 500, np.asarray([0.3] * 5 + [0.5] * 5))
    evidence = _evidence("buffer_size=400", evaluations=rows, diag={"dormant_fraction": dormant})
    facts = _facts([], {})
    facts.diagnosis = _diagnosis(evidence)  # type: ignore[attr-defined]
    section = doctor_section(facts)  # type: ignore[arg-type]
    codes = [f.code for f in facts.diagnosis.findings]  # type: ignore[attr-defined]
    assert codes == ["dormant_units", "q_overestimation", "replay_and_targets"]
    assert section.count("<tr>") == 1 + 3  # the header, one row per finding, worst first
    assert section.index("dormant") < section.index("Q-values overestimate") < section.index("replay buffer")
    assert "rlkit train cartpole --set double_q=true" in section and "sev-warning" in section
    assert re.findall(r'<img alt="([a-z_]+)" src="data:image/png;base64,', section) == codes[:2]  # a setting: no plot
    facts.diagnosis = _diagnosis(_evidence())  # type: ignore[attr-defined]
    assert "No finding" in doctor_section(facts)  # type: ignore[arg-type]
    facts.diagnosis, facts.doctor_error = None, "x/tensorboard: unreadable TensorBoard log"  # type: ignore[attr-defined]
    assert "could not read this run: x/tensorboard" in doctor_section(facts)  # type: ignore[arg-type]


def test_every_finding_with_evidence_over_steps_has_a_plot() -> None:
    import numpy as np

    from rlkit.analysis.doctor_plots import DRAW, finding_figure
    from rlkit.training.findings import Series, diagnose

    def series(values: list[float]) -> Series:
        return Series(np.arange(1, len(values) + 1, dtype=float) * 500, np.asarray(values, float))

    def evals(means: list[float]) -> list[dict[str, float]]:
        return [{"timesteps": 2000.0 * (i + 1), "mean_reward": m, "std_reward": 5.0} for i, m in enumerate(means)]

    growing = series([2.0, 4.0, 8.5, 17.0, 33.0, 70.0, 140.0, 300.0])
    cases = [
        _evidence(training=series([20.0] * 30), diag={"q_greedy_max": growing}),
        _evidence(diag={"dormant_fraction": series([0.9] * 6)}),
        _evidence("exploration_fraction=0.05", evaluations=evals([20.0, 21.0, 19.0, 22.0, 20.0])),
        _evidence(evaluations=evals([9.0]), training=series([300.0] * 40)),
        _evidence(evaluations=evals([20.0, 480.0, 500.0, 120.0])),
        _evidence(evaluations=evals([20.0, 200.0, 210.0, 205.0, 208.0, 201.0, 207.0])),
    ]
    drawn = set()
    for evidence in cases:
        for finding in diagnose(evidence, "cartpole"):  # type: ignore[arg-type]
            assert finding_figure(finding, evidence) is not None, finding.code  # type: ignore[arg-type]
            drawn.add(finding.code)
    assert drawn | {"q_overestimation"} == set(DRAW)  # (q_overestimation: the test above)


def test_a_benchmark_folder_given_as_a_run_points_to_its_seeds(tmp_path: Path) -> None:
    """``rlkit report BENCH`` (a benchmark's results folder): one line naming what is missing and where the runs are."""
    from rlkit.core.errors import RlkitError
    from rlkit.training.rundir import RunDir

    for seed in range(3):
        (tmp_path / f"seed-{seed}").mkdir()
    (tmp_path / "config.yaml").write_text("preset: {}\n")
    with pytest.raises(RlkitError) as info:
        RunDir.open(tmp_path)
    assert str(info.value) == (
        f"not an rlkit run directory: {tmp_path} has no meta.json; a benchmark folder? its runs are {tmp_path}/seed-* (3 of them)"
    )
