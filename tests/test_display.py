"""The live training display: what is on screen at 80, 100, 120 and 200 columns, and its history."""

from __future__ import annotations

import io
import re
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from stable_baselines3.common.utils import LinearSchedule

from rlkit.training.display import MARGIN, TrainingDisplay, current_epsilon, fmt_epsilon

TOTAL = 20_000
ROW = {"timesteps": 10_000.0, "mean_reward": 200.0, "std_reward": 12.5}


def fake_model(steps: int = 12_345, *, noisy: bool = False, final_eps: float = 0.04) -> Any:
    """What the display reads from an SB3 model, with the numbers of a CartPole run."""
    values = {
        "train/loss": 0.0881,
        "diag/q_greedy_mean": 8.5,
        "diag/td_error_abs_mean": 0.123,
        "diag/grad_norm": 3.21,
    }
    return SimpleNamespace(
        num_timesteps=steps,
        logger=SimpleNamespace(name_to_value=values),
        ep_info_buffer=deque([{"r": 70.0 + i % 7, "l": 70} for i in range(100)], maxlen=100),
        _episode_num=152,
        exploration_rate=0.0,  # SB3's value before its first schedule update
        exploration_schedule=LinearSchedule(1.0, final_eps, 0.1),
        _total_timesteps=TOTAL,
        policy=SimpleNamespace(noisy=noisy),
    )


def terminal(width: int) -> Console:
    return Console(width=width, record=True, force_terminal=True, file=io.StringIO(), color_system="truecolor")


def screen(width: int, model: Any | None = None, evaluated: bool = True) -> list[str]:
    """The live line(s) as a terminal of ``width`` columns shows them."""
    console = terminal(width)
    display = TrainingDisplay(TOTAL, console=console)
    display.update(model or fake_model(), now=time.perf_counter() + 10.0)
    if evaluated:
        display.on_eval(ROW, new_best=True, episodes=10)
        console.export_text(clear=True)  # drop the history line: only the live line below
    console.print(display.screen)
    return console.export_text().rstrip("\n").splitlines()


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_key_fields_are_on_screen_at_every_width(width: int) -> None:
    lines = screen(width)
    text = "\n".join(lines)
    assert all(len(line) <= width - MARGIN for line in lines), lines  # nothing wraps, room for the ^C echo
    for key in ("12,345/20,000", "steps/s", "eta 0:00:", "ep 152", "ret(20ep) 73.", "eval 200.0±12.5*@10k", "━"):
        assert key in text, (key, lines)


def test_narrow_terminals_drop_the_diagnostics_first_and_wide_ones_show_everything() -> None:
    narrow, medium, wide = ("\n".join(screen(w)) for w in (80, 120, 200))
    assert "|g|" not in narrow and "td " not in narrow
    assert "eps 0.040" in narrow  # epsilon outranks the diagnostics
    assert "|g| 3.21" in wide and "Q 8.5" in wide and "loss 0.0881" in wide and "elapsed" in wide
    assert len(screen(200)) == 1 and len(screen(80)) == 2  # one line when it all fits, else two
    assert "loss 0.0881" in medium


def test_before_any_evaluation_or_episode() -> None:
    model = fake_model(steps=50)
    model.ep_info_buffer.clear()
    model._episode_num = 0
    text = "\n".join(screen(80, model, evaluated=False))
    assert "eval -" in text and "ret(20ep) -" in text and "ep 0" in text and "50/20,000" in text


def test_a_short_return_window_is_stated_as_it_is() -> None:
    model = fake_model()
    model.ep_info_buffer = deque([{"r": 10.0}, {"r": 20.0}, {"r": 30.0}])
    assert "ret(3ep) 20.0" in "\n".join(screen(120, model))


