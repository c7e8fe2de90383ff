"""The CLI contract: fast help, version, one-line errors with exit 2, data info against ground truth."""

from __future__ import annotations

import csv
import io
import json
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
    assert list(rows[0]) == [
        "image_id",
        "patient_id",
        "tissue",
        "abnormality",
        "severity",
        "x",
        "y",
        "row",
        "col",
        "radius",
    ]
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
    assert re.search(r"CALC\s+B\s+15\s+12\s+15\n", result.output)
    assert re.search(r"CALC\s+M\s+15\s+13\s+12\n", result.output)  # three malignant lines are *NOTE 3*
    result = CliRunner().invoke(cli, ["data", "info", "--data", str(mias_source), "--format", "json"])
    assert '"annotation_lines": 330' in result.output


def test_phantom_then_info_and_byte_identical(tmp_path: Path) -> None:
    """The issue's check: `data phantom --n 4 --seed 0` then `data info`; same seed, same bytes."""
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(
            cli, ["data", "phantom", "--n", "4", "--size", "256", "--seed", "0", "--out", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "Info.txt" in files and "mdb004.pgm" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    result = runner.invoke(cli, ["data", "info", "--data", str(tmp_path / "a"), "--format", "json"])
    assert result.exit_code == 0 and '"images": 4' in result.output and '"patients": 2' in result.output
    again = runner.invoke(cli, ["data", "phantom", "--n", "4", "--size", "256", "--out", str(tmp_path / "a")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_default_dataset_is_the_cached_phantom() -> None:
    result = CliRunner().invoke(cli, ["data", "info", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"images": 16' in result.output and "phantom-v1" in result.output


def test_preview_draws_films_and_patch_strips(tmp_path: Path) -> None:
    import cv2

    runner = CliRunner()
    runner.invoke(cli, ["data", "phantom", "--n", "6", "--size", "256", "--out", str(tmp_path / "ph")])
    result = runner.invoke(
        cli, ["data", "preview", "--data", str(tmp_path / "ph"), "--films", "2", "--out", str(tmp_path / "p.png")]
    )
    assert result.exit_code == 0, result.output
    image = cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape[1] == 2 * 256 + 4 and image.shape[0] > 256 + 3 * 40
    assert image[:256].std() > 10  # films were drawn, not a blank canvas
    bad = runner.invoke(cli, ["data", "preview", "--data", str(tmp_path / "ph"), "--out", str(tmp_path / "p.jpg")])
    assert bad.exit_code == 2 and "must be a .png" in bad.output and not (tmp_path / "p.jpg").exists()


@pytest.mark.mias
def test_info_check_flags_the_two_centres_outside_the_breast(mias_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "info", "--data", str(mias_dir), "--check", "--format", "json"])
    assert result.exit_code == 0, result.output
    outside = json.loads(result.output)["outside_breast"]
    assert [f["image_id"] for f in outside] == ["mdb212", "mdb214"]


def test_info_check_on_phantom_finds_every_centre_inside(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["data", "phantom", "--n", "4", "--size", "256", "--out", str(tmp_path / "ph")])
    result = runner.invoke(cli, ["data", "info", "--data", str(tmp_path / "ph"), "--check"])
    assert result.exit_code == 0, result.output
    assert "(phantom)" in result.output and "centre outside the breast: 0" in result.output


@pytest.mark.mias
def test_preview_on_real_mias(mias_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "preview", "--data", str(mias_dir), "--out", str(tmp_path / "m.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.png").stat().st_size > 10_000


def test_import_of_a_phantom_needs_no_verify(tmp_path: Path) -> None:
    """The import route takes any MIAS-layout copy with --no-verify; the official checksums refuse it."""
    runner = CliRunner()
    runner.invoke(cli, ["data", "phantom", "--n", "2", "--size", "128", "--out", str(tmp_path / "ph")])
    refused = runner.invoke(cli, ["data", "import", str(tmp_path / "ph"), "--dest", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "incomplete mini-MIAS" in refused.output
    assert not (tmp_path / "a").exists()
    result = runner.invoke(cli, ["data", "import", str(tmp_path / "ph"), "--dest", str(tmp_path / "b"), "--no-verify"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["Info.txt", "mdb001.pgm", "mdb002.pgm"]
