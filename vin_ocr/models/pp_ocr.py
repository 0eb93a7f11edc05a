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
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vin_ocr.decoding.ctc import ctc_read
from vin_ocr.layout import needs_detection, settle
from vin_ocr.models.pp_ocr_det import DetSettings, TextDetector, TextLine
from vin_ocr.models.pp_ocr_scene import (
    GeneralReader,
    box_crop,
    cut_span,
    fallback_ok,
    fuse_line,
    label_line,
    line_confidence,
    retry_views,
    span_box,
    vin_span,
)
from vin_ocr.models.vlm import ModelLoadError, resolve_hardware, settings_from
from vin_ocr.reading import Reading, texts
from vin_ocr.vin import ALPHABET, VIN_LENGTH, pick_vin_at

if TYPE_CHECKING:
    from PIL.Image import Image

    from vin_ocr.data import Sample

log = logging.getLogger(__name__)

__all__ = [
    "HUB_CHECKPOINTS",
    "VIN_CHARSET",
    "PPOCRFamily",
    "PPOCRSettings",
    "ctc_logits",
    "export_onnx",
    "greedy_decode",
    "preprocess",
    "tiny_rec_model",
    "vin_class_index",
    "vin_head",
]

#: The VIN model's classes: CTC blank (index 0, ``""``) then the 33 VIN characters.
VIN_CHARSET: list[str] = ["", *ALPHABET]

HUB_CHECKPOINTS = {
    "v6_small": "PaddlePaddle/PP-OCRv6_small_rec_safetensors",
    "v5_mobile": "PaddlePaddle/PP-OCRv5_mobile_rec_safetensors",
    "v5_server": "PaddlePaddle/PP-OCRv5_server_rec_safetensors",
}

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


#: Text-detection (pixel, box) thresholds of the second pass on a scene where no VIN was found.
RETRY_THRESHOLDS = (0.2, 0.3)


@dataclass
class PPOCRSettings:
    """What ``configs/model/pp_ocr.yaml`` holds; an unknown key fails naming it."""

    name: str = "pp_ocr"
    family: str = "pp_ocr"
    variant: str = "v6_small"  # v6_small | v5_mobile | v5_server
    checkpoint: str = "rapidocr"  # rapidocr | hub | a Hub id | a local folder
    tiny: bool = False  # a tiny random model (tests, debug=smoke)
    head: str = "vin"  # vin | masked
    finetune: str = "full"  # full | lora
    lora: dict[str, Any] = field(default_factory=dict)
    freeze_batch_norm: bool = True
    height: int = 48
    min_width: int = 320
    max_width: int = 320  # PaddleOCR training squashes wider crops to 320
    predict_batch_size: int = 32
    check_digit_search: bool = True  # vin_ocr.decoding.ctc.ctc_read's search
    # Text detection for whole photos (vin_ocr.models.pp_ocr_det); not used on line crops.
    det_checkpoint: str | None = None  # None: the rapidocr wheel's ONNX | hub | Hub id | folder
    det_thresh: float = 0.3
    det_box_thresh: float = 0.5
    det_unclip_ratio: float = 1.6
    det_limit_side_len: int = 736
    det_limit_type: str = "min"  # min | max | resize_long
    det_dilation: bool = True  # dilate the text mask before finding boxes (RapidOCR's default)
    det_retry: bool = True  # scenes without a VIN: detect again at RETRY_THRESHOLDS
    # The full-dictionary reader that finds the VIN line in whole photos (pp_ocr_scene.py):
    # rapidocr | hub | a Hub id / folder | none (the VIN model reads every line).
    general_checkpoint: str = "rapidocr"

    def __post_init__(self) -> None:
        checks = {
            "variant": (self.variant, tuple(HUB_CHECKPOINTS)),
            "head": (self.head, ("vin", "masked")),
            "finetune": (self.finetune, ("full", "lora")),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"model.{key} must be one of {list(allowed)}, not {value!r}")
        if self.height != 48:
            raise ValueError(f"model.height must be 48 for PP-OCR recognition, not {self.height}")
        if not 8 <= self.min_width <= self.max_width:
            raise ValueError(
                f"need 8 <= model.min_width <= model.max_width, got {self.min_width}, "
                f"{self.max_width}"
            )
        self.detection()  # a bad det_* value fails now, not at the first scene

    def detection(self) -> DetSettings:
        """The ``det_*`` keys as :class:`~vin_ocr.models.pp_ocr_det.DetSettings`."""
        return DetSettings(
            checkpoint=self.det_checkpoint,
            thresh=self.det_thresh,
            box_thresh=self.det_box_thresh,
            unclip_ratio=self.det_unclip_ratio,
            limit_side_len=self.det_limit_side_len,
            limit_type=self.det_limit_type,
            dilation=self.det_dilation,
        )


