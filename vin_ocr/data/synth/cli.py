"""``python -m vin_ocr.data.synth``: the Hydra entry point (config ``synth``, schema
:class:`SynthRun`)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import vin_ocr
from vin_ocr.data.synth.config import SynthRun, to_config
from vin_ocr.data.synth.sample_set import build_sample_set
from vin_ocr.data.synth.writer import generate

log = logging.getLogger(__name__)


def run(cfg: DictConfig | SynthRun) -> Path:
    """What ``python -m vin_ocr.data.synth`` does, given its composed config."""
    if isinstance(cfg, DictConfig):
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SynthRun), cfg))
        assert isinstance(obj, SynthRun)
        cfg = obj
    if cfg.sample_set:
        path = build_sample_set(cfg.out, cfg.seed, cfg.workers or None)
    else:
        path = generate(
            cfg.out,
            cfg.n,
            seed=cfg.seed,
            kind=cfg.kind,
            looks=cfg.looks,
            workers=cfg.workers or None,
            cfg=cfg,
            image_format=cfg.image_format,
            quality=cfg.quality,
        )
    log.info("wrote %s", path)
    return path


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="synth", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        if cfg.n < 0:
            raise ValueError(f"n={cfg.n}: the number of images to render must be >= 0")
        to_config(cfg)  # kind, looks, regions, ... checked before anything is written
        run(cfg)
    except (OSError, ValueError) as e:  # bad input: the message, no trace
        raise SystemExit(f"error: {e}") from None