def test_epsilon_is_the_schedule_at_the_current_step_not_sb3s_stale_value() -> None:
    model = fake_model(steps=1_000)  # 5% of the budget, half the 10% exploration fraction
    assert current_epsilon(model) == pytest.approx(1.0 - 0.96 * 0.5)
    assert "eps 0.520" in "\n".join(screen(200, model))
    assert "eps 0.0004" in "\n".join(screen(200, fake_model(final_eps=0.0004)))
    assert "noisy expl." in "\n".join(screen(200, fake_model(noisy=True)))
    assert fmt_epsilon(0.0) == "0.000" and fmt_epsilon(0.04) == "0.040"


def screen_after(raw: str) -> list[str]:
    """The rows a terminal shows after ``raw`` (the few controls rich's Live uses: CR, LF, erase line, cursor up)."""
    rows: list[str] = [""]
    row = col = 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\n":
            row, col = row + 1, 0
            rows += [""] * (row + 1 - len(rows))
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            rows[row] = ""
        elif token == "\x1b[1A":
            row = max(0, row - 1)
        elif not token.startswith("\x1b"):
            rows[row] = rows[row][:col] + token + rows[row][col + len(token) :]
            col += len(token)
    return [r for r in rows if r]


def tuner(*measurements: dict[str, Any]) -> Any:
    return SimpleNamespace(winner=measurements[-1]["threads"], current=1, measurements=deque(measurements))


def test_history_above_the_live_line_and_nothing_left_after_stop(tmp_path: Path) -> None:
    console = terminal(80)
    display = TrainingDisplay(TOTAL, console=console)
    assert display.live
    threads = tuner({"step": 1_024, "s_per_step": {1: 0.001, 2: 0.0008}, "threads": 2, "others": 0})
    display.watch_threads(threads)
    with display:
        display.message("run directory: runs/cartpole/20261130-120000-s0")
        display.update(fake_model(steps=2_000))
        threads.measurements.append({"step": 5_000, "s_per_step": {1: 0.001, 2: 0.0008}, "threads": 2})
        threads.measurements.append({"step": 9_000, "s_per_step": {}, "threads": 1, "others": 1})
        display.update(fake_model(steps=9_500))
        display.on_eval({"timesteps": 5_000.0, "mean_reward": 150.0, "std_reward": 3.0}, new_best=True, episodes=10)
        display.on_eval({"timesteps": 10_000.0, "mean_reward": 120.0, "std_reward": 40.0}, new_best=False)
        display.on_checkpoint(10_000, tmp_path / "checkpoints" / "step-000000010000")
        assert console.is_terminal
    assert display._live is not None and not display._live.is_started
    lines = screen_after(console.file.getvalue())  # type: ignore[attr-defined]
    assert lines == [
        "run directory: runs/cartpole/20261130-120000-s0",
        "step 1,024/20,000  torch threads 2 (25% faster than 1)",  # no room for the timings at 80
        "step 5,000/20,000  eval 150.0 ± 3.0 over 10 ep  best (best_model.zip)",  # no room for ret at 80
        "step 10,000/20,000  eval 120.0 ± 40.0 over 10 ep  ret(20ep) 73.0",
        "step 10,000/20,000  checkpoint saved: checkpoints/step-000000010000",
    ]
    assert all(len(line) <= 80 for line in lines)  # nothing wraps at 80 columns; no stale live line (erased)
    assert display.threads_seen == [2, 1]  # the change at 9,000 shows in the live line's thr, not as a line


def _measured(threads: int, **steps_per_s: float) -> dict[str, Any]:
    return {"step": 2_560, "threads": threads, "s_per_step": {int(c[1:]): 1 / v for c, v in steps_per_s.items()}}


