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
    PromptedVlm,
    load_pretrained,
    resolve_hardware,
    settings_from,
    trim_patches,
)

if TYPE_CHECKING:
    from PIL.Image import Image


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
    facts = FamilyFacts(
        spec=lambda cfg: spec(cfg),
        tiny={"tiny": True, "min_image_tokens": 8, "max_image_tokens": 16},
        pipeline_tag="image-text-to-text",
        auto={"lfm2_5_vl": 40, "lfm2_vl_450m": 20},
    )

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
            model, processor = tiny_lfm2_vl(
                min_image_tokens=s.min_image_tokens,
                max_image_tokens=s.max_image_tokens,
                do_image_splitting=s.do_image_splitting,
            )
            model.set_attn_implementation(attn)
            model.to(device=place.device, dtype=place.dtype)
        else:
            from transformers import Lfm2VlForConditionalGeneration

            model, processor = load_pretrained(
                Lfm2VlForConditionalGeneration, "lfm2_vl", "LFM2-VL", s,
                (place.device, place.dtype, attn), quant,
            )  # fmt: skip
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
        return trim_patches(
            proc(
                images=[[im.convert("RGB")] for im in images],
                text=[text] * len(images),
                padding=True,
                padding_side="left",
                return_tensors="pt",
                min_image_tokens=s.min_image_tokens,
                max_image_tokens=s.max_image_tokens,
                do_image_splitting=s.do_image_splitting,
            )
        )


# -- the tiny random model (tests, debug=smoke) -------------------------------------------------

# Special tokens, spelled as in the real tokenizer.
SPECIALS = (
    "<|pad|>",
    "<|startoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "<|image_start|>",
    "<|image_end|>",
    "<|img_thumbnail|>",
    # Tile markers, used only when image splitting is on (at most 4 x 4 tiles here).
    *(f"<|img_row_{r}_col_{c}|>" for r in range(1, 5) for c in range(1, 5)),
)

#: The structure of LFM2-VL's chat template (``<|im_start|>role\n...<|im_end|>\n``, images as
#: ``<image>`` placeholders the processor expands), without its tool-calling branches.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_config(vocab_size: int = 100, **config: Any) -> Any:
    """The tiny ``Lfm2VlConfig`` (SigLIP2 2 x 32, LFM2 4 x 64): the one literal the tiny model,
    the preflight tests and scripts/bench_preflight.py share. ``config``: extra top-level keys,
    or ``text_config`` keys to add (token ids)."""
    from transformers import Lfm2VlConfig

    text_extra = config.pop("text_config", {})
    return Lfm2VlConfig(
        vision_config={
            "model_type": "siglip2_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 16,
            "num_patches": 256,
        },
        text_config={
            "model_type": "lfm2",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "layer_types": ["conv", "full_attention", "conv", "full_attention"],
            "block_auto_adjust_ff_dim": False,
            **text_extra,
        },
        projector_hidden_size=64,
        downsample_factor=2,
        **config,
    )


