"""The documents agree with the benchmark JSON they cite (bench/refresh_docs.py), and the check can fail.

Every figure block of README.md, docs/BENCHMARKS.md, the presets' comments and the Makefile's
messages is generated from its JSON; these tests run the check on the repository, then on copies
with a changed figure, a missing block, a stale preset, the claims the README made before issue
#23, and a JSON that records its machine's yardstick.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("refresh_docs", ROOT / "bench" / "refresh_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["refresh_docs"] = module
    spec.loader.exec_module(module)
    return module


refresh_docs = _load()
doc_blocks = sys.modules["doc_blocks"]  # its formatters, imported by refresh_docs


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the registry names: the documents, the presets and the JSON."""
    for name in ("README.md", "Makefile"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("envs", "docs"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = refresh_docs.main(["--check", "--root", str(root)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def block_text(path: Path, name: str) -> str:
    lines = path.read_text().split("\n")
    found, problems = refresh_docs.find_blocks(path.name, lines)
    assert not problems
    return "\n".join(lines[found[name].first : found[name].last])


def replace_block(path: Path, name: str, text: str) -> None:
    whole = path.read_text()
    old = block_text(path, name)
    assert whole.count(old) == 1
    path.write_text(whole.replace(old, text))


def test_the_repository_agrees_with_its_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(ROOT, capsys)
    assert code == 0, out
    assert "every block agrees" in out


def test_a_changed_figure_is_caught_and_nothing_is_written(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = repo / "README.md"
    headline = block_text(readme, "readme-headline")
    lunar = json.loads((repo / "docs" / "benchmarks" / "lunarlander-solve" / "benchmark.json").read_text())
    median = f"{lunar['median_time_to_solve_s']:.1f} s"
    assert median in headline
    readme.write_text(readme.read_text().replace(headline, headline.replace(median, "1.0 s")))
    before = readme.read_text()
    code, out = check(repo, capsys)
    assert code == 1
    assert "README.md" in out and "block readme-headline disagrees with its JSON" in out
    assert "1.0 s" in out and median in out  # what the document says, what the JSON says
    assert readme.read_text() == before  # --check writes nothing
    assert refresh_docs.main(["--root", str(repo)]) == 0  # the refresh puts the JSON's figure back
    assert readme.read_text() == (ROOT / "README.md").read_text()


def test_a_missing_block_is_caught(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = repo / "README.md"
    text = readme.read_text()
    readme.write_text(
        text.replace("<!-- results:readme-times -->\n", "").replace("<!-- /results:readme-times -->\n", "")
    )
    code, out = check(repo, capsys)
    assert code == 1
    assert "README.md: block readme-times is missing" in out
    assert refresh_docs.main(["--root", str(repo)]) == 1  # a refresh refuses too, writing nothing
    assert "results:readme-times" not in readme.read_text()


def test_an_unclosed_block_and_an_unknown_block_are_caught(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = repo / "docs" / "BENCHMARKS.md"
    text = bench.read_text().replace("<!-- /results:benchmarks-atari -->\n", "")
    bench.write_text(text + "\n<!-- results:nobody -->\n<!-- /results:nobody -->\n")
    code, out = check(repo, capsys)
    assert code == 1
    assert "block benchmarks-atari has no end mark" in out or "starts inside block benchmarks-atari" in out
    assert "block nobody is not in docs/benchmarks/sources.yaml" in out


def test_a_json_of_another_preset_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = repo / "envs" / "cartpole.yaml"
    preset.write_text(preset.read_text().replace("learning_rate: 2.3e-3", "learning_rate: 1.0e-3"))
    code, out = check(repo, capsys)
    assert code == 1
    assert "is not today's envs/cartpole.yaml" in out and "rerun the benchmark" in out


# What the documents said before issue #23 (the issue quotes them), put back into their blocks.
STALE = {
    ("README.md", "readme-headline"): (
        "- LunarLander-v3 with the shipped preset, 100k steps, 5 seeds, 100 evaluation episodes each:\n"
        "  solved (mean >= 200) by the best model on 5 of 5 seeds (mean 229.9) and by the final model on\n"
        "  4 of 5; first solving evaluation at a median of 70k steps.\n"
        "- Same hyperparameters, same algorithm, on the same env (`bench/peers.py`, idle): 1.58x plain SB3's\n"
        "  env steps/s and 0.87x SBX's (Stable Baselines in JAX)."
    ),
    ("README.md", "readme-demo"): "Seed 0 solves at 10,000 steps after about 2 s of training (median 2.1 s).",
    ("envs/cartpole.yaml", "cartpole-preset"): (
        "# Measured (docs/BENCHMARKS.md, bench/solve.py): seeds 0-4 solved, confirmed over 100 episodes, at\n"
        "# 10k to 26k steps; median time to solve 4.5 s of training on the 2-core machine."
    ),
    ("Makefile", "make-messages"): (
        "TRAIN_LINES := 'Training LunarLander-v3 for 100,000 steps: about 5 minutes on a 2-core machine.'\n"
        "DEMO_LINES := 'Training CartPole until solved (mean >= 475 over 100 episodes): 10,000 steps, seconds.'"
    ),
}


def test_the_claims_of_before_issue_23_fail_the_check(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for (file, name), text in STALE.items():
        replace_block(repo / file, name, text)
    code, out = check(repo, capsys)
    assert code == 1
    for _file, name in STALE:
        assert f"block {name} disagrees with its JSON" in out, name
    assert "the document says '- LunarLander-v3 with the shipped preset" in out  # the stale text is quoted
    cartpole = next(line for line in out.splitlines() if "cartpole-preset" in line)
    only_in_document = cartpole.split("figures only in the document: ")[1].split(";")[0]
    assert "4.5 s" in only_in_document  # cartpole.yaml's stale median
    assert "1.58x, 0.87x" in out  # the README's stale ratios


def _with_yardstick(repo: Path) -> None:
    path = repo / "docs" / "benchmarks" / "cartpole-solve" / "benchmark.json"
    doc = json.loads(path.read_text())
    doc["machine"]["yardstick"] = {
        "env_id": "CartPole-v1",
        "env_steps_per_s": 28347.2,
        "matmul_per_s": 9012.6,
        "torch_threads": 1,
    }
    path.write_text(json.dumps(doc, indent=2))


def test_a_recorded_yardstick_is_printed_beside_every_time(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _with_yardstick(repo)
    code, out = check(repo, capsys)
    assert code == 1 and "readme-demo" in out and "make-messages" in out
    assert refresh_docs.main(["--root", str(repo)]) == 0
    yardstick = "env 28,300 steps/s, matmul 9,010/s on that machine"
    demo = block_text(repo / "README.md", "readme-demo").replace("\n", " ")
    cart = json.loads((repo / "docs" / "benchmarks" / "cartpole-solve" / "benchmark.json").read_text())
    seed0 = next(r for r in cart["per_seed"] if r["seed"] == 0)
    assert f"{seed0['time_to_solve_s']:.1f} s of training" in demo and yardstick in demo
    assert "not recorded" not in demo
    assert yardstick in block_text(repo / "Makefile", "make-messages").replace("' '", " ")
    assert yardstick in block_text(repo / "envs" / "cartpole.yaml", "cartpole-preset").replace("\n# ", " ")
    lunar = block_text(repo / "envs" / "lunarlander.yaml", "lunarlander-preset").replace("\n# ", " ")
    assert yardstick not in lunar and "matmul" in lunar  # another JSON: its own yardstick
    assert check(repo, capsys)[0] == 0


def test_a_replaced_json_without_a_yardstick_says_so(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = repo / "docs" / "benchmarks" / "cartpole-solve" / "benchmark.json"
    doc = json.loads(path.read_text())
    doc["created"] = "2027-01-01T00:00:00+00:00"  # a new run: the registry's note no longer applies
    doc["machine"].pop("yardstick", None)  # and one that recorded no yardstick
    path.write_text(json.dumps(doc))
    assert refresh_docs.main(["--root", str(repo)]) == 0
    capsys.readouterr()
    demo = block_text(repo / "README.md", "readme-demo").replace("\n", " ")
    assert "2 CPU cores; machine yardstick not recorded" in demo
    assert "otherwise idle" not in demo  # never an old run's words for a new run


def test_three_figures() -> None:
    assert doc_blocks.three_figures(28347.2) == "28,300"
    assert doc_blocks.three_figures(9012.6) == "9,010"
    assert doc_blocks.three_figures(123.456) == "123"
    assert doc_blocks.three_figures(1.2345) == "1.23"


def test_a_key_the_run_predates_is_a_note_not_a_failure(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key added since the run reads its default on both sides: the digests agree, the check says so."""
    recorded = repo / "docs" / "benchmarks" / "cartpole-solve" / "preset.yaml"
    recorded.write_text("\n".join(line for line in recorded.read_text().splitlines() if not line.startswith("gamma:")))
    code, out = check(repo, capsys)
    assert code == 0
    assert "note: source cartpole-benchmark" in out and "gamma (today 0.99)" in out
