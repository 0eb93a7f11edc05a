"""What to render (:class:`SynthConfig`), the command line's options (:class:`SynthRun`) and
their check (:func:`to_config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from vin_ocr import vin as vinlib
from vin_ocr.data.augment import AugmentConfig

LOOKS = ("stamped", "plate", "sticker", "document")
KINDS = ("line", "scene", "mixed")


@dataclass
class SynthConfig:
    """What to render. ``regions`` empty: every region of :data:`vin_ocr.vin.REGIONS` equally."""

    kind: str = "line"  # line | scene | mixed
    looks: list[str] = field(default_factory=lambda: list(LOOKS))
    regions: list[str] = field(default_factory=list)
    scene_share: float = 0.2  # kind=mixed: share of scenes
    line_height: list[int] = field(default_factory=lambda: [32, 64])  # crop height range, px
    scene_width: list[int] = field(default_factory=lambda: [480, 960])  # scene width range, px
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class SynthRun(SynthConfig):
    """The command line's options: :class:`SynthConfig` plus where and how much to write."""

    out: str = MISSING
    n: int = 1000
    seed: int = 0
    workers: int = 0  # 0: every core
    image_format: str = "jpg"  # jpg | png
    quality: int = 92  # JPEG quality
    sample_set: bool = False  # true: write the bundled sample set (ignores n, kind, looks)



def to_config(cfg: SynthConfig | Mapping[str, Any] | DictConfig | None = None) -> SynthConfig:
    """A checked :class:`SynthConfig` from a dataclass, a dict or a Hydra config (None: defaults).

    >>> to_config({"kind": "scene", "looks": ["plate"]}).looks
    ['plate']
    """
    if cfg is None:
        cfg = SynthConfig()
    elif not isinstance(cfg, SynthConfig):
        keys = set(SynthConfig.__dataclass_fields__)
        plain: dict[str, Any] = dict(
            OmegaConf.to_container(cfg, resolve=True)  # type: ignore[arg-type]
            if isinstance(cfg, DictConfig)
            else cfg
        )
        unknown = sorted(set(plain) - keys - set(SynthRun.__dataclass_fields__))
        if unknown:
            raise ValueError(f"synth config: unknown key(s) {', '.join(unknown)}")
        merged = OmegaConf.merge(
            OmegaConf.structured(SynthConfig),
            {k: v for k, v in plain.items() if k in keys},
        )
        cfg = OmegaConf.to_object(merged)  # type: ignore[assignment]
    assert isinstance(cfg, SynthConfig)
    if cfg.kind not in KINDS:
        raise ValueError(f"synth config: kind={cfg.kind!r}; expected one of {', '.join(KINDS)}")
    if not cfg.looks:
        raise ValueError("synth config: looks is empty")
    for look in cfg.looks:
        if look not in LOOKS:
            raise ValueError(f"synth config: unknown look {look!r}; expected {', '.join(LOOKS)}")
    for reg in cfg.regions:
        if reg not in vinlib.REGIONS:
            raise ValueError(
                f"synth config: unknown region {reg!r}; expected {', '.join(vinlib.REGIONS)}"
            )
    for name in ("line_height", "scene_width"):
        lo, hi = getattr(cfg, name)
        if not 8 <= lo <= hi:
            raise ValueError(f"synth config: {name}={[lo, hi]} must be [low, high], 8 <= low")
    return cfg
