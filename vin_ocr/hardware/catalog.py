"""What the preflight knows about each model before any weight is downloaded.

For every family vin-ocr ships a config for, the architecture is built on the ``meta`` device
from the transformers config class (no memory, no download) and its parameters are counted
exactly. The config values are the published ``config.json`` values of each checkpoint, kept here
so the count works offline. DeepSeek-OCR v1 is remote code (not in transformers), so its count
comes from a built-in table; the source of each count is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from vin_ocr.hardware.resolve import AttnSupport

#: Parameter count of deepseek-ai/DeepSeek-OCR: its bf16 safetensors hold 6,672,212,480 bytes.
DEEPSEEK_OCR_V1_PARAMS = 3_336_106_240

_LFM2_LAYERS = ["conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv"]
_LFM2_LAYERS += ["full_attention", "conv", "full_attention", "conv", "full_attention", "conv"]
_LFM2_LAYERS += ["full_attention", "conv"]


@dataclass(frozen=True)
class Tower:
    """One stack of layers, for the activation estimate (forward order within the model)."""

    name: str
    prefix: str  # module-name prefix of its parameters ("" = none: no trainable check)
    layers: int
    hidden: int
    intermediate: int  # per token (MoE: (experts per token + shared) x expert width)
    heads: int
    kind: str = "decoder"  # decoder (gated MLP) | encoder (plain MLP) | measured (CNN)
    eager_only: bool = False  # attention always materialises its scores (SAM)
    window: int = 0  # windowed attention side (SAM); 0 = global
    global_layers: int = 0  # of ``layers``, how many attend globally when ``window`` is set
    bytes_per_sample_fp32: int = 0  # kind == measured: activations saved for one sample


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    checkpoint: str
    params: int
    source: str  # where the parameter count comes from
    checkpoint_dtype: str  # dtype of the published weights (download size)
    towers: tuple[Tower, ...]
    vocab_size: int  # 0 for CTC models (their head is inside the last tower)
    linears: tuple[tuple[str, int, int], ...]  # (module name, in, out) of each nn.Linear
    output_layer: str  # name of the output embedding (lm_head), excluded from "all-linear"
    attn: AttnSupport = field(default_factory=AttnSupport)
    default_image_size: int = 512
    max_patches: int = 0  # lfm2_vl: max_num_patches per image
    needs_cuda: str = ""  # why the model cannot run without CUDA, if so

    @property
    def quantizable_params(self) -> int:
        """Parameters of the nn.Linear layers QLoRA quantises (all but the output layer)."""
        return sum(i * o for name, i, o in self.linears if name != self.output_layer)

    def lora_params(self, r: int, target_modules: str | Sequence[str]) -> int:
        """Trainable parameters LoRA of rank ``r`` adds (targets matched the way PEFT does)."""
        return sum(r * (i + o) for name, i, o in self.linears if self.targets(name, target_modules))

    def targets(self, name: str, target_modules: str | Sequence[str]) -> bool:
        if isinstance(target_modules, str):
            if target_modules.lower() == "all-linear":
                return name != self.output_layer
            return re.fullmatch(target_modules, name) is not None
        return any(name == t or name.endswith("." + t) for t in target_modules)


def spec_from_module(
    module: Any,
    *,
    name: str,
    family: str,
    checkpoint: str,
    towers: Iterable[Tower],
    source: str,
    checkpoint_dtype: str = "bf16",
    vocab_size: int = 0,
    attn: AttnSupport | None = None,
    **extra: Any,
) -> ModelSpec:
    """Count an ``nn.Module`` (on any device, ``meta`` included) into a :class:`ModelSpec`."""
    import torch

    seen: set[int] = set()
    params = 0
    for p in module.parameters():  # parameters() already skips tied duplicates
        if id(p) not in seen:
            seen.add(id(p))
            params += p.numel()
    linears = tuple(
        (n, m.in_features, m.out_features)
        for n, m in module.named_modules()
        if isinstance(m, torch.nn.Linear)
    )
    output = ""
    get_out = getattr(module, "get_output_embeddings", None)
    out_module = get_out() if callable(get_out) else None
    if out_module is not None:
        output = next(n for n, m in module.named_modules() if m is out_module)
    return ModelSpec(
        name=name,
        family=family,
        checkpoint=checkpoint,
        params=params,
        source=source,
        checkpoint_dtype=checkpoint_dtype,
        towers=tuple(towers),
        vocab_size=vocab_size,
        linears=linears,
        output_layer=output,
        attn=attn or AttnSupport(),
        **extra,
    )


def _attn_of(model_cls: Any) -> AttnSupport:
    return AttnSupport(
        flash_attention_2=bool(getattr(model_cls, "_supports_flash_attn", False)),
        sdpa=bool(getattr(model_cls, "_supports_sdpa", False)),
    )


def _on_meta(model_cls: Any, config: Any) -> Any:
    import torch

    with torch.device("meta"):
        return model_cls(config)


# --- LFM2-VL ------------------------------------------------------------------------------------

LFM2_VL_CONFIGS: dict[str, dict[str, Any]] = {
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
LFM2_VL_CONFIGS["LiquidAI/LFM2-VL-1.6B"] = LFM2_VL_CONFIGS["LiquidAI/LFM2.5-VL-1.6B"]


def lfm2_vl_config(checkpoint: str) -> Any:
    from transformers import Lfm2VlConfig

    dims = LFM2_VL_CONFIGS[checkpoint]
    vision = dict(dims["vision"])
    heads = vision.pop("heads")
    return Lfm2VlConfig(
        text_config=dict(
            model_type="lfm2",
            num_hidden_layers=16,
            num_key_value_heads=8,
            vocab_size=65536,
            layer_types=list(_LFM2_LAYERS),
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


def lfm2_vl_spec(name: str, checkpoint: str, config: Any = None, source: str = "") -> ModelSpec:
    """Spec of an LFM2-VL checkpoint (or of any ``Lfm2VlConfig``, e.g. a tiny test one)."""
    from transformers import Lfm2VlForConditionalGeneration

    if config is None:
        if checkpoint not in LFM2_VL_CONFIGS:
            known = ", ".join(LFM2_VL_CONFIGS)
            raise KeyError(f"no built-in LFM2-VL config for {checkpoint!r} (known: {known})")
        config = lfm2_vl_config(checkpoint)
        source = "computed from the config (built with empty weights)"
    model = _on_meta(Lfm2VlForConditionalGeneration, config)
    text, vision = config.text_config, config.vision_config
    # LFM2 gated MLP width after block_auto_adjust_ff_dim.
    width = model.model.language_model.layers[0].feed_forward.w1.out_features
    towers = (
        Tower(
            "vision",
            "model.vision_tower",
            vision.num_hidden_layers,
            vision.hidden_size,
            vision.intermediate_size,
            vision.num_attention_heads,
            kind="encoder",
        ),
        Tower(
            "language",
            "model.language_model",
            text.num_hidden_layers,
            text.hidden_size,
            width,
            text.num_attention_heads,
        ),
    )
    return spec_from_module(
        model,
        name=name,
        family="lfm2_vl",
        checkpoint=checkpoint,
        towers=towers,
        source=source,
        vocab_size=text.vocab_size,
        attn=_attn_of(Lfm2VlForConditionalGeneration),
        default_image_size=512,
        max_patches=1024,
    )


# --- DeepSeek-OCR-2 and v1 ----------------------------------------------------------------------

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
DEEPSEEK_OCR2_ENCODER: dict[str, Any] = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
)


def deepseek_ocr2_config() -> Any:
    from transformers import DeepseekOcr2Config

    return DeepseekOcr2Config(
        vision_config=dict(sam_config={}, encoder_config=dict(DEEPSEEK_OCR2_ENCODER)),
        text_config=dict(DEEPSEEK_LM),
    )


def _deepseek_lm_tower() -> Tower:
    lm = DEEPSEEK_LM
    width = (lm["num_experts_per_tok"] + lm["n_shared_experts"]) * lm["moe_intermediate_size"]
    return Tower("language", "model.language_model", 12, 1280, width, 10)


def _sam_tower(prefix: str) -> Tower:
    # SAM ViT-B: 12 layers, windowed (14x14) attention except 4 global layers, eager attention.
    return Tower("sam", prefix, 12, 768, 3072, 12, "encoder", True, 14, 4)


def deepseek_ocr2_spec(name: str, checkpoint: str) -> ModelSpec:
    from transformers import DeepseekOcr2ForConditionalGeneration

    model = _on_meta(DeepseekOcr2ForConditionalGeneration, deepseek_ocr2_config())
    enc = DEEPSEEK_OCR2_ENCODER
    towers = (
        _sam_tower("model.vision_tower.sam_encoder"),
        Tower(
            "qwen2_encoder",
            "model.vision_tower.vision_encoder",
            enc["num_hidden_layers"],
            enc["hidden_size"],
            enc["intermediate_size"],
            enc["num_attention_heads"],
        ),
        _deepseek_lm_tower(),
    )
    return spec_from_module(
        model,
        name=name,
        family="deepseek_ocr2",
        checkpoint=checkpoint,
        towers=towers,
        source="computed from the config (built with empty weights)",
        vocab_size=DEEPSEEK_LM["vocab_size"],
        attn=_attn_of(DeepseekOcr2ForConditionalGeneration),
        default_image_size=768,
    )


def deepseek_ocr_v1_spec(name: str, checkpoint: str) -> ModelSpec:
    """DeepSeek-OCR v1 is remote code: total from the table, layer list from its shared decoder."""
    import dataclasses

    from transformers import DeepseekOcr2TextConfig, DeepseekOcr2TextModel

    lm = _on_meta(DeepseekOcr2TextModel, DeepseekOcr2TextConfig(**DEEPSEEK_LM))
    towers = (
        _sam_tower("model.sam_model"),
        # CLIP-L/14 on the SAM features: 24 layers, width 1024.
        Tower("clip", "model.vision_model", 24, 1024, 4096, 16, "encoder"),
        dataclasses.replace(_deepseek_lm_tower(), prefix="model"),
    )
    spec = spec_from_module(
        lm,
        name=name,
        family="deepseek_ocr_v1",
        checkpoint=checkpoint,
        towers=towers,
        source="built-in table (6.67 GB of bf16 safetensors; remote code, not in transformers)",
        vocab_size=DEEPSEEK_LM["vocab_size"],
        # The remote DeepseekV2 code implements eager and flash_attention_2, not sdpa.
        attn=AttnSupport(flash_attention_2=True, sdpa=False),
        default_image_size=640,
        needs_cuda="DeepSeek-OCR v1's remote code calls .cuda() and needs transformers 4.46-4.47",
    )
    linears = tuple((f"model.{n}", i, o) for n, i, o in spec.linears)
    return dataclasses.replace(
        spec, params=DEEPSEEK_OCR_V1_PARAMS, linears=linears, output_layer="lm_head"
    )


# --- PP-OCR recognition -------------------------------------------------------------------------

PP_OCR_CLASSES = {
    "v6_small": "PPOCRV6SmallRec",
    "v6_tiny": "PPOCRV6TinyRec",
    "v5_mobile": "PPOCRV5MobileRec",
    "v5_server": "PPOCRV5ServerRec",
}
PP_OCR_HEIGHT = 48
PP_OCR_WIDTH = 320  # the width PP_OCR_ACTIVATION_BYTES is measured at


def saved_activation_bytes(module: Any, inputs: Any) -> int:
    """Bytes autograd keeps for backward in one forward pass (distinct storages, measured)."""
    import torch

    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    weights |= {b.untyped_storage().data_ptr() for b in module.buffers()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(inputs)
    return sum(storages.values())


#: Activation bytes autograd keeps for one 48x320 sample in fp32, measured with
#: :func:`saved_activation_bytes` on transformers' default configs (2026-11-23; the figure scales
#: linearly with batch and width). Building and running the real model takes ~15 s on 2 CPU cores,
#: too slow for a preflight, so the measurement is stored; scripts/bench_preflight.py re-measures.
PP_OCR_ACTIVATION_BYTES = {"v6_small": 55_623_872, "v6_tiny": 53_442_976}


def pp_ocr_spec(name: str, checkpoint: str, variant: str = "v6_small") -> ModelSpec:
    """PP-OCR recognition: parameters counted on the meta device, activations from the table."""
    import transformers

    if variant not in PP_OCR_CLASSES:
        raise KeyError(f"unknown PP-OCR variant {variant!r} (known: {', '.join(PP_OCR_CLASSES)})")
    prefix = PP_OCR_CLASSES[variant]
    model_cls = getattr(transformers, f"{prefix}ForTextRecognition")
    model = _on_meta(model_cls, getattr(transformers, f"{prefix}Config")())
    source = "computed from the config (transformers' default config, counted exactly)"
    if variant in PP_OCR_ACTIVATION_BYTES:
        acts = PP_OCR_ACTIVATION_BYTES[variant]
    else:
        acts = PP_OCR_ACTIVATION_BYTES["v6_small"]
        source += "; activations: PP-OCRv6-small's measured figure"
    tower = Tower("ppocr", "", 0, 0, 0, 0, kind="measured", bytes_per_sample_fp32=acts)
    return spec_from_module(
        model,
        name=name,
        family="pp_ocr",
        checkpoint=checkpoint,
        towers=(tower,),
        source=source,
        checkpoint_dtype="fp32",
        attn=AttnSupport(flash_attention_2=False, sdpa=False),
        default_image_size=PP_OCR_WIDTH,
    )


# --- dispatch -----------------------------------------------------------------------------------


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        return cfg.get(key, default)
    except AttributeError:
        return getattr(cfg, key, default)


@lru_cache(maxsize=16)
def _spec_cached(name: str, family: str, checkpoint: str, variant: str) -> ModelSpec:
    if family == "lfm2_vl":
        if checkpoint in LFM2_VL_CONFIGS:
            return lfm2_vl_spec(name, checkpoint)
        return lfm2_vl_spec(
            name,
            checkpoint,
            _fetch_config(name, checkpoint),
            "computed from the checkpoint's config.json (built with empty weights)",
        )
    if family == "deepseek_ocr2":
        return deepseek_ocr2_spec(name, checkpoint)
    if family == "deepseek_ocr_v1":
        return deepseek_ocr_v1_spec(name, checkpoint)
    if family == "pp_ocr":
        return pp_ocr_spec(name, checkpoint, variant or "v6_small")
    raise KeyError(
        f"the preflight has no entry for model family {family!r} (model {name!r}); "
        "known families: lfm2_vl, deepseek_ocr2, deepseek_ocr_v1, pp_ocr"
    )


def _fetch_config(name: str, checkpoint: str) -> Any:
    """config.json of a checkpoint that is not in the built-in table (local folder or the Hub)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(checkpoint)
    except Exception as exc:
        raise KeyError(
            f"model {name!r}: {checkpoint!r} is not in the built-in table and its config.json "
            f"could not be read ({type(exc).__name__}: {exc}). Offline, use a local folder with "
            f"a config.json or one of {', '.join(LFM2_VL_CONFIGS)}"
        ) from exc


def hub_parameter_count(checkpoint: str) -> dict[str, int]:
    """Parameters per dtype from the Hub's safetensors headers (a few KB; needs the network)."""
    from huggingface_hub import HfApi

    counts = HfApi().get_safetensors_metadata(checkpoint).parameter_count
    return {str(k): int(v) for k, v in counts.items()}


def model_spec(model_cfg: Any) -> ModelSpec:
    """The :class:`ModelSpec` for a ``model`` config (name, family, checkpoint[, variant])."""
    name = str(_cfg_get(model_cfg, "name", ""))
    family = str(_cfg_get(model_cfg, "family", ""))
    checkpoint = str(_cfg_get(model_cfg, "checkpoint", ""))
    variant = str(_cfg_get(model_cfg, "variant", "") or "")
    return _spec_cached(name, family, checkpoint, variant)
