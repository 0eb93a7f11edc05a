"""DeepSeek-OCR: version 2 through transformers' native ``DeepseekOcr2*`` classes, version 1
(the original ``deepseek-ai/DeepSeek-OCR``) through its remote code, inference only.

DeepSeek-OCR-2 prompt (plain, as on the model card; no chat template)::

    <｜begin▁of▁sentence｜><image>*N\\nWhat is the VIN ...

followed in training by ``VIN<｜end▁of▁sentence｜>``; only the answer tokens carry a label.
``N = ceil(base_size/64)^2 + crops * ceil(image_size/64)^2 + 1``: the global view is
``base_size`` pixels, local crops are ``image_size`` tiles (``crop_mode``, for images larger than
one tile). The real model has learned queries for 768-px (144) and 1024-px (256) views only.
Native weights: ``deepseek-community/DeepSeek-OCR-2`` (``deepseek-ai/DeepSeek-OCR-2`` holds the
remote-code format and is refused with that hint). No flash-attention path: sdpa or eager.

DeepSeek-OCR v1 needs transformers 4.46-4.47 (its remote code imports classes later removed) and
calls ``.cuda()`` directly, so it cannot share an environment with LFM2.5-VL (transformers 5):
``build`` checks both before loading anything and fails with the recipe (docs/models.md).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vin_ocr.models.lora import quantization_config
from vin_ocr.models.vlm import (
    PROMPT,
    ModelLoadError,
    PromptedVlm,
    resolve_hardware,
    settings_from,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from vin_ocr.data import Sample

log = logging.getLogger(__name__)

#: Default LoRA targets: attention and the dense / shared-expert MLPs of the DeepSeek-V2 language
#: model. Routed experts are 3-D parameters: add ``lora.target_parameters`` to adapt them.
LORA_TARGETS = (
    r"model\.language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(shared_experts\.)?(gate_proj|up_proj|down_proj))"
)
#: The routed experts, for ``lora.target_parameters`` (PEFT >= 0.17).
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]

V1_TRANSFORMERS = ("4.46", "4.48")  # [lower, upper)
V1_ENVIRONMENT = """\
DeepSeek-OCR v1 (deepseek-ai/DeepSeek-OCR) runs its own remote code, which needs
transformers >=4.46,<4.48 and a CUDA GPU (it calls .cuda() directly). This project's main
environment has transformers 5 (for LFM2.5-VL and DeepSeek-OCR-2), so use a separate one:

    python -m venv .venv-dsocr1 && . .venv-dsocr1/bin/activate
    pip install torch==2.6.0 torchvision==0.21.0 --index-url https://download.pytorch.org/whl/cu118
    pip install transformers==4.46.3 tokenizers==0.20.3 einops addict easydict
    pip install flash-attn==2.7.3 --no-build-isolation   # optional
    pip install --no-deps -e .

