"""Bad input anywhere is one clear line, a non-zero exit and nothing written (issue #12, part B)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlkit.config.schema import validate
from rlkit.core.errors import RlkitError
from rlkit.core.seeds import SEED_MAX, check_seed, derive_seed
from tests.clitools import assert_one_line_error, invoke

TINY = [
    "--set",
    "learning_starts=50",
    "--set",
    "train_freq=16",
    "--set",
    "gradient_steps=4",
    "--set",
    "eval_freq=200",
    "--set",
    "eval_episodes=2",
    "--set",
    "checkpoint_freq=200",
    "--set",
    "buffer_size=1000",
    "--quiet",
]


@pytest.fixture(scope="module")
def max_seed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 400-step CartPole run trained with the largest seed, 2**32 - 1 (treat as read-only)."""
    run = tmp_path_factory.mktemp("validation") / "run"
    result = invoke("train", "cartpole", "--seed", SEED_MAX, "--steps", 400, "--run-dir", run, *TINY)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run_copy(max_seed_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(max_seed_run, target)
    return target


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- seeds ---------------------------------------------------------------------------------


def test_seed_helpers() -> None:
    assert check_seed(0) == 0 and check_seed(SEED_MAX) == SEED_MAX
    for bad in (-1, SEED_MAX + 1, 2**70):
        with pytest.raises(RlkitError, match="from 0 to 4294967295"):
            check_seed(bad)
    assert derive_seed(5, 1_000_003, 7) == 1_000_015, "sums in range are unchanged"
    assert derive_seed(SEED_MAX, 1_000_003, 600) == 1_000_003 + 600 - 1


@pytest.mark.parametrize("seed", ["-1", "4294967296", str(2**70)])
def test_train_refuses_seeds_out_of_range(seed: str, _isolated_runs: Path) -> None:
    assert_one_line_error(invoke("train", "cartpole", f"--seed={seed}"), "a seed must be a whole number")
    assert not _isolated_runs.exists(), "no run directory left behind"


def test_tune_and_benchmark_refuse_bad_seeds(_isolated_runs: Path) -> None:
    assert_one_line_error(invoke("tune", "cartpole", "--seed=-1", "--trials", "1"), "--seed -1")
    assert_one_line_error(invoke("benchmark", "cartpole", "--seeds", 2**33), "--seeds must be from 1 to 1000")
    assert not _isolated_runs.exists()


def test_a_run_with_the_largest_seed_resumes_and_evaluates(max_seed_run: Path, run_copy: Path) -> None:
    # Resume from the first checkpoint: the env, model and evaluation seeds are derived from 2**32 - 1.
    shutil.rmtree(sorted((run_copy / "checkpoints").iterdir())[-1])
    state = json.loads((run_copy / "state.json").read_text())
    (run_copy / "state.json").write_text(json.dumps({**state, "status": "interrupted", "num_timesteps": 200}))
    resumed = invoke("train", "--resume", run_copy, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_copy / "state.json").read_text())["status"] == "finished"
    evaluated = invoke("evaluate", max_seed_run, "--episodes", "2", "--stochastic", "--seed", SEED_MAX, "--json")
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "{run}", "--seed", "-1"], "--seed -1: a seed must be"),
        (["record", "{run}", "--fps", "nan"], "--fps must be a positive, finite number"),
        (["record", "{run}", "--fps", "inf"], "--fps must be a positive, finite number"),
        (["record", "{run}", "--seed", "4294967296"], "a seed must be"),
        (["record", "{run}", "--out", "{run}/folder.mp4", "--force"], "exists and is not a file"),
    ],
)
def test_evaluate_and_record_refuse_bad_requests(run_copy: Path, args: list[str], message: str) -> None:
    (run_copy / "folder.mp4").mkdir()
    before = _files(run_copy)
    assert_one_line_error(invoke(*[a.format(run=run_copy) for a in args]), message)
    assert _files(run_copy) == before and not (run_copy / "videos").exists()


# --- damaged files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "command", "message"),
    [
        ("state.json", b'{"status": "interru', ["train", "--resume", "{run}"], "damaged run state (not valid JSON"),
        ("state.json", b"[1, 2]", ["train", "--resume", "{run}"], "expected a JSON object"),
        ("meta.json", b"\x00\xff garbage", ["report", "{run}", "-o", "{tmp}/r.html"], "damaged run metadata"),
        ("config.yaml", b"alias: x\nseed: [1\npreset: {\n", ["evaluate", "{run}"], "damaged run config (malformed"),
        ("config.yaml", b"alias: x\n", ["evaluate", "{run}"], "damaged run config (expected the keys"),
        ("evaluations.csv", b"timesteps,mean_reward\n200,abc\n", ["train", "--resume", "{run}"], "damaged evaluation"),
    ],
)
def test_damaged_run_files_are_one_line(
    run_copy: Path, tmp_path: Path, name: str, content: bytes, command: list[str], message: str
) -> None:
    (run_copy / "state.json").write_text(json.dumps({"status": "interrupted", "num_timesteps": 400}))
    (run_copy / name).write_bytes(content)
    args = [a.format(run=run_copy, tmp=tmp_path) for a in command]
    before = _files(run_copy)
    assert_one_line_error(invoke(*args), message)
    assert _files(run_copy) == before, "nothing written"
    assert not (tmp_path / "r.html").exists()


