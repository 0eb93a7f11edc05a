"""The evaluation harness as a library: :func:`run_eval` reads samples with any engine, scores
them with :class:`vin_ocr.evaluation.metric.VinMetric` and writes the run's four files
(``predictions.jsonl``, ``report.json``, ``report.md``, ``per_position.png``);
:func:`check_labels` vets a manifest's truth labels before anything is read.

Its command line is :mod:`vin_ocr.evaluation.evaluate` (``vin-ocr eval``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import vin_ocr
from vin_ocr.data.sample import ManifestError, Sample, atomic_write_text, jsonl_rows
from vin_ocr.evaluation.engines import Engine
from vin_ocr.evaluation.metric import DEFINITIONS, VinMetric, clean
from vin_ocr.evaluation.report import plot_per_position, render_markdown, write_json, write_jsonl
from vin_ocr.reading import Reading


def resolve_manifest(path: str | Path | None) -> Path:
    """The manifest to read: ``path``, or the bundled samples' when ``None``."""
    return Path(path) if path else vin_ocr.SAMPLES_DIR / "manifest.jsonl"


def _crop_mode(crops: Any) -> bool | None:
    """``auto`` -> None; true/false (bool or string) -> bool."""
    if isinstance(crops, bool):
        return crops
    value = str(crops).strip().lower()
    if value in ("auto", "none", "null"):
        return None
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"crops={crops!r}: expected auto, true or false")


def _is_crop(sample: Sample, mode: bool | None) -> bool | None:
    """``crops`` forced, else the sample's ``crop`` flag, else a scene when it has a ``box``,
    else None: the engine decides from the image (:mod:`vin_ocr.layout`)."""
    from vin_ocr.layout import sample_flag

    return mode if mode is not None else sample_flag(sample)


def _load(sample: Sample, manifest: Path | None):  # -> PIL.Image.Image
    try:
        return sample.load_image()
    except (OSError, ValueError) as e:
        where = f"{manifest}: " if manifest else ""
        raise ValueError(f"{where}image {sample.image} cannot be read ({e})") from e


