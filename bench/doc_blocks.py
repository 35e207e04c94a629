"""What each generated block of the documents says: one formatter per kind of block (bench/refresh_docs.py).

A formatter takes a block's sources (loaded benchmark JSON, by role, see
``docs/benchmarks/sources.yaml``) and returns the block's text, the same text for the same JSON.
Absolute figures go beside ``Source.machine()``: the machine's yardstick when the JSON records one
(``machine.yardstick``), else what is known of the machine and "machine yardstick not recorded";
ratios between learners of the same run go alone.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlkit.analysis import benchmark as bm
from rlkit.config.presets import load_preset_file
from rlkit.core.errors import RlkitError

WIDTH = 100
"""Prose is wrapped at this many columns (the README's and the presets' width)."""
NOT_RECORDED = "machine yardstick not recorded"

# ----------------------------------------------------------------------------------------
# Sources: a JSON file and its machine
# ----------------------------------------------------------------------------------------


def three_figures(x: float) -> str:
    """``28347`` -> ``28,300``: a yardstick to three significant figures, with thousands separators."""
    if x <= 0:
        return f"{x:g}"
    decimals = 2 - math.floor(math.log10(x))
    return f"{round(x, decimals):,.{max(decimals, 0)}f}"


@dataclass
class Source:
    """One loaded JSON and what to print beside its absolute figures."""

    name: str
    path: Path
    data: Any
    note: str | None = None

    def machine(self) -> str:
        """The yardstick when recorded, else what is known of the machine and that none was recorded."""
        recorded = self.data.get("machine") if isinstance(self.data, dict) else None
        yardstick = recorded.get("yardstick") if isinstance(recorded, dict) else None
        if isinstance(yardstick, dict):
            env = three_figures(float(yardstick["env_steps_per_s"]))
            matmul = three_figures(float(yardstick["matmul_per_s"]))
            return f"env {env} steps/s, matmul {matmul}/s on that machine"
        described = self.note or described_machine(self.data)
        return f"{described}; {NOT_RECORDED}" if described else NOT_RECORDED


def described_machine(data: Any) -> str | None:
    """What a JSON says about its machine, in words (cores, CPU), if anything."""
    if not isinstance(data, dict):
        return None
    machine = data.get("machine")
    if isinstance(machine, str):
        return f"{data['cpus']} CPU cores ({machine})" if data.get("cpus") else machine
    if isinstance(machine, dict):
        cores = machine.get("cores") or machine.get("cpu_count")
        cpu = machine.get("cpu")
        if cores and cpu:
            return f"{cores}-core {cpu}"
        if cores:
            return f"{cores} CPU cores"
    if data.get("cpus"):
        return f"{data['cpus']} CPU cores"
    return None


@dataclass
class Inputs:
    """A block's sources by role, and its arguments."""

    roles: dict[str, list[Source]]
    args: dict[str, str]
    root: Path
    """The repository being refreshed (for a preset a formatter reads)."""

    def one(self, role: str) -> Source:
        return self.roles[role][0]

    def many(self, role: str) -> list[Source]:
        return self.roles[role]


# ----------------------------------------------------------------------------------------
# Formatting helpers (deterministic: the same JSON always gives the same text)
# ----------------------------------------------------------------------------------------


def wrap(text: str, prefix: str = "", hanging: str | None = None) -> str:
    """``text`` filled to ``WIDTH`` columns, every line after ``prefix`` (the first after ``hanging`` if given)."""
    return textwrap.fill(
        text,
        width=WIDTH,
        initial_indent=prefix if hanging is None else hanging,
        subsequent_indent=prefix,
        break_long_words=False,
        break_on_hyphens=False,
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def kilo(steps: float) -> str:
    return f"{steps / 1000:g}k"


def span(values: Sequence[float], fmt: str = "{:.1f}", sep: str = "-") -> str:
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}{sep}{high}"