def test_damaged_checkpoint_states_are_one_line(run_copy: Path) -> None:
    (run_copy / "state.json").write_text(json.dumps({"status": "interrupted", "num_timesteps": 400}))
    newest, oldest = sorted((run_copy / "checkpoints").iterdir(), reverse=True)
    (newest / "state.json").write_bytes((newest / "state.json").read_bytes()[:9])  # truncated
    (oldest / "state.json").write_text('{"num_timesteps": "many"}')
    before = _files(run_copy)
    assert_one_line_error(invoke("train", "--resume", run_copy), "no intact checkpoint", "state.json")
    assert _files(run_copy) == before, "nothing written"


def test_binary_preset_and_config_files_are_one_line(tmp_path: Path, _isolated_runs: Path) -> None:
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    assert_one_line_error(invoke("train", binary), "is not a text file")
    assert_one_line_error(invoke("train", "cartpole", "--config", binary), "is not a text file")
    control = tmp_path / "control.yaml"
    control.write_text("env_id: CartPole-v1\x07\n")
    assert_one_line_error(invoke("train", control), "malformed YAML")
    assert_one_line_error(invoke("train", "cartpole", "--config", tmp_path), "--config file not found")
    assert not _isolated_runs.exists()


# --- paths ---------------------------------------------------------------------------------


def test_special_and_file_paths_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(invoke("train", "cartpole", "--run-dir", "/proc/foo"), "special system folder")
    assert_one_line_error(invoke("plot", tmp_path, "--out", "/proc/curves.png"), "special system folder")
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    assert_one_line_error(invoke("train", "cartpole", "--run-dir", a_file / "run"), "is a file, not a folder")
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(a_file))
    assert_one_line_error(invoke("train", "cartpole"), "RLKIT_RUNS_DIR", "is a file, not a folder")
    assert_one_line_error(invoke("tune", "cartpole", "--trials", "1"), "RLKIT_RUNS_DIR", "is a file")
    assert_one_line_error(invoke("benchmark", "cartpole", "--seeds", "5"), "RLKIT_RUNS_DIR", "is a file")
    assert a_file.read_text() == "mine"


def test_sqlite_storage_folders_are_not_created(tmp_path: Path, _isolated_runs: Path) -> None:
    missing = tmp_path / "no-such-folder" / "study.db"
    assert_one_line_error(
        invoke("tune", "cartpole", "--trials", "1", "--storage", f"sqlite:///{missing}"), "does not exist"
    )
    assert not missing.parent.exists()


def test_a_storage_whose_driver_is_not_installed_is_one_line(tmp_path: Path, _isolated_runs: Path) -> None:
    """optuna raises a bare ImportError for a missing driver (MySQLdb here): it was a traceback."""
    pytest.importorskip("sqlalchemy")
    try:
        import MySQLdb  # noqa: F401

        pytest.skip("a MySQL driver is installed here")
    except ImportError:
        pass
    url = "mysql://someone@127.0.0.1/db"
    tune = invoke("tune", "cartpole", "--trials", "1", "--steps", "100", "--storage", url)
    bench = invoke(
        "benchmark", "cartpole", "--seeds", "2", "--jobs", "1", "--storage", url, "--out", str(tmp_path / "b")
    )
    for result in (tune, bench):
        assert_one_line_error(result, "database driver missing: MySQLdb", "pip install mysqlclient")
    assert not (tmp_path / "b").exists()


# --- the schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"buffer_size": 16, "batch_size": 32}, "buffer_size 16 is smaller than batch_size 32"),
        ({"solved_score": float("nan")}, "solved_score: Input should be a finite number"),
        ({"solved_score": float("inf")}, "solved_score: Input should be a finite number"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"env_id": "not a module:Env-v0"}, "is not of the form pkg.module:EnvId-v0"),
    ],
)
def test_schema_refuses_nonsense(data: dict[str, object], message: str) -> None:
    with pytest.raises(RlkitError, match=message.replace("(", r"\(")):
        validate({"env_id": "CartPole-v1", **data}, "test")


def test_divergence_bound_may_be_infinite() -> None:
    assert validate({"env_id": "CartPole-v1", "divergence_q_bound": float("inf")}, "t").divergence_q_bound > 1e300


def test_yaml_nan_in_a_preset_file_is_one_line(tmp_path: Path, _isolated_runs: Path) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("env_id: CartPole-v1\nsolved_score: .nan\n")
    assert_one_line_error(invoke("train", preset), "solved_score: Input should be a finite number")
    assert_one_line_error(invoke("train", "cartpole", "--set", "solved_score=.inf"), "finite number")
    assert not _isolated_runs.exists()


def test_learning_starts_beyond_the_budget_is_warned_once(tmp_path: Path) -> None:
    args = ["--set", "learning_starts=500", "--set", "eval_freq=0", "--set", "checkpoint_freq=0", "-q"]
    result = invoke("train", "cartpole", "--steps", "100", "--run-dir", tmp_path / "run", *args)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("learning_starts 500 >= n_timesteps 100") == 1


def test_a_seed_that_is_not_a_number_says_what_is_valid(_isolated_runs: Path) -> None:
    result = invoke("train", "cartpole", "--seed", "2**70")
    text = " ".join(result.stderr.replace("│", " ").split())  # click's usage error, in a box
    assert result.exit_code == 2 and "a seed must be a whole number from 0 to 4294967295" in text
    assert "Traceback" not in result.output and not _isolated_runs.exists()
