"""LiquidAI LFM3-VL through transformers' native ``Lfm3Vl*`` classes: the successor of the LFM2-VL
family (:mod:`vin_ocr.models.lfm2_vl`), whose prompt, answer-only labels, constrained decoding
and preflight token count it reuses.

What changes from LFM2-VL: the language model is LFM3 (short convolutions, sliding-window and
global attention with a sigmoid gate ``g_proj`` and ``o_proj``), the vision tower is LFM3-VL's own
convolution-and-attention encoder (no SigLIP2; it has a flash-attention path, so one attention
implementation serves both towers), and images go through Qwen2-VL's image processor: the image
is resized to whole 32-pixel blocks (16-pixel patches merged 2 x 2, one language token each) so
that it gives between ``min_image_tokens`` and ``max_image_tokens`` tokens, with no tiling.
Prompt (the chat template's structure)::

    <|startoftext|><|im_start|>user\\n<|vision_start|><|image_pad|>*N<|vision_end|>What is the
    VIN ...<|im_end|>\\n<|im_start|>assistant\\n

followed in training by ``VIN<|im_end|>``; only those answer tokens carry a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from vin_ocr.models.base import FamilyFacts
from vin_ocr.models.lfm2_vl import SPECIALS as LFM2_SPECIALS
from vin_ocr.models.lfm2_vl import Lfm2Vl, tower_tokens
from vin_ocr.models.lora import quantization_config
from vin_ocr.models.spec import ModelSpec, Tower, attn_of, cfg_get, on_meta, spec_from_module
from vin_ocr.models.tiny import char_tokenizer, pad_vocab, set_generation_ids
from vin_ocr.models.vlm import (
    PROMPT,
    load_pretrained,
    resolve_hardware,
    settings_from,
)

if TYPE_CHECKING:
    from PIL.Image import Image

#: Default LoRA targets: every linear layer of the LFM3 language model (attention
#: ``q/k/v/o_proj`` and its head gate ``g_proj``, short-conv ``in_proj/out_proj``, MLP
#: ``w1/w2/w3``), none in the vision tower (which has layers of the same names).
LORA_TARGETS = (
    r"model\.language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj|g_proj)|conv\.(in_proj|out_proj)"
    r"|feed_forward\.(w1|w2|w3))"
)


@dataclass
class Lfm3VlSettings:
    """The keys of ``configs/model/lfm3_vl.yaml``."""

    name: str = "lfm3_vl"
    family: str = "lfm3_vl"
    checkpoint: str = "LiquidAI/LFM3-VL-2B"
    revision: str | None = None
    #: Build a tiny random model of the same architecture with an offline tokenizer instead.
    tiny: bool = False
    #: Image-token budget per image (one token per 32 x 32 pixels): the image is resized, aspect
    #: kept, to give between these many tokens.
    min_image_tokens: int = 64
    max_image_tokens: int = 256
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


class Lfm3Vl(Lfm2Vl):
    """The ``lfm3_vl`` family (see :class:`vin_ocr.models.base.ModelFamily`)."""

    name = "lfm3_vl"
    lora_targets = LORA_TARGETS
    facts = FamilyFacts(
        spec=lambda cfg: spec(cfg),
        tiny={"tiny": True, "min_image_tokens": 8, "max_image_tokens": 16},
        pipeline_tag="image-text-to-text",
        # Above LFM2.5-VL-1.6B: the newer generation with a larger language model; it needs more
        # memory, so where it does not fit model=auto falls through to lfm2_5_vl.
        auto={"lfm3_vl": 45},
        real_config=lambda cfg, tokenizer: real_config(cfg, tokenizer),
    )

    def __init__(self) -> None:
        self.settings = Lfm3VlSettings()
        self.processor: Any = None

    def build(self, cfg: Any, hardware: Any = None) -> tuple[torch.nn.Module, Any]:
        self.settings = s = settings_from(Lfm3VlSettings, cfg, self.name)
        place = resolve_hardware(hardware)
        quant = quantization_config(s.quantization, place.device, place.dtype)
        if s.tiny:
            if quant is not None:
                raise ValueError("quantization is for real checkpoints; use tiny with none")
            model, processor = tiny_lfm3_vl()
            model.set_attn_implementation(place.attn_implementation)
            model.to(device=place.device, dtype=place.dtype)
        else:
            from transformers import Lfm3VlForConditionalGeneration

            model, processor = load_pretrained(
                Lfm3VlForConditionalGeneration, "lfm3_vl", "LFM3-VL", s,
                (place.device, place.dtype, place.attn_implementation), quant,
            )  # fmt: skip
        self.processor = processor
        return model, processor

    def _prompts(self, images: Sequence[Image]) -> Any:
        proc = self._need_processor()
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}
        ]
        text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ip = proc.image_processor
        pixels_per_token = (ip.patch_size * ip.merge_size) ** 2
        s = self.settings
        size = {
            "shortest_edge": s.min_image_tokens * pixels_per_token,
            "longest_edge": s.max_image_tokens * pixels_per_token,
        }
        return proc(
            images=[[im.convert("RGB")] for im in images],
            text=[text] * len(images),
            padding=True,
            padding_side="left",
            return_tensors="pt",
            images_kwargs={"size": size},
        )


# -- the tiny random model (tests, debug=smoke) -------------------------------------------------

#: LFM2's chat tokens (pad, start of text, turn markers) and the Qwen2-VL-style vision tokens
#: ``Lfm3VlProcessor`` expects.
SPECIALS = (
    *LFM2_SPECIALS[:4],
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
)

#: LFM2-VL's chat template (``vin_ocr.models.lfm2_vl.CHAT_TEMPLATE``) with the image spelled
#: ``<|vision_start|><|image_pad|><|vision_end|>``, the placeholder the processor expands.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_config(vocab_size: int = 100, **config: Any) -> Any:
    """The tiny ``Lfm3VlConfig`` (vision 3 x 32 with conv and attention layers, LFM3 4 x 64 with a
    conv, a sliding-window and a global attention layer). ``config``: extra top-level keys, or
    ``text_config`` keys to add (token ids)."""
    from transformers import Lfm3VlConfig

    text_extra = config.pop("text_config", {})
    return Lfm3VlConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,  # conv, conv, full_attention
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
        },
        text_config={
            "model_type": "lfm3",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "layer_types": ["conv", "sliding_attention", "full_attention", "conv"],
            **text_extra,
        },
        projector_hidden_size=64,
        **config,
    )


def tiny_lfm3_vl() -> tuple[Any, Any]:
    """A ~0.26 M-parameter ``Lfm3VlForConditionalGeneration`` and its ``Lfm3VlProcessor`` (the
    image budget is the family's ``min/max_image_tokens``, passed with every call)."""
    from transformers import (
        Lfm3VlForConditionalGeneration,
        Lfm3VlProcessor,
        Qwen2VLImageProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = char_tokenizer(SPECIALS, bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>")
    # The checkpoint's processor classes (transformers' auto mappings for lfm3_vl), on the vision
    # config's patch grid: 16-pixel patches, 2 x 2 merged, 2 frames per temporal patch.
    grid: dict[str, Any] = {"patch_size": 16, "merge_size": 2, "temporal_patch_size": 2}
    processor = Lfm3VlProcessor(
        image_processor=Qwen2VLImageProcessor(**grid),
        video_processor=Qwen3VLVideoProcessor(**grid),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    ids = {
        f"{kind}_token_id": tokenizer.convert_tokens_to_ids(f"<|{name}|>")
        for kind, name in (
            ("image", "image_pad"),
            ("video", "video_pad"),
            ("vision_start", "vision_start"),
            ("vision_end", "vision_end"),
        )
    }
    config = tiny_config(
        pad_vocab(len(tokenizer)),
        text_config={
            "max_position_embeddings": 1024,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        **ids,
    )
    model = Lfm3VlForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    return model, processor


# -- the preflight's memory spec ------------------------------------------------------------------

#: The published ``config.json`` values of each checkpoint, so the count works offline. The Hub is
#: unreachable here and no copy of LiquidAI/LFM3-VL-2B's config.json was found, so these are
#: transformers' defaults for the classes (5.24): ``Lfm3VlConfig`` and ``Lfm3VlVisionConfig`` are
#: documented as the LiquidAI/LFM3-VL-2B configuration, ``Lfm3Config`` as LiquidAI/LFM3-1.7B's
#: (LFM3-VL-2B's language model: 1.7 B + the vision tower and projector make the 2 B). Written
#: out so that the preflight does not move when transformers' defaults do.
CONFIGS: dict[str, dict[str, Any]] = {
    "LiquidAI/LFM3-VL-2B": {
        "text": dict(
            vocab_size=128_000,
            hidden_size=2048,
            intermediate_size=7680,
            num_hidden_layers=24,
            num_attention_heads=16,
            num_key_value_heads=4,
            head_dim=128,
        ),
        "vision": dict(
            hidden_size=1024,
            intermediate_size=2560,
            num_hidden_layers=14,
            num_attention_heads=16,
            num_key_value_heads=8,
            patch_size=16,
            spatial_merge_size=2,
        ),
        "projector_hidden_size": 4096,
    },
}


def lfm3_vl_config(checkpoint: str) -> Any:
    """The ``Lfm3VlConfig`` of a checkpoint in :data:`CONFIGS`."""
    from transformers import Lfm3VlConfig

    dims = CONFIGS[checkpoint]
    return Lfm3VlConfig(
        text_config=dict(model_type="lfm3", **dims["text"]),
        vision_config=dict(dims["vision"]),
        projector_hidden_size=dims["projector_hidden_size"],
    )


def real_config(model_cfg: Any, tokenizer: Any) -> tuple[type, Any]:
    """The published architecture of the model config's checkpoint with ``tokenizer``'s ids (the
    offline tokenizer's): for real-size random-weight benchmarks."""
    from transformers import Lfm3VlForConditionalGeneration

    config = lfm3_vl_config(str(cfg_get(model_cfg, "checkpoint", "")))
    ids = tokenizer.convert_tokens_to_ids
    config.image_token_id, config.video_token_id = ids("<|image_pad|>"), ids("<|video_pad|>")
    config.vision_start_token_id = ids("<|vision_start|>")
    config.vision_end_token_id = ids("<|vision_end|>")
    for key in ("pad", "bos", "eos"):
        setattr(config.text_config, f"{key}_token_id", getattr(tokenizer, f"{key}_token_id"))
    return Lfm3VlForConditionalGeneration, config


def lfm3_vl_spec(name: str, checkpoint: str, config: Any = None, source: str = "") -> ModelSpec:
    """Spec of an LFM3-VL checkpoint (or of any ``Lfm3VlConfig``, e.g. a tiny test one)."""
    from transformers import Lfm3VlForConditionalGeneration

    if config is None:
        if checkpoint not in CONFIGS:
            known = ", ".join(CONFIGS)
            raise KeyError(f"no built-in LFM3-VL config for {checkpoint!r} (known: {known})")
        config = lfm3_vl_config(checkpoint)
        source = "computed from the config (built with empty weights)"
    model = on_meta(Lfm3VlForConditionalGeneration, config)
    text, vision = config.text_config, config.vision_config
    towers = (
        # Both towers have gated (w1/w2/w3) MLPs.
        Tower("vision", "model.vision_tower", vision.num_hidden_layers, vision.hidden_size,
              vision.intermediate_size, vision.num_attention_heads),
        Tower("language", "model.language_model", text.num_hidden_layers, text.hidden_size,
              text.intermediate_size, text.num_attention_heads),
    )  # fmt: skip
    return spec_from_module(
        model,
        name=name,
        family="lfm3_vl",
        checkpoint=checkpoint,
        towers=towers,
        source=source,
        vocab_size=text.vocab_size,
        attn=attn_of(Lfm3VlForConditionalGeneration),
        default_image_size=512,
        max_patches=1024,  # max_image_tokens=256, 2 x 2 patches each
        tokens=tower_tokens(1024),
    )


def spec(model_cfg: Any) -> ModelSpec:
    """The preflight spec of a ``model`` config: the built-in table, else the checkpoint's
    ``config.json`` (a local folder, or the Hub)."""
    name = str(cfg_get(model_cfg, "name", ""))
    checkpoint = str(cfg_get(model_cfg, "checkpoint", ""))
    if checkpoint in CONFIGS:
        return lfm3_vl_spec(name, checkpoint)
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
    return lfm3_vl_spec(name, checkpoint, config, source)
