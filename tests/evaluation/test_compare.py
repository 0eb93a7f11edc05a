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
from vin_ocr.evaluation.compare import (
    RunFolderError,
    build_comparison,
    compare,
    compare_runs,
    current,
    load_report,
    reports_from_summary,
    winners,
    wins_markdown,
)
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


# --------------------------------------------------------------------------- run folders, W&B
@pytest.fixture
def train_run(two_runs, tmp_path) -> Path:
    """A training run folder's layout (eval/<set>/report.json) with two test sets (the blank
    engine's report on the fixture manifest, under two set names)."""
    run = tmp_path / "train_run"
    shutil.copytree(two_runs[1], run / "eval" / "manifest")
    shutil.copytree(two_runs[1], run / "eval" / "extra")
    (run / "run.json").write_text("{}", encoding="utf-8")
    return run


def test_run_folder_against_an_eval_folder(two_runs, train_run, tmp_path):
    rapid = load_report(two_runs[0])
    cmp = build_comparison([two_runs[0], train_run], tmp_path / "out" / "c.md")
    assert [(r.label, sorted(r.sets)) for r in cmp.runs] == [
        ("rapidocr", ["manifest"]),
        ("blank", ["extra", "manifest"]),
    ]
    lines = cmp.table.splitlines()
    assert lines[0] == "| Set | Metric | rapidocr | blank |"
    rows = {tuple(c.strip() for c in ln.split("|")[1:3]): ln for ln in lines[2:] if ln.strip()}
    em = f"{100 * rapid['exact_match']:.2f} %"
    assert rows[("manifest", "Exact match")].endswith(f"| **{em}** | 0.00 % |")
    assert rows[("extra", "Exact match")].endswith("| – | 0.00 % |")  # rapidocr has no "extra"
    assert lines[1] == "|---|---|---|---|"

    wins = cmp.wins["manifest"]
    assert wins["metrics"]["exact_match"] == ["rapidocr"] and wins["metrics"]["cer"] == ["rapidocr"]
    assert "n" not in wins["metrics"] and cmp.wins["extra"]["metrics"] == {}  # one run: no winner
    expected = [["rapidocr"] if a else [] for a in rapid["per_position"]]  # 0 vs 0: a tie
    assert wins["per_position"] == expected
    assert "| Exact match | rapidocr | " + em + " | blank: 0.00 % |" in cmp.wins_md

    out = tmp_path / "out"
    data = json.loads((out / "c.json").read_text(encoding="utf-8"))
    assert data["winners"] == json.loads(json.dumps(cmp.wins))
    assert data["runs"][0]["sets"]["manifest"]["per_position"] == rapid["per_position"]
    assert data["runs"][1]["source"] == str(train_run)
    for s in ("manifest", "extra"):  # one chart per test set
        assert (out / f"c_{s}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"(c_{s}.png)" in (out / "c.md").read_text(encoding="utf-8")


def test_winners_and_spans():
    a = {"exact_match": 0.5, "cer": 0.1, "n": 4, "per_position": [1.0, 0.5, 0.5, 0.2]}
    b = {"exact_match": 0.5, "cer": 0.2, "n": 4, "per_position": [0.5, 0.5, 0.9, 0.9]}
    runs = {"a": {"s": a}, "b": {"s": b}}
    wins = winners(runs)["s"]
    assert wins["metrics"] == {"cer": ["a"]}  # equal exact match: no winner
    assert wins["per_position"] == [["a"], [], ["b"], ["b"]]  # equal at 2: no winner
    three = winners({**runs, "c": {"s": {**b, "per_position": [0.1, 0.1, 0.9, 0.1]}}})["s"]
    assert three["per_position"] == [["a"], ["a", "b"], ["b", "c"], ["b"]]  # ties at the top
    text = wins_markdown(runs, {"s": wins})
    assert "Accuracy per position: a leads at 1; b leads at 3-4; tied at 2." in text
    assert "Metric wins (of 1, ties count for each): a 1, b 0." in text


def test_wandb_sources_fail_clearly_offline(monkeypatch):
    with pytest.raises(ValueError, match="expected wandb:ENTITY/PROJECT or"):
        compare_runs(["wandb:only-a-project"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ValueError, match="W&B runs are read online, but WANDB_MODE=offline"):
        compare_runs(["wandb:me/vin-ocr"])
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(ValueError, match="needs an API key: set WANDB_API_KEY or run `wandb lo"):
        compare_runs(["wandb:me/vin-ocr/abc123"])


def test_cli_prints_who_wins_where(two_runs, train_run, tmp_path):
    cmd = [sys.executable, "-m", "vin_ocr.evaluation.compare", f"runs=[{two_runs[0]},{train_run}]"]
    out = tmp_path / "c.md"
    proc = subprocess.run(
        [*cmd, f"out={out}"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("| Set | Metric | rapidocr | blank |")
    assert "## Who wins where" in proc.stdout and "### manifest" in proc.stdout
    assert out.is_file() and out.with_suffix(".json").is_file()


# --------------------------------------------------------------------------- old reports
OLD_REPORT = {  # the keys a report.json had before it carried `definitions`
    "engine": {"name": "old"},
    "n": 5,
    "exact_match": 0.6,
    "char_accuracy": 0.98,  # the old, index-by-index figure: not 1 - CER
    "cer": 0.05,
    "valid_rate": 0.6,
    "empty_rate": 0.2,
    "per_position": [1.0] * 17,
}


def test_old_reports_never_share_a_row_with_new_ones(two_runs, tmp_path):
    old_dir = tmp_path / "old_run"
    old_dir.mkdir()
    data = load_report(two_runs[0])["data"]
    (old_dir / "report.json").write_text(json.dumps({**OLD_REPORT, "data": data}), "utf-8")
    new = load_report(two_runs[0])
    cmp = build_comparison([two_runs[0], old_dir], tmp_path / "c.md")
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in cmp.table.splitlines()[2:] if ln}
    fmt = "{:.2f} %".format
    # today's rows: the old report has no figure there, except the lenient exact match (the
    # old exact match was scored on vin.normalize(answer): the same definition)
    assert rows["Character accuracy (1 − CER)"].endswith(
        f"| {fmt(100 * new['char_accuracy'])} | – |"
    )
    assert rows["CER"].endswith(f"| {fmt(100 * new['cer'])} | – |")
    assert rows["Exact match"].endswith(f"| {fmt(100 * new['exact_match'])} | – |")
    assert rows["Exact match, lenient (VIN found in the output)"].endswith(" 60.00 % |")
    # the old figures under labels that say what they are
    old_acc = "Character accuracy, old definition (index by index, extra characters free)"
    assert rows[old_acc].endswith("| – | 98.00 % |")
    assert rows["CER after vin.normalize (old reports)"].endswith("| – | 5.00 % |")
    assert rows["Empty rate after vin.normalize (old reports)"].endswith("| – | 20.00 % |")
    assert "Note: old: report(s) written before report.json carried `definitions`" in cmp.table
    wins = cmp.wins[next(iter(cmp.wins))]
    assert "char_accuracy" not in wins["metrics"] and "cer" not in wins["metrics"]
    assert all(best in ([], ["rapidocr"]) for best in wins["per_position"])
    saved = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["runs"][1]
    assert next(iter(saved["sets"].values()))["char_accuracy_old"] == 0.98
    # two new reports: no old rows, no note
    table = compare_runs([two_runs[0], two_runs[1]])
    assert "old" not in table and "vin.normalize" not in table


def test_old_and_new_wandb_summaries():
    old = reports_from_summary({f"eval/s/{k}": v for k, v in OLD_REPORT.items() if k != "engine"})
    assert old["s"]["char_accuracy_old"] == 0.98 and "char_accuracy" not in old["s"]
    assert old["s"]["exact_match_lenient"] == 0.6 and old["s"]["old_definitions"] is True
    new = {"eval/s/exact_match": 0.5, "eval/s/exact_match_lenient": 0.6, "eval/s/cer": 0.1}
    assert reports_from_summary(new) == {
        "s": {"exact_match": 0.5, "exact_match_lenient": 0.6, "cer": 0.1}
    }
    assert current({**OLD_REPORT, "definitions": {}})["char_accuracy"] == 0.98
