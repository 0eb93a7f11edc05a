"""LiquidAI LFM2-VL / LFM2.5-VL through transformers' native ``Lfm2Vl*`` classes.

Prompt (the model's chat template)::

    <|startoftext|><|im_start|>user\\n<image>What is the VIN ...<|im_end|>\\n
    <|im_start|>assistant\\n

followed in training by ``VIN<|im_end|>``; only those answer tokens carry a label. The image
becomes ``<|image_start|><image>*N<|image_end|>`` with ``N`` between ``min_image_tokens`` and
``max_image_tokens`` (the model card recommends 64-256), tiles when ``do_image_splitting`` and the
image is large.

Attention: LFM2 supports flash-attention 2, the SigLIP2 vision tower does not, so a
``flash_attention_2`` request is passed as ``{"text_config": fa2, "vision_config": "sdpa"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
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


log = logging.getLogger(__name__)

#: Default LoRA targets: every linear layer of the LFM2 language model (attention
#: ``q/k/v/out_proj``, short-conv ``in_proj/out_proj``, MLP ``w1/w2/w3``), none in SigLIP2.
LORA_TARGETS = (
    r"model\.language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|out_proj)|conv\.(in_proj|out_proj)|feed_forward\.(w1|w2|w3))"
)


@dataclass
class Lfm2VlSettings:
    """The keys of ``configs/model/lfm2_5_vl.yaml`` / ``lfm2_vl_450m.yaml``."""

    name: str = "lfm2_5_vl"
    family: str = "lfm2_vl"
    checkpoint: str = "LiquidAI/LFM2.5-VL-1.6B"
    revision: str | None = None
    #: Build a tiny random model of the same architecture with an offline tokenizer instead.
    tiny: bool = False
    min_image_tokens: int = 64
    max_image_tokens: int = 256
    do_image_splitting: bool = True
    max_new_tokens: int = 24
    quantization: str = "none"  # none | 4bit (QLoRA, CUDA + bitsandbytes)
    lora: dict[str, Any] = field(default_factory=dict)
    #: Answer generation (:class:`vin_ocr.decoding.vlm.VlmDecoding`): constrained, search.
    decoding: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.min_image_tokens <= self.max_image_tokens:
            raise ValueError(
                f"need 1 <= min_image_tokens ({self.min_image_tokens}) <= max_image_tokens "
                f"({self.max_image_tokens})"
            )


def attn_implementation_map(attn: str) -> dict[str, str]:
    """Per-sub-model attention: SigLIP2 has no flash-attention path, so it gets sdpa then."""
    vision = "sdpa" if attn == "flash_attention_2" else attn
    return {"": attn, "text_config": attn, "vision_config": vision}


class Lfm2Vl(PromptedVlm):
    """The ``lfm2_vl`` family (see :class:`vin_ocr.models.base.ModelFamily`)."""

    name = "lfm2_vl"
    lora_targets = LORA_TARGETS
    prompt = PROMPT

    def __init__(self) -> None:
        self.settings = Lfm2VlSettings()
        self.processor: Any = None

    # -- build ---------------------------------------------------------------------------------
    def build(self, cfg: Any, hardware: Any = None) -> tuple[torch.nn.Module, Any]:
        self.settings = s = settings_from(Lfm2VlSettings, cfg, self.name)
        place = resolve_hardware(hardware)
        quant = quantization_config(s.quantization, place.device, place.dtype)
        attn = attn_implementation_map(place.attn_implementation)
        if s.tiny:
            if quant is not None:
                raise ValueError("quantization is for real checkpoints; use tiny with none")
            from vin_ocr.models.tiny import tiny_lfm2_vl

            model, processor = tiny_lfm2_vl(
                min_image_tokens=s.min_image_tokens,
                max_image_tokens=s.max_image_tokens,
                do_image_splitting=s.do_image_splitting,
            )
            model.set_attn_implementation(attn)
            model.to(device=place.device, dtype=place.dtype)
        else:
            model, processor = _load(s, place.device, place.dtype, attn, quant)
        self.processor = processor
        return model, processor

    # -- data ----------------------------------------------------------------------------------
    def _prompts(self, images: Sequence[Image]) -> Any:
        proc = self._need_processor()
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}
        ]
        text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        s = self.settings
        return proc(
            images=[[im.convert("RGB")] for im in images],
            text=[text] * len(images),
            padding=True,
            padding_side="left",
            return_tensors="pt",
            min_image_tokens=s.min_image_tokens,
            max_image_tokens=s.max_image_tokens,
            do_image_splitting=s.do_image_splitting,
        )


def _load(
    s: Lfm2VlSettings, device: str, dtype: torch.dtype, attn: dict[str, str], quant: Any
) -> tuple[torch.nn.Module, Any]:
    """Load the real checkpoint (Hub id or local folder); failures raise with the reason."""
    from transformers import AutoConfig, AutoProcessor, Lfm2VlForConditionalGeneration

    where = f"{s.checkpoint!r}" + (f" at revision {s.revision!r}" if s.revision else "")
    try:
        config = AutoConfig.from_pretrained(s.checkpoint, revision=s.revision)
        if config.model_type != "lfm2_vl":
            raise ModelLoadError(
                f"{where} is a {config.model_type!r} model, not lfm2_vl: pick an LFM2-VL checkpoint"
            )
        kwargs: dict[str, Any] = {
            "revision": s.revision,
            "dtype": dtype,
            "attn_implementation": attn,
        }
        if quant is not None:
            kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
        model: torch.nn.Module = Lfm2VlForConditionalGeneration.from_pretrained(
            s.checkpoint, **kwargs
        )
        processor = AutoProcessor.from_pretrained(s.checkpoint, revision=s.revision)
    except ModelLoadError:
        raise
    except (OSError, ValueError, ImportError) as err:
        raise ModelLoadError(f"could not load LFM2-VL from {where}: {err}") from err
    if quant is None:
        model.to(device)
    return model, processor
