"""PP-OCR models in the Paddle inference format that the official ``paddleocr`` 3.x package loads
from a folder (``inference.json`` + ``inference.pdiparams`` + ``inference.yml``).

A fine-tuned run (or the pretrained models converted from the rapidocr wheel) is copied, weight
for weight, into PaddleX's own Paddle port of the same transformers classes
(``paddlex.inference.models.*.modeling``), saved with ``paddle.jit.save`` and checked through
the official package before the folder appears: ``paddleocr.TextRecognition`` must read a set of
line crops exactly as the torch model does (same texts; probabilities within ``atol``), else
:class:`PaddleExportError`. Command (:mod:`vin_ocr.training.export_paddle`)::

    python -m vin_ocr.training.export_paddle run=RUN              # -> RUN/paddle/{rec,det}
    python -m vin_ocr.training.export_paddle run=RUN out=DIR det=false

and in PaddleOCR::

    TextRecognition(model_name="PP-OCRv6_small_rec", model_dir="RUN/paddle/rec")
    PaddleOCR(text_recognition_model_name="PP-OCRv6_small_rec",
              text_recognition_model_dir="RUN/paddle/rec",
              text_detection_model_name="PP-OCRv6_small_det",
              text_detection_model_dir="RUN/paddle/det")

:func:`pretrained_dir` gives the pretrained PP-OCRv6-small rec/det in the same format, converted
once from the rapidocr wheel into the user's cache (``engine=paddleocr`` uses them offline).
Needs the ``paddle`` extra (``pip install 'vin-ocr[paddle]'``). See docs/pp_ocr.md.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vin_ocr.models.pp_ocr_paddle_port import (
    DET_MODEL_NAME,
    PADDLEOCR_INSTALL,
    REC_MODEL_NAME,
    REPORT_FILE,
    PaddleExportError,
    _jit_save,
    _require_paddle,
    _write_yml,
    det_yml,
    rec_yml,
    to_paddle,
)

__all__ = ["DET_MODEL_NAME", "PADDLEOCR_INSTALL", "REC_MODEL_NAME", "REPORT_FILE",
           "PaddleExportError", "cache_root", "det_yml", "export_det", "export_rec",
           "pretrained_dir", "rec_yml", "sample_crops", "to_paddle", "verify_det",
           "verify_rec"]  # fmt: skip

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Export + verification through the official package.


def _plain(model: nn.Module, class_index: torch.Tensor | None) -> Any:
    """A float32 CPU copy without PEFT wrappers, its classifier cut to ``class_index``."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model, keep_torch_compile=False)
    get = getattr(model, "get_base_model", None)
    base: Any = get() if callable(get) else model
    # PEFT: fold the adapters into a copy
    peft: Any = model
    base = copy.deepcopy(peft).merge_and_unload() if base is not model else copy.deepcopy(base)
    base = base.float().cpu().eval()
    head = base.head.head
    if class_index is not None and len(class_index) != head.out_features:
        new = nn.Linear(head.in_features, len(class_index))
        with torch.no_grad():
            new.weight.copy_(head.weight[class_index])
            new.bias.copy_(head.bias[class_index])
        base.head.head = new
        base.config.head_out_channels = len(class_index)
    return base


