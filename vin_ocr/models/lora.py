r"""LoRA set-up shared by the VLM families: targets scoped to the language model, the rest frozen.

Why scope: LFM2's attention uses ``q_proj/k_proj/v_proj/out_proj`` and so does the SigLIP2 vision
tower, so a plain name list (``["q_proj", "v_proj"]``) puts adapters in both towers. Each family
therefore gives its default targets as a regular expression over the full module path under the
language model (PEFT matches a string ``target_modules`` with ``re.fullmatch``), and
:func:`apply_lora` refuses any adapter that still lands under a frozen prefix.

Where the settings live (:func:`resolve_lora`): ``training.lora`` holds ``r``, ``alpha``,
``dropout`` (and may override the targets); ``model.lora`` holds the architecture's
``target_modules`` / ``target_parameters`` / ``scope`` / ``frozen_prefixes``, defaulting to the
family's constants. A key in the wrong place fails naming the key and its home.

MoE experts (DeepSeek-OCR-2) are 3-D parameters, not ``nn.Linear`` modules, so ``target_modules``
cannot reach them; PEFT's ``target_parameters`` can (PEFT >= 0.17), at a cost of ``r`` per expert.

>>> scoped_pattern("model.language_model", ["q_proj", "w1"])
'model\\.language_model\\..*\\.(q_proj|w1)'
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class LoraSettings:
    """Resolved LoRA settings (:func:`resolve_lora` builds them from the two config layers)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    #: A regex (full match on the module path) or a list of module-name suffixes; a list is
    #: scoped under ``scope`` so it cannot reach the vision tower.
    target_modules: str | list[str] | None = None
    #: 3-D parameters to adapt (PEFT ``target_parameters``), e.g. MoE experts; empty = none.
    target_parameters: list[str] = field(default_factory=list)
    #: Module path prefix the list form of ``target_modules`` is scoped to.
    scope: str = "model.language_model"
    #: Prefixes no adapter may land under (the vision tower: frozen, adapters refused there).
    frozen_prefixes: list[str] = field(default_factory=lambda: ["model.vision_tower"])
    #: Modules trained fully beside the adapters and saved with them (PEFT ``modules_to_save``),
    #: e.g. a new classifier head; empty = none.
    modules_to_save: list[str] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> LoraSettings:
        values = dict(values or {})
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown LoRA setting(s) {unknown}; known: {sorted(names)}")
        for key in ("target_modules", "target_parameters", "frozen_prefixes", "modules_to_save"):
            if values.get(key) is not None and not isinstance(values[key], str):
                values[key] = list(values[key])  # OmegaConf ListConfig -> list
        return cls(**values)


#: ``training.lora``: how large and how strong the adapters are, and optionally where
#: (``target_modules`` / ``target_parameters`` there override the model's when set).
TRAINING_KEYS = ("r", "alpha", "dropout", "target_modules", "target_parameters")
#: ``model.lora``: where adapters go on this architecture (the family's defaults when unset).
MODEL_KEYS = ("target_modules", "target_parameters", "scope", "frozen_prefixes", "modules_to_save")


