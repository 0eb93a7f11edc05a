"""The harness end to end on real engines and real images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vin_ocr
from vin_ocr.data.sample import ManifestError, read_manifest
from vin_ocr.evaluation.evaluate import check_labels, evaluate, run_eval
from vin_ocr.evaluation.metric import VinMetric
from vin_ocr.reading import Reading, TextsFromReadings

from .conftest import eval_cfg

FILES = ("predictions.jsonl", "report.json", "report.md", "per_position.png")
HEADLINE = (
    "exact_match",
    "exact_match_lenient",
    "char_accuracy",
    "cer",
    "norm_edit_dis",
    "positional_accuracy",
    "valid_rate",
    "empty_rate",
    "n",
)


def rescore(run: Path) -> dict:
    """Recompute the metric from predictions.jsonl alone."""
    metric = VinMetric()
    for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["truth"]:
            score = metric.update(row["truth"], row["raw"], latency_s=row["latency_s"])
            assert (score.pred, score.exact, score.valid) == (
                row["pred"],
                row["exact"],
                row["valid"],
            )
    return metric.summary()


def check_run(run: Path, report: dict) -> None:
    for name in FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert (run / "per_position.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert {k: on_disk[k] for k in HEADLINE} == {k: report[k] for k in HEADLINE}
    again = rescore(run)
    for key in (*HEADLINE, "per_position", "ms_per_image", "ms_p95", "images_per_s"):
        assert on_disk[key] == pytest.approx(again[key]), key
    assert on_disk["confusions"] == again["confusions"]
    assert "Exact match" in (run / "report.md").read_text(encoding="utf-8")


def test_rapidocr_run_writes_four_files_and_consistent_numbers(rapidocr_run):
    run, report = rapidocr_run
    check_run(run, report)
    assert report["n"] == 5 and report["n_unlabelled"] == 1
    assert report["engine"]["name"] == "rapidocr" and report["crops"] == "auto"
    assert report["exact_match"] >= 0.8  # clean rendered text
    assert report["versions"]["rapidocr"]
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["crop"] for r in rows] == [True] * 4 + [False, True]  # the scene: box, no flag
    assert rows[4]["pred"] == rows[4]["truth"]  # pick_vin found the VIN among 3 lines
    assert rows[5]["exact"] is None and rows[5]["pred"]  # unlabelled: predicted, not scored
    # latencies are per call kind, not per batch (batch_size=3: [crop crop crop] [crop scene
    # crop]): the crops of one call share its time, the scene has a call of its own (no timing
    # comparison: that is flaky on a loaded machine)
    latency = [r["latency_s"] for r in rows]
    assert all(x > 0 for x in latency)
    assert latency[0] == latency[1] == latency[2] and latency[3] == latency[5]
    kinds = report["by_kind"]
    assert (kinds["crop"]["n"], kinds["scene"]["n"]) == (4, 1)
    assert kinds["scene"]["ms_per_image"] == pytest.approx(1000 * rows[4]["latency_s"])
    crop_exact = sum(r["exact"] for r in rows[:4]) / 4
    assert kinds["crop"]["exact_match"] == pytest.approx(crop_exact)
    assert "## Line crops and scenes" in (run / "report.md").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="apt-get install tesseract-ocr")
def test_tesseract_run(fixture_manifest, tmp_path):
    cfg = eval_cfg(
        "engine=tesseract", "data=manifest", f"data.path={fixture_manifest}", f"out_dir={tmp_path}"
    )
    report = evaluate(cfg)
    check_run(tmp_path, report)
    assert report["engine"]["psm_crop"] == 7 and report["exact_match"] >= 0.8


def test_limit_and_forced_crops(fixture_manifest, tmp_path):
    cfg = eval_cfg(
        "data=manifest",
        f"data.path={fixture_manifest}",
        f"out_dir={tmp_path}",
        "limit=2",
        "crops=true",
        "warmup=false",
    )
    report = evaluate(cfg)
    assert report["n"] == 2 and report["crops"] is True
    check_run(tmp_path, report)


@pytest.mark.slow
def test_cli_exact_command_line(fixture_manifest, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "vin_ocr.evaluation.evaluate",
        "engine=rapidocr",
        "data=manifest",
        f"data.path={fixture_manifest}",
        f"hydra.run.dir={out}",
        "limit=3",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exact_match=" in proc.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["n"] == 3
    check_run(out, report)


def test_bad_manifest_path_names_the_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl: manifest not found"):
        evaluate(eval_cfg("data=manifest", f"data.path={missing}", f"out_dir={tmp_path}"))


def test_bad_manifest_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.png", "vin": "X"}\n{"vin": "no image"}\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: missing key 'image'"):
        evaluate(eval_cfg("data=manifest", f"data.path={bad}", f"out_dir={tmp_path / 'o'}"))


def test_missing_image_names_manifest_and_image(tmp_path):
    man = tmp_path / "m.jsonl"
    man.write_text('{"image": "gone.png", "vin": "1M8GDM9AXKP042788"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"m.jsonl: image .*gone.png cannot be read"):
        evaluate(eval_cfg("data=manifest", f"data.path={man}", f"out_dir={tmp_path / 'o'}"))
    assert not (tmp_path / "o" / "report.json").exists()


def test_data_manifest_requires_a_path(tmp_path):
    with pytest.raises(Exception, match=r"data\.path"):
        evaluate(eval_cfg("data=manifest", f"out_dir={tmp_path}"))


def test_config_typos_fail_at_compose():
    with pytest.raises(Exception, match="batch_sze"):
        eval_cfg("batch_sze=3")
    with pytest.raises(Exception, match=r"engine\.threds"):
        eval_cfg("engine.threds=2")


def test_bad_options(fixture_manifest, tmp_path):
    samples = read_manifest(fixture_manifest)
    with pytest.raises(ValueError, match="crops='maybe'"):
        run_eval(None, samples, tmp_path, crops="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size=0"):
        run_eval(None, samples, tmp_path, batch_size=0)  # type: ignore[arg-type]


def test_default_data_is_the_bundled_samples():
    cfg = eval_cfg()
    assert cfg.data.path is None and cfg.engine._target_.endswith("RapidOCREngine")


bundled = vin_ocr.SAMPLES_DIR / "manifest.jsonl"


@pytest.mark.slow
@pytest.mark.skipif(not bundled.is_file(), reason="bundled samples not generated yet")
def test_bundled_samples(tmp_path):
    report = evaluate(eval_cfg(f"out_dir={tmp_path}", "limit=12"))
    check_run(tmp_path, report)
    assert report["n"] == 12 and report["data"]["path"] == str(bundled)
    # The synthetic set is meant to be hard in places; RapidOCR still reads most of it.
    assert report["exact_match"] > 0 and report["char_accuracy"] >= 0.5


class SearchingEngine(TextsFromReadings):
    """A test double standing for an engine with a check-digit search: it reports, for each
    image, the reading before and after the search as the test sets them."""

    name = "searching"

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs, self.at = pairs, 0

    def read(self, images, crops=None):
        out = [Reading(after, unconstrained=before) for before, after in self.pairs[self.at :]]
        self.at += len(images)
        return out[: len(images)]


def test_repairs_are_counted_fixed_broken_and_still_wrong(fixture_manifest, tmp_path):
    samples = read_manifest(fixture_manifest)[:4]  # four labelled line crops
    t = [s.vin for s in samples]
    wrong = [v[:5] + ("A" if v[5] != "A" else "B") + v[6:] for v in t]
    pairs = [(wrong[0], t[0]), (t[1], wrong[1]), (wrong[2], wrong[2][:3] + "Z" + wrong[2][4:])]
    pairs.append((t[3], t[3]))  # searched, unchanged
    report = run_eval(SearchingEngine(pairs), samples, tmp_path, warmup=False, progress=False)
    assert report["repairs"] == {
        "searched": 4,
        "changed": 3,
        "fixed": 1,
        "broke": 1,
        "still_wrong": 1,
    }
    rows = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["repaired"] for r in rows] == [True, True, True, False]
    assert rows[0]["unconstrained"] == wrong[0] and rows[0]["exact"] is True
    assert "1 fixed" in (tmp_path / "report.md").read_text()


def test_reading_confidences_must_match_the_text():
    with pytest.raises(ValueError, match="2 confidences for 3 characters"):
        Reading("ABC", char_conf=(0.5, 0.5))


# --- truth labels (issue 12): never scored silently as given ---------------------------------


def _manifest(tmp_path: Path, fixture_manifest: Path, vins: list) -> Path:
    """A manifest in ``tmp_path`` whose rows label the fixture's line crops with ``vins`` (an
    image may repeat: ``(index, vin)`` pairs)."""
    root = fixture_manifest.parent
    rows = [{"image": str(root / f"line{i}.png"), "vin": v} for i, v in vins]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


BAD_LABELS = [
    ("1M8GDM9AXKPO42788", "holds 'O'"),
    ("1M8GDM9AXKP04278", "has 16 characters, not 17"),
    ("1M8GDM9AX KP042788", "holds a space"),
    (12345678901234567, "is a int, not a string"),
    ("1HGCM82633A00435Q2", "holds 'Q' \\(never in a VIN\\) and has 18 characters"),
]


@pytest.mark.parametrize(("label", "why"), BAD_LABELS)
def test_invalid_label_is_an_error_naming_file_and_line(fixture_manifest, tmp_path, label, why):
    from .conftest import VINS

    man = _manifest(tmp_path, fixture_manifest, [(0, VINS[0]), (1, label)])
    out = tmp_path / "o"
    with pytest.raises(ManifestError, match=rf"(?s)1 truth label.*labels\.jsonl:2: vin .*{why}"):
        evaluate(eval_cfg("data=manifest", f"data.path={man}", f"out_dir={out}"))
    assert not out.exists()  # checked before any engine is built or file written


def test_labels_skip_mode_duplicates_unlabelled_are_counted(fixture_manifest, tmp_path):
    from .conftest import VINS

    rows = [(0, VINS[0]), (1, " " + VINS[1].lower()), (0, VINS[0]), (2, "")]
    rows += [(i, label) for i, (label, _) in zip((3, 3, 3, 3, 3), BAD_LABELS, strict=True)]
    man = _manifest(tmp_path, fixture_manifest, rows)
    samples = read_manifest(man)
    with pytest.raises(ManifestError, match="5 truth label"):
        check_labels(samples, man)
    kept, counts = check_labels(samples, man, "skip")
    assert [s.vin for s in kept] == [VINS[0], VINS[1], ""]  # case and spaces around forgiven
    assert counts == {
        "rows": 9,
        "invalid_skipped": 5,
        "duplicates": 1,
        "unlabelled": 1,
        "not_valid_vins": 0,
    }
    # A repeated image with another label: which one is true cannot be guessed.
    man = _manifest(tmp_path, fixture_manifest, [(0, VINS[0]), (0, VINS[1])])
    with pytest.raises(ManifestError, match=r"labels\.jsonl:2: image line0\.png again"):
        check_labels(read_manifest(man), man)


def test_label_notes_reach_the_console_and_the_report(fixture_manifest, tmp_path, capsys):
    from .conftest import VINS

    wrong_digit = VINS[0][:8] + "3" + VINS[0][9:]  # well-formed, fails the mandatory check digit
    rows = [(0, VINS[0]), (0, VINS[0]), (1, ""), (2, "JH4KA7561PC0O8269"), (3, wrong_digit)]
    man = _manifest(tmp_path, fixture_manifest, rows)
    report = evaluate(
        eval_cfg(
            "data=manifest", f"data.path={man}", f"out_dir={tmp_path / 'o'}", "invalid_labels=skip"
        )
    )
    err = capsys.readouterr().err
    assert "note: labels.jsonl: skipped 1 row(s) whose label is not a VIN" in err
    assert "note: labels.jsonl: 1 duplicate row(s) (same image, same VIN) counted once" in err
    assert "note: labels.jsonl: 1 row(s) without a VIN: read, not scored" in err
    assert "1 label(s) break a VIN rule" in err
    assert report["n"] == 2 and report["n_unlabelled"] == 1
    assert report["labels"]["duplicates"] == 1 and report["labels"]["invalid_skipped"] == 1
    on_disk = json.loads((tmp_path / "o" / "report.json").read_text(encoding="utf-8"))
    assert set(on_disk["definitions"]) >= {"exact_match", "cer", "char_accuracy", "norm_edit_dis"}
    assert "## Definitions" in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")


class RawEngine(TextsFromReadings):
    """An engine that returns a set string for every image, to see what the report scores."""

    name = "raw"

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, images, crops=None):
        return [Reading(self.text) for _ in images]


def test_report_scores_the_answer_strictly_and_leniently_beside(fixture_manifest, tmp_path):
    samples = read_manifest(fixture_manifest)[:1]
    answer = f"VIN: {samples[0].vin}"
    report = run_eval(RawEngine(answer), samples, tmp_path, warmup=False, progress=False)
    assert report["exact_match"] == 0.0 and report["exact_match_lenient"] == 1.0
    assert report["cer"] == pytest.approx(5 / 17)
    row = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert row["pred"] == answer and row["lenient"] == samples[0].vin and row["exact"] is False


def test_line_crop_answers_are_vins_not_raw_text(tmp_path):
    """RapidOCR's line crops go through vin.normalize in the engine, so the strict measure
    scores the VIN a user receives, not the '*' delimiters of a stamped VIN."""
    from PIL import Image, ImageDraw

    from vin_ocr.evaluation.engines import build_engine

    from .conftest import VINS, _font, draw_line

    labelled = Image.new("RGB", (700, 64), "white")  # draw_line's 500 px would cut the end
    ImageDraw.Draw(labelled).text((12, 8), f"VIN {VINS[0]}", fill="black", font=_font(40))
    engine = build_engine("rapidocr", threads=1)
    texts = engine.predict([draw_line(f"*{VINS[1]}*"), labelled], [True, True])
    assert texts == [VINS[1], VINS[0]]