def _bgr(image: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def verify_rec(
    folder: str | Path,
    model: nn.Module,
    charset: Sequence[str],
    images: Sequence[Any],
    atol: float = 1e-3,
) -> dict[str, Any]:
    """Read ``images`` (PIL line crops) with ``paddleocr.TextRecognition`` loading ``folder``
    and with the torch ``model`` on the very same input (PaddleOCR's own resize, normalisation
    and batch padding, its own CTC decoder): the texts must be equal and the probabilities within
    ``atol``; returns the figures, raises :class:`PaddleExportError` naming the first
    difference."""
    import paddle
    import paddleocr
    from paddlex.inference.models.text_recognition.processors import (
        CTCLabelDecode,
        OCRReisizeNormImg,
        ToBatch,
    )

    folder = Path(folder)
    if not images:
        raise PaddleExportError("verification needs at least one line crop")
    arrays = [_bgr(im) for im in images]
    official = paddleocr.TextRecognition(
        model_name=REC_MODEL_NAME, model_dir=str(folder), device="cpu"
    )
    got = official.predict(input=arrays, batch_size=len(arrays))
    got_texts = [str(r["rec_text"]) for r in got]
    got_scores = np.array([float(r["rec_score"]) for r in got])

    resize = OCRReisizeNormImg([3, 48, 320])
    batch = ToBatch()(imgs=[resize.resize(a) for a in arrays])[0]
    training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(batch))
    finally:
        model.train(training)
    want = getattr(out, "last_hidden_state", out).numpy()
    decode = CTCLabelDecode(character_list=rec_yml(charset)["PostProcess"]["character_dict"])
    want_texts, want_scores = decode([want])
    static = paddle.jit.load(str(folder / "inference"))
    static.eval()
    probs = static(paddle.to_tensor(batch)).numpy()
    prob_diff = float(np.abs(probs - want).max())
    score_diff = float(np.abs(got_scores - np.array(want_scores, dtype=float)).max())
    same = sum(a == b for a, b in zip(got_texts, want_texts, strict=True))
    report = {
        "crops": len(arrays),
        "texts_equal": same,
        "max_prob_diff": prob_diff,
        "max_score_diff": score_diff,
        "atol": atol,
    }
    if same != len(arrays):
        i = next(i for i, (a, b) in enumerate(zip(got_texts, want_texts, strict=True)) if a != b)
        raise PaddleExportError(
            f"{folder}: paddleocr read {same}/{len(arrays)} crops as torch does; crop {i}: "
            f"paddleocr {got_texts[i]!r} vs torch {want_texts[i]!r}"
        )
    if prob_diff > atol or score_diff > atol:
        raise PaddleExportError(
            f"{folder}: Paddle probabilities differ from torch by {prob_diff:.2e} "
            f"(scores {score_diff:.2e}), above {atol:.0e}"
        )
    return report