def tiny_lfm2_vl(
    *,
    min_image_tokens: int = 4,
    max_image_tokens: int = 16,
    do_image_splitting: bool = False,
) -> tuple[Any, Any]:
    """A ~0.25 M-parameter ``Lfm2VlForConditionalGeneration`` and its ``Lfm2VlProcessor``."""
    from transformers import Lfm2VlForConditionalGeneration, Lfm2VlImageProcessor, Lfm2VlProcessor

    tokenizer = char_tokenizer(SPECIALS, bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>")
    image_processor = Lfm2VlImageProcessor(
        do_image_splitting=do_image_splitting,
        min_image_tokens=min_image_tokens,
        max_image_tokens=max_image_tokens,
        encoder_patch_size=16,
        tile_size=64,
        max_tiles=4,
    )
    processor = Lfm2VlProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    config = tiny_config(
        pad_vocab(len(tokenizer)),
        text_config={
            "max_position_embeddings": 1024,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Lfm2VlForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    return model, processor


# -- the preflight's memory spec ------------------------------------------------------------------

_LAYERS = ["conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv"]
_LAYERS += ["full_attention", "conv", "full_attention", "conv", "full_attention", "conv"]
_LAYERS += ["full_attention", "conv"]

#: The published ``config.json`` values of each checkpoint, so the count works offline.
CONFIGS: dict[str, dict[str, Any]] = {
    # LiquidAI/LFM2-VL-450M config.json: LFM2-350M + SigLIP2 NaFlex base (86M).
    "LiquidAI/LFM2-VL-450M": {
        "text": dict(hidden_size=1024, intermediate_size=6656, num_attention_heads=16),
        "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, heads=12),
    },
    # LiquidAI/LFM2.5-VL-1.6B (and LFM2-VL-1.6B): LFM2-1.2B + SigLIP2 NaFlex so400m.
    "LiquidAI/LFM2.5-VL-1.6B": {
        "text": dict(hidden_size=2048, intermediate_size=12288, num_attention_heads=32),
        "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, heads=16),
    },
}
CONFIGS["LiquidAI/LFM2-VL-1.6B"] = CONFIGS["LiquidAI/LFM2.5-VL-1.6B"]


def lfm2_vl_config(checkpoint: str) -> Any:
    """The ``Lfm2VlConfig`` of a checkpoint in :data:`CONFIGS`."""
    from transformers import Lfm2VlConfig

    dims = CONFIGS[checkpoint]
    vision = dict(dims["vision"])
    heads = vision.pop("heads")
    return Lfm2VlConfig(
        text_config=dict(
            model_type="lfm2",
            num_hidden_layers=16,
            num_key_value_heads=8,
            vocab_size=65536,
            layer_types=list(_LAYERS),
            block_auto_adjust_ff_dim=True,
            **dims["text"],
        ),
        vision_config=dict(
            model_type="siglip2_vision_model",
            num_attention_heads=heads,
            num_patches=256,
            patch_size=16,
            vision_use_head=False,
            **vision,
        ),
        projector_hidden_size=2560,
    )


def tower_tokens(max_patches: int) -> Any:
    def tokens(image_size: int, max_length: int) -> dict[str, int]:
        patches = min((image_size // 16) ** 2, max_patches or (image_size // 16) ** 2)
        return {"vision": patches, "language": patches // 4 + max_length}

    return tokens


def lfm2_vl_spec(
    name: str, checkpoint: str, config: Any = None, source: str = "", max_image_tokens: int = 256
) -> ModelSpec:
    """Spec of an LFM2-VL checkpoint (or of any ``Lfm2VlConfig``, e.g. a tiny test one); the
    vision tower reads at most ``4 * max_image_tokens`` patches per image (its padding trimmed,
    :func:`~vin_ocr.models.vlm.trim_patches`), the language model a quarter of them."""
    from transformers import Lfm2VlForConditionalGeneration

    if config is None:
        if checkpoint not in CONFIGS:
            known = ", ".join(CONFIGS)
            raise KeyError(f"no built-in LFM2-VL config for {checkpoint!r} (known: {known})")
        config = lfm2_vl_config(checkpoint)
        source = "computed from the config (built with empty weights)"
    model = on_meta(Lfm2VlForConditionalGeneration, config)
    text, vision = config.text_config, config.vision_config
    # LFM2 gated MLP width after block_auto_adjust_ff_dim.
    width = model.model.language_model.layers[0].feed_forward.w1.out_features
    v, t = (
        (vision.num_hidden_layers, vision.hidden_size),
        (text.num_hidden_layers, text.hidden_size),
    )
    towers = (
        Tower("vision", "model.vision_tower", *v, vision.intermediate_size,
              vision.num_attention_heads, kind="encoder"),
        Tower("language", "model.language_model", *t, width, text.num_attention_heads),
    )  # fmt: skip
    return spec_from_module(
        model,
        name=name,
        family="lfm2_vl",
        checkpoint=checkpoint,
        towers=towers,
        source=source,
        vocab_size=text.vocab_size,
        attn=attn_of(Lfm2VlForConditionalGeneration),
        default_image_size=512,
        max_patches=4 * max_image_tokens,
        tokens=tower_tokens(4 * max_image_tokens),
    )


def spec(model_cfg: Any) -> ModelSpec:
    """The preflight spec of a ``model`` config: the built-in table, else the checkpoint's
    ``config.json`` (a local folder, or the Hub)."""
    name = str(cfg_get(model_cfg, "name", ""))
    checkpoint = str(cfg_get(model_cfg, "checkpoint", ""))
    tokens = int(cfg_get(model_cfg, "max_image_tokens", 256))
    if checkpoint in CONFIGS:
        return lfm2_vl_spec(name, checkpoint, max_image_tokens=tokens)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except Exception as exc:
        raise KeyError(
            f"model {name!r}: {checkpoint!r} is not in the built-in table and its config.json "
            f"could not be read ({type(exc).__name__}: {exc}). Offline, use a local folder with "
            f"a config.json or one of {', '.join(CONFIGS)}"
        ) from exc
    source = "computed from the checkpoint's config.json (built with empty weights)"
    return lfm2_vl_spec(name, checkpoint, config, source, tokens)
