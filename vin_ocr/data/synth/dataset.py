"""Synthetic samples on demand (:class:`SynthDataset`), as :class:`~vin_ocr.data.sample.Sample`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from vin_ocr.data.sample import Sample
from vin_ocr.data.synth.config import SynthConfig, to_config
from vin_ocr.data.synth.render import render_sample


class SynthDataset:
    """``n`` synthetic samples of ``seed``, rendered on demand: ``ds[i] -> (image, vin, meta)``.

    A plain sequence (no torch import): wrap it in a ``torch.utils.data.Dataset`` or use it as
    one (it has ``__len__`` and ``__getitem__``). :meth:`sample` gives a :class:`Sample` with the
    image in memory (``pixels``).
    """

    def __init__(
        self, n: int, seed: int = 0, cfg: SynthConfig | Mapping[str, Any] | None = None
    ) -> None:
        if n < 0:
            raise ValueError(f"SynthDataset: n must be >= 0, got {n}")
        self.n, self.seed, self.cfg = n, seed, to_config(cfg)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Image.Image, str, dict[str, Any]]:
        if not -self.n <= index < self.n:
            raise IndexError(f"SynthDataset index {index} out of range (n={self.n})")
        return render_sample(index % self.n, self.seed, self.cfg)

    def sample(self, index: int) -> Sample:
        img, vin, meta = self[index]
        return _to_sample(Path(f"synth/{self.seed}/{index % self.n:07d}.png"), vin, meta, img)


def _to_sample(path: Path, vin: str, meta: dict[str, Any], img: Image.Image | None) -> Sample:
    meta = dict(meta)
    box = meta.pop("box", None)
    kind = meta.get("kind")
    return Sample(
        image=path,
        vin=vin,
        source="synth",
        box=(box[0], box[1], box[2], box[3]) if box is not None else None,
        crop=kind == "line",
        meta=meta,
        pixels=img,
    )