def test_the_thread_count_chosen_says_why_even_when_it_timed_slower() -> None:
    from rlkit.training.display import thread_reason, thread_timings

    # The case: 2 threads timed 1.1% faster, under the 5% more threads must gain: 1 stays.
    slower = _measured(1, t1=1_724, t2=1_743)
    assert thread_reason(slower) == "2 only 1.1% faster; more threads need 5%"
    assert thread_timings(slower) == "  (1: 1,724, 2: 1,743 steps/s)"
    assert thread_reason(_measured(2, t1=1_000, t2=1_400)) == "40% faster than 1"
    assert thread_reason(_measured(1, t1=5_868, t2=5_833)) == "2 timed 0.6% slower"
    assert thread_reason({"step": 9, "threads": 1, "s_per_step": {}}) == "the other cores are busy"
    console = terminal(120)
    display = TrainingDisplay(TOTAL, console=console)
    display.watch_threads(tuner(slower))
    display.update(fake_model(steps=3_000))
    assert console.export_text().splitlines() == [
        "step 2,560/20,000  torch threads 1 (2 only 1.1% faster; more threads need 5%)  (1: 1,724, 2: 1,743 steps/s)"
    ]


def test_a_count_that_keeps_changing_is_one_line_at_the_end_not_one_per_change() -> None:
    console = terminal(80)
    display = TrainingDisplay(TOTAL, console=console)
    runs = [_measured(1, t1=1_000, t2=900), _measured(2, t1=1_000, t2=1_200)] * 3
    flips = tuner(*[m | {"step": 1_000 * (k + 1)} for k, m in enumerate(runs)])
    flips.cycle_shares = lambda: {1: 0.62, 2: 0.38}
    display.watch_threads(flips)
    with display:
        display.update(fake_model(steps=7_000))
    lines = screen_after(console.file.getvalue())  # type: ignore[attr-defined]
    assert lines == [
        "step 1,000/20,000  torch threads 1 (2 timed 10% slower)",
        "torch threads: 1 in 62%, 2 in 38% of cycles (changed 5x with the machine's load)",
    ], lines


def test_without_a_terminal_only_plain_history_lines() -> None:
    file = io.StringIO()
    display = TrainingDisplay(TOTAL, console=Console(file=file, width=80, force_terminal=False))
    assert not display.live
    with display:
        display.update(fake_model())
        display.on_eval(ROW, new_best=True, episodes=10)
        display.on_checkpoint(10_000, Path("runs/x/checkpoints/step-000000010000"))
    assert file.getvalue().splitlines() == [
        "step 10,000/20,000  eval 200.0 ± 12.5 over 10 ep  best (best_model.zip)  ret(20ep) 73.0",
        "step 10,000/20,000  checkpoint saved: checkpoints/step-000000010000",
    ]
    quiet = io.StringIO()
    silent = TrainingDisplay(TOTAL, quiet=True, console=Console(file=quiet, force_terminal=True))
    silent.on_eval(ROW, new_best=True)
    silent.message("hello")
    assert quiet.getvalue() == ""


def test_a_real_run_prints_its_history_when_output_is_no_terminal(tmp_path: Path) -> None:
    from tests.clitools import invoke
    from tests.conftest import tiny_overrides

    sets = [arg for pair in tiny_overrides(600) for arg in ("--set", pair)]
    result = invoke("train", "cartpole", "--seed", "0", "--run-dir", tmp_path / "run", *sets)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[:2] == ["training: CartPole-v1 for 600 steps", f"run directory: {tmp_path / 'run'}"]
    evals = [line for line in lines if " eval " in line]
    assert evals[0].startswith("step 300/600  eval ") and "over 2 ep" in evals[0]
    assert any(line.startswith("step 300/600  checkpoint saved: checkpoints/step-") for line in lines)
    last = int(evals[-1].split("/")[0].removeprefix("step ").replace(",", ""))
    assert last >= 600 and evals[-1].startswith(f"step {last:,}/600  eval ")  # the final evaluation
    assert "━" not in result.stderr  # no live bar in a log


