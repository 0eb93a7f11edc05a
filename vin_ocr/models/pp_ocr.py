"""The ``pp_ocr`` family: PP-OCR text-line recognition (native transformers classes), CTC-trained.

Sources (``model.checkpoint``):

- ``rapidocr`` (default, offline): PP-OCRv6-small rec converted from the ONNX inside the rapidocr
  wheel (:mod:`vin_ocr.models.pp_ocr_convert`); only ``variant: v6_small``.
- ``hub``: the official safetensors of the variant (:data:`HUB_CHECKPOINTS`, e.g.
  ``PaddlePaddle/PP-OCRv6_small_rec_safetensors``).
- any other string: a Hub id or a local folder (e.g. a fine-tuned run) loaded with
  ``AutoModelForTextRecognition`` / ``AutoImageProcessor``; the charset is the image processor's
  ``character_list``.

The VIN head (``model.head``):

- ``vin``: a new 34-class linear head (CTC blank + the 33 VIN characters) whose rows are copied
  from the pretrained head's rows for those characters, so it starts as the pretrained model
  restricted to VINs; ``config.head_out_channels`` becomes 34 and a reload needs nothing else.
- ``masked``: the pretrained head is kept whole and its logits are sliced to blank + VIN
  characters in the loss and at decoding.

Both give logits over the same 34 VIN classes, so loss, decoding and ONNX export are shared.
Preprocessing follows PaddleOCR / RapidOCR: resize to height 48 keeping the aspect ratio (bilinear,
no antialiasing, like ``cv2.resize``), BGR channel order, ``(x / 255 - 0.5) / 0.5``, pad to the
right with 0 up to the widest image of the batch (at least 320 pixels).

Reading (:meth:`PPOCRFamily.read`): line crops go straight to recognition; whole photos (scenes) go
through text detection first (:mod:`vin_ocr.models.pp_ocr_det`, loaded on the first scene), every
line found is recognised and :func:`vin_ocr.vin.pick_vin_at` picks the VIN. Each reading is decoded
by :func:`vin_ocr.decoding.ctc.ctc_read` (the check-digit search with ``check_digit_search``).

Training runs the model through its own ``forward`` (:func:`ctc_logits`), so DistributedDataParallel
synchronises the gradients of several processes.

Batch norm: by default (``freeze_batch_norm: true``) every ``BatchNorm2d`` runs in eval mode during
training (its affine weights still learn). The RapidOCR weights have their batch norm folded into
the convolutions, so batch statistics would replace the pretrained normalisation at step one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vin_ocr.decoding.ctc import ctc_read
from vin_ocr.layout import needs_detection, settle
from vin_ocr.models import pp_ocr_onnx as onnx_rt
from vin_ocr.models.base import FamilyFacts
from vin_ocr.models.pp_ocr_det import TextDetector, TextLine
from vin_ocr.models.pp_ocr_onnx import OnnxNet, export_onnx
from vin_ocr.models.pp_ocr_rec import (
    HUB_CHECKPOINTS,
    TINY_CHARSET,
    VIN_CHARSET,
    PPOCRSettings,
    ctc_logits,
    freeze_batch_norm,
    greedy_decode,
    load_recognizer,
    preprocess,
    spec,
    tiny_rec_model,
    vin_class_index,
    vin_head,
)
from vin_ocr.models.pp_ocr_scene import (
    RETRY_THRESHOLDS,
    GeneralReader,
    box_crop,
    label_line,
    read_scene,
)
from vin_ocr.models.vlm import resolve_hardware, settings_from
from vin_ocr.reading import Reading, texts
from vin_ocr.vin import ALPHABET

if TYPE_CHECKING:
    from PIL.Image import Image

    from vin_ocr.data import Sample

log = logging.getLogger(__name__)

__all__ = [
    "HUB_CHECKPOINTS",
    "RETRY_THRESHOLDS",
    "TINY_CHARSET",
    "VIN_CHARSET",
    "PPOCRFamily",
    "PPOCRSettings",
    "ctc_logits",
    "export_onnx",
    "greedy_decode",
    "load_recognizer",
    "preprocess",
    "tiny_rec_model",
    "vin_class_index",
    "vin_head",
]

#: LoRA targets (regex, full match on the module path): the SVTR linears of the head encoder and
#: the pointwise convolutions of the backbone.
DEFAULT_LORA_TARGETS = (
    r"(head\.encoder\..*\.(qkv|projection|fc1|fc2))"
    r"|(model\.backbone\..*\.channel_conv[12]\.convolution)"
)
#: LoRA defaults: adapters on the targets above; the (new) classifier trains fully and is saved
#: with the adapter (``modules_to_save``), so an adapter alone rebuilds the trained model.
LORA_DEFAULTS: dict[str, Any] = {
    "target_modules": DEFAULT_LORA_TARGETS,
    "frozen_prefixes": [],
    "scope": "model",
    "modules_to_save": ["head.head"],
}


def named_source(model: Mapping[str, Any]) -> tuple[str | None, str | None] | None:
    """``checkpoint: rapidocr`` or ``hub`` stand for the variant's official Hub checkpoint
    (:data:`HUB_CHECKPOINTS`): (that Hub id, the card's sentence about the source)."""
    checkpoint = model.get("checkpoint")
    if checkpoint not in ("rapidocr", "hub"):
        return None
    hub_id = HUB_CHECKPOINTS.get(str(model.get("variant") or "v6_small"))
    if checkpoint != "rapidocr":
        return hub_id, None
    return hub_id, (
        "PP-OCRv6-small recognition, converted from the ONNX shipped in the `rapidocr` wheel "
        f"(`base_model` names PaddlePaddle's Hub checkpoint of that model, `{hub_id}`)"
    )


class PPOCRFamily:
    """The :class:`~vin_ocr.models.base.ModelFamily` for PP-OCR recognition (CTC)."""

    name = "pp_ocr"
    facts = FamilyFacts(
        spec=spec,
        tiny={"tiny": True, "min_width": 64},
        pipeline_tag="image-to-text",
        auto={"pp_ocr": 10},
        cpu_inference=True,
        lora_in_build=True,
        named_source=named_source,
    )

    def __init__(self, cfg: Any = None) -> None:
        self.settings = settings_from(PPOCRSettings, cfg, self.name)
        self.charset: list[str] = list(VIN_CHARSET)
        self.class_index = torch.arange(len(VIN_CHARSET))
        self._detector: TextDetector | None = None
        self._general: GeneralReader | None = None
        self._lines: dict[str, Image] = {}  # photo -> its VIN line, for training
        self._vin_net: OnnxNet | None = None  # ONNX mode (use_onnx): the VIN recogniser's graph
        self._onnx: dict[str, Any] = {}  # ONNX mode: the detector's and general reader's graphs

    def build(self, cfg: Any, hardware: Any) -> tuple[nn.Module, Any]:
        """Load the recogniser, set the VIN head, place it; returns (model, image processor).

        The image processor is transformers' ``PPOCRV6SmallRecImageProcessor`` carrying the
        model's charset as ``character_list``, so ``save_pretrained`` of both gives a folder that
        ``checkpoint: <folder>`` (or ``AutoModelForTextRecognition``) loads back.
        """
        from transformers import PPOCRV6SmallRecImageProcessor

        if cfg is not None:
            self.settings = settings_from(PPOCRSettings, cfg, self.name)
        s = self.settings
        placement = resolve_hardware(hardware)
        model, charset = load_recognizer(s)
        if s.head == "vin" and charset != VIN_CHARSET:
            vin_head(model, charset)
            charset = list(VIN_CHARSET)
        self.charset = charset
        self.class_index = vin_class_index(charset)
        if s.finetune == "lora":
            model = self._lora(model)
        model = model.to(placement.device, dtype=placement.dtype)
        processor = PPOCRV6SmallRecImageProcessor(
            character_list=charset,  # type: ignore[call-arg]
            max_image_width=s.max_width,
        )
        n = sum(p.numel() for p in model.parameters())
        log.info("pp_ocr: %s, head %s, %d classes, %.2f M parameters", s.checkpoint, s.head,
                 len(charset), n / 1e6)  # fmt: skip
        return model, processor

    def export_onnx(self, model: nn.Module, path: str | Path) -> float:
        """Export ``model`` with this family's VIN classes; see :func:`export_onnx`."""
        return export_onnx(model, path, self.class_index)

    def export_scene_onnx(self, det: str | Path, general: str | Path) -> dict[str, float]:
        """The detector's and general reader's ONNX graphs (:func:`export_scene_onnx`), what
        :meth:`use_onnx` reads whole photos with; none for a tiny model's run (tests): reading
        in ONNX mode exports them into memory."""
        s = self.settings
        if s.tiny:
            return {}
        return onnx_rt.export_scene_onnx(s.detection(), s.general_checkpoint, det, general)

    def use_onnx(self, vin: str | Path | bytes, det: Any = None, general: Any = None) -> None:
        """Read through onnxruntime from now on: ``vin`` is the VIN recogniser's graph (a run's
        ``model.onnx``, or its bytes) and stands for the ``model`` given to :meth:`read`; ``det``
        and ``general`` the detector's and general reader's graphs (:meth:`export_scene_onnx`),
        exported into memory from their torch models on the first scene when None."""
        self._vin_net = OnnxNet(vin)
        self._onnx = {"det": det, "general": general}
        self._detector = self._general = None

    def lora_settings(
        self, training: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None
    ) -> Any:
        """LoRA for this model (:func:`vin_ocr.models.lora.resolve_lora`): targets default to
        :data:`DEFAULT_LORA_TARGETS`, nothing frozen by prefix. ``build`` applies it when
        ``finetune: lora`` (training puts the resolved settings in ``model.lora``)."""
        from vin_ocr.models.lora import resolve_lora

        model = self.settings.lora if model is None else model
        return resolve_lora(LORA_DEFAULTS, model, training)

    def _lora(self, model: nn.Module) -> nn.Module:
        from vin_ocr.models.lora import LoraSettings, apply_lora

        values = {**LORA_DEFAULTS, **(self.settings.lora or {})}
        return apply_lora(model, LoraSettings.from_mapping(values))

    # -- batches ---------------------------------------------------------------------------------

    def pixel_values(self, images: Sequence[Image]) -> torch.Tensor:
        s = self.settings
        return preprocess(images, s.height, s.min_width, s.max_width)

    def encode(self, text: str, where: str = "label") -> list[int]:
        """VIN-class indices (1..33) of ``text``; a character outside the alphabet raises."""
        bad = sorted({c for c in text if c not in ALPHABET})
        if bad:
            raise ValueError(f"{where}: {text!r} has character(s) {bad} outside the VIN alphabet")
        return [ALPHABET.index(c) + 1 for c in text]

    def collate(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """``pixel_values``, ``targets`` (concatenated VIN-class indices) and ``target_lengths``."""
        images, targets, lengths = [], [], []
        for sample in samples:
            images.append(self.training_image(sample))
            ids = self.encode(sample.vin, where=str(sample.image))
            targets.extend(ids)
            lengths.append(len(ids))
        return {
            "pixel_values": self.pixel_values(images),
            "targets": torch.tensor(targets, dtype=torch.long),
            "target_lengths": torch.tensor(lengths, dtype=torch.long),
        }

    def training_image(self, sample: Sample) -> Image:
        """What the recogniser is trained on for ``sample``: a line crop as it is; a photo
        (``crop: false``, or un-flagged and not line-shaped) cut to what :meth:`read` gives the
        VIN model when it reads that photo: the labelled ``box`` when there is one, else the
        detected line that matches the label, cut to the VIN's span (found once per photo and
        kept). A photo where no line matches is trained on whole, with a warning."""
        image = sample.load_image()
        photo = sample.crop is False or (sample.crop is None and needs_detection(image.size))
        if not photo:
            return image
        if sample.box is not None:
            return box_crop(image, sample.box)
        key = str(sample.image)
        if key not in self._lines:
            lines = self.detector().detect(image)
            general = self.general_reader()
            found = None
            if lines and general is not None:
                found = label_line(lines, general.read([ln.image for ln in lines]), sample.vin)
            if found is None:
                log.warning(
                    "%s: no text line matches its label %s; the photo is trained on whole "
                    "(give its VIN box as `box` in the manifest to fix this)",
                    sample.image,
                    sample.vin,
                )
            self._lines[key] = found if found is not None else image
        return self._lines[key]

    # -- training and inference ----------------------------------------------------------------

    def vin_logits(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (batch, time, 34) over blank + the VIN alphabet."""
        logits = ctc_logits(model, pixel_values)
        if logits.shape[-1] != len(self.class_index):
            logits = logits[..., self.class_index.to(logits.device)]
        return logits

    def logits(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """:meth:`vin_logits` of a collated batch (what a merge must reproduce)."""
        param = next(model.parameters())
        return self.vin_logits(model, batch["pixel_values"].to(param.device, dtype=param.dtype))

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean CTC loss (blank 0, per-sample loss divided by its target length)."""
        if self.settings.freeze_batch_norm:
            freeze_batch_norm(model)
        param = next(model.parameters())
        pixels = batch["pixel_values"].to(param.device, dtype=param.dtype)
        logits = self.vin_logits(model, pixels)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (time, batch, classes)
        steps, size = log_probs.shape[:2]
        return F.ctc_loss(
            log_probs,
            batch["targets"].to(param.device),
            torch.full((size,), steps, dtype=torch.long, device=param.device),
            batch["target_lengths"].to(param.device),
            blank=0,
            zero_infinity=True,
        )

    @torch.no_grad()
    def line_probs(self, model: nn.Module, images: Sequence[Image]) -> list[np.ndarray]:
        """Softmax probabilities (time, 34) over blank + the VIN alphabet for each line image,
        in batches of ``predict_batch_size`` (the model is put in eval mode meanwhile)."""
        step = self.settings.predict_batch_size
        if self._vin_net is not None:  # ONNX mode: the graph stands for the model
            net = self._vin_net
            return [p for i in range(0, len(images), step) for p in net(self.pixel_values(
                images[i : i + step]))]  # fmt: skip
        was_training = model.training
        model.eval()
        param = next(model.parameters())
        out: list[np.ndarray] = []
        try:
            for start in range(0, len(images), step):
                pixels = self.pixel_values(images[start : start + step])
                logits = self.vin_logits(model, pixels.to(param.device, dtype=param.dtype))
                out.extend(logits.float().softmax(-1).cpu().numpy())
        finally:
            model.train(was_training)
        return out

    def read(
        self,
        model: nn.Module,
        images: Sequence[Image],
        crops: Sequence[bool | None] | None = None,
    ) -> list[Reading]:
        """One :class:`~vin_ocr.reading.Reading` per image.

        Line crops (``crops[i]`` true; every image when ``crops`` is None) are recognised
        directly, batched. A scene (``crops[i]`` false) goes through text detection (the detector
        is loaded on the first scene) and :mod:`vin_ocr.models.pp_ocr_scene` (the general reader
        finds the VIN line, the VIN model reads it); the reading's ``box`` is the VIN line's box
        in image pixels. ``crops[i]`` None decides per image (:func:`vin_ocr.layout.is_line_crop`).
        Each VIN reading goes through :func:`vin_ocr.decoding.ctc.ctc_read` (the check-digit
        search when ``check_digit_search``)."""

        def detect(image: Image) -> tuple[list[TextLine], list[tuple[int, int, int, int]]]:
            lines = self.detector(next(model.parameters()).device).detect(image)
            return lines, [line.box for line in lines]

        flags, detected = settle(images, crops, detect)
        out = [Reading("")] * len(images)
        at = [i for i, crop in enumerate(flags) if crop]
        for i, probs in zip(at, self.line_probs(model, [images[i] for i in at]), strict=True):
            out[i] = self.decode_line(probs)
        for i, crop in enumerate(flags):
            if not crop:
                out[i] = read_scene(self, model, images[i], detected.get(i))
        return out

    def decode_line(self, probs: np.ndarray, search: bool | None = None) -> Reading:
        search = self.settings.check_digit_search if search is None else search
        return ctc_read(probs, VIN_CHARSET, search=search)

    def predict(self, model: nn.Module, images: Sequence[Image]) -> list[str]:
        """The texts of :meth:`read` with every image a line crop."""
        return texts(self.read(model, images))

    def detector(self, device: str | torch.device = "cpu") -> TextDetector:
        """The text detector of ``det_checkpoint``, loaded on the first call."""
        if self._detector is None:
            s, graph = self.settings.detection(), self._onnx.get("det")
            onnx = self._vin_net is not None
            self._detector = onnx_rt.onnx_detector(s, graph) if onnx else TextDetector(s, device)
        return self._detector

    def general_reader(self, device: str | torch.device = "cpu") -> GeneralReader | None:
        """The full-dictionary reader of ``general_checkpoint`` (None for ``none``), loaded on
        the first scene."""
        checkpoint = self.settings.general_checkpoint
        if checkpoint.lower() == "none":
            return None
        if self._general is None and self._vin_net is not None:
            self._general = onnx_rt.onnx_general_reader(checkpoint, self._onnx["general"])
        if self._general is None:
            self._general = GeneralReader.load(checkpoint, device)
        return self._general
