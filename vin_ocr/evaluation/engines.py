"""OCR engines behind one small interface (:class:`Engine`, :mod:`vin_ocr.evaluation.engine_base`),
so the harness can run any of them on any data set: the baselines RapidOCR and Tesseract
(:mod:`vin_ocr.evaluation.baselines`), the official PaddleOCR package and a finished training run
(``checkpoint``), both here.

Engines are built from Hydra config (``configs/eval/engine/*.yaml``, each naming its class with
``_target_``) or by name through :data:`ENGINES`. An engine that cannot run here (binary or
package missing, weights not reachable) raises :class:`EngineUnavailable` with the reason; no
engine ever falls back to another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vin_ocr.evaluation.baselines import RapidOCREngine, TesseractEngine
from vin_ocr.evaluation.engine_base import (
    Engine,
    EngineUnavailable,
    crop_flags,
    line_reading,
    scene_reading,
    to_bgr,
)
from vin_ocr.reading import Reading, TextsFromReadings

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "ENGINES",
    "CheckpointEngine",
    "Engine",
    "EngineUnavailable",
    "PaddleOCREngine",
    "RapidOCREngine",
    "TesseractEngine",
    "build_engine",
]


class PaddleOCREngine(TextsFromReadings):
    """The official ``paddleocr`` package (optional extra: ``pip install 'vin-ocr[paddle]'``).

    Line crops go through ``TextRecognition``; scenes through the ``PaddleOCR`` pipeline
    (document orientation, unwarping and text-line orientation off), then ``pick_vin``.
    ``path`` / ``det_path`` are local model folders (e.g. ``RUN/paddle/rec``, written by
    ``python -m vin_ocr.training.export_paddle run=RUN``). Without them, PP-OCRv6-small (the
    default) is converted from the rapidocr wheel into the cache on first use (offline,
    :func:`vin_ocr.models.pp_ocr_paddle.pretrained_dir`); other models are downloaded by
    PaddleOCR, which fails offline: that failure is reported as :class:`EngineUnavailable`.
    """

    name = "paddleocr"

    def __init__(
        self,
        path: str | None = None,
        det_path: str | None = None,
        rec_model: str = "PP-OCRv6_small_rec",
        det_model: str = "PP-OCRv6_small_det",
        device: str = "cpu",
    ) -> None:
        from vin_ocr.models import pp_ocr_paddle as pp

        try:
            import paddleocr
        except ImportError as e:
            raise EngineUnavailable(
                f"engine=paddleocr: the paddleocr package is not installed ({e}); "
                f"install it with `pip install 'vin-ocr[paddle]'` and `{pp.PADDLEOCR_INSTALL}`"
            ) from e
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        if path is None and rec_model == pp.REC_MODEL_NAME:
            path = str(pp.pretrained_dir("rec"))
        if det_path is None and det_model == pp.DET_MODEL_NAME:
            det_path = str(pp.pretrained_dir("det"))
        for p in (path, det_path):
            if p is not None and not Path(p).is_dir():
                raise EngineUnavailable(f"engine=paddleocr: model folder {p} not found")
        try:
            # The same recognition model serves line crops and the pipeline's lines.
            self._rec = paddleocr.TextRecognition(
                model_name=rec_model, model_dir=path, device=device
            )
            self._ocr = paddleocr.PaddleOCR(
                text_recognition_model_name=rec_model,
                text_recognition_model_dir=path,
                text_detection_model_name=det_model,
                text_detection_model_dir=det_path,
                use_doc_orientation_classify=False,
                use_doc_unwarping=False,
                use_textline_orientation=False,
                device=device,
            )
        except Exception as e:  # paddle raises many kinds; report the reason, never fall back
            raise EngineUnavailable(
                f"engine=paddleocr: could not load {rec_model} / {det_model} "
                f"({type(e).__name__}: {e}). Offline, download them once elsewhere and pass "
                "engine.path=REC_MODEL_DIR engine.det_path=DET_MODEL_DIR"
            ) from e

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        flags = crop_flags(images, crops)
        out = [Reading("")] * len(images)
        line_idx = [i for i, c in enumerate(flags) if c]
        if line_idx:
            arrays = [to_bgr(images[i]) for i in line_idx]
            results = self._rec.predict(input=arrays, batch_size=len(arrays))
            for i, res in zip(line_idx, results, strict=True):
                out[i] = line_reading(str(res["rec_text"]))
        for i, crop in enumerate(flags):
            if not crop:
                lines: list[str] = []
                boxes: list[Any] = []
                for res in self._ocr.predict(input=to_bgr(images[i])):
                    lines.extend(str(t) for t in res["rec_texts"])
                    boxes.extend(res["rec_polys"])
                out[i] = scene_reading(lines, boxes if len(boxes) == len(lines) else None)
        return out


class CheckpointEngine(TextsFromReadings):
    """A finished training run folder (``engine=checkpoint engine.path=RUN``), read through the
    same model family that trained it (:func:`vin_ocr.run_folder.load_run`); ``model``
    changes keys of the run's model config for reading (decoding settings, say). ``onnx``
    (default): a PP-OCR run reads through onnxruntime, with the run's ONNX graphs (the same
    readings as torch, faster); ``engine.onnx=false`` reads in torch."""

    name = "checkpoint"

    def __init__(
        self, path: str | None = None, model: dict[str, Any] | None = None, onnx: bool = True
    ) -> None:
        if not path:
            raise EngineUnavailable("engine=checkpoint needs engine.path=RUN_FOLDER")
        run = Path(path)
        if not run.is_dir():
            raise EngineUnavailable(f"engine=checkpoint: run folder {run} does not exist")
        from vin_ocr.run_folder import load_run

        try:
            self._engine = load_run(run, overrides=model, onnx=onnx)
        except FileNotFoundError as exc:
            raise EngineUnavailable(f"engine=checkpoint: {exc}") from None
        self.name = self._engine.name

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        return self._engine.read(images, crops)


#: Engine name -> builder (the class); Hydra configs name the same classes with ``_target_``.
ENGINES: dict[str, Callable[..., Engine]] = {
    "rapidocr": RapidOCREngine,
    "tesseract": TesseractEngine,
    "paddleocr": PaddleOCREngine,
    "checkpoint": CheckpointEngine,
}


def build_engine(spec: str | Any, **kwargs: Any) -> Engine:
    """Build an engine from its registry name (``build_engine("tesseract", psm_crop=8)``) or from
    a Hydra config node with ``_target_`` (``build_engine(cfg.engine)``)."""
    if isinstance(spec, str):
        if spec not in ENGINES:
            raise ValueError(f"unknown engine {spec!r}; known: {', '.join(sorted(ENGINES))}")
        return ENGINES[spec](**kwargs)
    from hydra.utils import instantiate

    try:
        return instantiate(spec, **kwargs)
    except Exception as e:
        # Hydra wraps errors raised by the target; surface EngineUnavailable itself.
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, EngineUnavailable):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
