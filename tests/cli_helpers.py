"""In-process CLI runs and the one-line error contract, shared by the command tests."""

from __future__ import annotations

from click.testing import CliRunner

from mammo_tf_cli.main import cli


def invoke(*args):
    """Run `mammo-tf ARGS...` in this process (TensorFlow is already imported by the test session)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result, *needles: str) -> None:
    """Exit 2, exactly one stderr line, naming what is wrong, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
