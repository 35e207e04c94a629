"""The Python API: docs/python-api.md's walkthrough runs as written; errors are RlkitError, never SystemExit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rlkit

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_the_walkthrough_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(tmp_path / "runs"))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # the doc's own code, in order
    run = namespace["run"]
    assert (run.run_dir / "model.zip").is_file()  # type: ignore[attr-defined]
    assert Path(namespace["video"].path).stat().st_size > 0  # type: ignore[attr-defined]
    assert namespace["study"].complete + namespace["study"].pruned == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rlkit.train("cartpol"), "unknown environment 'cartpol' (did you mean 'cartpole'?)"),
        (lambda: rlkit.train("cartpole", seed=-1), "seed must be a whole number from 0 to 4294967295"),
        (lambda: rlkit.train("cartpole", steps=0), "steps must be at least 1"),
        (lambda: rlkit.train("cartpole", overrides={"learning_rat": 1}), "unknown key 'learning_rat'"),
        (lambda: rlkit.train("cartpole", overrides="lr=1"), "overrides must be a mapping"),
        (lambda: rlkit.train("cartpole", device="tpu"), "unknown device 'tpu'"),
        (lambda: rlkit.evaluate("no/such/run"), "not a run directory"),
        (lambda: rlkit.load("no/such/run"), "not a run directory"),
        (lambda: rlkit.tune("cartpole", sampler="tpee"), "unknown sampler 'tpee'"),
        (lambda: rlkit.train("cartpole", steps="abc"), "steps must be a whole number"),
        (lambda: rlkit.train("cartpole", device=0), "device must be a device name"),
        (lambda: rlkit.train("cartpole", callbacks=5), "callbacks must be a list"),
        (lambda: rlkit.train(None), "env is required"),
        (lambda: rlkit.resume(None), "run_dir must be a run directory path"),
        (lambda: rlkit.evaluate("run", episodes="x"), "episodes must be a whole number"),
        (lambda: rlkit.tune("cartpole", trials="2"), "trials must be a whole number"),
    ],
)
def test_errors_are_one_line_rlkit_errors(
    call: object, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(rlkit.RlkitError) as info:
        call()  # type: ignore[operator]
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()  # nothing written


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import rlkit, sys; print(sorted(m for m in ('torch', 'stable_baselines3', 'gymnasium', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_progress_is_opt_in(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A library call prints nothing; ``progress=True`` shows the command's display (history lines off a terminal)."""
    from tests.conftest import tiny_overrides

    quiet = rlkit.train("cartpole", seed=0, overrides=tiny_overrides(600), run_dir=tmp_path / "quiet")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    rlkit.train("cartpole", seed=0, overrides=tiny_overrides(600), run_dir=tmp_path / "shown", progress=True)
    err = capfd.readouterr().err
    assert "training: CartPole-v1 for 600 steps" in err and "step 300/600  eval " in err
    rlkit.resume(quiet.run_dir, steps=900, progress=True)
    assert "resuming at step 600: CartPole-v1 for 900 steps" in capfd.readouterr().err
