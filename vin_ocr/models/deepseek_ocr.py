"""DeepSeek-OCR-2 through transformers' native ``DeepseekOcr2*`` classes (version 1, the original
``deepseek-ai/DeepSeek-OCR`` through its remote code, is :mod:`vin_ocr.models.deepseek_ocr_v1`).

DeepSeek-OCR-2 prompt (plain, as on the model card; no chat template)::

    <｜begin▁of▁sentence｜><image>*N\\nWhat is the VIN ...

followed in training by ``VIN<｜end▁of▁sentence｜>``; only the answer tokens carry a label.
``N = ceil(base_size/64)^2 + crops * ceil(image_size/64)^2 + 1``: the global view is
``base_size`` pixels, local crops are ``image_size`` tiles (``crop_mode``, for images larger than
one tile). The real model has learned queries for 768-px (144) and 1024-px (256) views only.
Native weights: ``deepseek-community/DeepSeek-OCR-2`` (``deepseek-ai/DeepSeek-OCR-2`` holds the
remote-code format and is refused with that hint). No flash-attention path: sdpa or eager.

"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from vin_ocr.models.base import FamilyFacts
from vin_ocr.models.lora import quantization_config
from vin_ocr.models.spec import ModelSpec, Tower, attn_of, cfg_get, on_meta, spec_from_module
from vin_ocr.models.tiny import char_tokenizer, pad_vocab, set_generation_ids
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

#: Default LoRA targets: attention and the dense / shared-expert MLPs of the DeepSeek-V2 language
#: model. Routed experts are 3-D parameters: add ``lora.target_parameters`` to adapt them.
LORA_TARGETS = (
    r"model\.language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(shared_experts\.)?(gate_proj|up_proj|down_proj))"
)
#: The routed experts, for ``lora.target_parameters`` (PEFT >= 0.17).
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


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
    facts = FamilyFacts(
        spec=lambda cfg: spec(cfg),
        tiny={"tiny": True, "base_size": 768, "image_size": 768, "crop_mode": False},
        pipeline_tag="image-text-to-text",
        auto={"deepseek_ocr": 30},
    )

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
            # The tiny model's query count only matches one global view of this size, no crops.
            size = TINY_IMAGE_SIZE
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


# -- the tiny random model (tests, debug=smoke) -------------------------------------------------

SPECIALS = ("<｜▁pad▁｜>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<image>")
#: Tiny settings: the processor's image-token count and the model's query count only agree with
#: a 768-pixel global view, no local crops and a SAM patch of 64 (shared/notes/offline-models.md).
TINY_IMAGE_SIZE = 768


def tiny_deepseek_ocr2() -> tuple[Any, Any]:
    """A tiny ``DeepseekOcr2ForConditionalGeneration`` (SAM + Qwen2-style encoder + MoE decoder
    with one dense and one sparse layer) and its ``DeepseekOcr2Processor``."""
    from transformers import (
        DeepseekOcr2Config,
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
    )

    size = TINY_IMAGE_SIZE
    tokenizer = char_tokenizer(
        SPECIALS,
        bos="<｜begin▁of▁sentence｜>",
        eos="<｜end▁of▁sentence｜>",
        pad="<｜▁pad▁｜>",
        add_bos=True,
    )
    image_processor = DeepseekOcr2ImageProcessorPil(
        size={"height": size, "width": size}, tile_size=size, crop_to_patches=False
    )
    processor = DeepseekOcr2Processor(image_processor=image_processor, tokenizer=tokenizer)
    config = DeepseekOcr2Config(
        vision_config={
            "sam_config": {
                "hidden_size": 32,
                "output_channels": 16,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": size,
                "patch_size": 64,
                "window_size": 4,
                "global_attn_indexes": [1],
                "mlp_dim": 64,
                "downsample_channels": [32, 64],
                # The default (1e-10) starts SAM at ~0: features would not depend on pixels.
                "initializer_range": 0.02,
            },
            "encoder_config": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 1024,
            },
        },
        text_config={
            "vocab_size": pad_vocab(len(tokenizer)),
            "hidden_size": 64,
            "intermediate_size": 128,
            "moe_intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "n_routed_experts": 4,
            "n_shared_experts": 1,
            "num_experts_per_tok": 2,
            "mlp_layer_types": ["dense", "sparse"],
            "max_position_embeddings": 1024,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = DeepseekOcr2ForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    return model, processor


# -- the preflight's memory spec (the published config.json values, so it works offline) ---------

#: The DeepSeek-V2 3B MoE decoder both DeepSeek-OCR versions use (config.json language_config).
DEEPSEEK_LM: dict[str, Any] = dict(
    hidden_size=1280,
    intermediate_size=6848,
    num_hidden_layers=12,
    num_attention_heads=10,
    num_key_value_heads=10,
    vocab_size=129280,
    n_routed_experts=64,
    n_shared_experts=2,
    num_experts_per_tok=6,
    moe_intermediate_size=896,
    mlp_layer_types=["dense"] + ["sparse"] * 11,  # first_k_dense_replace = 1
)
#: DeepEncoder V2's Qwen2-0.5B encoder.
ENCODER: dict[str, Any] = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
)


def deepseek_ocr2_config() -> Any:
    """The ``DeepseekOcr2Config`` of deepseek-community/DeepSeek-OCR-2."""
    from transformers import DeepseekOcr2Config

    return DeepseekOcr2Config(
        vision_config=dict(sam_config={}, encoder_config=dict(ENCODER)),
        text_config=dict(DEEPSEEK_LM),
    )


def lm_tower() -> Tower:
    """The DeepSeek-V2 decoder as a tower (MoE: experts per token + shared experts wide)."""
    lm = DEEPSEEK_LM
    width = (lm["num_experts_per_tok"] + lm["n_shared_experts"]) * lm["moe_intermediate_size"]
    return Tower("language", "model.language_model", 12, 1280, width, 10)


def sam_tower(prefix: str) -> Tower:
    """SAM ViT-B: 12 layers, windowed (14x14) attention except 4 global layers, eager attention."""
    return Tower("sam", prefix, 12, 768, 3072, 12, "encoder", True, 14, 4)


def tower_tokens(image_size: int, max_length: int) -> dict[str, int]:
    queries = math.ceil(image_size / 64) ** 2
    return {
        "sam": (image_size // 16) ** 2,
        "qwen2_encoder": 2 * queries,
        "language": queries + 1 + max_length,
    }


def spec(model_cfg: Any) -> ModelSpec:
    from transformers import DeepseekOcr2ForConditionalGeneration

    model = on_meta(DeepseekOcr2ForConditionalGeneration, deepseek_ocr2_config())
    enc = ENCODER
    towers = (
        sam_tower("model.vision_tower.sam_encoder"),
        Tower(
            "qwen2_encoder",
            "model.vision_tower.vision_encoder",
            enc["num_hidden_layers"],
            enc["hidden_size"],
            enc["intermediate_size"],
            enc["num_attention_heads"],
        ),
        lm_tower(),
    )
    return spec_from_module(
        model,
        name=str(cfg_get(model_cfg, "name", "")),
        family="deepseek_ocr2",
        checkpoint=str(cfg_get(model_cfg, "checkpoint", "")),
        towers=towers,
        source="computed from the config (built with empty weights)",
        vocab_size=DEEPSEEK_LM["vocab_size"],
        attn=attn_of(DeepseekOcr2ForConditionalGeneration),
        default_image_size=768,
        tokens=tower_tokens,
    )
