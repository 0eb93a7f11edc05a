"""The benchmark machinery (vin_ocr/bench.py) and a quick run of each scripts/bench_*.py.

The scripts' figures are never asserted (they depend on the machine); what is checked is that each
script measures something real, reports it and records it in the file it is pointed at.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

import vin_ocr
from vin_ocr import bench


def script(name: str) -> ModuleType:
    path = vin_ocr.REPO_ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# -- vin_ocr.bench -------------------------------------------------------------------------------


@dataclass
class Opts:
    n: int = 10
    names: list[str] = field(default_factory=lambda: ["a"])
    record: bool = True


def test_parse_options_reads_values_and_lists():
    o = bench.parse_options(Opts, ["n=3", "names=[x,y]", "record=false"], "demo")
    assert (o.n, o.names, o.record) == (3, ["x", "y"], False)
    assert bench.parse_options(Opts, [], "demo") == Opts()


@pytest.mark.parametrize(
    ("args", "words"),
    [(["nn=3"], ["demo", "nn"]), (["n=three"], ["demo", "three"]), (["n"], ["demo", "key=value"])],
)
def test_parse_options_fails_naming_the_problem(args, words):
    with pytest.raises(SystemExit) as err:
        bench.parse_options(Opts, args, "demo")
    assert all(w in str(err.value) for w in words), err.value


def test_record_creates_the_file_and_the_section(tmp_path):
    path = tmp_path / "docs" / "b.md"
    path.parent.mkdir()
    bench.record("- one", "## A", path, intro="What A measures.")
    assert path.read_text() == "# Benchmarks\n\n## A\n\nWhat A measures.\n\n- one\n"


def test_record_appends_at_the_end_of_its_section_and_keeps_the_others(tmp_path):
    path = tmp_path / "b.md"
    path.write_text("# B\n\n## A\n\n- a1\n\n## Other\n\n- o1 (someone else's)\n")
    bench.record("- a2", "## A", path)
    bench.record("- a3 table:\n\n  | x |\n  |---|\n  | 1 |", "## A", path)
    bench.record("- n1", "## New", path)
    assert path.read_text() == (
        "# B\n\n## A\n\n- a1\n- a2\n\n- a3 table:\n\n  | x |\n  |---|\n  | 1 |\n\n"
        "## Other\n\n- o1 (someone else's)\n\n## New\n\n- n1\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.md"]  # no temporary file left


def test_score_is_the_harness_strict_exact_match_with_the_lenient_one_beside():
    vin = "1M8GDM9AXKP042788"
    answers = [vin, f" {vin.lower()}\n", f"X{vin}", f"VIN: {vin}", vin[:16]]
    s = bench.score([vin] * 5, answers)
    assert s["exact_match"] == pytest.approx(2 / 5)  # case and surrounding whitespace only
    assert s["exact_match_lenient"] == pytest.approx(4 / 5)  # a VIN found in the answer
    assert s["cer"] == pytest.approx((1 + 5 + 1) / 85)  # edits over truth characters
    with pytest.raises(ValueError, match="no answers"):
        bench.score([], [])


def test_bench_repairs_scores_strictly_with_the_lenient_figure_beside():
    mod = script("bench_repairs")
    vin = "1M8GDM9AXKP042788"
    rows = [  # a repair that fixed a reading, and one kept with a stray first character
        {"truth": vin, "text": vin, "unconstrained": "1M8GDM9A0KP042788", "repaired": True},
        {"truth": vin, "text": "A" + vin, "unconstrained": "A" + vin, "repaired": False},
    ]
    for r in rows:
        r["exact"] = r["text"] == r["truth"]
    s = mod.summarise(rows)
    assert (s["exact_before"], s["exact_after"]) == (0.0, 0.5)  # "A1M8..." is not the VIN
    assert (s["exact_lenient_before"], s["exact_lenient_after"]) == (0.5, 1.0)
    assert (s["cer_before"], s["cer_after"]) == (round(2 / 34, 4), round(1 / 34, 4))
    assert (s["fixed"], s["broke"], s["region_missed"]) == (1, 0, 1)


def test_table_aligns_figures_right():
    text = bench.table(["engine", "ms"], [["rapidocr", "12.5"]], indent="  ")
    assert text.splitlines() == ["  | engine | ms |", "  |---|---:|", "  | rapidocr | 12.5 |"]


def test_time_calls_times_only_the_calls_after_the_warm_up():
    calls = []
    timing = bench.time_calls(lambda: calls.append(1), n=3, warmup=2)
    assert len(calls) == 5 and timing.n == 3
    assert timing.total == pytest.approx(sum(timing.seconds)) and timing.total >= 0
    assert timing.per_second(10) == pytest.approx(30 / timing.total)
    with pytest.raises(ValueError, match="at least one"):
        bench.time_calls(lambda: None, n=0)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak-RSS reset")
def test_peak_memory_sees_an_allocation_and_resets():
    bench.reset_peak_memory()
    before = bench.peak_memory_gib()
    block = b"\x01" * (300 * 2**20)  # written, so resident
    grown = bench.peak_memory_gib()
    assert grown - before > 0.25
    del block
    bench.reset_peak_memory()
    assert bench.peak_memory_gib() < grown - 0.25


def test_header_names_date_machine_and_versions():
    text = bench.header(("torch", "no-such-package"))
    assert "cores" in text and "GiB RAM" in text and "Python " in text and "torch " in text
    assert "no-such-package" not in text
    assert text[:4].isdigit()  # the date comes first


# -- the scripts, quick ------------------------------------------------------------------------


def test_bench_train_quick_measures_the_loop_and_the_trainer(tmp_path):
    mod = script("bench_train")
    md = tmp_path / "b.md"
    args = ["quick=true", "models=[pp_ocr]", "isolate=false", f"out={md}"]
    (r,) = mod.main(args)
    assert r["case"] == "pp_ocr:tiny:sdpa" and r["method"] == "full"
    assert r["trainable"] == r["params"] > 0
    for runner in ("loop", "trainer"):
        assert r[runner]["samples_per_s"] > 0
        assert r[runner]["peak_gib"] > 0.1  # the whole process: torch alone is more
    text = md.read_text()
    assert mod.SECTION in text and "| pp_ocr | tiny |" in text and "quick" in text


def test_bench_train_vlm_baseline_is_the_models_own_loss_on_the_same_batches(tmp_path):
    mod = script("bench_train")
    args = ["quick=true", "models=[lfm2_vl_450m]", "isolate=false", "cpu_bf16=false"]
    (r,) = mod.main([*args, f"out={tmp_path / 'b.md'}"])
    assert r["case"] == "lfm2_vl_450m:tiny:sdpa" and r["method"] == "lora"
    assert 0 <= r["loss_check"] < 1e-4  # answer-only head + trimmed patches vs model(...).loss
    loop, trainer = r["loop"], r["trainer"]
    assert len(loop["losses"]) == len(trainer["losses"]) == 3
    # the same batches in the same order: step 1 (LoRA B = 0, dropout has no effect) agrees
    assert loop["losses"][0] == pytest.approx(trainer["losses"][0], abs=1e-3)
    assert loop["image_tokens"] == trainer["image_tokens"] > 0


def test_bench_train_skips_a_real_size_vlm_on_cpu_with_the_reason():
    mod = script("bench_train")
    o = mod.options(["batch=2"])
    r = mod.skipped(o, "lfm2_vl_450m:real:sdpa")
    assert r is not None and "max_real_params" in r["skipped"] and "451 M" in r["skipped"]
    assert mod.skipped(o, "pp_ocr:tiny:sdpa") is None


def test_bench_infer_quick_times_onnx_and_constrained_generation(tmp_path):
    mod = script("bench_infer")
    md = tmp_path / "b.md"
    argv = ["quick=true", "engines=[pp_ocr_onnx]", "scenes=0", "photos=0", "vlm=[constrained]"]
    rows = mod.main([*argv, f"out={md}"])
    assert [(r.engine, r.batch) for r in rows] == [
        ("pp_ocr_onnx", 1),
        ("pp_ocr_onnx", 4),
        ("tiny lfm2_vl, constrained", 1),
        ("tiny lfm2_vl, constrained", 2),
    ]
    assert all(r.ms_per_image > 0 and 0 <= r.exact <= r.exact_lenient <= 1 for r in rows)
    assert not any(r.note for r in rows)
    text = md.read_text()
    assert mod.SECTION in text and "| exact | lenient |" in text
    with pytest.raises(SystemExit, match="paddle"):
        mod.options(["engines=[paddle]"])


def test_bench_synth_quick_records_one_line(tmp_path):
    md = tmp_path / "b.md"
    line = script("bench_synth").main(["quick=true", f"out={md}"])
    assert line.startswith("- ") and "img/s" in line and "`generate` 20 line crops" in line
    assert md.read_text().endswith(line + "\n")


def test_bench_preflight_quick_measures_the_tiny_case():
    (r,) = script("bench_preflight").main(["quick=true", "isolate=false"])
    assert r["case"] == "tiny_lfm2vl_full_b4" and r["trainable"] == r["params"]
    assert r["measured_peak_rss_gib"] > 0.1 and r["estimate_gib"] > 0


@pytest.mark.slow
def test_bench_pp_ocr_quick_runs_every_task(tmp_path):
    out = tmp_path / "r.json"
    results = script("bench_pp_ocr").main(["quick=true", "threads=1", f"out={out}"])
    assert [r["task"] for r in results] == ["throughput", "zeroshot", "heads", "heads"]
    assert results[0]["batch2"]["samples_per_s"] > 0
    assert out.is_file()


@pytest.mark.slow
def test_bench_default_quick_runs_the_command_and_checks_the_targets(tmp_path):
    md = tmp_path / "b.md"
    f = script("bench_default").main(["quick=true", f"out={md}"])
    assert f["steps"] == 2 and f["wall_s"] > 0
    assert 0 <= f["val"] <= 1 and 0 <= f["samples"] <= 1
    text = md.read_text()
    assert "debug=smoke" in text and "target ≤ 10 min: **pass**" in text
