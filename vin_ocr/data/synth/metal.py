"""Scenes on the vehicle's metal: a stamped chassis or riveted type plate, and the dashboard VIN
plate seen through the windshield."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from vin_ocr.data import fonts
from vin_ocr.data.synth.glyphs import _SIZES, _fit_size, _layout_lines, _Text
from vin_ocr.data.synth.looks import _FONTS, _LABEL_FONTS, _painted, _Style, _vin_text
from vin_ocr.data.synth.paper import _maker
from vin_ocr.data.synth.raster import Arr, Box, _blur, _col, _jitter, _mask, _mix, _noise_field
from vin_ocr.data.synth.surfaces import _ink, _surface, _windshield


def _scene_stamped(
    vin: str, st: _Style, rng: random.Random, nrng: np.random.Generator, w: int
) -> tuple[Arr, Box]:
    h = round(w * rng.uniform(0.4, 0.65))
    plate = rng.random() < 0.6  # a riveted type plate, else the chassis itself
    if plate:
        around = _painted(st.font, rng)
        canvas = _surface(around, h, w, nrng)
        st.params["surface"] = rng.choice(["aluminium", "steel"])
        st.params["paint"] = _jitter(rng, (190, 192, 194), 14)
        mx, my = round(w * rng.uniform(0.03, 0.08)), round(h * rng.uniform(0.05, 0.12))
    else:
        canvas = np.zeros((3, h, w), np.float32)
        mx = my = 0
    pw, ph = w - 2 * mx, h - 2 * my
    surf = _surface(st, ph, pw, nrng)
    size = _fit_size(st.font, vin, ph / rng.uniform(8, 11))
    vt = _vin_text(vin, st, size)
    while vt.extent()[2] > 0.82 * pw and size > 8:  # keep the line on the plate
        size = int(_SIZES[max(0, int(np.searchsorted(_SIZES, size)) - 1)])
        vt = _vin_text(vin, st, size)
    small = max(8, round(size * rng.uniform(0.7, 0.9)))
    sf = rng.choice(fonts.available(_FONTS["stamped"]))
    if plate:
        extra = [
            _maker(vin, rng),
            f"e{rng.randint(1, 24)}*{rng.choice(['2001/116', '2007/46', '2018/858'])}"
            f"*{rng.randint(0, 9999):04d}*{rng.randint(0, 20):02d}",
            f"{rng.randrange(1400, 3500, 5)} kg",
            f"1-{rng.randrange(700, 1700, 5)} kg",
            f"2-{rng.randrange(700, 1700, 5)} kg",
        ]
        texts = [(_Text(s, sf, small), 0.0, "other") for s in extra]
        texts.insert(2, (vt, 0.0, "vin"))
    else:
        code = (
            f"{''.join(rng.choices('ABCDEFGHJKLMNPRSTUVWXYZ', k=3))} {rng.randint(0, 999999):06d}"
        )
        texts = [(vt, 0.0, "vin"), (_Text(code, sf, small), 0.0, "other")]
    heights = sum(t.extent()[3] - t.extent()[1] for t, _, _ in texts)
    gap = min(small * rng.uniform(0.5, 1.0), max(2.0, (ph * 0.85 - heights) / len(texts)))
    x = round(pw * rng.uniform(0.04, 0.12))
    y = max(2, round((ph - heights - gap * (len(texts) - 1)) * rng.uniform(0.3, 0.7)))
    drawn = _layout_lines((pw, ph), texts, x, y, gap, rng)
    boxes = drawn["boxes"]
    assert isinstance(boxes, list)
    vin_box = boxes[[t[2] for t in texts].index("vin")]
    vin_mask = drawn["vin"]
    assert isinstance(vin_mask, Image.Image)
    _ink(st, surf, _mask(drawn["other"]), small, nrng, variant="punched")
    _ink(st, surf, _mask(vin_mask), size, nrng)
    if plate:  # rivets in the corners
        rv = Image.new("L", (pw, ph), 0)
        rd = ImageDraw.Draw(rv)
        r = max(3, round(ph * 0.045))
        for cx, cy in [(x, y) for x in (2 * r, pw - 2 * r) for y in (2 * r, ph - 2 * r)]:
            rd.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        _ink(st, surf, _mask(rv), r * 4, nrng, variant="raised")
    canvas[:, my : my + ph, mx : mx + pw] = surf
    x0, y0, x1, y1 = vin_box
    return canvas, (x0 + mx, y0 + my, x1 + mx, y1 + my)


_GLASS = ("LAMINATED", "AS1", "DOT 563 M{n}", "43R-00{n}", "SAFETY GLASS", "E1", "TEMPERED")


def _scene_plate(
    vin: str, st: _Style, rng: random.Random, nrng: np.random.Generator, w: int
) -> tuple[Arr, Box]:
    """Looking down through the windshield's lower edge: frit band and dots at the bottom, the
    dashboard with the VIN plate just above them, the glass maker's mark in a corner."""
    h = round(w * rng.uniform(0.45, 0.65))
    dash_c = _jitter(rng, rng.choice([(38, 38, 40), (52, 48, 44), (30, 32, 36), (70, 66, 60)]), 6)
    grain = _noise_field(nrng, h, w, (h // 3, w // 3))
    falloff = np.linspace(0.75, 1.2, h, dtype=np.float32)[:, None]  # lit more near the glass
    canvas = _col(dash_c) * ((0.85 + 0.3 * grain) * falloff)
    band = round(h * rng.uniform(0.08, 0.16))
    step = max(6, round(h * 0.035))
    dots_top = h - band - 4 * step
    # The plate, on the dashboard just beyond the dots, with a rim and two rivets.
    size = _fit_size(st.font, vin, h / rng.uniform(11, 16))
    padf, rivetf = rng.uniform(0.35, 0.6), 0.9 if rng.random() < 0.6 else 0.0
    while True:
        vt = _vin_text(vin, st, size)
        x0e, y0e, x1e, y1e = vt.extent()
        tw, th = x1e - x0e, y1e - y0e
        pad, rivet = round(th * padf), round(th * rivetf)
        pw, ph = tw + 2 * pad + 2 * rivet, th + 2 * pad
        if pw <= 0.95 * w or size <= 8:
            break
        size = max(8, int(size * 0.9))
    px = rng.randint(2, max(3, w - pw - 2))
    py = max(2, dots_top - ph - rng.randint(0, max(1, round(h * 0.15))))
    surf = _surface(st, ph, pw, nrng)
    m = Image.new("L", (pw, ph), 0)
    box = vt.draw(m, pad + rivet, pad, rng)
    _ink(st, surf, _mask(m), size, nrng)
    rim = Image.new("L", (pw, ph), 0)
    rd = ImageDraw.Draw(rim)
    rd.rectangle((0, 0, pw - 1, ph - 1), outline=255, width=max(1, round(th * 0.08)))
    if rivet:
        r = rivet * 0.3
        for cx in (rivet * 0.6, pw - rivet * 0.6):
            rd.ellipse((cx - r, ph / 2 - r, cx + r, ph / 2 + r), fill=255)
    _mix(surf, _blur(_mask(rim), 0.6) * 0.35, (150, 152, 156))
    canvas[:, py : py + ph, px : px + pw] = surf
    # The plate's shadow on the dashboard (below/right of it).
    sh = Image.new("L", (w, h), 0)
    ImageDraw.Draw(sh).rectangle((px + 2, py + ph, px + pw + 2, min(h - 1, py + ph + 3)), fill=255)
    _mix(canvas, _blur(_mask(sh), 1.5) * 0.5, (0, 0, 0))
    # The black frit band along the glass edge and its dot gradient above it.
    frit = Image.new("L", (w, h), 0)
    fd = ImageDraw.Draw(frit)
    fd.rectangle((0, h - band, w, h), fill=255)
    for row in range(4):
        r = step * 0.42 * (1 - row / 4.5)
        cy = h - band - step * (row + 0.5)
        off = step / 2 if row % 2 else 0.0
        for cx in np.arange(off, w + step, step):
            fd.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    _mix(canvas, _mask(frit) * 0.92, (12, 12, 14))
    # The glass maker's mark, printed on the frit in a corner (light grey, small).
    etch = Image.new("L", (w, h), 0)
    ef = rng.choice(fonts.available(_LABEL_FONTS))
    es = max(7, round(band / 4.5))
    marks = [s.format(n=rng.randint(10, 999)) for s in rng.sample(_GLASS, k=3)]
    t = _Text("  ".join(marks), ef, es)
    ex = rng.choice([round(w * 0.03), round(w * 0.97 - t.extent()[2])])
    t.draw(etch, max(2, ex), h - band + (band - es) / 2, rng)
    _mix(canvas, _mask(etch) * 0.6, (190, 190, 190))
    canvas = _windshield(st, canvas, nrng)
    return canvas, (box[0] + px, box[1] + py, box[2] + px, box[3] + py)
