"""What the preflight needs to know about a model before any weight is downloaded.

Each family module builds its :class:`ModelSpec` (``FamilyFacts.spec``): the architecture is
built on the ``meta`` device from the transformers config class (no memory, no download) and
counted exactly by :func:`spec_from_module`; the towers describe the activations for
:mod:`vin_ocr.hardware.estimate`. Nothing here names a family.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AttnSupport:
    """Which attention kernels a model class implements (transformers' ``_supports_*``)."""

    flash_attention_2: bool = True
    sdpa: bool = True


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
    measured_width: int = 0  # kind == measured: the image width that figure is measured at


#: Tokens per sample each tower processes, for one image of side ``image_size`` and
#: ``max_length`` answer tokens: ``tokens(image_size, max_length) -> {tower name: tokens}``.
TowerTokens = Callable[[int, int], dict[str, int]]


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
    #: Tokens per tower (None: every tower sees the image width, as measured towers do).
    tokens: TowerTokens | None = field(default=None, compare=False)
    qlora: bool = True  # a 4-bit QLoRA run is a way out worth offering
    image_budget: bool = True  # a smaller training.image_size is a way out worth offering

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


def attn_of(model_cls: Any) -> AttnSupport:
    """The attention kernels a transformers model class declares."""
    return AttnSupport(
        flash_attention_2=bool(getattr(model_cls, "_supports_flash_attn", False)),
        sdpa=bool(getattr(model_cls, "_supports_sdpa", False)),
    )


def on_meta(model_cls: Any, config: Any) -> Any:
    """``model_cls(config)`` on the meta device: the architecture without memory."""
    import torch

    with torch.device("meta"):
        return model_cls(config)


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


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` of a dict, a DictConfig or an object, else ``default``."""
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        return cfg.get(key, default)
    except AttributeError:
        return getattr(cfg, key, default)
