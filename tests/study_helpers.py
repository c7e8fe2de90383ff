"""Checks shared by the study tests (test_study.py, test_study_insertion.py)."""

from __future__ import annotations

from pathlib import Path

from mammo_tf.workflows.study import study_status


def assert_status_counts_what_was_trained(data, out: Path, **options) -> None:
    """A finished study's status: every planned unit finished, none held, and its planned units are exactly
    the run folders and film scores the study left in its work folder (so the plan cannot drift from what
    Units.run_fold trains)."""
    rows, seconds = study_status(data, out=out, **options)
    assert rows and seconds > 0
    for row in rows:
        assert row["training now"] == "-"
        for kind in ("models", "classifiers", "films"):
            if kind in row:
                done, planned = row[kind].split("/")
                assert done == planned and int(planned) > 0, (row["fold"], kind, row[kind])
    work = out / "work"
    runs = {p.parent.relative_to(work).as_posix() for p in work.rglob("metrics.json")}
    runs -= {r for r in runs if r.endswith("/gan-quality")}  # the GAN's quality report, part of the GAN unit
    planned = sum(int(row[kind].split("/")[1]) for row in rows for kind in ("models", "classifiers") if kind in row)
    assert len(runs) == planned
    films = sum(int(row["films"].split("/")[1]) for row in rows if "films" in row)
    assert len(list(work.glob("fold*/film-seed*.json"))) == films
