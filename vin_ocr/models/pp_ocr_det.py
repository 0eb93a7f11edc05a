"""Text detection for whole photos: PP-OCRv6-small's DB detector -> line boxes -> line crops.

The detector is transformers' native ``PPOCRV6SmallDetForObjectDetection`` (its output is the
text probability map) with transformers' own PP-OCR detection image processor
(``PPOCRV5ServerDetImageProcessor``, which ``AutoImageProcessor`` gives for ``pp_ocrv6_small_det``):
resize to multiples of 32 under a side limit, normalise, and DB post-processing in
``post_process_object_detection`` (probability map > ``thresh`` -> contours -> rotated
minimum-area rectangles scored on the map, kept above ``box_thresh``, grown by ``unclip_ratio``,
scaled back to image pixels). Each kept quadrilateral is cut out with a perspective warp
(PaddleOCR's ``get_rotate_crop_image``) and the lines are sorted top to bottom, then left to right.

Sources (``model.det_checkpoint``):

- ``null`` (default, offline): the detector ONNX inside the rapidocr wheel, converted
  (:func:`vin_ocr.models.pp_ocr_convert.load_rapidocr_det`), preprocessed as RapidOCR feeds it
  (shorter side scaled to at least 736, ``(x / 255 - 0.5) / 0.5`` on BGR);
- ``hub``: the official ``PaddlePaddle/PP-OCRv6_small_det_safetensors``;
- a Hub id or a local folder: ``AutoModelForObjectDetection`` + ``AutoImageProcessor``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vin_ocr.models.vlm import ModelLoadError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["HUB_DET_CHECKPOINT", "DetSettings", "TextDetector", "TextLine", "crop_quad"]

HUB_DET_CHECKPOINT = "PaddlePaddle/PP-OCRv6_small_det_safetensors"

#: The detector's input never has a side longer than this (RapidOCR's ``max_side_len``): a small,
#: wide line photo scaled up to a 736-pixel short side would otherwise cost seconds.
MAX_SIDE = 2000

#: Boxes whose top edges differ by less than this many pixels are on one line (RapidOCR's rule).
_SAME_LINE_PX = 10


@dataclass(frozen=True)
class DetSettings:
    """DB post-processing and resizing (RapidOCR's defaults for PP-OCRv6)."""

    checkpoint: str | None = None  # None | "hub" | a Hub id | a folder
    thresh: float = 0.3  # probability -> text pixel
    box_thresh: float = 0.5  # a box's mean probability must reach this
    unclip_ratio: float = 1.6  # DB's expansion of the shrunk text kernel
    limit_side_len: int = 736
    limit_type: str = "min"  # min: shorter side >= limit | max: longer side <= limit
    dilation: bool = True  # dilate the text mask 2x2 before finding boxes (RapidOCR/PaddleOCR)

    def __post_init__(self) -> None:
        if not (0 < self.thresh < 1 and 0 < self.box_thresh < 1):
            raise ValueError(
                f"model.det_thresh and model.det_box_thresh must be in (0, 1), got "
                f"{self.thresh}, {self.box_thresh}"
            )
        if self.unclip_ratio <= 0:
            raise ValueError(f"model.det_unclip_ratio must be > 0, got {self.unclip_ratio}")
        if self.limit_type not in ("min", "max", "resize_long"):
            raise ValueError(
                f"model.det_limit_type must be min, max or resize_long, not {self.limit_type!r}"
            )


@dataclass(frozen=True)
class TextLine:
    """One detected line: its quadrilateral (4 x 2, clockwise from top-left, image pixels), the
    mean text probability inside it, and the line cut out of the image (upright)."""

    quad: np.ndarray
    score: float
    image: Image

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` around the quadrilateral."""
        left, top = np.floor(self.quad.min(axis=0)).astype(int)
        right, bottom = np.ceil(self.quad.max(axis=0)).astype(int)
        return int(left), int(top), int(right), int(bottom)


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quadrilateral ``quad`` (clockwise from top-left) of ``image`` warped to an upright
    rectangle; a crop at least 1.5 times taller than wide is turned to lie flat (PaddleOCR's
    ``get_rotate_crop_image``)."""
    import cv2

    pts = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    width = max(1, round(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))))
    height = max(1, round(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(pts, target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if height >= 1.5 * width:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def _reading_order(quads: Sequence[np.ndarray]) -> list[int]:
    """Indices of ``quads`` top to bottom; boxes whose tops are within a few pixels of the
    previous one count as one line and go left to right."""
    by_top = sorted(range(len(quads)), key=lambda i: float(quads[i][0, 1]))
    line, last_top, keys = 0, None, {}
    for i in by_top:
        top = float(quads[i][0, 1])
        if last_top is not None and top - last_top >= _SAME_LINE_PX:
            line += 1
        keys[i], last_top = (line, float(quads[i][0, 0])), top
    return sorted(by_top, key=keys.__getitem__)


def load_detector(
    checkpoint: str | None, settings: DetSettings, with_model: bool = True
) -> tuple[Any, Any]:
    """(detector model in eval mode, image processor) for ``checkpoint`` (see module doc); the
    model is None when not ``with_model`` (an ONNX graph runs instead)."""
    if checkpoint is None:
        from transformers.models.pp_ocrv5_server_det import PPOCRV5ServerDetImageProcessor

        from vin_ocr.models.pp_ocr_convert import load_rapidocr_det

        processor = PPOCRV5ServerDetImageProcessor(
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
            limit_side_len=settings.limit_side_len,  # type: ignore[call-arg]
            limit_type=settings.limit_type,
            max_side_limit=MAX_SIDE,
        )
        return (load_rapidocr_det() if with_model else None), processor
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    source = HUB_DET_CHECKPOINT if checkpoint == "hub" else checkpoint
    try:
        model = AutoModelForObjectDetection.from_pretrained(source) if with_model else None
        processor = AutoImageProcessor.from_pretrained(
            source,
            limit_side_len=settings.limit_side_len,
            limit_type=settings.limit_type,
            max_side_limit=MAX_SIDE,
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load the PP-OCR text detector {source!r}: {exc}") from exc
    if not hasattr(processor, "post_process_object_detection"):
        raise ModelLoadError(
            f"{source}: {type(processor).__name__} has no post_process_object_detection; "
            "model.det_checkpoint must be a PP-OCR text detection checkpoint"
        )
    return (model.eval() if model is not None else None), processor


class TextDetector:
    """PP-OCR text detection on PIL images: :meth:`detect` gives the image's lines in reading
    order (:class:`TextLine`, with the line crops). With ``net`` (pixels -> probability map, e.g.
    the graph of :func:`~vin_ocr.models.pp_ocr_onnx.export_det_onnx` on onnxruntime) the torch
    model is not loaded and ``net`` runs instead; pre- and post-processing are the same."""

    def __init__(
        self,
        settings: DetSettings | None = None,
        device: str | torch.device = "cpu",
        net: Callable[[torch.Tensor], np.ndarray] | None = None,
    ) -> None:
        self.settings = settings or DetSettings()
        model, self.processor = load_detector(self.settings.checkpoint, self.settings, net is None)
        self.net = net
        self.model = model.to(device, dtype=torch.float32) if model is not None else None

    def probability_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """The text probability map (batch, 1, H, W) of preprocessed ``pixels``."""
        if self.net is not None:
            return torch.from_numpy(self.net(pixels))
        assert self.model is not None
        return self.model(pixel_values=pixels.to(self.model.device, dtype=torch.float32))[
            "last_hidden_state"
        ]

    @torch.no_grad()
    def detect(
        self, image: Image, thresh: float | None = None, box_thresh: float | None = None
    ) -> list[TextLine]:
        """The text lines of ``image`` (RGB PIL), top to bottom, each cut out upright;
        ``thresh`` / ``box_thresh`` replace the settings' for this call (a second, more
        permissive pass)."""
        s = self.settings
        if thresh is not None or box_thresh is not None:
            s = replace(s, thresh=thresh or s.thresh, box_thresh=box_thresh or s.box_thresh)
        rgb = image.convert("RGB")
        inputs = self.processor(rgb, return_tensors="pt")
        outputs = SimpleNamespace(last_hidden_state=self.probability_map(inputs["pixel_values"]))
        if s.dilation:
            quads, scores = self._dilated_boxes(s, outputs, inputs["target_sizes"][0])
        else:
            found = self.processor.post_process_object_detection(
                outputs,
                threshold=s.thresh,
                target_sizes=inputs["target_sizes"],
                box_threshold=s.box_thresh,
                unclip_ratio=s.unclip_ratio,
            )[0]
            quads = [q.reshape(4, 2).astype(np.float32) for q in found["boxes"].cpu().numpy()]
            scores = found["scores"].cpu().tolist()
        pixels_np = np.asarray(rgb)
        from PIL import Image as PILImage

        return [
            TextLine(quads[i], float(scores[i]), PILImage.fromarray(crop_quad(pixels_np, quads[i])))
            for i in _reading_order(quads)
        ]

    def _dilated_boxes(
        self, s: DetSettings, outputs: Any, size: Any
    ) -> tuple[list[np.ndarray], list[float]]:
        """transformers' DB post-processing (``post_process_object_detection``) with the text
        mask dilated by a 2x2 kernel first, as PaddleOCR and RapidOCR do (``use_dilation``):
        without it a VIN whose characters are spaced apart (windshield plates) splits into
        several boxes. Scores are still taken on the undilated probability map."""
        import cv2

        prediction = outputs.last_hidden_state[0, 0].float().cpu().numpy()
        mask = cv2.dilate((prediction > s.thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
        height, width = (int(v) for v in size)
        boxes, scores = self.processor._boxes_from_bitmap(
            prediction, mask.astype(bool), width, height, s.box_thresh, s.unclip_ratio, 3, 1000
        )
        return [np.asarray(q, dtype=np.float32).reshape(4, 2) for q in boxes], list(scores)
