"""The bundled sample set (:func:`build_sample_set`) and a contact sheet of a manifest."""

from __future__ import annotations

import math
import os
from pathlib import Path

from PIL import Image, ImageDraw

import vin_ocr
from vin_ocr import vin as vinlib
from vin_ocr.data.synth.config import LOOKS, SynthConfig
from vin_ocr.data.synth.render import _choose, sample_rngs
from vin_ocr.data.synth.writer import _write_all

#: The bundled sample set: 8 line crops per look over the regions, 2 scenes per look.
SAMPLE_SET_SEED = 2026
SAMPLE_SET_LINES = 8
SAMPLE_SET_SCENES = 2


def build_sample_set(
    out_dir: str | os.PathLike[str] = vin_ocr.SAMPLES_DIR,
    seed: int = SAMPLE_SET_SEED,
    workers: int | None = 1,
) -> Path:
    """Write the bundled sample set: 32 line crops and 8 scenes, distinct VINs, fixed seed."""
    plan = [(look, "line") for look in LOOKS for _ in range(SAMPLE_SET_LINES)]
    plan += [(look, "scene") for look in LOOKS for _ in range(SAMPLE_SET_SCENES)]
    cfg = SynthConfig()
    force: dict[int, dict[str, str]] = {}
    seen: set[str] = set()
    index = 0
    for i, (look, kind) in enumerate(plan):
        p = {"look": look, "kind": kind, "region": vinlib.REGIONS[i % len(vinlib.REGIONS)]}
        while True:  # skip an index whose VIN repeats an earlier one (rare, but checked)
            _, _, vin = _choose(sample_rngs(seed, index)[0], cfg, **p)
            index += 1
            if vin not in seen:
                seen.add(vin)
                force[index - 1] = p
                break
    return _write_all(Path(out_dir), sorted(force), seed, cfg, workers, "jpg", 90, force)


def contact_sheet(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    lines_per_look: int = 3,
    width: int = 960,
) -> Path:
    """A PNG showing a manifest's line crops (by look) and scenes (boxes in red), for a look."""
    from vin_ocr.data.sample import read_manifest

    samples = read_manifest(manifest)
    crops = [s for s in samples if s.crop]
    scenes = [s for s in samples if not s.crop]
    tiles: list[Image.Image] = []
    for look in LOOKS:
        mine = [s for s in crops if s.meta.get("look") == look][:lines_per_look]
        for s in mine:
            im = s.load_image()
            scale = min(48 / im.height, (width / 2 - 8) / im.width)
            tiles.append(im.resize((round(im.width * scale), round(im.height * scale))))
    cols = 2
    row_h = 56
    rows = math.ceil(len(tiles) / cols)
    thumbs: list[Image.Image] = []
    for s in scenes[:8]:
        im = s.load_image()
        if s.box:
            ImageDraw.Draw(im).rectangle(s.box, outline=(230, 30, 30), width=3)
        tw = width // 4 - 6
        thumbs.append(im.resize((tw, round(im.height * tw / im.width))))
    scene_h = sum(max(t.height for t in thumbs[i : i + 4]) + 6 for i in range(0, len(thumbs), 4))
    sheet = Image.new("RGB", (width, rows * row_h + scene_h + 6), (255, 255, 255))
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % cols) * (width // 2) + 4, (k // cols) * row_h + 4))
    y = rows * row_h + 6
    for i in range(0, len(thumbs), 4):
        for j, t in enumerate(thumbs[i : i + 4]):
            sheet.paste(t, (j * (width // 4) + 3, y))
        y += max(t.height for t in thumbs[i : i + 4]) + 6
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out
