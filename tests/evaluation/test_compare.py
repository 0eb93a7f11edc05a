"""Comparing run folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from vin_ocr.data.sample import read_manifest
from vin_ocr.evaluation.compare import RunFolderError, compare, compare_runs, load_report
from vin_ocr.evaluation.evaluate import run_eval
from vin_ocr.reading import Reading, TextsFromReadings


class FixedEngine(TextsFromReadings):
    """A test double that always answers the same string (here: reads nothing)."""

    name = "blank"

    def read(self, images: Sequence[object], crops: Sequence[bool] | None = None) -> list[Reading]:
        return [Reading("")] * len(images)


@pytest.fixture(scope="module")
def two_runs(rapidocr_run, fixture_manifest, tmp_path_factory) -> list[Path]:
    blank = tmp_path_factory.mktemp("run_blank")
    run_eval(
        FixedEngine(),
        read_manifest(fixture_manifest),
        blank,
        manifest=fixture_manifest,
        progress=False,
    )
    return [rapidocr_run[0], blank]


def test_compare_marks_the_best_run(two_runs):
    a, b = (load_report(r) for r in two_runs)
    table = compare([a, b])
    lines = table.splitlines()
    assert lines[0] == "| Metric | rapidocr | blank |"
    row = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert b["exact_match"] == 0.0 and b["empty_rate"] == 1.0 and b["cer"] == 1.0
    assert row["Exact match"].endswith(f"| **{100 * a['exact_match']:.2f} %** | 0.00 % |")
    assert row["CER"].endswith("| 100.00 % |") and "**" in row["CER"].split("|")[2]
    assert row["Empty rate"].endswith("| **0.00 %** | 100.00 % |")
    assert row["Samples"] == "| Samples | 5 | 5 |"  # no best for the sample count


def test_compare_runs_writes_table_and_chart(two_runs, tmp_path):
    out = tmp_path / "cmp" / "compare.md"
    table = compare_runs([str(r) for r in two_runs], out)
    text = out.read_text(encoding="utf-8")
    assert table in text and str(two_runs[1]) in text
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_same_engine_twice_is_told_apart_by_folder(two_runs, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(two_runs[1], copy)
    table = compare_runs([two_runs[1], copy])
    assert table.splitlines()[0] == f"| Metric | blank ({two_runs[1].name}) | blank (again) |"
    table = compare_runs([two_runs[1], two_runs[1]])
    assert table.splitlines()[0].count(f"blank ({two_runs[1].name})") == 2
    table = compare_runs([two_runs[1], two_runs[0]])
    assert table.splitlines()[0] == "| Metric | blank | rapidocr |"


def test_bad_run_folders_name_the_path(tmp_path):
    with pytest.raises(RunFolderError, match="missing-dir: no such run folder"):
        load_report(tmp_path / "missing-dir")
    with pytest.raises(RunFolderError, match="not an evaluation run folder"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"report.json: not valid JSON"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"n": 3}), encoding="utf-8")
    with pytest.raises(RunFolderError, match="missing exact_match, cer"):
        load_report(tmp_path)


def test_cli(two_runs, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "vin_ocr.evaluation.compare",
        f"runs=[{two_runs[0]},{two_runs[1]}]",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("| Metric | rapidocr | blank |")
    assert list(tmp_path.iterdir()) == []  # no outputs/ or logs without `out`
    bad = subprocess.run(
        [*cmd[:3], f"runs=[{tmp_path}]"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and f"{tmp_path}: not an evaluation run folder" in bad.stderr
