"""DeepSeek-OCR v1 (the original ``deepseek-ai/DeepSeek-OCR``) through its remote code, inference
only.

It needs transformers 4.46-4.47 (its remote code imports classes later removed) and calls
``.cuda()`` directly, so it cannot share an environment with LFM2.5-VL (transformers 5): ``build``
checks both before loading anything and fails with the recipe (docs/models.md).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vin_ocr.models.base import FamilyFacts
from vin_ocr.models.deepseek_ocr import DEEPSEEK_LM, DeepseekOcrSettings, lm_tower, sam_tower
from vin_ocr.models.spec import AttnSupport, ModelSpec, Tower, cfg_get, on_meta, spec_from_module
from vin_ocr.models.vlm import PROMPT, ModelLoadError, resolve_hardware, settings_from

if TYPE_CHECKING:
    from PIL.Image import Image

    from vin_ocr.data import Sample

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
    facts = FamilyFacts(spec=lambda cfg: spec(cfg), pipeline_tag="image-text-to-text")

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


#: Parameter count of deepseek-ai/DeepSeek-OCR: its bf16 safetensors hold 6,672,212,480 bytes.
PARAMS = 3_336_106_240


def tower_tokens(image_size: int, max_length: int) -> dict[str, int]:
    side = math.ceil(image_size / 64)
    return {
        "sam": (image_size // 16) ** 2,
        "clip": side**2 + 1,
        "language": side * (side + 1) + 1,
    }


def spec(model_cfg: Any) -> ModelSpec:
    """Remote code: total from the table, layer list from its shared decoder."""
    import dataclasses

    from transformers import DeepseekOcr2TextConfig, DeepseekOcr2TextModel

    lm = on_meta(DeepseekOcr2TextModel, DeepseekOcr2TextConfig(**DEEPSEEK_LM))
    towers = (
        sam_tower("model.sam_model"),
        # CLIP-L/14 on the SAM features: 24 layers, width 1024.
        Tower("clip", "model.vision_model", 24, 1024, 4096, 16, "encoder"),
        dataclasses.replace(lm_tower(), prefix="model"),
    )
    found = spec_from_module(
        lm,
        name=str(cfg_get(model_cfg, "name", "")),
        family="deepseek_ocr_v1",
        checkpoint=str(cfg_get(model_cfg, "checkpoint", "")),
        towers=towers,
        source="built-in table (6.67 GB of bf16 safetensors; remote code, not in transformers)",
        vocab_size=DEEPSEEK_LM["vocab_size"],
        # The remote DeepseekV2 code implements eager and flash_attention_2, not sdpa.
        attn=AttnSupport(flash_attention_2=True, sdpa=False),
        default_image_size=640,
        needs_cuda="DeepSeek-OCR v1's remote code calls .cuda() and needs transformers 4.46-4.47",
        tokens=tower_tokens,
    )
    linears = tuple((f"model.{n}", i, o) for n, i, o in found.linears)
    return dataclasses.replace(found, params=PARAMS, linears=linears, output_layer="lm_head")