def verify_det(folder: str | Path, model: nn.Module, atol: float = 1e-4) -> dict[str, Any]:
    """The saved detector vs torch on two random inputs (probability maps within ``atol``)."""
    import paddle

    static = paddle.jit.load(str(Path(folder) / "inference"))
    static.eval()
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in ((1, 3, 64, 96), (2, 3, 96, 64)):
        x = torch.rand(shape, generator=generator) * 2 - 1
        with torch.no_grad():
            out = model(x)
        want = getattr(out, "last_hidden_state", out).numpy()
        got = static(paddle.to_tensor(x.numpy())).numpy()
        if got.shape != want.shape:
            raise PaddleExportError(f"{folder}: Paddle map {got.shape} vs torch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > atol:
        raise PaddleExportError(f"{folder}: Paddle map differs from torch by {worst:.2e}")
    return {"max_map_diff": worst, "atol": atol}


def _finish(tmp: Path, out: Path, report: dict[str, Any], overwrite: bool) -> Path:
    (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    if out.exists():
        if not overwrite:  # checked before the work too; a race must not lose a folder
            raise PaddleExportError(f"{out} exists (overwrite=true replaces it)")
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _start(out: Path, overwrite: bool) -> Path:
    if out.exists() and not overwrite:
        raise PaddleExportError(f"{out} exists (overwrite=true replaces it)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def export_rec(
    model: nn.Module,
    charset: Sequence[str],
    out: str | Path,
    images: Sequence[Any],
    class_index: torch.Tensor | None = None,
    overwrite: bool = False,
    atol: float = 1e-3,
) -> dict[str, Any]:
    """Write the recogniser ``model`` (classes ``charset``; with ``class_index``, only those
    classes, e.g. a masked head's VIN classes) as a PaddleOCR model folder ``out``, verified on
    ``images`` (:func:`verify_rec`). The folder appears only once verified; returns the report
    (also in ``out/export.json``)."""
    _require_paddle()
    out = Path(out)
    plain = _plain(model, class_index)
    classes = [charset[int(i)] for i in class_index] if class_index is not None else charset
    if len(classes) != plain.config.head_out_channels:
        raise PaddleExportError(
            f"{len(classes)} characters for a {plain.config.head_out_channels}-class head"
        )
    tmp = _start(out, overwrite)
    try:
        _jit_save(to_paddle(plain), tmp, 48)
        _write_yml(tmp, rec_yml(classes))
        report = {"model_name": REC_MODEL_NAME, "classes": len(classes)}
        report |= verify_rec(tmp, plain, classes, images, atol)
        return report | {"path": str(_finish(tmp, out, report, overwrite))}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_det(
    model: nn.Module, out: str | Path, settings: Any = None, overwrite: bool = False
) -> dict[str, Any]:
    """Write the text detector ``model`` (transformers PP-OCRv6-small det) as a PaddleOCR model
    folder ``out`` with the detection ``settings`` (:class:`~vin_ocr.models.pp_ocr_det.
    DetSettings`, defaults when None); verified numerically (:func:`verify_det`)."""
    from vin_ocr.models.pp_ocr_det import DetSettings

    _require_paddle()
    out = Path(out)
    model = copy.deepcopy(model).float().cpu().eval()
    tmp = _start(out, overwrite)
    try:
        _jit_save(to_paddle(model), tmp, None)
        _write_yml(tmp, det_yml(settings or DetSettings()))
        report = {"model_name": DET_MODEL_NAME} | verify_det(tmp, model)
        return report | {"path": str(_finish(tmp, out, report, overwrite))}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------------
# The pretrained models, offline.


def sample_crops(n: int | None = None, manifest: str | Path | None = None) -> list[Any]:
    """Line crops for verification: the manifest's ``crop: true`` images (default: the bundled
    samples), at most ``n``, loaded as every reader loads them (:meth:`Sample.load_image`:
    upright, 8-bit RGB, errors name the file)."""
    import vin_ocr
    from vin_ocr.data.sample import read_manifest

    path = Path(manifest) if manifest else vin_ocr.SAMPLES_DIR / "manifest.jsonl"
    crops = [s for s in read_manifest(path) if s.crop]
    if not crops:
        raise PaddleExportError(f"{path}: no line crops (crop: true) to verify the export on")
    return [s.load_image() for s in crops[:n]]


def cache_root() -> Path:
    """Where the converted pretrained models live: ``$VIN_OCR_CACHE`` or
    ``$XDG_CACHE_HOME/vin_ocr`` (``~/.cache/vin_ocr``), under ``paddle/rapidocr-<version>``."""
    from importlib.metadata import PackageNotFoundError, version

    base = os.environ.get("VIN_OCR_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "vin_ocr"
    )
    try:
        wheel = version("rapidocr")
    except PackageNotFoundError:  # pragma: no cover - rapidocr is a dependency
        wheel = "unknown"
    return Path(base) / "paddle" / f"rapidocr-{wheel}"


def pretrained_dir(kind: str, root: str | Path | None = None) -> Path:
    """The PaddleOCR model folder of the pretrained PP-OCRv6-small ``kind`` (``rec`` | ``det``),
    converted from the rapidocr wheel's ONNX on first use (verified like an export) and cached."""
    if kind not in ("rec", "det"):
        raise ValueError(f"kind must be 'rec' or 'det', not {kind!r}")
    name = REC_MODEL_NAME if kind == "rec" else DET_MODEL_NAME
    folder = Path(root) if root else cache_root() / name
    if (folder / REPORT_FILE).is_file():
        return folder
    from vin_ocr.models.pp_ocr_convert import load_rapidocr_det, load_rapidocr_rec

    log.info("converting the rapidocr wheel's %s for paddleocr into %s", name, folder)
    if kind == "rec":
        model, charset = load_rapidocr_rec()
        export_rec(model, charset, folder, sample_crops(8), overwrite=True)
    else:
        export_det(load_rapidocr_det(), folder, overwrite=True)
    return folder