def resolve_lora(
    defaults: Mapping[str, Any],
    model: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> LoraSettings:
    """The one LoRA rule: ``r``/``alpha``/``dropout`` come from ``training.lora`` (else
    :class:`LoraSettings`' defaults); the targets from ``training.lora`` when set there, else
    from ``model.lora``, else from the family's ``defaults``. A key that is ``null`` is unset, and
    so is ``target_modules: all-linear``: it means the family's own "every linear layer of the
    language model" (PEFT's ``all-linear`` would also adapt the vision tower).

    A key outside :data:`TRAINING_KEYS` / :data:`MODEL_KEYS` fails naming it.

    >>> s = resolve_lora({"target_modules": "x"}, {"target_modules": ["w1"]}, {"r": 4})
    >>> s.r, s.alpha, s.target_modules
    (4, 32, ['w1'])
    """
    values = dict(defaults)
    for where, layer, allowed in (
        ("model.lora", model, MODEL_KEYS),
        ("training.lora", training, TRAINING_KEYS),
    ):
        layer = _plain(layer) if layer is not None else {}
        unknown = sorted(set(layer) - set(allowed))
        if unknown:
            key = unknown[0]
            raise ValueError(f"{where}.{key}: not a {where} key ({_belongs(key, where)})")
        for key, value in layer.items():
            if value is not None and not (key == "target_modules" and value == "all-linear"):
                values[key] = value
    return LoraSettings.from_mapping(values)


def _belongs(key: str, where: str) -> str:
    if where == "model.lora" and key in TRAINING_KEYS:
        return f"rank, alpha and dropout are training settings: set training.lora.{key}"
    if where == "training.lora" and key in MODEL_KEYS:
        return f"it describes the architecture: set model.lora.{key}"
    known = MODEL_KEYS if where == "model.lora" else TRAINING_KEYS
    return f"known: {', '.join(known)}"


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(values, Mapping) and not hasattr(values, "_metadata"):
        return dict(values)
    from omegaconf import OmegaConf  # a DictConfig

    return dict(OmegaConf.to_container(values, resolve=True))  # type: ignore[arg-type]


def scoped_pattern(scope: str, names: Sequence[str]) -> str:
    """A PEFT ``target_modules`` regex matching ``names`` only under ``scope``."""
    alternatives = "|".join(re.escape(n) for n in names)
    return rf"{re.escape(scope)}\..*\.({alternatives})"


def apply_lora(model: torch.nn.Module, settings: LoraSettings) -> Any:
    """Wrap ``model`` in a PEFT ``PeftModel``: adapters on the scoped targets, all base weights
    frozen (PEFT freezes them; the vision tower in particular gets no adapter).

    A 4-bit model (QLoRA) is first prepared with ``peft.prepare_model_for_kbit_training``.
    Raises ``ValueError`` if no module matches or an adapter lands under a frozen prefix.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = settings.target_modules
    if targets is None or (not isinstance(targets, str) and not targets):
        if not settings.target_parameters:
            raise ValueError("LoRA needs target_modules and/or target_parameters")
        pattern: str | list[str] = []
    elif isinstance(targets, str):
        pattern = targets
    else:
        pattern = scoped_pattern(settings.scope, targets)

    if settings.target_parameters and settings.dropout:
        raise ValueError(
            "lora.target_parameters needs lora.dropout: 0 (PEFT's parameter adapters have no "
            f"dropout); got dropout {settings.dropout}"
        )
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=pattern,
        target_parameters=list(settings.target_parameters) or None,
        modules_to_save=list(settings.modules_to_save) or None,
        bias="none",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as err:  # e.g. PEFT's "Target modules ... not found in the base model"
        raise ValueError(f"LoRA set-up failed for targets {pattern!r}: {err}") from err

    landed = lora_module_names(peft_model)
    bad = [n for n in landed if any(_under(n, p) for p in settings.frozen_prefixes)]
    if bad:
        raise ValueError(
            f"LoRA target(s) {pattern!r} put adapters in a frozen part of the model "
            f"({settings.frozen_prefixes}), e.g. {bad[0]}; scope them to {settings.scope!r}"
        )
    log.info("LoRA on %d modules (r=%d, alpha=%d)", len(landed), settings.r, settings.alpha)
    return peft_model


def lora_module_names(model: torch.nn.Module) -> list[str]:
    """Paths (relative to the wrapped base model) of every module that holds a LoRA adapter."""
    from peft.tuners.lora import LoraLayer

    names = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            names.append(name.removeprefix("base_model.model."))
    return names


def load_adapter(
    model: torch.nn.Module,
    path: str | Path,
    *,
    trainable: bool = False,
    adapter_name: str = "default",
) -> Any:
    """Put the LoRA adapter saved (``save_pretrained``) in ``path`` on ``model``; every saved
    tensor must land, or ``ValueError`` says which did not. If ``model`` is already a
    ``PeftModel`` the adapter is added beside the others as ``adapter_name`` (to combine them).

    Not ``PeftModel.from_pretrained``: with transformers 5.23 / PEFT 0.21 it runs the
    checkpoint-format conversion of the base model on the adapter's keys, and DeepSeek-OCR-2's
    rule ``(^|model\\.)layers\\.`` -> ``language_model.layers.`` also matches the already-native
    ``language_model.layers.``: every adapter key then goes missing (with only a warning).
    """
    from peft import PeftConfig, get_peft_model
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no adapter_model.safetensors in {path}")
    config = PeftConfig.from_pretrained(str(path))
    config.inference_mode = not trainable
    if hasattr(model, "peft_config"):  # already a PeftModel: one more named adapter
        model.add_adapter(adapter_name, config)  # type: ignore[operator]
        peft_model = model
    else:
        peft_model = get_peft_model(model, config, adapter_name=adapter_name)
    saved = load_file(str(weights))
    slot = rf".\1.{adapter_name}."
    state = {_ADAPTER_SLOT.sub(slot, key): value for key, value in saved.items()}
    for name in config.modules_to_save or ():  # fully trained modules: "<m>.weight" as saved
        whole = re.compile(rf"(^|\.){re.escape(name)}\.(?!modules_to_save\.)")
        held = rf"\g<1>{name}.modules_to_save.{adapter_name}."
        state = {whole.sub(held, key): value for key, value in state.items()}
    result = peft_model.load_state_dict(state, strict=False)
    mine = re.compile(rf"\.(lora_\w+|modules_to_save)\.{re.escape(adapter_name)}\.")
    missing = [k for k in result.missing_keys if mine.search(k)]
    if result.unexpected_keys or missing:
        raise ValueError(
            f"adapter {path} does not fit the model: unexpected {result.unexpected_keys[:3]}, "
            f"missing {missing[:3]}"
        )
    return peft_model


# "...q_proj.lora_A.weight" as saved -> "...q_proj.lora_A.<adapter>.weight" as held in the model.
_ADAPTER_SLOT = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)\.")


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the base under a ``PeftModel``) holds 4-/8-bit (bitsandbytes)
    weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # type: ignore[operator]
    if getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False):
        return True
    return any(type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in base.modules())


def merge_lora(peft_model: Any) -> torch.nn.Module:
    """Fold the active adapter into the base weights (``merge_and_unload``) and return the plain
    model. A quantised base is refused: merging into 4-bit weights rounds the adapter's update
    away; reload the base in 16-bit first (:func:`vin_ocr.training.merge.merge_verified` does)."""
    if is_quantized(peft_model):
        raise ValueError(
            "refusing to merge a LoRA adapter into 4-bit/8-bit weights (the update would be "
            "rounded away): reload the base in 16-bit and merge there, e.g. "
            "python -m vin_ocr.training.merge run=RUN_DIR"
        )
    return peft_model.merge_and_unload()


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def quantization_config(mode: str | None, device: str, compute_dtype: torch.dtype) -> Any:
    """A ``BitsAndBytesConfig`` for ``mode`` ("4bit"), or None for "none"/None.

    4-bit (QLoRA) needs a CUDA GPU and the ``bitsandbytes`` package: anything else fails here,
    before any download, with the reason.
    """
    if mode in (None, "none", "null", False):
        return None
    if mode != "4bit":
        raise ValueError(f"quantization must be 'none' or '4bit', not {mode!r}")
    if device != "cuda" or not torch.cuda.is_available():
        raise RuntimeError(
            "quantization: 4bit (QLoRA) needs bitsandbytes on a CUDA GPU, but this run's device "
            f"is {device!r} (CUDA available: {torch.cuda.is_available()}); "
            "set model.quantization=none or run on a CUDA machine"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(
            "quantization: 4bit needs the bitsandbytes package: pip install 'bitsandbytes>=0.45'"
        )
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