or use model=deepseek_ocr (DeepSeek-OCR-2, native in transformers 5). See docs/models.md."""


@dataclass
class DeepseekOcrSettings:
    """The keys of ``configs/model/deepseek_ocr.yaml`` and ``deepseek_ocr_v1.yaml``."""

    name: str = "deepseek_ocr"
    family: str = "deepseek_ocr2"
    checkpoint: str = "deepseek-community/DeepSeek-OCR-2"
    revision: str | None = None
    tiny: bool = False
    #: Global view size in pixels (768 or 1024 for the real model).
    base_size: int = 1024
    #: Local crop (tile) size in pixels.
    image_size: int = 768
    #: Add local crops for images larger than one tile.
    crop_mode: bool = True
    min_crops: int = 2
    max_crops: int = 6
    max_new_tokens: int = 24
    quantization: str = "none"  # none | 4bit (QLoRA, CUDA + bitsandbytes)
    lora: dict[str, Any] = field(default_factory=dict)
    #: Answer generation (:class:`vin_ocr.decoding.vlm.VlmDecoding`): constrained, search.
    decoding: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.crop_mode and self.base_size != self.image_size:
            # Without crops the processor resizes the global view to image_size but counts
            # base_size tokens for it: the two must agree.
            raise ValueError(
                f"crop_mode: false needs base_size == image_size (got {self.base_size} and "
                f"{self.image_size}): the global view is then an image_size tile"
            )


class DeepseekOcr2(PromptedVlm):
    """The ``deepseek_ocr2`` family (see :class:`vin_ocr.models.base.ModelFamily`)."""

    name = "deepseek_ocr2"
    lora_targets = LORA_TARGETS
    prompt = PROMPT

    def __init__(self) -> None:
        self.settings = DeepseekOcrSettings()
        self.processor: Any = None

    def build(self, cfg: Any, hardware: Any = None) -> tuple[torch.nn.Module, Any]:
        self.settings = s = settings_from(DeepseekOcrSettings, cfg, self.name)
        place = resolve_hardware(hardware)
        quant = quantization_config(s.quantization, place.device, place.dtype)
        attn = place.attn_implementation
        if attn == "flash_attention_2":
            log.warning("DeepSeek-OCR-2 has no flash-attention path in transformers: using sdpa")
            attn = "sdpa"
        if s.tiny:
            if quant is not None:
                raise ValueError("quantization is for real checkpoints; use tiny with none")
            from vin_ocr.models.tiny import DEEPSEEK_TINY_IMAGE_SIZE, tiny_deepseek_ocr2

            # The tiny model's query count only matches one global view of this size, no crops.
            size = DEEPSEEK_TINY_IMAGE_SIZE
            if (s.base_size, s.image_size, s.crop_mode) != (size, size, False):
                log.info("tiny DeepSeek-OCR-2: base_size=image_size=%d, crop_mode=false", size)
                s.base_size, s.image_size, s.crop_mode = size, size, False
            model, processor = tiny_deepseek_ocr2()
            model.set_attn_implementation(attn)
            model.to(device=place.device, dtype=place.dtype)
        else:
            model, processor = _load_v2(s, place.device, place.dtype, attn, quant)
        self.processor = processor
        return model, processor

    def _prompts(self, images: Sequence[Image]) -> Any:
        proc = self._need_processor()
        s = self.settings
        size = {"height": s.base_size, "width": s.base_size}
        return proc(
            images=[im.convert("RGB") for im in images],
            text=[f"{proc.image_token}\n{PROMPT}"] * len(images),
            padding=True,
            padding_side="left",
            return_tensors="pt",
            size=size,
            tile_size=s.image_size,
            crop_to_patches=s.crop_mode,
            min_patches=s.min_crops,
            max_patches=s.max_crops,
        )


def _load_v2(
    s: DeepseekOcrSettings, device: str, dtype: torch.dtype, attn: str, quant: Any
) -> tuple[torch.nn.Module, Any]:
    """Load the native DeepSeek-OCR-2 checkpoint; failures raise with the reason."""
    from transformers import AutoConfig, AutoProcessor, DeepseekOcr2ForConditionalGeneration

    where = f"{s.checkpoint!r}" + (f" at revision {s.revision!r}" if s.revision else "")
    try:
        config = AutoConfig.from_pretrained(s.checkpoint, revision=s.revision)
    except ValueError as err:
        # transformers cannot map the remote-code format ("deepseek_vl_v2") without
        # trust_remote_code, which this family never sets.
        raise ModelLoadError(
            f"{where} is not a native DeepSeek-OCR-2 checkpoint ({err}); the transformers-format "
            "weights are deepseek-community/DeepSeek-OCR-2"
        ) from err
    except OSError as err:
        raise ModelLoadError(f"could not load DeepSeek-OCR-2 from {where}: {err}") from err
    if config.model_type != "deepseek_ocr2":
        raise ModelLoadError(
            f"{where} is a {config.model_type!r} model, not deepseek_ocr2; the transformers-format "
            "DeepSeek-OCR-2 weights are deepseek-community/DeepSeek-OCR-2"
        )
    kwargs: dict[str, Any] = {"revision": s.revision, "dtype": dtype, "attn_implementation": attn}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
    try:
        model: torch.nn.Module = DeepseekOcr2ForConditionalGeneration.from_pretrained(
            s.checkpoint, **kwargs
        )
        processor = AutoProcessor.from_pretrained(s.checkpoint, revision=s.revision)
    except (OSError, ValueError, ImportError) as err:
        raise ModelLoadError(f"could not load DeepSeek-OCR-2 from {where}: {err}") from err
    if quant is None:
        model.to(device)
    return model, processor


# -- DeepSeek-OCR v1 (remote code, separate environment) ---------------------------------------


def check_v1_environment() -> None:
    """Raise ``RuntimeError`` with the separate-environment recipe unless this environment can run
    DeepSeek-OCR v1's remote code (transformers 4.46-4.47 and a CUDA GPU)."""
    import transformers
    from packaging.version import Version

    problems = []
    version = Version(transformers.__version__)
    low, high = (Version(v) for v in V1_TRANSFORMERS)
    if not low <= version < high:
        problems.append(f"transformers {version} is installed (needs >={low},<{high})")
    if not torch.cuda.is_available():
        problems.append("no CUDA GPU is available")
    if problems:
        raise RuntimeError(
            f"cannot run DeepSeek-OCR v1 here: {'; '.join(problems)}.\n{V1_ENVIRONMENT}"
        )


