"""One sample: its generators, its kind, look and VIN, and the line crop or scene drawn and
augmented (:func:`render_sample`)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from vin_ocr import vin as vinlib
from vin_ocr.data.augment import augment
from vin_ocr.data.synth.config import LOOKS, SynthConfig, to_config
from vin_ocr.data.synth.glyphs import _fit_size
from vin_ocr.data.synth.looks import _Style, _style, _vin_text
from vin_ocr.data.synth.metal import _scene_plate, _scene_stamped
from vin_ocr.data.synth.paper import _scene_document, _scene_sticker
from vin_ocr.data.synth.raster import Box, _to_image
from vin_ocr.data.synth.surfaces import _ink, _surface, _windshield


def _render_line(
    vin: str, st: _Style, rng: random.Random, nrng: np.random.Generator, cfg: SynthConfig
) -> Image.Image:
    height = rng.randint(*cfg.line_height)
    fill = rng.uniform(0.5, 0.72)  # ink height / crop height
    text = _vin_text(vin, st, 10)
    text.size = _fit_size(st.font, text.text, fill * height)
    text = _vin_text(vin, st, text.size)
    x0, y0, x1, y1 = text.extent()
    tw, th = x1 - x0, y1 - y0
    top = round((height - th) * rng.uniform(0.3, 0.7))
    char_w = text.ifont.getlength("0")
    left = round(char_w * rng.uniform(0.15, 0.9))
    right = round(char_w * rng.uniform(0.15, 0.9))
    w = tw + left + right
    mask_im = Image.new("L", (w, height), 0)
    text.draw(mask_im, left, top, rng)
    mask = np.asarray(mask_im, dtype=np.float32) / 255.0
    canvas = _surface(st, height, w, nrng)
    _ink(st, canvas, mask, text.size, nrng)
    if st.look == "plate":
        canvas = _windshield(st, canvas, nrng)
    return _to_image(canvas)


_SCENES = {
    "stamped": _scene_stamped,
    "plate": _scene_plate,
    "sticker": _scene_sticker,
    "document": _scene_document,
}


def sample_rngs(seed: int, index: int) -> tuple[random.Random, np.random.Generator]:
    """The per-sample generators: a function of (seed, index) only, in any process."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return random.Random(f"vin-ocr-synth/{seed}/{index}"), np.random.default_rng([seed, index, 7])


def _choose(
    rng: random.Random, cfg: SynthConfig, kind: str | None, look: str | None, region: str | None
) -> tuple[str, str, str]:
    """The sample's kind, look and VIN: the first draws from its ``rng``."""
    if kind is None:
        kind = cfg.kind
        if kind == "mixed":
            kind = "scene" if rng.random() < cfg.scene_share else "line"
    look = look or rng.choice(cfg.looks)
    if look not in LOOKS or kind not in ("line", "scene"):
        raise ValueError(f"render_sample: look={look!r}, kind={kind!r}")
    if region is None and cfg.regions:
        region = rng.choice(cfg.regions)
    return kind, look, vinlib.random_vin(rng, region)


def render_sample(
    index: int,
    seed: int = 0,
    cfg: SynthConfig | Mapping[str, Any] | DictConfig | None = None,
    *,
    look: str | None = None,
    kind: str | None = None,
    region: str | None = None,
) -> tuple[Image.Image, str, dict[str, Any]]:
    """Render sample ``index`` of ``seed``: ``(RGB image, VIN, meta)``.

    ``meta`` holds ``look``, ``kind`` (``line``/``scene``), ``font``, ``variant``, ``region`` and,
    for scenes, ``box`` (the VIN line, ``[x0, y0, x1, y1]`` pixels). ``look``/``kind``/``region``
    force a choice that ``cfg`` otherwise makes at random. The result depends only on
    (index, seed, cfg, the overrides) and the installed fonts.
    """
    cfg = to_config(cfg)
    rng, nrng = sample_rngs(seed, index)
    kind, look, vin = _choose(rng, cfg, kind, look, region)
    st = _style(look, rng)
    box: Box | None = None
    if kind == "line":
        img = _render_line(vin, st, rng, nrng, cfg)
    else:
        canvas, box = _SCENES[look](vin, st, rng, nrng, rng.randint(*cfg.scene_width))
        pad = max(2, (box[3] - box[1]) // 6)
        h, w = canvas.shape[1:]
        box = (
            max(0, box[0] - pad),
            max(0, box[1] - pad),
            min(w, box[2] + pad),
            min(h, box[3] + pad),
        )
        img = _to_image(canvas)
    img, box = augment(img, nrng, cfg.augment, box=box)
    meta: dict[str, Any] = {
        "look": look,
        "kind": kind,
        "font": st.font,
        "variant": st.variant,
        "region": vinlib.region(vin),
    }
    if box is not None:
        meta["box"] = list(box)
    return img, vin, meta