def seeds_text(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 1:
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seed " + ", ".join(str(s) for s in seeds)


def machines(*sources: Source) -> str:
    """The sources' machine texts, each once."""
    return "; ".join(dict.fromkeys(s.machine() for s in sources))


# ----------------------------------------------------------------------------------------
# `rlkit benchmark` JSON (rlkit/analysis/benchmark.py)
# ----------------------------------------------------------------------------------------


@dataclass
class Solved:
    """What a benchmark JSON says about time to solve."""

    n: int
    solved: int
    seeds: list[int]
    times: list[float]
    steps: list[int]
    median_s: float | None
    median_steps: float | None
    final: list[float]
    budget: int
    command: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Solved:
        runs = [r for r in doc["per_seed"] if r.get("time_to_solve_s") is not None]
        return cls(
            n=len(doc["seeds"]),
            solved=int(doc.get("seeds_solved", len(runs))),
            seeds=list(doc["seeds"]),
            times=[float(r["time_to_solve_s"]) for r in runs],
            steps=[int(r["solved_step"]) for r in runs],
            median_s=doc.get("median_time_to_solve_s"),
            median_steps=doc.get("median_steps_to_solve_confirmed"),
            final=[float(r["final_mean"]) for r in doc["per_seed"]],
            budget=int(doc["n_timesteps"]),
            command=str(doc.get("command", f"rlkit benchmark {doc['alias']}")),
        )

    def median(self) -> str:
        return "not reached" if self.median_s is None else f"{self.median_s:.1f} s"

    def times_text(self) -> str:
        """``15.6-54.8 s, seeds 0-4 (median 28.7 s); 5 of 5 solved``."""
        if not self.times:
            return f"none of {self.n} seeds solved within {self.budget:,} steps"
        return (
            f"{span(self.times)} s, {seeds_text(self.seeds)} (median {self.median()}); {self.solved} of {self.n} solved"
        )


def seed_run(doc: dict[str, Any], seed: int) -> dict[str, Any] | None:
    return next((r for r in doc["per_seed"] if r["seed"] == seed), None)


def seed_zero_text(doc: dict[str, Any]) -> str:
    run = seed_run(doc, 0)
    if run is None or run.get("time_to_solve_s") is None:
        return f"seed 0 did not solve within {doc['n_timesteps']:,} steps"
    return f"{run['time_to_solve_s']:.1f} s (solved at {run['solved_step']:,} steps)"


def seed_zero_sentence(doc: dict[str, Any], verb: str) -> str:
    """``seed 0 <verb> at step N after T s of training`` (``solves``, ``solved``), or that it did not solve."""
    run = seed_run(doc, 0)
    if run is None or run.get("time_to_solve_s") is None:
        return f"seed 0 did not solve within {doc['n_timesteps']:,} steps"
    return f"seed 0 {verb} at step {run['solved_step']:,} after {run['time_to_solve_s']:.1f} s of training"


def fmt_readme_demo(inputs: Inputs) -> str:
    src = inputs.one("cartpole")
    doc, s = src.data, Solved.of(src.data)
    sentence = seed_zero_sentence(doc, "solves")
    first = sentence[0].upper() + sentence[1:]
    rest = (
        f"over {seeds_text(s.seeds)}, {s.solved} of {s.n} solved, at {span(s.steps, '{:,}', ' to ')} steps "
        f"(median {s.median()} of training; `{s.command}`, {src.machine()}; docs/BENCHMARKS.md)."
    )
    return wrap(f"{first}; {rest}")


def fmt_readme_times(inputs: Inputs) -> str:
    cart, lunar, atari = inputs.one("cartpole"), inputs.one("lunarlander"), inputs.one("atari")
    c, lu = Solved.of(cart.data), Solved.of(lunar.data)
    rows = [
        [
            "`make demo` (`rlkit train cartpole --seed 0`)",
            f"stops when solved, at most {kilo(c.budget)} steps",
            seed_zero_text(cart.data),
            f"`{c.command}`: {cart.machine()}",
        ],
        ["`rlkit train cartpole`", f"stops when solved, at most {kilo(c.budget)} steps", c.times_text(), "the same"],
        [
            "`make train` (`rlkit train lunarlander`)",
            f"stops when solved, at most {kilo(lu.budget)} steps",
            lu.times_text(),
            f"`{lu.command}`: {lunar.machine()}",
        ],
        pong_row(inputs, atari),
    ]
    return table(["command", "budget", "training time", "measured with"], rows)


def pong_row(inputs: Inputs, atari: Source) -> list[str]:
    budget = load_preset_file(inputs.root / "envs" / f"{inputs.args['atari_preset']}.yaml").n_timesteps
    game = inputs.args["atari_preset"]
    rates = [r["train_sps"] for r in atari.data["rows"] if r["game"] == game and r["variant"] == "ale"]
    hours = [budget / rate / 3600 for rate in rates]
    return [
        f"`rlkit train {inputs.args['atari_preset']}`",
        f"{budget / 1e6:g}M steps",
        f"about {span(hours, '{:.0f}')} h at {span(rates, '{:.0f}')} env steps/s on the CPU; "
        "use a GPU (`bench/gpu_pong.sh`)",
        f"2,000 training steps on ALE with 4 envs (docs/BENCHMARKS.md): {atari.machine()}",
    ]


def fmt_readme_headline(inputs: Inputs) -> str:
    lunar, cart = inputs.one("lunarlander"), inputs.one("cartpole")
    lu, c = Solved.of(lunar.data), Solved.of(cart.data)

    def solved(s: Solved, src: Source) -> str:
        doc = src.data
        fresh = [float(r["fresh_mean"]) for r in doc["per_seed"] if r.get("fresh_mean") is not None]
        scored = (
            f"solved on fresh episodes (100 each, env seeds nothing in training used) on "
            f"{doc.get('seeds_solved_fresh', sum(f >= doc['solved_score'] for f in fresh))} of {s.n}, "
            f"scoring {span(fresh)}"
            if len(fresh) == len(doc["per_seed"])
            else f"the final models scoring {span(s.final)} over {doc['eval_episodes']} new episodes"
        )
        return (
            f"{doc['env_id']} confirmed solved on {s.solved} of {s.n} seeds, median {s.median_steps or 0:,.0f} "
            f"steps and {s.median()} of training ({src.machine()}); {scored}"
        )

    presets = (
        f"- The shipped presets, {lu.n} seeds each, stopping once solved "
        f"(`rlkit benchmark <preset> --seeds {lu.n} --episodes {lunar.data['eval_episodes']}`): "
        f"{solved(lu, lunar)}; {solved(c, cart)}."
    )
    peers = inputs.one("peers").data
    same = (
        "- Same hyperparameters, same algorithm, on the same env (`bench/peers.py`, the RL Zoo's "
        f"{peers['env'].split('-')[0]} values, one run): {peers['ratio_rlkit_over_sb3']:.2f}x plain SB3's env "
        f"steps/s and {peers['ratio_rlkit_over_sbx']:.2f}x SBX's (Stable Baselines in JAX)."
    )
    runs, busy = [s.data for s in inputs.many("throughput")], inputs.one("busy").data
    cpu = statistics.median(r["cpu_ms_per_step"]["sb3_plain"] / r["cpu_ms_per_step"]["rlkit"] for r in runs)
    usual = (
        "- Against plain SB3 as users usually run it (`make_vec_env`, which renders LunarLander to "
        f"rgb_array and slows its physics; `bench/throughput.py`): {median_ratio(runs):.2f}x its env steps/s "
        f"(median of {len(runs)} runs, {span([r['ratio'] for r in runs], '{:.2f}', 'x to ')}x) with {cpu:.1f}x "
        f"less CPU per env step, and {busy['ratio']:.2f}x beside a busy process."
    )
    return "\n".join(wrap(item.removeprefix("- "), "  ", hanging="- ") for item in (presets, same, usual))


def median_ratio(runs: list[dict[str, Any]]) -> float:
    return float(statistics.median(r["ratio"] for r in runs))


# ----------------------------------------------------------------------------------------
# bench/solve.py JSON: time to solve against the peers
# ----------------------------------------------------------------------------------------

LEARNERS = {"rlkit": "rlkit's preset", "zoo": "the RL Zoo's values on plain SB3", "sbx": "SBX with those values"}


def solve_ratios(doc: dict[str, Any]) -> tuple[list[str], str]:
    """How many times sooner rlkit's preset solves than each peer (medians over seeds), and the seeds each solved."""
    learners, n = doc["learners"], len(doc["learners"]["rlkit"]["per_seed"])
    ours = learners["rlkit"]["median_time_to_solve_s"]
    ratios, solved = [], []
    for key in (k for k in LEARNERS if k in learners):
        theirs = learners[key]
        solved.append(f"{SHORT[key]} {theirs['seeds_solved']}/{n}")
        if key == "rlkit":
            continue
        if ours is None or theirs["median_time_to_solve_s"] is None:
            ratios.append(f"no median to compare with {LEARNERS[key]}")
        else:
            ratios.append(f"{theirs['median_time_to_solve_s'] / ours:.1f}x sooner than {LEARNERS[key]}")
    budget = kilo(doc["zoo_values"]["n_timesteps"])
    return ratios, f"seeds solved: {', '.join(solved)}, the Zoo's values within their {budget} steps"


SHORT = {"rlkit": "rlkit", "zoo": "plain SB3", "sbx": "SBX"}


def fmt_readme_solve_peers(inputs: Inputs) -> str:
    parts = []
    for role, env in (("cartpole", "CartPole"), ("lunarlander", "LunarLander")):
        ratios, solved = solve_ratios(inputs.one(role).data)
        parts.append(f"on {env} rlkit's preset solves {' and '.join(ratios)} ({solved})")
    return wrap(
        "Against the peers under the same rule (`bench/solve.py`: the same seeds in one run, the ratio of "
        "the median times to solve): " + "; ".join(parts) + "."
    )


def solve_cell(entry: dict[str, Any], budget: int) -> str:
    if entry.get("time_to_solve_s") is None:
        return f"not solved in {kilo(budget)} (final model {entry['final_mean']:.1f})"
    return f"{entry['time_to_solve_s']:.1f} s ({entry['solved_step']:,}; {entry['confirmed_mean']:.1f})"


def fmt_bench_solve(inputs: Inputs) -> str:
    src = inputs.one("solve")
    doc = src.data
    keys = [k for k in LEARNERS if k in doc["learners"]]
    budgets = {"rlkit": doc["rlkit_preset"]["n_timesteps"], "zoo": doc["zoo_values"]["n_timesteps"]}
    budgets["sbx"] = budgets["zoo"]
    seeds = list(doc["learners"]["rlkit"]["per_seed"])
    rows = [[seed] + [solve_cell(doc["learners"][k]["per_seed"][seed], budgets[k]) for k in keys] for seed in seeds]
    totals = ["all"]
    for k in keys:
        learner = doc["learners"][k]
        median = learner["median_time_to_solve_s"]
        totals.append(
            f"{learner['seeds_solved']}/{len(seeds)} solved, median {'-' if median is None else f'{median:.1f} s'}"
        )
    header = ["seed", *(LEARNERS[k] for k in keys)]
    lines = [
        wrap(f"Time to solve (steps; the mean of the confirming episodes), {doc['date']}; {src.machine()}."),
        "",
        table(header, [*rows, totals]),
        "",
        wrap("rlkit's preset solves {} ({}).".format(" and ".join(solve_ratios(doc)[0]), solve_ratios(doc)[1])),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# bench/peers.py, bench/throughput.py, bench/levers.py
# ----------------------------------------------------------------------------------------

PEERS = {"sb3": "plain SB3 (rlkit's thread tuner)", "sbx": "SBX (JAX, XLA CPU)", "rlkit": "**rlkit**"}


def fmt_bench_peers(inputs: Inputs) -> str:
    src = inputs.one("peers")
    doc = src.data
    rows = []
    for key, label in PEERS.items():
        rounds = ", ".join(f"{x:.1f}" for x in doc["rounds_steps_per_s"][key])
        ratio = doc["steps_per_s"][key] / doc["steps_per_s"]["sb3"]
        rows.append(
            [label, f"{doc['steps_per_s'][key]:.1f} ({rounds})", f"{ratio:.2f}", f"{doc['fraction_of_limit'][key]:.2f}"]
        )
    header = ["learner", "env steps/s (median; rounds)", "ratio to plain SB3", "fraction of the limit"]
    summary = (
        f"rlkit is {doc['ratio_rlkit_over_sb3']:.2f}x plain SB3 and {doc['ratio_rlkit_over_sbx']:.2f}x SBX at the "
        f"same work. No learner doing this work exceeds {doc['limit_steps_per_s']:,.0f} env steps/s on that "
        f"machine: 1 / (env step {doc['env_step_ms']:.4f} ms + the gradient step's matrix products "
        f"{doc['gradient_step_floor_ms']:.4f} ms)."
    )
    return "\n".join([f"{doc['date']}; {src.machine()}.", "", table(header, rows), "", wrap(summary)])


def fmt_bench_throughput(inputs: Inputs) -> str:
    runs, busy = inputs.many("throughput"), inputs.one("busy")
    rows = [throughput_row(s.data, "") for s in runs] + [throughput_row(busy.data, " (busy)")]
    header = [
        "run",
        "1-min load before",
        "plain SB3 steps/s",
        "rlkit steps/s",
        "ratio",
        "ratio at the same env and threads",
        "CPU ms / env step (SB3, rlkit)",
    ]
    summary = (
        f"Median of the {len(runs)} runs: {median_ratio([s.data for s in runs]):.2f}x plain SB3 as users run it, "
        f"{statistics.median(s.data['ratio_same_env_threads'] for s in runs):.2f}x at the same env and threads "
        f"(the training loop's own gain); beside a busy process {busy.data['ratio']:.2f}x."
    )
    lines = [wrap("Machines: " + machines(*runs, busy) + "."), "", table(header, rows), "", wrap(summary)]
    return "\n".join(lines)


def throughput_row(doc: dict[str, Any], tag: str) -> list[str]:
    sps, cpu = doc["steps_per_s"], doc["cpu_ms_per_step"]
    return [
        doc["date"] + tag,
        f"{doc['load_avg_before'][0]:.2f}",
        f"{sps['sb3_plain']:.1f}",
        f"{sps['rlkit']:.1f}",
        f"{doc['ratio']:.2f}",
        f"{doc['ratio_same_env_threads']:.2f}",
        f"{cpu['sb3_plain']:.2f}, {cpu['rlkit']:.2f}",
    ]


LEVERS = {
    "sb3_plain": "plain SB3 `DQN.train`",
    "rlkit_adam_single_tensor": "rlkit loop, single-tensor Adam, per-step sampling",
    "rlkit_adam_foreach": "+ foreach Adam",
    "rlkit_adam_fused": "+ fused Adam",
    "rlkit_batched_phase": "batched phase alone (one draw, one target pass per phase)",
    "rlkit_fused_batched": "fused Adam + batched phase",
    "rlkit_fused_batched_lean_step": "fused Adam + batched phase + lean optimizer step",
    "rlkit_fused_batched_lean_manual_backward": "**+ written-out MLP backward (shipped)**",
    "preset_autograd": "dueling, Double, 3-step: autograd",
    "preset_manual_backward": "dueling, Double, 3-step: written-out backward (shipped)",
}


def lever_gain(runs: list[Source], key: str, ms: float, plain: float) -> str:
    """Against plain SB3, or, for the preset's rows (another algorithm), the written-out path against autograd."""
    if key == "preset_autograd":
        return ""
    if key == "preset_manual_backward":
        autograd = statistics.median(s.data["median_ms"]["preset_autograd"] for s in runs)
        return f"{autograd / ms:.2f}x faster than autograd"
    return f"{plain / ms:.2f}x"


def fmt_bench_levers(inputs: Inputs) -> str:
    runs = inputs.many("levers")
    rows = []
    for key, label in LEVERS.items():
        values = [s.data["median_ms"][key] for s in runs if key in s.data["median_ms"]]
        if not values:
            continue
        plain = statistics.median(s.data["median_ms"]["sb3_plain"] for s in runs)
        mid = statistics.median(values)
        each = ", ".join(f"{v:.3f}" for v in values)
        rows.append([label, f"{mid:.3f} ({each})", lever_gain(runs, key, mid, plain)])
    unit = runs[0].data.get("unit", "ms per gradient step")
    header = ["variant", f"{unit}: median of {len(runs)} runs (runs)", "vs plain SB3"]
    return "\n".join([f"Machine: {machines(*runs)}.", "", table(header, rows)])


# ----------------------------------------------------------------------------------------
# Atari and vec_env
# ----------------------------------------------------------------------------------------


def atari_ratios(doc: dict[str, Any], game: str) -> tuple[list[float], list[float]]:
    """Per round, ALE over SB3: (collection ratios, training ratios)."""
    rows = {(r["variant"], r["round"]): r for r in doc["rows"] if r["game"] == game}
    rounds = sorted({r for _, r in rows})
    collect = [rows[("ale", r)]["collect_sps"] / rows[("sb3", r)]["collect_sps"] for r in rounds]
    train = [rows[("ale", r)]["train_sps"] / rows[("sb3", r)]["train_sps"] for r in rounds]
    return collect, train


def games(doc: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["game"] for r in doc["rows"]))


def fmt_readme_atari(inputs: Inputs) -> str:
    doc = inputs.one("atari").data
    parts = []
    for game in games(doc):
        collect, train = atari_ratios(doc, game)
        parts.append(
            f"{game.capitalize()} collects {span(collect, '{:.2f}')}x faster and trains {span(train, '{:.2f}')}x faster"
        )
    return wrap(
        "Measured against SB3's Python wrappers with one env (docs/BENCHMARKS.md, two rounds on an idle "
        "machine): " + "; ".join(parts) + " (on CPU the CNN's gradient step dominates)."
    )


def fmt_preset_atari(inputs: Inputs) -> str:
    doc, game = inputs.one("atari").data, inputs.args["game"]
    collect, train = atari_ratios(doc, game)
    return wrap(
        "Measured on the idle 2-core machine against SB3's wrappers with 1 env (docs/BENCHMARKS.md): "
        f"collection (the first 100k steps) {span(collect, '{:.2f}')}x faster, training "
        f"{span(train, '{:.2f}')}x (on CPU the Nature CNN's gradient step dominates; on a GPU the env does).",
        "# ",
    )


def fmt_bench_atari(inputs: Inputs) -> str:
    src = inputs.one("atari")
    doc = src.data
    rows = []
    for game in games(doc):
        by = {(r["variant"], r["round"]): r for r in doc["rows"] if r["game"] == game}
        for rnd in sorted({r for _, r in by}):
            sb3, ale = by[("sb3", rnd)], by[("ale", rnd)]
            rows.append(
                [
                    f"{game.capitalize()}, round {rnd}",
                    f"{sb3['collect_sps']:.0f}",
                    f"{ale['collect_sps']:.0f} ({ale['collect_sps'] / sb3['collect_sps']:.2f}x)",
                    f"{sb3['train_sps']:.1f}",
                    f"{ale['train_sps']:.1f} ({ale['train_sps'] / sb3['train_sps']:.2f}x)",
                ]
            )
    header = [
        "game",
        "collection: SB3, 1 env",
        "collection: ALE, 4 envs",
        "training: SB3, 1 env",
        "training: ALE, 4 envs",
    ]
    return "\n".join([f"{doc['date']}; {src.machine()}; env steps/s.", "", table(header, rows)])


VEC_ENVS = {"cartpole": "CartPole", "lunarlander": "LunarLander", "pong": "Pong"}


def fmt_readme_vec_env(inputs: Inputs) -> str:
    idle, busy = inputs.one("idle").data["results"], inputs.one("busy").data["results"]
    names = [VEC_ENVS.get(r["env"], r["env"]) for r in idle]
    on_idle = ", ".join(f"{n} {r['ratio_subproc_over_dummy']:.2f}x" for r, n in zip(idle, names, strict=True))
    on_busy = ", ".join(f"{r['ratio_subproc_over_dummy']:.2f}x" for r in busy)
    return wrap(
        f"Measured with `bench/vec_env.py` (random actions, {idle[0]['n_envs']} envs), `subproc` steps at this "
        f"many times `dummy`'s rate: {on_idle} on an idle machine; {on_busy} on a busy one."
    )


def fmt_bench_vec_env(inputs: Inputs) -> str:
    idle, busy = inputs.one("idle"), inputs.one("busy")
    ratio_busy = {r["env"]: r["ratio_subproc_over_dummy"] for r in busy.data["results"]}
    rows = [
        [
            VEC_ENVS.get(r["env"], r["env"]),
            f"{r['median_steps_per_s']['dummy']:,.0f} / {r['median_steps_per_s']['subproc']:,.0f}",
            f"{r['ratio_subproc_over_dummy']:.2f}",
            f"{ratio_busy[r['env']]:.2f}" if r["env"] in ratio_busy else "-",
        ]
        for r in idle.data["results"]
    ]
    header = [
        "env",
        f"idle (load {idle.data['load_avg']:.2f}): dummy / subproc steps/s",
        "subproc ÷ dummy",
        f"busy (load {busy.data['load_avg']:.2f})",
    ]
    machine = f"Idle {idle.data['date']}, busy {busy.data['date']}; {machines(idle, busy)}."
    return "\n".join([machine, "", table(header, rows)])


# ----------------------------------------------------------------------------------------
# Presets' comments and the Makefile
# ----------------------------------------------------------------------------------------


def fmt_preset_solved(inputs: Inputs) -> str:
    src = inputs.one("benchmark")
    s = Solved.of(src.data)
    runs = [r for r in src.data["per_seed"] if r.get("time_to_solve_s") is not None]
    at = ", ".join(kilo(r["solved_step"]) for r in runs)
    after = ", ".join(f"{r['time_to_solve_s']:.1f}" for r in runs)
    return wrap(
        f"Measured (`{s.command}`, docs/BENCHMARKS.md): {s.solved} of {s.n} seeds solved, confirmed over "
        f"{src.data.get('solved_episodes', 0)} episodes, at {at} steps, after {after} s of training "
        f"(median {s.median()}; {src.machine()}).",
        "# ",
    )


def make_lines(name: str, text: str) -> str:
    """``NAME := 'line' 'line'``: the message wrapped at 79 columns, for ``@printf '%s\\n' $(NAME)``."""
    lines = textwrap.wrap(text, width=79, break_long_words=False, break_on_hyphens=False)
    for line in lines:
        if any(ch in line for ch in "#$'"):
            raise RlkitError(f"a Makefile message cannot hold # $ or ': {line}")
    return f"{name} := " + " ".join(f"'{line}'" for line in lines)


def fmt_make_messages(inputs: Inputs) -> str:
    cart, lunar = inputs.one("cartpole"), inputs.one("lunarlander")
    lu = Solved.of(lunar.data)
    zero = seed_zero_sentence(cart.data, "solved")
    train = (
        f"Training {lunar.data['env_id']} until solved, at most {lu.budget:,} steps (Ctrl-C saves a checkpoint). "
        f"How long depends on the machine: on the reference machine ({lunar.machine()}) "
        + (
            f"{seeds_text(lu.seeds)} took {span(lu.times)} s of training (median {lu.median()}; "
            f"{lu.solved} of {lu.n} solved)."
            if lu.times
            else f"none of {seeds_text(lu.seeds)} solved within {lu.budget:,} steps."
        )
    )
    demo = (
        f"Training {cart.data['env_id']} (seed 0) until solved: mean >= {cart.data['solved_score']:g} over "
        f"{cart.data.get('solved_episodes', 0)} episodes. On the reference machine ({cart.machine()}) {zero}."
    )
    return f"{make_lines('TRAIN_LINES', train)}\n{make_lines('DEMO_LINES', demo)}"


# ----------------------------------------------------------------------------------------
# The BENCHMARKS.md tables of `rlkit benchmark`
# ----------------------------------------------------------------------------------------


def fmt_bench_benchmark(inputs: Inputs) -> str:
    src = inputs.one("benchmark")
    doc = src.data
    first = (
        f"Command: `{doc.get('command', '')}`; {doc['created']}; {src.machine()}; "
        f"evaluation: {doc['eval_episodes']} deterministic episodes per model."
    )
    lines = [wrap(first), "", table(*bm.summary_rows(doc)), "", table(*bm.seed_rows(doc)), ""]
    return "\n".join([*lines, wrap(bm.time_to_solve_line(doc))])


FORMATTERS: dict[str, Callable[[Inputs], str]] = {
    "readme_demo": fmt_readme_demo,
    "readme_times": fmt_readme_times,
    "readme_solve_peers": fmt_readme_solve_peers,
    "readme_headline": fmt_readme_headline,
    "readme_atari": fmt_readme_atari,
    "readme_vec_env": fmt_readme_vec_env,
    "preset_solved": fmt_preset_solved,
    "preset_atari": fmt_preset_atari,
    "make_messages": fmt_make_messages,
    "bench_benchmark": fmt_bench_benchmark,
    "bench_solve": fmt_bench_solve,
    "bench_peers": fmt_bench_peers,
    "bench_throughput": fmt_bench_throughput,
    "bench_levers": fmt_bench_levers,
    "bench_atari": fmt_bench_atari,
    "bench_vec_env": fmt_bench_vec_env,
}