def _versions(engine: Engine) -> dict[str, str]:
    out = {"vin_ocr": vin_ocr.__version__, "python": platform.python_version()}
    for pkg in ("rapidocr", "onnxruntime", "paddleocr", "paddlepaddle"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    version = getattr(engine, "version", None)  # e.g. the tesseract binary's
    if version:
        out[engine.name] = str(version)
    out["platform"] = platform.platform()
    out["processor"] = platform.processor() or platform.machine()
    return out


def _rel(image: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return image.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return image.as_posix()


_KIND_KEYS = (
    "n",
    "exact_match",
    "exact_match_lenient",
    "char_accuracy",
    "cer",
    "valid_rate",
    "ms_per_image",
)


def _label_problem(value: Any) -> str | None:
    """Why a manifest ``vin`` value is not a usable truth label (None when it is one, or empty).
    Surrounding whitespace and lower case are forgiven (the answers' clean-up)."""
    from vin_ocr.vin import _ALPHABET_SET, VIN_LENGTH

    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return f"vin {value!r} is a {type(value).__name__}, not a string (quote it)"
    vin = clean(value)
    if not vin:
        return None
    problems = []
    if any(c.isspace() for c in vin):
        problems.append("holds a space")
    bad = sorted({c for c in vin if c not in _ALPHABET_SET and not c.isspace()})
    if bad:
        problems.append("holds " + ", ".join(repr(c) for c in bad) + " (never in a VIN)")
    if len(vin) != VIN_LENGTH:
        problems.append(f"has {len(vin)} characters, not {VIN_LENGTH}")
    return f"vin {value!r} " + " and ".join(problems) if problems else None


def check_labels(
    samples: Sequence[Sample], manifest: Path, invalid: str = "error"
) -> tuple[list[Sample], dict[str, Any]]:
    """The samples to evaluate and what was found in their truth labels.

    Reads ``manifest``'s raw rows again (for line numbers and the labels' JSON types). A label
    that is not a VIN (:func:`_label_problem`) is a :class:`ManifestError` listing every such
    file:line with ``invalid="error"``, or left out with ``invalid="skip"``. A row repeating an
    image already listed is left out (a conflicting label for it is an error, or skipped with
    the first row). Labels are kept as written, cleaned of case and surrounding whitespace.
    Returns the kept samples and counts: ``rows``, ``invalid_skipped``, ``duplicates``,
    ``unlabelled``, ``not_valid_vins`` (well-formed labels that break a VIN rule, e.g. a
    mandatory check digit; scored as given)."""
    from dataclasses import replace

    from vin_ocr.vin import is_valid

    if invalid not in ("error", "skip"):
        raise ValueError(f"invalid_labels={invalid!r}: expected error or skip")
    rows = list(jsonl_rows(manifest))
    if len(rows) != len(samples):  # not the manifest these samples came from
        raise ValueError(f"{manifest}: {len(rows)} rows but {len(samples)} samples")
    problems: list[str] = []
    seen: dict[Path, tuple[int, str]] = {}
    kept: list[Sample] = []
    counts = {"rows": len(rows), "invalid_skipped": 0, "duplicates": 0, "unlabelled": 0}
    counts["not_valid_vins"] = 0
    for (lineno, obj), sample in zip(rows, samples, strict=True):
        where = f"{manifest}:{lineno}"
        problem = _label_problem(obj.get("vin"))
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        vin = clean(str(obj.get("vin") or ""))
        key = sample.image.resolve()
        if key in seen:
            first, first_vin = seen[key]
            if first_vin != vin:
                problems.append(
                    f"{where}: image {sample.image.name} again, labelled {vin!r}; line {first} "
                    f"says {first_vin!r}"
                )
            else:
                counts["duplicates"] += 1
            continue
        seen[key] = (lineno, vin)
        counts["unlabelled"] += not vin
        counts["not_valid_vins"] += bool(vin) and not is_valid(vin)
        kept.append(replace(sample, vin=vin))
    if problems and invalid == "error":
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ManifestError(
            f"{len(problems)} truth label(s) are not VINs (17 characters from 0-9 and A-Z "
            f"without I, O, Q):\n  {shown}{more}\nFix them, or pass invalid_labels=skip to "
            "leave those rows out"
        )
    counts["invalid_skipped"] = len(problems)
    return kept, counts


def label_notes(counts: dict[str, Any], manifest: Path) -> list[str]:
    notes = []
    if counts["invalid_skipped"]:
        notes.append(f"skipped {counts['invalid_skipped']} row(s) whose label is not a VIN")
    if counts["duplicates"]:
        notes.append(f"{counts['duplicates']} duplicate row(s) (same image, same VIN) counted once")
    if counts["unlabelled"]:
        notes.append(f"{counts['unlabelled']} row(s) without a VIN: read, not scored")
    if counts["not_valid_vins"]:
        notes.append(
            f"{counts['not_valid_vins']} label(s) break a VIN rule (e.g. a mandatory check "
            "digit): scored as given"
        )
    return [f"note: {manifest.name}: {n}" for n in notes]


def _read_timed(
    engine: Engine, images: Sequence[Any], flags: Sequence[bool | None]
) -> tuple[list[Reading], list[float]]:
    """Read line crops and scenes as separate calls (their costs differ by ~40x), so each
    image's latency is its own call's time divided by that call's batch size."""
    readings, latency = [Reading("")] * len(images), [0.0] * len(images)
    for kind in (True, False, None):
        idx = [i for i, f in enumerate(flags) if f is kind]
        if not idx:
            continue
        t0 = time.perf_counter()
        out = engine.read([images[i] for i in idx], [kind] * len(idx))
        per_image = (time.perf_counter() - t0) / len(idx)
        if len(out) != len(idx):
            raise RuntimeError(f"engine {engine.name} returned {len(out)} readings for {len(idx)}")
        for i, reading in zip(idx, out, strict=True):
            readings[i], latency[i] = reading, per_image
    return readings, latency


def source_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Where the whole photos' VINs came from (``source`` of each reading,
    :func:`vin_ocr.barcode.fuse`): ``ocr`` only, ``barcode`` only, both agreeing (``agree``),
    both disagreeing (``disagree``; the losing reading is in the row's ``alternative``), and
    ``none`` (neither read anything). ``disagree_right`` counts the labelled disagreements whose
    answer was right. Line crops are not searched and not counted."""
    counts = dict.fromkeys(("ocr", "barcode", "agree", "disagree", "none", "disagree_right"), 0)
    for row in rows:
        if row.get("crop") is True:
            continue
        source = row.get("source") or "none"
        counts[source] += 1
        counts["disagree_right"] += source == "disagree" and row.get("exact") is True
    return counts


def repair_counts(rows: Sequence[dict[str, Any]], normalize: Any = clean) -> dict[str, int]:
    """What the VIN-constrained search did on the labelled rows: how many readings it changed,
    how many of those it fixed (wrong before, exact after), broke (exact before, wrong after), or
    left wrong; and how many readings it could have run on (``searched``). "Exact before" is
    the strict measure on ``unconstrained``."""
    out = {"searched": 0, "changed": 0, "fixed": 0, "broke": 0, "still_wrong": 0}
    for r in rows:
        if r["exact"] is None or "unconstrained" not in r:
            continue
        out["searched"] += 1
        if not r["repaired"]:
            continue
        before = normalize(r["unconstrained"]) == r["truth"]
        out["changed"] += 1
        out["fixed"] += (not before) and r["exact"]
        out["broke"] += before and not r["exact"]
        out["still_wrong"] += (not before) and not r["exact"]
    return out


def run_eval(
    engine: Engine,
    samples: Sequence[Sample],
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    crops: Any = "auto",
    warmup: bool = True,
    top_confusions: int = 20,
    manifest: Path | None = None,
    engine_config: dict[str, Any] | None = None,
    progress: bool = True,
    labels: dict[str, Any] | None = None,
    barcodes: bool = True,
) -> dict[str, Any]:
    """Run ``engine`` over ``samples`` in batches, score, write the run's four files.

    With ``barcodes`` every whole photo is also searched for a VIN barcode and the result fused
    with the engine's reading (:class:`vin_ocr.barcode.BarcodeFusion`); ``sources`` in the
    report counts where each VIN came from (:func:`source_counts`).

    Returns the report (the dict written to ``report.json``), with ``files`` naming what was
    written. Samples without a label are predicted and written but not scored. ``labels``
    (from :func:`check_labels`) is written into the report as it is.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    if not samples:
        raise ValueError(f"{manifest or 'samples'}: no samples to evaluate")
    mode = _crop_mode(crops)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = manifest.parent if manifest else None
    metric = VinMetric(top_confusions=top_confusions)
    by_kind = {k: VinMetric(top_confusions=0) for k in ("crop", "scene", "auto")}
    if barcodes:
        from vin_ocr.barcode import BarcodeFusion

        engine = BarcodeFusion(engine)

    if warmup:  # first-call costs (graph optimisation, caches) stay out of the latency
        engine.read([_load(samples[0], manifest)], [_is_crop(samples[0], mode)])

    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with tqdm(total=len(samples), desc=f"eval {engine.name}", disable=not progress) as bar:
        for b in range(0, len(samples), batch_size):
            batch = samples[b : b + batch_size]
            images = [_load(s, manifest) for s in batch]
            flags = [_is_crop(s, mode) for s in batch]
            readings, latency = _read_timed(engine, images, flags)
            for s, reading, crop, per_image in zip(batch, readings, flags, latency, strict=True):
                raw = reading.text
                row: dict[str, Any] = {"image": _rel(s.image, root), "truth": s.vin, "raw": raw}
                if s.vin.strip():
                    sc = metric.update(s.vin, raw, latency_s=per_image)
                    kind = "auto" if crop is None else "crop" if crop else "scene"
                    by_kind[kind].update(s.vin, raw, latency_s=per_image)
                    row.update(truth=sc.truth, pred=sc.pred, exact=sc.exact, valid=sc.valid)
                    row.update(lenient=sc.lenient, exact_lenient=sc.exact_lenient)
                    row.update(cer=sc.cer, char_accuracy=sc.char_accuracy)
                else:
                    pred = clean(raw)
                    valid = bool(pred) and metric.is_valid(pred)
                    row.update(pred=pred, exact=None, valid=valid, cer=None, char_accuracy=None)
                row.update(latency_s=per_image, crop=crop)
                row.update({k: v for k, v in reading.to_json().items() if k != "text"})
                rows.append(row)
            bar.update(len(batch))
    wall = time.perf_counter() - start

    report: dict[str, Any] = metric.summary()
    report.update(
        n_unlabelled=sum(r["exact"] is None for r in rows),
        repairs=repair_counts(rows),
        sources=source_counts(rows) if barcodes else None,
        by_kind={
            kind: {k: v for k, v in m.summary().items() if k in _KIND_KEYS}
            for kind, m in by_kind.items()
            if m.n
        },
        engine={"name": engine.name, **(engine_config or {})},
        data={"path": str(manifest) if manifest else None, "n_samples": len(samples)},
        crops="auto" if mode is None else mode,
        batch_size=batch_size,
        wall_s=wall,
        timestamp=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        versions=_versions(engine),
        command=" ".join(sys.argv),
        labels=labels,
        definitions=DEFINITIONS,
    )
    errors = [r for r in rows if r["exact"] is False][:10]
    png = out / "per_position.png"
    files = {
        "predictions": write_jsonl(out / "predictions.jsonl", rows),
        "report_json": write_json(out / "report.json", report),
        "report_md": out / "report.md",
        "per_position": plot_per_position({engine.name: report["per_position"]}, png),
    }
    atomic_write_text(files["report_md"], render_markdown(report, errors))
    report["files"] = {k: str(v) for k, v in files.items()}
    return report
