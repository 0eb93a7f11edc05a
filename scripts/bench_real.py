"""Real photos: the pretrained pipeline against the default fine-tune on the real dev set.

    python scripts/bench_real.py run=RUN_FOLDER     # a finished run (e.g. what `make run` wrote)
    python scripts/bench_real.py                    # trains the default first: make bench-real
    python scripts/bench_real.py quick=true record=false    # tiny wiring check (tests)
    python scripts/bench_real.py run=RUN onnx=false        # the fine-tune read in torch

The dev set is the 50 hand-labelled photos of ``../shared/vin-detection`` (``vin_labels.jsonl``;
"Vin detection", kirill-sergeev, Roboflow Universe, CC BY 4.0; never trained on). Each photo is
read three ways, through the evaluation harness (:func:`vin_ocr.evaluation.evaluate.run_eval`):

- ``crops``: the VIN box of the photo (its YOLO label, with a margin) read as a line crop;
- ``crops as photos``: the same box crops, read with text detection first;
- ``photos``: the whole photo (detection, the VIN picked among the lines, barcodes fused).

Engines: ``rapidocr`` (the pretrained RapidOCR pipeline), ``pretrained`` (the pp_ocr family's
pipeline on the pretrained weights, before any training) and ``fine-tuned`` (the run). Targets
(issue 11): the fine-tune reads at least ``min_exact`` (97 %) of the whole photos exactly, and is
never below the pretrained pipeline in any reading. A dated entry goes to docs/benchmarks.md.
Options are ``key=value`` (:class:`RealBench`).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vin_ocr import bench

SECTION = "## Real photos (`scripts/bench_real.py`)"
INTRO = (
    'The 50 hand-labelled dev photos of `../shared/vin-detection` ("Vin detection", '
    "kirill-sergeev, Roboflow Universe, CC BY 4.0), read three ways; exact match (CER)."
)
DEV = Path(__file__).resolve().parents[2] / "shared" / "vin-detection" / "vin_labels.jsonl"
READINGS = ("crops", "crops as photos", "photos")
QUICK = ["debug=smoke", "model.tiny=true", "hardware.device=cpu"]


@dataclass
class RealBench:
    run: str = ""  # a finished run folder; "" trains the default into a temporary folder
    data: str = ""  # the labelled dev manifest; "" = ../shared/vin-detection/vin_labels.jsonl
    engines: list[str] = field(default_factory=lambda: ["rapidocr", "pretrained", "fine-tuned"])
    limit: int = 0  # only the first N photos (0: all)
    min_exact: float = 0.97
    onnx: bool = True  # the fine-tune read through its ONNX graphs (engine=checkpoint's default)
    det_side: int = 0  # the fine-tune's det_limit_side_len for reading (0: the run's own)
    quick: bool = False  # a tiny smoke run on 4 photos (tests)
    record: bool = True
    out: str = ""  # the Markdown file to append to; "" = docs/benchmarks.md


def yolo_box(image: Path, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The largest VIN box of ``image`` from its YOLO label file (``../labels/<stem>.txt``), in
    pixels, or None when it has none."""
    label = image.parent.parent / "labels" / f"{image.stem}.txt"
    if not label.is_file():
        return None
    boxes = []
    for line in label.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 5:
            cx, cy, w, h = (float(p) for p in parts[1:])
            W, H = size
            boxes.append(((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H))
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if boxes else None


def manifests(dev: Path, tmp: Path, limit: int) -> dict[str, Path]:
    """One manifest per reading: the whole photos, and the box crops flagged as crops / photos."""
    from vin_ocr.data.images import open_image
    from vin_ocr.data.sample import read_manifest
    from vin_ocr.models.pp_ocr_scene import box_crop

    samples = read_manifest(dev)[: limit or None]
    (tmp / "crops").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {r: [] for r in READINGS}
    for i, s in enumerate(samples):
        rows["photos"].append({"image": str(s.image.resolve()), "vin": s.vin, "crop": False})
        image = open_image(s.image)
        box = yolo_box(s.image, image.size)
        if box is None:
            continue
        path = tmp / "crops" / f"{i:03d}.png"
        box_crop(image, box).save(path)
        rows["crops"].append({"image": str(path), "vin": s.vin, "crop": True})
        rows["crops as photos"].append({"image": str(path), "vin": s.vin, "crop": False})
    out = {}
    for reading, items in rows.items():
        out[reading] = tmp / f"{reading.replace(' ', '_')}.jsonl"
        out[reading].write_text("".join(json.dumps(r) + "\n" for r in items))
    return out


def build(name: str, run: Path, tiny: bool, o: RealBench | None = None) -> Any:
    from vin_ocr.evaluation.engines import build_engine
    from vin_ocr.models.engine import FamilyEngine
    from vin_ocr.models.registry import get_family

    if name == "rapidocr":
        return build_engine("rapidocr")
    if name == "pretrained":
        family = get_family("pp_ocr", {"name": "pp_ocr", "tiny": tiny})
        model, _ = family.build(None, None)
        return FamilyEngine(family, model, name="pretrained")
    if name == "fine-tuned":
        o = o or RealBench()
        model = {"det_limit_side_len": o.det_side} if o.det_side else {}
        return build_engine("checkpoint", path=str(run), onnx=o.onnx, model=model)
    raise SystemExit(f"bench_real: unknown engine {name!r} (rapidocr, pretrained, fine-tuned)")


def train_default(run: Path, overrides: list[str]) -> float:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_default import run_default

    return run_default(run, overrides)


def evaluate_all(o: RealBench, run: Path, tmp: Path) -> dict[str, dict[str, dict[str, Any]]]:
    from vin_ocr.data.sample import read_manifest
    from vin_ocr.evaluation.evaluate import run_eval

    dev = Path(o.data) if o.data else DEV
    if not dev.is_file():
        raise SystemExit(f"bench_real: {dev} not found (the real dev set lives in ../shared)")
    paths = manifests(dev, tmp / "data", 4 if o.quick else o.limit)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in o.engines:
        engine = build(name, run, tiny=o.quick, o=o)
        results[name] = {}
        for reading, manifest in paths.items():
            report = run_eval(
                engine, read_manifest(manifest), tmp / "eval" / name / reading,
                manifest=manifest, progress=False,
            )  # fmt: skip
            results[name][reading] = {
                k: report.get(k) for k in ("n", "exact_match", "cer", "repairs", "sources")
            }
            print(f"{name:>10} {reading:>16}: {100 * report['exact_match']:.1f} % exact")
    return results


def own_reports(run: Path | None) -> list[str]:
    """The run's own exact match before -> after: validation and each test set (run.json)."""
    if run is None or not (run / "run.json").is_file():
        return []
    m = json.loads((run / "run.json").read_text()).get("metrics", {})
    pairs = [("val", "val_baseline", "val")] + [
        (k.removeprefix("test/"), f"{k}_baseline", k)
        for k in m
        if k.startswith("test/") and not k.endswith("_baseline")
    ]
    return [
        f"{name} {100 * m[before]['exact_match']:.1f} → {100 * m[after]['exact_match']:.1f} %"
        for name, before, after in pairs
        if before in m and after in m
    ]


def _pass(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def entry(
    results: dict[str, dict[str, dict[str, Any]]], o: RealBench, run_label: str, run: Path | None
) -> str:
    rows = [
        [name, *(f"{100 * r[x]['exact_match']:.1f} % ({100 * r[x]['cer']:.1f})" for x in READINGS)]
        for name, r in results.items()
    ]
    n = next(iter(results.values()))["photos"]["n"]
    lines = [
        f"- {bench.header(('torch', 'transformers', 'rapidocr', 'vin-ocr'))}: {n} photos, "
        f"fine-tune: {run_label}",
        "",
        bench.table(["engine", *READINGS], rows, indent="  "),
        "",
    ]
    own = own_reports(run)
    if own:
        lines.append("  - the run's own reports, exact match before → after: " + ", ".join(own))
    tuned = results.get("fine-tuned")
    if tuned:
        photos = tuned["photos"]["exact_match"]
        lines.append(
            f"  - fine-tune on whole photos {100 * photos:.1f} %; target ≥ "
            f"{100 * o.min_exact:g} %: {_pass(photos >= o.min_exact)}"
        )
        for base in ("rapidocr", "pretrained"):
            if base in results:
                ok = all(
                    tuned[x]["exact_match"] >= results[base][x]["exact_match"] for x in READINGS
                )
                lines.append(f"  - never below {base} in any reading: {_pass(ok)}")
        rep = tuned["photos"].get("repairs") or {}
        if rep:
            lines.append(
                "  - check-digit search on whole photos: "
                + ", ".join(f"{k} {v}" for k, v in rep.items())
            )
        src = tuned["photos"].get("sources") or {}
        if src:
            lines.append(
                "  - VIN sources on whole photos: " + ", ".join(f"{k} {v}" for k, v in src.items())
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    o = bench.parse_options(RealBench, sys.argv[1:] if argv is None else argv, "bench_real")
    tmp = Path(tempfile.mkdtemp(prefix="bench-real-"))
    try:
        run, label = Path(o.run), o.run
        if not o.run:
            run = tmp / "run"
            overrides = QUICK if o.quick else []
            start = time.perf_counter()
            train_default(run, overrides)
            minutes = (time.perf_counter() - start) / 60
            command = " ".join(["python -m vin_ocr.training.hf_finetune", *overrides])
            label = f"`{command}` (trained here in {minutes:.1f} min)"
        elif not (run / "run.json").is_file():
            raise SystemExit(f"bench_real: {run} is not a finished run folder (no run.json)")
        results = evaluate_all(o, run, tmp)
        text = entry(results, o, label, run)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(text)
    if o.record:
        bench.record(text, SECTION, o.out or bench.BENCHMARKS_MD, intro=INTRO)
    return results


if __name__ == "__main__":
    main()