# ------------------------------------------------------------------------------------------------
# Tensors in, tensors out.


def preprocess(
    images: Sequence[Image], height: int = 48, min_width: int = 320, max_width: int = 1600
) -> torch.Tensor:
    """PP-OCR recognition input (batch, 3, ``height``, W) for RGB PIL images: each resized to
    ``height`` keeping its aspect ratio (at most ``max_width`` wide), BGR, scaled to [-1, 1], and
    right-padded with 0 to W = the widest resized image (at least ``min_width``), rounded up to a
    multiple of 8 (the model emits one time step per 8 pixels)."""
    if not images:
        raise ValueError("preprocess needs at least one image")
    widths = []
    for image in images:
        w, h = image.size
        if w < 1 or h < 1:
            raise ValueError(f"empty image ({w}x{h})")
        widths.append(min(max_width, max(1, math.ceil(height * w / h))))
    width = 8 * math.ceil(max(min_width, *widths) / 8)
    batch = torch.zeros(len(images), 3, height, width)
    for i, (image, w) in enumerate(zip(images, widths, strict=True)):
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32))
        pixels = pixels.permute(2, 0, 1).flip(0).unsqueeze(0)  # RGB -> BGR, (1, 3, h, w)
        resized = F.interpolate(
            pixels, size=(height, w), mode="bilinear", align_corners=False, antialias=False
        )
        batch[i, :, :, :w] = resized[0].clamp(0, 255) / 127.5 - 1.0
    return batch


def _base(model: nn.Module) -> Any:
    """The transformers model inside DDP / compile and PEFT wrappers (PEFT injects its adapters
    in place, so the modules found here are the ones that run)."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model, keep_torch_compile=False)
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def ctc_logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Pre-softmax logits (batch, time, classes) of a transformers PP-OCR recogniser.

    The model runs through its own ``forward`` (so DistributedDataParallel syncs gradients and
    PEFT / autocast wrappers apply) and the classifier's output is read with a forward hook: the
    native forward returns softmax probabilities, too lossy for a CTC loss."""
    captured: list[torch.Tensor] = []
    handle = _base(model).head.head.register_forward_hook(
        lambda _module, _args, output: captured.append(output)
    )
    try:
        model(pixel_values)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"the recogniser's classifier ran {len(captured)} times in one forward")
    return captured[0]


