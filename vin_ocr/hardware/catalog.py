"""What the preflight knows about a model before any weight is downloaded.

The family module says it (``FamilyFacts.spec``, :mod:`vin_ocr.models.spec`): the architecture is
built on the ``meta`` device from the transformers config class and counted exactly, or, for
remote code, taken from a built-in table; the source of each count is reported. This module asks
the registry and caches the answer; it names no family.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from vin_ocr.models.spec import (
    AttnSupport,
    ModelSpec,
    Tower,
    attn_of,
    cfg_get,
    on_meta,
    saved_activation_bytes,
    spec_from_module,
)

__all__ = [
    "AttnSupport",
    "ModelSpec",
    "Tower",
    "attn_of",
    "hub_parameter_count",
    "model_spec",
    "on_meta",
    "saved_activation_bytes",
    "spec_from_module",
]

_cfg_get = cfg_get  # the name vin_ocr.hardware.attn_support imports


def _plain(model_cfg: Any) -> dict[str, Any]:
    if isinstance(model_cfg, dict):
        return dict(model_cfg)
    from omegaconf import DictConfig, OmegaConf

    if isinstance(model_cfg, DictConfig):
        return OmegaConf.to_container(model_cfg, resolve=True)  # type: ignore[return-value]
    return {k: v for k, v in vars(model_cfg).items() if not k.startswith("_")}


@lru_cache(maxsize=16)
def _spec_cached(key: str) -> ModelSpec:
    from vin_ocr.models.registry import spec_of

    return spec_of(json.loads(key))


def hub_parameter_count(checkpoint: str) -> dict[str, int]:
    """Parameters per dtype from the Hub's safetensors headers (a few KB; needs the network)."""
    from huggingface_hub import HfApi

    counts = HfApi().get_safetensors_metadata(checkpoint).parameter_count
    return {str(k): int(v) for k, v in counts.items()}


def model_spec(model_cfg: Any) -> ModelSpec:
    """The :class:`ModelSpec` for a ``model`` config (its family's ``FamilyFacts.spec``)."""
    return _spec_cached(json.dumps(_plain(model_cfg), sort_keys=True, default=str))
