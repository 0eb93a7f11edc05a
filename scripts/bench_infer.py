"""Inference speed per engine on this machine: ms per image and images/s, batch 1 and batched,
on synthetic VIN line crops, synthetic scenes and real photos (for the engines that detect text),
plus VLM generation with and without the VIN-constrained decoder.

    python scripts/bench_infer.py                        # what `make bench` runs
    python scripts/bench_infer.py run=RUN_FOLDER         # adds the fine-tuned run, torch and ONNX
    python scripts/bench_infer.py engines=[rapidocr] n=200 batch=32 vlm=[]
    python scripts/bench_infer.py quick=true record=false

Options are ``key=value`` (:class:`InferBench`; a typo fails naming the key). Engines:

- ``pp_ocr_torch``: the pretrained PP-OCRv6-small recogniser (converted from the rapidocr wheel,
  VIN head) through :class:`vin_ocr.models.engine.FamilyEngine` in torch; scenes and photos go
  through its text detector and general reader (:mod:`vin_ocr.models.pp_ocr_scene`);
- ``pp_ocr_onnx``: the same family in ONNX mode (``PPOCRFamily.use_onnx``: recogniser, detector
  and general reader exported into memory, read on onnxruntime);
- ``finetuned_torch`` / ``finetuned_onnx``: the run folder ``run`` (e.g. what ``make run``
  wrote) through :func:`vin_ocr.run_folder.load_run` in torch / on its ONNX graphs (what
  ``engine=checkpoint`` and the app read with); skipped with a note when ``run`` is empty;
- ``rapidocr``: :class:`vin_ocr.evaluation.engines.RapidOCREngine` (PP-OCRv6 det + rec ONNX);
- ``tesseract``: :class:`vin_ocr.evaluation.engines.TesseractEngine` (skipped with the reason when
  the binary is missing); "batched" runs ``threads`` tesseract processes at once.

*real photos* are the 50 hand-labelled dev photos of ``../shared/vin-detection`` (``photos``
caps them), or the bundled ``data/real`` photos where ``../shared`` is absent, each read whole
(``crops=False``: detection, the VIN line, its reading), one photo per call. The VLM rows
generate with the tiny random LFM2-VL (``model.tiny=true``; the time is the decoding
machinery's, not a real model's) under each ``model.decoding`` variant of :data:`VLM_DECODING`.
Every engine reads the same images, rendered once before timing; one untimed warm-up call first.
The *exact* column (the answer, cleaned of case and surrounding whitespace, is the VIN) shows
each engine read what it was timed on; *lenient* beside it counts a VIN found somewhere in the
answer (:func:`vin_ocr.vin.normalize`), as the harness's ``exact_match_lenient`` does
(:func:`vin_ocr.bench.score`). Entries before 2026-12-01 scored the lenient way under *exact*.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vin_ocr import bench

SECTION = "## Inference (`scripts/bench_infer.py`)"
INTRO = (
    "ms per image and images/s on synthetic VIN line crops, synthetic scenes and real photos "
    "(the 50 dev photos; engines that detect text), batch 1 (one image per call) and batched; "
    "PP-OCR pretrained and fine-tuned (run=RUN), each in torch and on onnxruntime; *exact* is "
    "the share of images whose answer is the VIN (the harness's strict exact match), as a check "
    "that the engine did the work it was timed on; *lenient* counts a VIN found somewhere in the "
    "answer. Entries before 2026-12-01 have only *exact*, scored the lenient way (vin.normalize)."
)
#: ``model.decoding`` of each VLM generation variant (vin_ocr.decoding.vlm.VlmDecoding).
VLM_DECODING: dict[str, dict[str, Any]] = {
    "unconstrained": {"constrained": False, "check_digit_search": False, "num_beams": 1},
    "constrained": {"constrained": True, "check_digit_search": False, "num_beams": 1},
    "constrained_search": {"constrained": True, "check_digit_search": True, "num_beams": 4},
}


@dataclass
class InferBench:
    engines: list[str] = field(
        default_factory=lambda: [
            "pp_ocr_torch",
            "pp_ocr_onnx",
            "finetuned_torch",
            "finetuned_onnx",
            "rapidocr",
            "tesseract",
        ]
    )
    run: str = ""  # a fine-tuned run folder for the finetuned_* engines ("" skips them)
    n: int = 64  # synthetic line crops
    scenes: int = 4  # synthetic scenes (engines that detect text)
    photos: int = 50  # real photos (engines that detect text); 0 skips them
    det_side: int = 0  # PP-OCR engines' det_limit_side_len (0: each model's own setting)
    batch: int = 16  # batch size of the batched measurement
    threads: int = 0  # torch / onnxruntime / tesseract threads; 0: every core
    vlm: list[str] = field(default_factory=lambda: list(VLM_DECODING))  # [] to skip
    vlm_n: int = 8  # images for each VLM variant
    quick: bool = False  # tiny PP-OCR, 4 crops, 1 scene (tests)
    record: bool = True
    out: str = ""  # the Markdown file to append to; "" = docs/benchmarks.md
    seed: int = 0


@dataclass
class Row:
    engine: str
    images: str  # "line crops" | "scenes"
    batch: int
    ms_per_image: float
    exact: float | None = None  # the harness's strict exact match
    exact_lenient: float | None = None  # a VIN found somewhere in the answer
    note: str = ""


def options(argv: list[str]) -> InferBench:
    o = bench.parse_options(InferBench, argv, "bench_infer")
    if o.quick:
        o.n, o.batch, o.vlm_n = 4, 4, 2
        o.scenes, o.photos = min(o.scenes, 1), min(o.photos, 1)
    unknown = sorted(set(o.engines) - set(ENGINES)) + sorted(set(o.vlm) - set(VLM_DECODING))
    if unknown:
        known = ", ".join([*ENGINES, *VLM_DECODING])
        raise SystemExit(f"bench_infer: unknown engine(s) {unknown}; known: {known}")
    if o.n < 1 or o.batch < 1:
        raise SystemExit("bench_infer: need n >= 1 and batch >= 1")
    return o


# -- engines -------------------------------------------------------------------------------------


def _pp_ocr(o: InferBench) -> tuple[Any, Any]:
    from vin_ocr.hardware import load_model_cfg, resolve
    from vin_ocr.models.registry import get_family

    cfg = load_model_cfg("pp_ocr")
    cfg.tiny = o.quick
    cfg.predict_batch_size = o.batch
    if o.det_side:
        cfg.det_limit_side_len = o.det_side
    family = get_family(cfg.family, cfg)
    model, _ = family.build(cfg, resolve({"device": "cpu", "dtype": "fp32"}))
    return family, model.eval()


def pp_ocr_torch(o: InferBench, workers: int) -> Any:
    from vin_ocr.models.engine import FamilyEngine

    family, model = _pp_ocr(o)
    return FamilyEngine(family, model, name="pp_ocr_torch")


def pp_ocr_onnx(o: InferBench, workers: int) -> Any:
    from vin_ocr.models.engine import FamilyEngine
    from vin_ocr.models.pp_ocr_onnx import onnx_bytes

    family, model = _pp_ocr(o)
    family.use_onnx(onnx_bytes(family.export_onnx, model))
    return FamilyEngine(family, model, name="pp_ocr_onnx")


def _finetuned(o: InferBench, onnx: bool) -> Any:
    from vin_ocr.evaluation.engines import EngineUnavailable
    from vin_ocr.run_folder import load_run

    if not o.run:
        raise EngineUnavailable("no run=RUN_FOLDER given")
    overrides: dict[str, Any] = {"predict_batch_size": o.batch}
    if o.det_side:
        overrides["det_limit_side_len"] = o.det_side
    engine = load_run(o.run, overrides=overrides, onnx=onnx)
    engine.name = f"finetuned_{'onnx' if onnx else 'torch'}"
    return engine


def finetuned_torch(o: InferBench, workers: int) -> Any:
    return _finetuned(o, onnx=False)


def finetuned_onnx(o: InferBench, workers: int) -> Any:
    return _finetuned(o, onnx=True)


def rapidocr(o: InferBench, workers: int) -> Any:
    from vin_ocr.evaluation.engines import RapidOCREngine

    return RapidOCREngine(threads=workers, rec_batch_num=o.batch)


def tesseract(o: InferBench, workers: int) -> Any:
    from vin_ocr.evaluation.engines import TesseractEngine

    return TesseractEngine(workers=workers)


#: Engine name -> builder(options, threads).
ENGINES: dict[str, Callable[[InferBench, int], Any]] = {
    "pp_ocr_torch": pp_ocr_torch,
    "pp_ocr_onnx": pp_ocr_onnx,
    "finetuned_torch": finetuned_torch,
    "finetuned_onnx": finetuned_onnx,
    "rapidocr": rapidocr,
    "tesseract": tesseract,
}
RECOGNITION_ONLY: set[str] = set()


# -- measuring -----------------------------------------------------------------------------------


def ms_per_image(engine: Any, images: list, batch: int, crops: bool = True) -> tuple[float, list]:
    """Milliseconds per image reading ``images`` in chunks of ``batch`` (after one warm-up call),
    and the texts read."""
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    engine.predict(chunks[0], [crops] * len(chunks[0]))  # warm-up
    texts: list[str] = []
    start = time.perf_counter()
    for chunk in chunks:
        texts += engine.predict(chunk, [crops] * len(chunk))
    return (time.perf_counter() - start) * 1000 / len(images), texts


def scored(engine: str, images: str, batch: int, ms: float, texts: list, vins: list) -> Row:
    """A row with the strict and the lenient exact match of ``texts`` (:func:`bench.score`)."""
    s = bench.score(vins, texts)
    return Row(engine, images, batch, ms, s["exact_match"], s["exact_match_lenient"])


def measure_engine(name: str, o: InferBench, data: dict[str, Any]) -> list[Row]:
    from vin_ocr.evaluation.engines import EngineUnavailable

    workers = o.threads or os.cpu_count() or 1
    try:
        engine = ENGINES[name](o, workers)
    except EngineUnavailable as err:
        return [Row(name, "line crops", 1, float("nan"), note=f"skipped: {err}")]
    crops, vins = data["crops"], data["vins"]
    rows = []
    for batch in dict.fromkeys((1, o.batch)):
        ms, texts = ms_per_image(engine, crops, batch)
        rows.append(scored(name, "line crops", batch, ms, texts, vins))
    if name not in RECOGNITION_ONLY and data["scenes"]:
        ms, texts = ms_per_image(engine, data["scenes"], 1, crops=False)
        rows.append(scored(name, "scenes", 1, ms, texts, data["scene_vins"]))
    if name not in RECOGNITION_ONLY and data["photos"]:
        ms, texts = ms_per_image(engine, data["photos"], 1, crops=False)
        rows.append(scored(name, "real photos", 1, ms, texts, data["photo_vins"]))
    return rows


def measure_vlm(o: InferBench, data: dict[str, Any]) -> list[Row]:
    """Tiny LFM2-VL generation under each decoding variant of ``o.vlm``."""
    from vin_ocr.hardware import load_model_cfg
    from vin_ocr.models.engine import FamilyEngine
    from vin_ocr.models.registry import get_family

    rows = []
    images, vins = data["crops"][: o.vlm_n], data["vins"][: o.vlm_n]
    for variant in o.vlm:
        cfg = load_model_cfg("lfm2_vl_450m")
        cfg.tiny, cfg.do_image_splitting = True, False
        name = f"tiny lfm2_vl, {variant.replace('_', ' + ')}"
        if "decoding" not in cfg:
            rows.append(Row(name, "line crops", 1, float("nan"), note="skipped: no decoding keys"))
            continue
        cfg.decoding.update(VLM_DECODING[variant])
        family = get_family(cfg.family, cfg)
        model, _ = family.build(cfg, None)
        engine = FamilyEngine(family, model, name=name)
        for batch in dict.fromkeys((1, min(o.batch, len(images)))):
            ms, texts = ms_per_image(engine, images, batch)
            rows.append(scored(name, "line crops", batch, ms, texts, vins))
    return rows


def real_photos(limit: int) -> list[Any]:
    """The first ``limit`` real photos: the dev photos of ``../shared/vin-detection``, else the
    bundled ``data/real`` ones."""
    import vin_ocr
    from vin_ocr.data.sample import read_manifest

    dev = vin_ocr.REPO_ROOT.parent / "shared" / "vin-detection" / "vin_labels.jsonl"
    manifest = dev if dev.is_file() else vin_ocr.REPO_ROOT / "data" / "real" / "manifest.jsonl"
    return read_manifest(manifest)[:limit] if limit > 0 else []


def render(o: InferBench) -> dict[str, Any]:
    from vin_ocr.data.synth import SynthDataset

    lines = SynthDataset(o.n, seed=o.seed, cfg={"kind": "line"})
    scenes = SynthDataset(o.scenes, seed=o.seed + 1, cfg={"kind": "scene"})
    crops = [lines.sample(i) for i in range(len(lines))]
    shots = [scenes.sample(i) for i in range(len(scenes))]
    photos = real_photos(o.photos)
    return {
        "photos": [s.load_image() for s in photos],
        "photo_vins": [s.vin for s in photos],
        "crops": [s.load_image() for s in crops],
        "vins": [s.vin for s in crops],
        "scenes": [s.load_image() for s in shots],
        "scene_vins": [s.vin for s in shots],
    }


def entry(rows: list[Row], o: InferBench, data: dict[str, Any]) -> str:
    head = (
        f"- {bench.header(('torch', 'onnxruntime', 'rapidocr', 'transformers', 'vin-ocr'))}: "
        f"{o.n} synthetic line crops, {o.scenes} scenes, {len(data['photos'])} real photos"
        f"{' (' + o.run + ')' if o.run else ''}, {o.threads or os.cpu_count()} threads"
        f"{', quick' if o.quick else ''}."
    )
    cells = []
    for r in rows:
        if r.note:
            cells.append([r.engine, r.images, r.note, "", "", "", ""])
            continue
        exact = ["-" if v is None else f"{100 * v:.0f} %" for v in (r.exact, r.exact_lenient)]
        rate = f"{1000 / r.ms_per_image:.1f}"
        cells.append([r.engine, r.images, r.batch, f"{r.ms_per_image:.1f}", rate, *exact])
    headers = ["engine", "images", "batch", "ms / image", "images / s", "exact", "lenient"]
    return head + "\n\n" + bench.table(headers, cells, indent="  ", left=2)


def main(argv: list[str] | None = None) -> list[Row]:
    o = options(sys.argv[1:] if argv is None else list(argv))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if o.threads:
        torch.set_num_threads(o.threads)
    data = render(o)
    rows: list[Row] = []
    for name in o.engines:
        start = time.perf_counter()
        rows += measure_engine(name, o, data)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if o.vlm:
        rows += measure_vlm(o, data)
    text = entry(rows, o, data)
    print(text)
    if o.record:
        bench.record(text, SECTION, o.out or bench.BENCHMARKS_MD, intro=INTRO)
    return rows


if __name__ == "__main__":
    main()