def greedy_decode(logits: torch.Tensor, charset: Sequence[str]) -> list[str]:
    """Best-path CTC decoding: argmax per step, merge repeats, drop the blank (index 0)."""
    best = logits.argmax(-1).cpu()
    texts = []
    for row in best:
        keep = torch.ones_like(row, dtype=torch.bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != 0
        texts.append("".join(charset[int(i)] for i in row[keep]))
    return texts


def vin_class_index(charset: Sequence[str]) -> torch.Tensor:
    """Model class indices of [blank, *VIN alphabet] in ``charset`` (index 0 = blank)."""
    position = {c: i for i, c in enumerate(charset) if i > 0}
    missing = [c for c in ALPHABET if c not in position]
    if missing:
        raise ValueError(f"the model's charset lacks the VIN character(s) {missing}")
    return torch.tensor([0, *(position[c] for c in ALPHABET)])


def vin_head(model: nn.Module, charset: Sequence[str]) -> None:
    """Replace the recogniser's classifier by a blank + 33 VIN-character head, initialised from
    the rows of the same characters in the current head (in place; also updates the config)."""
    base = _base(model)
    old: nn.Linear = base.head.head
    index = vin_class_index(charset)
    new = nn.Linear(old.in_features, len(index), device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[index])
        new.bias.copy_(old.bias[index])
    base.head.head = new
    base.config.head_out_channels = len(index)


# ------------------------------------------------------------------------------------------------
# Building.


def tiny_rec_model(num_classes: int) -> nn.Module:
    """A tiny random PP-OCRv6-small recogniser (same classes, same strides; ~40 k parameters)."""
    from transformers import (
        PPLCNetV4Config,
        PPOCRV6SmallRecConfig,
        PPOCRV6SmallRecForTextRecognition,
    )

    backbone = PPLCNetV4Config(
        stem_channels=[3, 8, 16],
        block_configs=[
            [[3, 16, 16, 1, True]],
            [[3, 16, 16, 1, False]],
            [[3, 16, 32, [2, 1], False]],
            [[3, 32, 32, [2, 1], True]],
        ],
        out_features=["stage4"],  # type: ignore[call-arg]
    )
    config = PPOCRV6SmallRecConfig(
        backbone_config=backbone,
        hidden_size=16,
        num_attention_heads=2,
        depth=1,
        head_out_channels=num_classes,
    )
    torch.manual_seed(0)
    model = PPOCRV6SmallRecForTextRecognition(config)
    # transformers initialises with N(0, 0.02): through 20 layers without batch statistics the
    # logits would be ~1e-12. PyTorch's own (Kaiming) initialisation keeps them of order one.
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.reset_parameters()
    return model


#: Charset of the tiny model: blank, digits, A-Z (I, O, Q included, so masking matters), space.
TINY_CHARSET: list[str] = ["", *"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", " "]


def _load_hub(checkpoint: str) -> tuple[nn.Module, list[str]]:
    from transformers import AutoImageProcessor, AutoModelForTextRecognition

    try:
        model = AutoModelForTextRecognition.from_pretrained(checkpoint)
        processor = AutoImageProcessor.from_pretrained(checkpoint)
    except Exception as exc:
        raise ModelLoadError(f"cannot load PP-OCR checkpoint {checkpoint!r}: {exc}") from exc
    characters = list(getattr(processor, "character_list", None) or [])
    classes = model.config.head_out_channels
    if len(characters) == classes - 1:  # a dictionary without the blank
        characters = ["", *characters]
    if len(characters) != classes:
        raise ModelLoadError(
            f"{checkpoint}: the image processor's character_list has {len(characters)} entries "
            f"for a {classes}-class head"
        )
    characters[0] = ""
    return model, characters


def load_recognizer(settings: PPOCRSettings) -> tuple[nn.Module, list[str]]:
    """The pretrained recogniser and its charset, as ``settings`` asks (no VIN head yet)."""
    if settings.tiny:
        return tiny_rec_model(len(TINY_CHARSET)), list(TINY_CHARSET)
    if settings.checkpoint == "rapidocr":
        if settings.variant != "v6_small":
            raise ModelLoadError(
                f"checkpoint 'rapidocr' holds PP-OCRv6-small only, not {settings.variant!r}; "
                "use checkpoint: hub (or a Hub id / folder) for other variants"
            )
        from vin_ocr.models.pp_ocr_convert import load_rapidocr_rec

        return load_rapidocr_rec()
    checkpoint = settings.checkpoint
    if checkpoint == "hub":
        checkpoint = HUB_CHECKPOINTS[settings.variant]
    return _load_hub(checkpoint)


def _freeze_batch_norm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            module.eval()


class PPOCRFamily:
    """The :class:`~vin_ocr.models.base.ModelFamily` for PP-OCR recognition (CTC)."""

    name = "pp_ocr"

    def __init__(self, cfg: Any = None) -> None:
        self.settings = settings_from(PPOCRSettings, cfg, self.name)
        self.charset: list[str] = list(VIN_CHARSET)
        self.class_index = torch.arange(len(VIN_CHARSET))
        self._detector: TextDetector | None = None
        self._general: GeneralReader | None = None
        self._lines: dict[str, Image] = {}  # photo -> its VIN line, for training

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

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean CTC loss (blank 0, per-sample loss divided by its target length)."""
        if self.settings.freeze_batch_norm:
            _freeze_batch_norm(model)
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
        was_training = model.training
        model.eval()
        param = next(model.parameters())
        out: list[np.ndarray] = []
        step = self.settings.predict_batch_size
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
            out[i] = self._ctc_read(probs)
        for i, crop in enumerate(flags):
            if not crop:
                out[i] = self._read_scene(model, images[i], detected.get(i))
        return out

    def _ctc_read(self, probs: np.ndarray, search: bool | None = None) -> Reading:
        search = self.settings.check_digit_search if search is None else search
        return ctc_read(probs, VIN_CHARSET, search=search)

    def predict(self, model: nn.Module, images: Sequence[Image]) -> list[str]:
        """The texts of :meth:`read` with every image a line crop."""
        return texts(self.read(model, images))

    def detector(self, device: str | torch.device = "cpu") -> TextDetector:
        """The text detector of ``det_checkpoint``, loaded on the first call."""
        if self._detector is None:
            self._detector = TextDetector(self.settings.detection(), device)
        return self._detector

    def general_reader(self, device: str | torch.device = "cpu") -> GeneralReader | None:
        """The full-dictionary reader of ``general_checkpoint`` (None for ``none``), loaded on
        the first scene."""
        checkpoint = self.settings.general_checkpoint
        if checkpoint.lower() == "none":
            return None
        if self._general is None:
            self._general = GeneralReader.load(checkpoint, device)
        return self._general

    def _read_scene(
        self, model: nn.Module, image: Image, lines: list[TextLine] | None = None
    ) -> Reading:
        device = next(model.parameters()).device
        if lines is None:
            lines = self.detector(device).detect(image)
        if not lines:
            return Reading("")
        general = self.general_reader(device)
        if general is None:
            return self._read_lines_vin_model(model, lines)
        read = general.read([line.image for line in lines])
        text, at = pick_vin_at([r.text for r in read])
        # Glare and widely spaced characters split or hide a VIN line at the default thresholds:
        # detect again, more permissively, then on the photo darkened against glare.
        for view in retry_views(image) if at is None and self.settings.det_retry else ():
            retry = self.detector(device).detect(view, *RETRY_THRESHOLDS)
            retry_read = general.read([line.image for line in retry]) if retry else []
            text, at = pick_vin_at([r.text for r in retry_read])
            if at is not None:
                lines, read = retry, retry_read
                break
        if at is None:  # the general reader found no VIN: the VIN model's pick, if valid
            found = self._read_lines_vin_model(model, lines)
            return found if fallback_ok(found.text) else Reading("")
        line = lines[at]
        span = vin_span(read[at], text)
        crop = cut_span(line.image, span, len(text)) if span is not None else line.image
        vin_model = self._ctc_read(self.line_probs(model, [crop])[0])
        if span is None:  # the VIN model read the whole line: its VIN, if any
            picked, where = pick_vin_at([vin_model.text])
            vin_model = Reading(picked) if where is not None else Reading("")
        fused = fuse_line(vin_model, text, line_confidence(read[at], text))
        box = span_box(line.quad, line.image.size[0], span) if span is not None else line.box
        return replace(fused, box=box)

    def _read_lines_vin_model(self, model: nn.Module, lines: Sequence[TextLine]) -> Reading:
        """Every line read by the VIN model, the VIN picked among them (no general reader)."""
        probs = self.line_probs(model, [line.image for line in lines])
        readings = [self._ctc_read(p, search=False) for p in probs]
        text, at = pick_vin_at([r.text for r in readings])
        if at is None:
            # The VIN alphabet has no space or punctuation: a label on the VIN's line merges
            # with it ("V.I.N. WAUR..." reads "VJNWAUR..."). Labels come first: try line ends.
            text, at = pick_vin_at([r.text[-VIN_LENGTH:] for r in readings])
        if at is None:
            return Reading("")
        box = lines[at].box
        line = readings[at]
        if line.text == text and self.settings.check_digit_search:
            return replace(self._ctc_read(probs[at]), box=box)
        start = line.text.find(text)
        conf = line.char_conf[start : start + len(text)] if start >= 0 and line.char_conf else None
        return Reading(text, char_conf=conf, box=box)


# ------------------------------------------------------------------------------------------------
# ONNX export.


class _VinProbs(nn.Module):
    """The exported graph: pixel values -> softmax probabilities over blank + VIN alphabet."""

    class_index: torch.Tensor

    def __init__(self, model: Any, class_index: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("class_index", class_index.clone(), persistent=False)
        self.sliced = len(class_index) != model.config.head_out_channels

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits = ctc_logits(self.model, pixel_values)
        if self.sliced:
            logits = logits.index_select(-1, self.class_index)
        return logits.softmax(-1)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    class_index: torch.Tensor | None = None,
    opset: int = 17,
    atol: float = 1e-4,
) -> float:
    """Export the recogniser to ONNX (input ``pixel_values`` (batch, 3, 48, width), output
    ``probs`` (batch, width / 8, 34)), dynamic batch and width; a PEFT model is merged first.
    The file is checked with onnxruntime on two shapes; returns the largest difference from
    torch, and raises ``RuntimeError`` if it exceeds ``atol``. Written via a temporary file."""
    import onnxruntime as ort

    path = Path(path)
    base = _base(model)
    if base is not model:  # PEFT: fold the adapters into a copy
        import copy

        base = copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]
    base = base.float().cpu().eval()
    if class_index is None:
        class_index = torch.arange(base.config.head_out_channels)
    wrapper = _VinProbs(base, class_index).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    example = torch.zeros(1, 3, 48, 320)
    with warnings.catch_warnings():
        # The TorchScript exporter (deprecated in favour of dynamo, which needs onnxscript) warns
        # about traced Python booleans that are constant for this model (checked below).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            input_names=["pixel_values"],
            output_names=["probs"],
            dynamic_axes={
                "pixel_values": {0: "batch", 3: "width"},
                "probs": {0: "batch", 1: "time"},
            },
            opset_version=opset,
            dynamo=False,
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in ((2, 3, 48, 320), (3, 3, 48, 480)):
        x = torch.rand(shape, generator=generator) * 2 - 1
        with torch.no_grad():
            want = wrapper(x).numpy()
        got = session.run(None, {"pixel_values": x.numpy()})[0]
        if got.shape != want.shape:
            raise RuntimeError(f"{path}: ONNX output {got.shape} vs torch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > atol:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{path}: ONNX and torch differ by {worst:.2e} (> {atol:.0e})")
    tmp.replace(path)
    return worst
