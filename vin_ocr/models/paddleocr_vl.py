"""PaddleOCR-VL (``PaddlePaddle/PaddleOCR-VL``, 0.9 B) through transformers' native
``PaddleOCRVL*`` classes: a NaViT-style SigLIP vision encoder (any resolution, 14-pixel patches,
2 x 2 merged into one language token) and the ERNIE-4.5-0.3B language model.

Prompt (the checkpoint's chat template; ``OCR:`` is PaddleOCR-VL's text-recognition task)::

    <|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|>*N<|IMAGE_END|>OCR:\\n
    Assistant:\\x20

followed in training by ``VIN</s>``; only those answer tokens carry a label. The image is resized,
aspect kept, to whole 28-pixel blocks with an area between ``min_pixels`` and ``max_pixels``
(``N`` = area / 784). The language model takes 3-D (M-RoPE) positions from the processor's
``mm_token_type_ids``. Both towers have flash-attention 2 and sdpa paths.
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
    PromptedVlm,
    load_pretrained,
    resolve_hardware,
    settings_from,
)

if TYPE_CHECKING:
    from PIL.Image import Image

#: Default LoRA targets: every linear layer of the ERNIE language model (attention
#: ``q/k/v/o_proj``, MLP ``gate/up/down_proj``); the vision encoder (``q/k/v/out_proj``,
#: ``fc1/fc2``) and the projector stay frozen.
LORA_TARGETS = (
    r"model\.language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)
#: PaddleOCR-VL's task prompt for text recognition (others: ``Table Recognition:``, ...).
OCR_PROMPT = "OCR:"
PATCH, MERGE = 14, 2
PIXELS_PER_TOKEN = (PATCH * MERGE) ** 2


@dataclass
class PaddleOcrVlSettings:
    """The keys of ``configs/model/paddleocr_vl.yaml``."""

    name: str = "paddleocr_vl"
    family: str = "paddleocr_vl"
    checkpoint: str = "PaddlePaddle/PaddleOCR-VL"
    revision: str | None = None
    #: Build a tiny random model of the same architecture with an offline tokenizer instead.
    tiny: bool = False
    prompt: str = OCR_PROMPT
    #: Image area bounds after resizing (one language token per 28 x 28 pixels).
    min_pixels: int = 147384
    max_pixels: int = 802816
    max_new_tokens: int = 24
    quantization: str = "none"  # none | 4bit (QLoRA, CUDA + bitsandbytes)
    lora: dict[str, Any] = field(default_factory=dict)
    #: Answer generation (:class:`vin_ocr.decoding.vlm.VlmDecoding`): constrained, search.
    decoding: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not PIXELS_PER_TOKEN <= self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"need {PIXELS_PER_TOKEN} <= min_pixels ({self.min_pixels}) <= max_pixels "
                f"({self.max_pixels})"
            )
        if not self.prompt.strip():
            raise ValueError("prompt is empty: PaddleOCR-VL reads text with the prompt 'OCR:'")


class PaddleOcrVl(PromptedVlm):
    """The ``paddleocr_vl`` family (see :class:`vin_ocr.models.base.ModelFamily`)."""

    name = "paddleocr_vl"
    lora_targets = LORA_TARGETS
    prompt = OCR_PROMPT
    facts = FamilyFacts(
        spec=lambda cfg: spec(cfg),
        tiny={
            "tiny": True,
            "min_pixels": 4 * PIXELS_PER_TOKEN,
            "max_pixels": 16 * PIXELS_PER_TOKEN,
        },
        pipeline_tag="image-text-to-text",
        real_config=lambda cfg, tokenizer: real_config(cfg, tokenizer),
    )

    def __init__(self) -> None:
        self.settings = PaddleOcrVlSettings()
        self.processor: Any = None

    def build(self, cfg: Any, hardware: Any = None) -> tuple[torch.nn.Module, Any]:
        self.settings = s = settings_from(PaddleOcrVlSettings, cfg, self.name)
        self.prompt = s.prompt
        place = resolve_hardware(hardware)
        quant = quantization_config(s.quantization, place.device, place.dtype)
        if s.tiny:
            if quant is not None:
                raise ValueError("quantization is for real checkpoints; use tiny with none")
            model, processor = tiny_paddleocr_vl()
            model.set_attn_implementation(place.attn_implementation)
            model.to(device=place.device, dtype=place.dtype)
        else:
            from transformers import PaddleOCRVLForConditionalGeneration

            model, processor = load_pretrained(
                PaddleOCRVLForConditionalGeneration, "paddleocr_vl", "PaddleOCR-VL", s,
                (place.device, place.dtype, place.attn_implementation), quant,
            )  # fmt: skip
        self.processor = processor
        return model, processor

    def _prompts(self, images: Sequence[Image]) -> Any:
        proc = self._need_processor()
        content = [{"type": "image"}, {"type": "text", "text": self.settings.prompt}]
        text = proc.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        s = self.settings
        return proc(
            images=[[im.convert("RGB")] for im in images],
            text=[text] * len(images),
            padding=True,
            padding_side="left",
            return_tensors="pt",
            size={"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels},
        )


# -- the tiny random model (tests, debug=smoke) -------------------------------------------------

#: Special tokens, spelled as in the ERNIE-4.5 tokenizer of the checkpoint; the first three have
#: its ids (``<unk>`` 0 is also the padding, ``<s>`` 1, ``</s>`` 2).
SPECIALS = (
    "<unk>", "<s>", "</s>", "<|begin_of_sentence|>", "<|end_of_sentence|>",
    "<|IMAGE_PLACEHOLDER|>", "<|IMAGE_START|>", "<|IMAGE_END|>", "<|video_pad|>",
)  # fmt: skip

#: The checkpoint's chat template (``chat_template.jinja``): user turn ``User: `` + images + text
#: + newline, assistant turn ``Assistant: `` + text + ``</s>``.
CHAT_TEMPLATE = (
    "{%- if not cls_token is defined -%}"
    "{%- set cls_token = '<|begin_of_sentence|>' -%}{%- endif -%}"
    "{%- if not eos_token is defined -%}{%- set eos_token = '</s>' -%}{%- endif -%}"
    "{%- set image_token = '<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>' -%}"
    "{{- cls_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- 'User: ' -}}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'image' -%}{{ image_token }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'text' -%}{{ c['text'] }}"
    "{%- endif -%}{%- endfor -%}{{ '\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'Assistant: ' -}}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'text' -%}{{ c['text'] }}"
    "{%- endif -%}{%- endfor -%}{{ eos_token -}}"
    "{%- elif message['role'] == 'system' -%}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'text' -%}{{ c['text'] + '\n' }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)


def tiny_config(vocab_size: int = 112, **config: Any) -> Any:
    """The tiny ``PaddleOCRVLConfig`` (vision 2 x 32, ERNIE 2 x 64): the tiny model's and the
    preflight tests' one literal. ``config``: extra top-level keys, or ``text_config`` keys."""
    from transformers import PaddleOCRVLConfig

    text_extra = config.pop("text_config", {})
    return PaddleOCRVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, patch_size=PATCH, image_size=4 * PATCH,
                           spatial_merge_size=MERGE),
        text_config=dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16,
                         # M-RoPE: (temporal, height, width) sections of head_dim / 2
                         rope_parameters={"rope_type": "default", "rope_theta": 5e5,
                                          "mrope_section": [2, 3, 3]},
                         tie_word_embeddings=False,  # as the checkpoint: its own output layer
                         **text_extra),
        tie_word_embeddings=False,
        **config,
    )  # fmt: skip


