"""The protocol every model family implements, so one training loop and one harness serve all.

A family module (``pp_ocr.py``, ``lfm2_vl.py``, ``deepseek_ocr.py``) exposes a class that:

- ``build(cfg, hardware)`` loads (or, for tests, builds tiny from config) the model and its
  processor and returns them; loading failures raise with the reason, never fall back silently;
- ``collate(samples)`` turns a list of :class:`vin_ocr.data.Sample` into a batch of tensors
  (labels aligned, padding masked out of the loss with -100 for token models);
- ``loss(model, batch)`` returns the scalar training loss;
- ``predict(model, images)`` returns one raw string per PIL image (the VIN path, normalisation
  and VIN rules, is applied by the caller, the same way for every family).

A family may also have ``read(model, images, crops) -> list[vin_ocr.reading.Reading]``: readings
with per-character confidences, the box of the line read in a scene, and the reading before the
VIN-constrained search. :class:`vin_ocr.models.engine.FamilyEngine` uses it when present.

The loop, LoRA set-up, merge, hub push, card and metric are shared functions, not base classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from vin_ocr.data import Sample


@runtime_checkable
class ModelFamily(Protocol):
    name: str

    def build(self, cfg: Any, hardware: Any) -> tuple[torch.nn.Module, Any]: ...

    def collate(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def predict(self, model: torch.nn.Module, images: Sequence[Image]) -> list[str]: ...