def test_a_resumed_run_shows_its_earlier_evaluations() -> None:
    console = terminal(200)
    display = TrainingDisplay(TOTAL, 12_800, console=console)
    rows = [
        {"timesteps": 5_000.0, "mean_reward": 76.8, "std_reward": 3.1},
        {"timesteps": 10_000.0, "mean_reward": 144.8, "std_reward": 6.8},
    ]
    display.restore(rows, episodes=10)
    display.update(fake_model(steps=13_000))
    console.print(display.screen)
    text = console.export_text()
    assert "eval 144.8±6.8*@10k" in text and "12,800" not in text and "13,000/20,000" in text
    display.on_eval({"timesteps": 15_000.0, "mean_reward": 100.0, "std_reward": 1.0}, new_best=False)
    console.print(display.screen)
    text = console.export_text()
    assert "eval 100.0±1.0@15k" in text and "best 144.8@10k" in text


@pytest.mark.parametrize("width", [80, 120])
def test_the_live_line_says_what_plays_during_an_evaluation_and_a_confirmation(width: int) -> None:
    console = terminal(width)
    display = TrainingDisplay(TOTAL, console=console)
    display.update(fake_model(steps=9_600), now=time.perf_counter() + 5.0)
    display._model.num_timesteps = 10_000  # the model went on to the evaluation's step since the last sample
    display.on_progress("evaluating", 0, 10)
    display.on_progress("evaluating", 3, 10)
    text = "\n".join(line for line in _live(console, display))
    assert "evaluating 3/10 ep" in text and "10,000/20,000" in text  # the step evaluated, not the stale 9,600
    display.on_progress("evaluating", 10, 10)
    display.on_progress("confirming", 0, 100)
    display.on_progress("confirming", 40, 100)
    lines = _live(console, display)
    assert "confirming 40/100 ep" in "\n".join(lines) and all(len(line) <= width - MARGIN for line in lines)
    display.on_progress("confirming", 100, 100)
    assert "confirming" not in "\n".join(_live(console, display)) and display.playing is None


def _live(console: Console, display: TrainingDisplay) -> list[str]:
    console.export_text(clear=True)
    console.print(display.screen)
    return console.export_text(clear=True).rstrip("\n").splitlines()


def test_the_evaluation_line_reads_the_return_at_the_evaluations_step_not_the_last_sample() -> None:
    """Two runs of one seed sample the live figures at different moments; their history must agree."""
    file = io.StringIO()
    display = TrainingDisplay(TOTAL, console=Console(file=file, width=200, force_terminal=False))
    model = fake_model(steps=1_500)
    display.update(model)  # sampled at 1,500 steps: returns of 70-76
    model.num_timesteps = 2_000
    model.ep_info_buffer.extend({"r": 10.0, "l": 10} for _ in range(20))  # what the run holds at 2,000
    display.on_eval({"timesteps": 2_000.0, "mean_reward": 25.0, "std_reward": 1.0}, new_best=True, episodes=10)
    assert file.getvalue().splitlines()[-1].endswith("ret(20ep) 10.0")


def test_a_history_line_longer_than_the_terminal_wraps_between_words() -> None:
    # The solved line with its margin is ~100 columns: the terminal's own wrap at 80 cut it anywhere
    # ("99% lowe" / "r bound"), depending on the figures.
    console = terminal(80)
    display = TrainingDisplay(TOTAL, console=console)
    text = "solved at step 12,000 after 13.4 s: mean 500.0 over 100 fresh episodes, 99% lower bound 500.0 >= 475"
    with display:
        display.message(text)
    lines = screen_after(console.file.getvalue())  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in lines)
    assert " ".join(line.strip() for line in lines if line) == text  # every word whole, in order


def test_without_a_terminal_a_long_history_line_stays_one_line() -> None:
    file = io.StringIO()
    display = TrainingDisplay(TOTAL, console=Console(file=file, width=80, force_terminal=False))
    display.message("x " * 60)
    assert file.getvalue() == "x " * 60 + "\n"  # logs and pipes get whole lines to grep
