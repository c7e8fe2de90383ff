"""The CLI contract: fast help, version, one-line errors with exit 2, data info against ground truth."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mammo_tf import __version__
from mammo_tf_cli.main import cli


def run(*args: str) -> subprocess.CompletedProcess:
    """The installed console script's code path, in a fresh interpreter."""
    code = "from mammo_tf_cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_help_lists_sections_and_does_not_import_tensorflow() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from mammo_tf_cli.main import cli;"
        "r = CliRunner().invoke(cli, ['--help']); print(r.output);"
        "print('TF-LOADED' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'TF-LAZY')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Data:" in out and "TF-LAZY" in out
    for section in ("Training:", "Sampling:", "Evaluation:", "Export:"):
        assert section in out


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "info", "--bogus"], "No such option '--bogus'"),
        (["data", "info", "--format", "xml"], "Invalid value for '--format'"),
        (["data", "nosuch"], "No such command 'nosuch'"),
        (["data", "phantom", "--n", "0", "--out", "x"], "Invalid value for '--n'"),
        (["data", "fetch", "ddsm"], "'ddsm' is not 'mias'"),
    ],
)
def test_bad_flags_are_one_line_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr


def test_bad_dataset_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target, message in [(tmp_path / "empty", "folder is empty"), (tmp_path / "nope", "no such file")]:
        result = run("data", "info", "--data", str(target))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mammo-tf: error: {target}: {message}"), result.stderr


@pytest.mark.mias
def test_info_csv_matches_ground_truth(mias_source: Path) -> None:
    """`data info --format csv` on the shared distribution folder, line by line against Info.txt."""
    result = run("data", "info", "--data", str(mias_source), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["image_id", "patient_id", "tissue", "abnormality", "severity", "x", "y", "row", "col",
                             "radius"]
    truth = [
        line.split()
        for line in (mias_source / "Info.txt").read_text("ascii").splitlines()
        if re.match(r"^mdb\d{3} ", line)
    ]
    assert len(rows) == len(truth) == 330
    for row, fields in zip(rows, truth, strict=True):
        number = int(fields[0][3:])
        assert row["image_id"] == fields[0]
        assert row["patient_id"] == f"mias-p{(number + 1) // 2:03d}"
        assert row["tissue"] == fields[1] and row["abnormality"] == fields[2]
        assert row["severity"] == (fields[3] if len(fields) > 3 else "")
        if len(fields) == 7:
            x, y, radius = (int(v) for v in fields[4:7])
            assert (row["x"], row["y"], row["radius"]) == (str(x), str(y), str(radius))
            assert (row["row"], row["col"]) == (str(1023 - y), str(x))
        else:
            assert row["x"] == row["y"] == row["row"] == row["col"] == row["radius"] == ""


@pytest.mark.mias
def test_info_table_and_json(mias_source: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "info", "--data", str(mias_source)])
    assert result.exit_code == 0, result.output
    assert "322 of 161 patients" in result.output
    assert re.search(r"CALC\s+B\s+15\s+12", result.output) and re.search(r"CALC\s+M\s+15\s+13", result.output)
    result = CliRunner().invoke(cli, ["data", "info", "--data", str(mias_source), "--format", "json"])
    assert '"annotation_lines": 330' in result.output
