"""A folder of rendered images and its ``manifest.jsonl`` (:func:`generate`), over worker
processes."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from PIL import Image

from vin_ocr.data.sample import write_manifest
from vin_ocr.data.synth.config import SynthConfig, to_config
from vin_ocr.data.synth.dataset import _to_sample
from vin_ocr.data.synth.render import render_sample


def _encode(img: Image.Image, image_format: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if image_format == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=3)
    else:
        img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


_JOB: dict[str, Any] = {}


def _init_job(job: dict[str, Any]) -> None:
    _JOB.clear()
    _JOB.update(job)


def _job_one(index: int) -> dict[str, Any]:
    """Worker: render sample ``index``, write its image, return its manifest entry."""
    j = _JOB
    img, vin, meta = render_sample(index, j["seed"], j["cfg"], **j.get("force", {}).get(index, {}))
    ext = "png" if j["format"] == "png" else "jpg"
    rel = Path("images") / f"{index:06d}.{ext}"
    _write_bytes(j["out"] / rel, _encode(img, j["format"], j["quality"]))
    return {"index": index, "image": rel.as_posix(), "vin": vin, "meta": meta}


def _run_jobs(indices: list[int], job: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(indices) < 2 * workers:
        _init_job(job)
        return [_job_one(i) for i in indices]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init_job, initargs=(job,)) as pool:
        chunk = max(1, min(64, len(indices) // (workers * 8)))
        rows = list(pool.imap(_job_one, indices, chunksize=chunk))
        pool.close()
        pool.join()
    return rows


def _write_all(
    out_dir: Path,
    indices: list[int],
    seed: int,
    cfg: SynthConfig,
    workers: int | None,
    image_format: str,
    quality: int,
    force: dict[int, dict[str, str]] | None = None,
) -> Path:
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format={image_format!r}; expected jpg or png")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    job = {
        "seed": seed,
        "cfg": cfg,
        "out": out_dir,
        "format": image_format,
        "quality": quality,
        "force": force or {},
    }
    rows = _run_jobs(indices, job, workers)
    samples = [_to_sample(out_dir / r["image"], r["vin"], r["meta"], None) for r in rows]
    return write_manifest(samples, out_dir / "manifest.jsonl")


def generate(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    kind: str = "line",
    looks: list[str] | tuple[str, ...] | None = None,
    workers: int | None = None,
    cfg: SynthConfig | Mapping[str, Any] | DictConfig | None = None,
    image_format: str = "jpg",
    quality: int = 92,
) -> Path:
    """Render samples ``0..n-1`` of ``seed`` into ``out_dir/images/`` and write the manifest.

    ``kind`` and ``looks`` override ``cfg``'s. ``workers``: processes (None: every core). Each
    image is written through a temporary file; ``manifest.jsonl`` is written last, atomically.
    Returns the manifest's path.
    """
    base = to_config(cfg)
    cfg = to_config({**_as_dict(base), "kind": kind, "looks": list(looks or base.looks)})
    if n < 0:
        raise ValueError(f"generate: n must be >= 0, got {n}")
    return _write_all(Path(out_dir), list(range(n)), seed, cfg, workers, image_format, quality)


def _as_dict(cfg: SynthConfig) -> dict[str, Any]:
    obj = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert isinstance(obj, dict)
    return obj  # type: ignore[return-value]
