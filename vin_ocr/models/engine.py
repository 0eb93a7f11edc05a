"""A model family's model as an evaluation engine, and a training run folder loaded as one.

A finished run folder holds ``model/`` (weights + processor, ``save_pretrained`` layout) and
``run.json`` (the family and the resolved ``model`` config). ``engine=checkpoint engine.path=RUN``
loads it through the same family module that trained it, so prediction takes the same path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vin_ocr.models.base import ModelFamily
from vin_ocr.reading import Reading, TextsFromReadings

RUN_FILE = "run.json"
MODEL_DIR = "model"


class FamilyEngine(TextsFromReadings):
    """A family's model as an engine: ``family.read(model, images, crops)`` where the family has
    it (readings with confidences, boxes, the check-digit search), else ``family.predict`` with
    every image read whole."""

    def __init__(self, family: ModelFamily, model: Any, name: str | None = None) -> None:
        self.family, self.model = family, model
        self.name = name or family.name

    def read(
        self, images: Sequence[Any], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        import torch

        self.model.eval()
        with torch.no_grad():
            read = getattr(self.family, "read", None)
            if read is not None:
                return list(read(self.model, images, crops))
            return [Reading(t) for t in self.family.predict(self.model, images)]


def load_run(
    path: str | Path, hardware: Any = None, overrides: dict[str, Any] | None = None
) -> FamilyEngine:
    """The trained model of the run folder ``path`` as an engine; clear errors for what is not.
    ``overrides`` change keys of the run's model config (``run.json``'s ``model``) for reading,
    e.g. ``{"check_digit_search": False}``; a key the run's model config lacks is an error."""
    from omegaconf import OmegaConf

    from vin_ocr.models.registry import get_family

    run = Path(path)
    info_path = run / RUN_FILE
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{run}: not a finished training run folder (no {RUN_FILE}); train one with "
            "python -m vin_ocr.training.hf_finetune"
        )
    info = json.loads(info_path.read_text())
    for key in overrides or {}:
        if key not in info["model"]:
            raise ValueError(
                f"{run}: model config has no key {key!r} to override "
                f"(keys: {', '.join(sorted(info['model']))})"
            )
    if overrides:
        merged = OmegaConf.merge(OmegaConf.create(info["model"]), OmegaConf.create(overrides))
        info["model"] = OmegaConf.to_container(merged, resolve=True)
    model_dir = run / MODEL_DIR
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{run}: the run has no {MODEL_DIR}/ folder (was it interrupted?)")
    name = f"checkpoint:{run.name}"
    adapter = model_dir / "adapter"
    if not any(model_dir.glob("*.safetensors")) and adapter.is_dir():
        # adapter only (training.merge=false, or an adapter pushed to the Hub): base + adapter
        from vin_ocr.models.lora import load_adapter
        from vin_ocr.training.merge import build_base

        family, base, _ = build_base(info, hardware)
        return FamilyEngine(family, load_adapter(base, adapter), name=name)
    model_cfg = OmegaConf.create(info["model"])
    model_cfg.checkpoint = str(model_dir.resolve())
    if "tiny" in model_cfg:
        model_cfg.tiny = False  # the saved weights, whatever built them
    family = get_family(info["family"], model_cfg)
    model, _ = family.build(model_cfg, hardware)
    return FamilyEngine(family, model, name=name)
