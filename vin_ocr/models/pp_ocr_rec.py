"""PP-OCR recognition: the model config (:class:`PPOCRSettings`), preprocessing, CTC logits and
decoding, the VIN head, loading (tiny, the rapidocr wheel, the Hub, a folder), and the preflight's
memory spec.

:mod:`vin_ocr.models.pp_ocr` (the family) builds on these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vin_ocr.models.pp_ocr_det import DetSettings
from vin_ocr.models.spec import AttnSupport, ModelSpec, Tower, cfg_get, on_meta, spec_from_module
from vin_ocr.models.vlm import ModelLoadError
from vin_ocr.vin import ALPHABET

if TYPE_CHECKING:
    from PIL.Image import Image

#: The VIN model's classes: CTC blank (index 0, ``""``) then the 33 VIN characters.
VIN_CHARSET: list[str] = ["", *ALPHABET]

HUB_CHECKPOINTS = {
    "v6_small": "PaddlePaddle/PP-OCRv6_small_rec_safetensors",
    "v5_mobile": "PaddlePaddle/PP-OCRv5_mobile_rec_safetensors",
    "v5_server": "PaddlePaddle/PP-OCRv5_server_rec_safetensors",
}


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
    det_limit_side_len: int = 512  # 736 (RapidOCR) reads no better: docs/benchmarks.md
    det_limit_type: str = "min"  # min | max | resize_long
    det_dilation: bool = True  # dilate the text mask before finding boxes (RapidOCR's default)
    det_retry: bool = True  # scenes without a VIN: detect again, more permissively
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


def unwrap(model: nn.Module) -> Any:
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
    handle = unwrap(model).head.head.register_forward_hook(
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
    base = unwrap(model)
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


def freeze_batch_norm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            module.eval()


# ------------------------------------------------------------------------------------------------
# The preflight's memory spec.

CLASSES = {
    "v6_small": "PPOCRV6SmallRec",
    "v6_tiny": "PPOCRV6TinyRec",
    "v5_mobile": "PPOCRV5MobileRec",
    "v5_server": "PPOCRV5ServerRec",
}
WIDTH = 320  # the width ACTIVATION_BYTES is measured at

#: Activation bytes autograd keeps for one 48x320 sample in fp32, measured with
#: :func:`vin_ocr.models.spec.saved_activation_bytes` on transformers' default configs
#: (2026-11-23; the figure scales linearly with batch and width). Building and running the real
#: model takes ~15 s on 2 CPU cores, too slow for a preflight, so the measurement is stored;
#: scripts/bench_preflight.py re-measures.
ACTIVATION_BYTES = {"v6_small": 55_623_872, "v6_tiny": 53_442_976}


def spec(model_cfg: Any) -> ModelSpec:
    """PP-OCR recognition: parameters counted on the meta device, activations from the table."""
    import transformers

    variant = str(cfg_get(model_cfg, "variant", "") or "v6_small")
    if variant not in CLASSES:
        raise KeyError(f"unknown PP-OCR variant {variant!r} (known: {', '.join(CLASSES)})")
    prefix = CLASSES[variant]
    model_cls = getattr(transformers, f"{prefix}ForTextRecognition")
    model = on_meta(model_cls, getattr(transformers, f"{prefix}Config")())
    source = "computed from the config (transformers' default config, counted exactly)"
    if variant in ACTIVATION_BYTES:
        acts = ACTIVATION_BYTES[variant]
    else:
        acts = ACTIVATION_BYTES["v6_small"]
        source += "; activations: PP-OCRv6-small's measured figure"
    tower = Tower(
        "ppocr", "", 0, 0, 0, 0, kind="measured", bytes_per_sample_fp32=acts, measured_width=WIDTH
    )
    return spec_from_module(
        model,
        name=str(cfg_get(model_cfg, "name", "")),
        family="pp_ocr",
        checkpoint=str(cfg_get(model_cfg, "checkpoint", "")),
        towers=(tower,),
        source=source,
        checkpoint_dtype="fp32",
        attn=AttnSupport(flash_attention_2=False, sdpa=False),
        default_image_size=WIDTH,
        qlora=False,  # no 4-bit path
        image_budget=False,  # the input is a 48-pixel-high line, padded to its width
    )