class DeepseekOcrV1:
    """``deepseek_ocr_v1``: the original DeepSeek-OCR via ``trust_remote_code``; inference only
    (``predict`` calls the remote ``model.infer``). Fine-tune DeepSeek-OCR-2 instead."""

    name = "deepseek_ocr_v1"
    prompt = PROMPT

    def __init__(self) -> None:
        self.settings = DeepseekOcrSettings(
            name="deepseek_ocr_v1",
            family="deepseek_ocr_v1",
            checkpoint="deepseek-ai/DeepSeek-OCR",
            image_size=640,
        )
        self.tokenizer: Any = None

    def build(self, cfg: Any, hardware: Any = None) -> tuple[torch.nn.Module, Any]:
        self.settings = s = settings_from(DeepseekOcrSettings, cfg, self.name)
        if s.tiny:
            raise ValueError(
                "deepseek_ocr_v1 has no tiny model (its architecture lives in remote code); "
                "use model=deepseek_ocr for tiny runs"
            )
        if s.quantization not in ("none", None):
            raise ValueError("deepseek_ocr_v1 is inference only: set quantization: none")
        check_v1_environment()
        from transformers import AutoModel, AutoTokenizer

        place = resolve_hardware(hardware)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                s.checkpoint, revision=s.revision, trust_remote_code=True
            )
            model = AutoModel.from_pretrained(
                s.checkpoint,
                revision=s.revision,
                trust_remote_code=True,
                use_safetensors=True,
                _attn_implementation=place.attn_implementation,
            )
        except (OSError, ValueError, ImportError) as err:
            raise ModelLoadError(
                f"could not load DeepSeek-OCR v1 from {s.checkpoint!r}: {err}"
            ) from err
        model = model.eval().cuda().to(torch.bfloat16)
        self.tokenizer = tokenizer
        return model, tokenizer

    def collate(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        raise NotImplementedError(
            "deepseek_ocr_v1 is inference only; fine-tune model=deepseek_ocr (DeepSeek-OCR-2)"
        )

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(
            "deepseek_ocr_v1 is inference only; fine-tune model=deepseek_ocr (DeepSeek-OCR-2)"
        )

    def predict(self, model: torch.nn.Module, images: Sequence[Image]) -> list[str]:
        if self.tokenizer is None:
            raise RuntimeError(f"{self.name}: call build() before predict()")
        s = self.settings
        out = []
        with tempfile.TemporaryDirectory(prefix="dsocr1-") as tmp:
            for i, image in enumerate(images):
                path = Path(tmp) / f"{i}.png"
                image.convert("RGB").save(path)
                text = model.infer(  # type: ignore[operator]
                    self.tokenizer,
                    prompt=f"<image>\n{PROMPT}",
                    image_file=str(path),
                    output_path=tmp,
                    base_size=s.base_size,
                    image_size=s.image_size,
                    crop_mode=s.crop_mode,
                    save_results=False,
                    eval_mode=True,
                )
                out.append((text or "").strip())
        return out