def tiny_paddleocr_vl() -> tuple[Any, Any]:
    """A ~0.15 M-parameter ``PaddleOCRVLForConditionalGeneration`` and its processor."""
    from transformers import (
        PaddleOCRVLForConditionalGeneration,
        PaddleOCRVLImageProcessor,
        PaddleOCRVLProcessor,
    )

    tokenizer = char_tokenizer(
        SPECIALS, bos="<s>", eos="</s>", pad="<unk>", image_token="<|IMAGE_PLACEHOLDER|>",
        cls_token="<|begin_of_sentence|>", sep_token="<|end_of_sentence|>",
    )  # fmt: skip
    # The checkpoint's preprocessor_config.json, but for the pixel bounds (set per call); the
    # torchvision image processor, the one AutoProcessor loads (a saved run reloads the same).
    image_processor = PaddleOCRVLImageProcessor(
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=1,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = PaddleOCRVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(
        pad_vocab(len(tokenizer)),
        text_config={
            "max_position_embeddings": 1024,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=ids("<|IMAGE_PLACEHOLDER|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|IMAGE_START|>"),
        vision_end_token_id=ids("<|IMAGE_END|>"),
    )
    model = PaddleOCRVLForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    return model, processor


# -- the preflight's memory spec ------------------------------------------------------------------

#: The published ``config.json`` values of the checkpoint, so the count works offline:
#: SigLIP-so400m-like NaViT encoder (27 x 1152) + ERNIE-4.5-0.3B (18 x 1024, GQA 16/2 heads of
#: 128, untied 103,424-token output layer): 0.906 B parameters.
CONFIGS: dict[str, dict[str, Any]] = {
    "PaddlePaddle/PaddleOCR-VL": {
        "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                       num_attention_heads=16, patch_size=14, image_size=384),
        "text": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=18,
                     num_attention_heads=16, num_key_value_heads=2, head_dim=128,
                     vocab_size=103424, max_position_embeddings=131072,
                     tie_word_embeddings=False,
                     rope_parameters={"rope_type": "default", "rope_theta": 5e5,
                                      "mrope_section": [16, 24, 24]}),
        "top": dict(image_token_id=100295, video_token_id=101307, vision_start_token_id=101305,
                    vision_end_token_id=101306, tie_word_embeddings=False),
    },
}  # fmt: skip


def paddleocr_vl_config(checkpoint: str) -> Any:
    """The ``PaddleOCRVLConfig`` of a checkpoint in :data:`CONFIGS`."""
    from transformers import PaddleOCRVLConfig

    dims = CONFIGS[checkpoint]
    return PaddleOCRVLConfig(
        vision_config=dict(dims["vision"]), text_config=dict(dims["text"]), **dims["top"]
    )


def real_config(model_cfg: Any, tokenizer: Any) -> tuple[type, Any]:
    """The published architecture of the model config's checkpoint with ``tokenizer``'s ids (the
    offline tokenizer's): for real-size random-weight benchmarks."""
    from transformers import PaddleOCRVLForConditionalGeneration

    config = paddleocr_vl_config(str(cfg_get(model_cfg, "checkpoint", "")))
    ids = tokenizer.convert_tokens_to_ids
    config.image_token_id = tokenizer.image_token_id
    config.vision_start_token_id = ids("<|IMAGE_START|>")
    config.vision_end_token_id = ids("<|IMAGE_END|>")
    for key in ("pad", "bos", "eos"):
        setattr(config.text_config, f"{key}_token_id", getattr(tokenizer, f"{key}_token_id"))
    return PaddleOCRVLForConditionalGeneration, config


def tower_tokens(min_pixels: int, max_pixels: int) -> Any:
    """Tokens per tower for a square image of side ``image_size``, resized into the bounds."""

    def tokens(image_size: int, max_length: int) -> dict[str, int]:
        area = min(max(image_size * image_size, min_pixels), max_pixels)
        patches = area // (PATCH * PATCH)
        return {"vision": patches, "language": patches // (MERGE * MERGE) + max_length}

    return tokens


def paddleocr_vl_spec(
    name: str,
    checkpoint: str,
    config: Any = None,
    source: str = "",
    pixels: tuple[int, int] = (147384, 802816),
) -> ModelSpec:
    """Spec of a PaddleOCR-VL checkpoint (or of any ``PaddleOCRVLConfig``, e.g. a tiny one)."""
    from transformers import PaddleOCRVLForConditionalGeneration

    if config is None:
        if checkpoint not in CONFIGS:
            known = ", ".join(CONFIGS)
            raise KeyError(f"no built-in PaddleOCR-VL config for {checkpoint!r} (known: {known})")
        config = paddleocr_vl_config(checkpoint)
        source = "computed from the config (built with empty weights)"
    model = on_meta(PaddleOCRVLForConditionalGeneration, config)
    text, vision = config.text_config, config.vision_config
    towers = (
        Tower("vision", "model.visual", vision.num_hidden_layers, vision.hidden_size,
              vision.intermediate_size, vision.num_attention_heads, kind="encoder"),
        Tower("language", "model.language_model", text.num_hidden_layers, text.hidden_size,
              text.intermediate_size, text.num_attention_heads),
    )  # fmt: skip
    return spec_from_module(
        model,
        name=name,
        family="paddleocr_vl",
        checkpoint=checkpoint,
        towers=towers,
        source=source,
        vocab_size=text.vocab_size,
        attn=attn_of(PaddleOCRVLForConditionalGeneration),
        default_image_size=384,
        # a smaller side gains nothing: the processor enlarges every image to min_pixels
        image_budget=False,
        max_patches=pixels[1] // (PATCH * PATCH),
        tokens=tower_tokens(*pixels),
    )


def spec(model_cfg: Any) -> ModelSpec:
    """The preflight spec of a ``model`` config: the built-in table, else the checkpoint's
    ``config.json`` (a local folder, or the Hub)."""
    name = str(cfg_get(model_cfg, "name", ""))
    checkpoint = str(cfg_get(model_cfg, "checkpoint", ""))
    pixels = (
        int(cfg_get(model_cfg, "min_pixels", 147384)),
        int(cfg_get(model_cfg, "max_pixels", 802816)),
    )
    if checkpoint in CONFIGS:
        return paddleocr_vl_spec(name, checkpoint, pixels=pixels)
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
    return paddleocr_vl_spec(name, checkpoint, config, source, pixels)
