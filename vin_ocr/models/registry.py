"""Model families by name: ``model.family`` in ``configs/model/*.yaml`` picks one.

Adding a family touches its module, its YAML and one line here.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from vin_ocr.models.base import ModelFamily

FAMILIES: dict[str, str] = {
    "pp_ocr": "vin_ocr.models.pp_ocr:PPOCRFamily",
    "lfm2_vl": "vin_ocr.models.lfm2_vl:Lfm2Vl",
    "deepseek_ocr2": "vin_ocr.models.deepseek_ocr:DeepseekOcr2",
    "deepseek_ocr_v1": "vin_ocr.models.deepseek_ocr:DeepseekOcrV1",
}


def get_family(name: str, cfg: Any = None) -> ModelFamily:
    """An instance of the family ``name`` (configured with the ``model`` config ``cfg``)."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    module, _, cls = FAMILIES[name].partition(":")
    family_cls = getattr(importlib.import_module(module), cls)
    takes_cfg = bool(inspect.signature(family_cls).parameters)
    return family_cls(cfg) if takes_cfg else family_cls()
