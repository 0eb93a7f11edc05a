"""The embedded default as a benchmark: run ``python -m vin_ocr.training.hf_finetune`` (no
arguments) in a fresh run folder, then check its three targets and record them.

    python scripts/bench_default.py              # ~9 minutes on 2 idle cores: make bench-default
    python scripts/bench_default.py quick=true record=false    # tiny two-step wiring check

Targets (issue 4): the whole command in at most ``max_minutes`` (10); exact match on the synthetic
validation split at least ``min_val_exact`` (95 %); on the bundled samples (``data/samples``),
better than the pretrained baseline. Two baselines are reported, each with pass/fail: the same
pretrained model before fine-tuning (``test/samples_baseline`` of ``run.json``) and, with
``rapidocr=true``, the pretrained RapidOCR pipeline (detection + recognition) through the
evaluation harness. Options are ``key=value`` (:class:`DefaultBench`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vin_ocr import bench

SECTION = "## The embedded default (`python -m vin_ocr.training.hf_finetune`, no arguments)"
QUICK = ["debug=smoke", "model.tiny=true", "hardware.device=cpu"]


@dataclass
class DefaultBench:
    overrides: list[str] = field(default_factory=list)  # extra hf_finetune overrides
    rapidocr: bool = True  # also evaluate the pretrained RapidOCR pipeline on the samples
    max_minutes: float = 10.0
    min_val_exact: float = 0.95
    keep: bool = False  # keep the run folder (its path is printed)
    quick: bool = False  # debug=smoke on the tiny model, no RapidOCR (tests)
    record: bool = True
    out: str = ""  # the Markdown file to append to; "" = docs/benchmarks.md


def run_default(run_dir: Path, overrides: list[str]) -> float:
    """Run the training command into ``run_dir``; its wall time in seconds."""
    cmd = [sys.executable, "-m", "vin_ocr.training.hf_finetune", f"run_dir={run_dir}", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"bench_default: {' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return seconds


def rapidocr_exact(out_dir: Path) -> float:
    """Exact match of the pretrained RapidOCR pipeline on the bundled samples."""
    import vin_ocr
    from vin_ocr.data.sample import read_manifest
    from vin_ocr.evaluation.engines import build_engine
    from vin_ocr.evaluation.evaluate import run_eval

    manifest = vin_ocr.SAMPLES_DIR / "manifest.jsonl"
    report = run_eval(
        build_engine("rapidocr"), read_manifest(manifest), out_dir, manifest=manifest,
        progress=False,
    )  # fmt: skip
    return float(report["exact_match"])


def figures(run_dir: Path) -> dict[str, Any]:
    """The figures the targets need, from the run's ``run.json``."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise SystemExit(f"bench_default: {path} is missing: the run did not finish")
    metrics = json.loads(path.read_text())["metrics"]
    return {
        "steps": metrics["train"]["steps"],
        "train_s": metrics["train"]["seconds"],
        "samples_per_s": metrics["train"]["samples_per_s"],
        "val_before": metrics["val_baseline"]["exact_match"],
        "val": metrics["val"]["exact_match"],
        "val_step": metrics["val"]["step"],
        "samples_before": metrics["test/samples_baseline"]["exact_match"],
        "samples": metrics["test/samples"]["exact_match"],
    }


def _pass(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def entry(f: dict[str, Any], o: DefaultBench, command: str) -> str:
    minutes, seconds = divmod(round(f["wall_s"]), 60)
    lines = [
        f"- {bench.header(('torch', 'transformers', 'accelerate', 'vin-ocr'))}: `{command}`"
        f" ({f['steps']} steps, training {f['train_s']:.0f} s at {f['samples_per_s']:.1f}"
        " samples/s):",
        f"  - wall time {minutes} min {seconds:02d} s for the whole command; target ≤ "
        f"{o.max_minutes:g} min: {_pass(f['wall_s'] <= 60 * o.max_minutes)}",
        f"  - synthetic validation exact match {100 * f['val_before']:.1f} % before → "
        f"{100 * f['val']:.1f} % (best, step {f['val_step']}); target ≥ "
        f"{100 * o.min_val_exact:g} %: {_pass(f['val'] >= o.min_val_exact)}",
        f"  - bundled samples exact match {100 * f['samples_before']:.1f} % before fine-tuning → "
        f"{100 * f['samples']:.1f} % after; better than the model before fine-tuning: "
        f"{_pass(f['samples'] > f['samples_before'])}",
    ]
    if "rapidocr" in f:
        lines.append(
            f"  - the pretrained RapidOCR pipeline reads {100 * f['rapidocr']:.1f} % of the same "
            f"samples; better than RapidOCR: {_pass(f['samples'] > f['rapidocr'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    o = bench.parse_options(DefaultBench, sys.argv[1:] if argv is None else argv, "bench_default")
    overrides = [*(QUICK if o.quick else []), *o.overrides]
    command = " ".join(["python -m vin_ocr.training.hf_finetune", *overrides])
    tmp = Path(tempfile.mkdtemp(prefix="bench-default-"))
    try:
        f = {"wall_s": run_default(tmp / "run", overrides), **figures(tmp / "run")}
        if o.rapidocr and not o.quick:
            f["rapidocr"] = rapidocr_exact(tmp / "rapidocr")
    finally:
        if o.keep:
            print(f"run folder: {tmp / 'run'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = entry(f, o, command.strip())
    print(text)
    if o.record:
        bench.record(text, SECTION, o.out or bench.BENCHMARKS_MD)
    return f


if __name__ == "__main__":
    main()
