"""A model family's model as an evaluation engine.

A training run folder is loaded as one by :func:`vin_ocr.run_folder.load_run`
(``engine=checkpoint engine.path=RUN``), through the same family module that trained it, so
prediction takes the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from vin_ocr.models.base import ModelFamily, Reads
from vin_ocr.models.registry import supports
from vin_ocr.reading import Reading, TextsFromReadings


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
            if supports(self.family, Reads):
                return list(cast(Reads, self.family).read(self.model, images, crops))
            return [Reading(t) for t in self.family.predict(self.model, images)]
