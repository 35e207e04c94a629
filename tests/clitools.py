"""Running the CLI in-process and checking the one-line error contract."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from rlkit.cli import app

runner = CliRunner()


def invoke(*args: object) -> Result:
    """Run ``rlkit ARGS`` in-process; the result has ``exit_code``, ``stdout`` and ``stderr``."""
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """A non-zero exit, one ``error:`` line on stderr mentioning every fragment, no traceback."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    text = " ".join(line.strip() for line in lines)
    assert text.startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return text
