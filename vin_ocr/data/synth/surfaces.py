"""What the VIN sits on (metal, plate, label, paper), how its ink goes on (relief, print), and
the windshield in front of a dashboard plate."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from vin_ocr.data.augment import gaussian_field
from vin_ocr.data.synth.looks import _Style
from vin_ocr.data.synth.raster import Arr, _blur, _col, _mix, _noise_field, _shift


def _surface(st: _Style, h: int, w: int, nrng: np.random.Generator) -> Arr:
    """The background the VIN sits on, a (3, h, w) float32 canvas in 0-255."""
    p = st.params
    if st.look == "stamped":
        base = _col(p["paint"])
        if p["surface"] == "painted":
            grain = _noise_field(nrng, h, w, (h // 6, w // 6)) - 0.5
            canvas = base * (1 + 0.06 * grain)
        else:  # brushed metal: streaks along x, fine grain, a soft illumination falloff
            streak = _noise_field(nrng, h, w, (h // 2, max(2, w // 60))) - 0.5
            canvas = base * (1 + 0.16 * streak)
        light = _noise_field(nrng, h, w, (3, 4))
        canvas *= 0.8 + 0.35 * light
        if p["surface"] == "rust":
            blot = _noise_field(nrng, h, w, (max(2, h // 14), max(2, w // 14)))
            rust = np.clip((blot - 0.55) * 4, 0, 1) * 0.8
            fine = _noise_field(nrng, h, w, (h // 2, w // 2))
            _mix(canvas, rust, _col((118, 60, 30)) * (0.7 + 0.6 * fine))
        return canvas + gaussian_field(nrng, h, w) * 3
    if st.look == "plate":
        streak = _noise_field(nrng, h, w, (h // 2, max(2, w // 50))) - 0.5
        return _col(p["plate"]) * (1 + 0.12 * streak) + gaussian_field(nrng, h, w) * 2
    if st.look == "sticker":
        base = _col(p["label"])
        if st.variant == "silver":
            sheen = _noise_field(nrng, h, w, (2, 3))
            return base * (0.85 + 0.3 * sheen) + gaussian_field(nrng, h, w) * 5
        return base + gaussian_field(nrng, h, w) * 2
    fibre = _noise_field(nrng, h, w, (h // 3, w // 3)) - 0.5
    canvas = _col(p["paper"]) * (1 + 0.03 * fibre)
    if st.variant != "white" or nrng.random() < 0.3:  # guilloche security print
        _mix(canvas, _guilloche(h, w, nrng) * 0.35, np.asarray(p["form_ink"], np.float32))
    return canvas


def _guilloche(h: int, w: int, nrng: np.random.Generator) -> Arr:
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    xs = np.arange(0, w + 4, 4, dtype=np.float32)
    period = nrng.uniform(40, 120)
    amp = nrng.uniform(3, 10)
    step = nrng.uniform(5, 9)
    phase2 = nrng.uniform(0, 6.3)
    for k, y0 in enumerate(np.arange(-amp, h + amp, step)):
        ys = y0 + amp * np.sin(xs / period * 2 * np.pi + k * 0.5 + phase2)
        d.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255, width=1)
    return np.asarray(im, dtype=np.float32) / 255.0


# --- looks: ink -------------------------------------------------------------------------------


def _ink(
    st: _Style,
    canvas: Arr,
    mask: Arr,
    size: int,
    nrng: np.random.Generator,
    variant: str | None = None,
) -> None:
    """Put the characters in ``mask`` (float (h, w) in [0, 1]) onto ``canvas`` in the look's way."""
    p = st.params
    variant = variant or st.variant
    if st.look == "stamped":
        sign = -1.0 if variant == "raised" else 1.0
        mb = _blur(mask, max(0.5, size * 0.04))
        d = max(1, round(size * 0.05))
        dy, dx = round(d * math.sin(p["light"])), round(d * math.cos(p["light"]))
        shade = _shift(mb, dy, dx) - _shift(mb, -dy, -dx)
        canvas *= 1.0 - p["occl"] * mb
        canvas += sign * p["amp"] * shade
        return
    if st.look == "plate":
        m = _blur(mask, 0.4)
        _mix(canvas, m, p["ink"])
        if p["raised"]:
            d = max(1, round(size * 0.03))
            shade = _shift(m, d, d) - _shift(m, -d, -d)
            canvas -= 45 * shade
        return
    if st.look == "sticker":
        fade = 1.0 - p["fade"] * _noise_field(nrng, mask.shape[0], mask.shape[1], (2, 8))
        _mix(canvas, _blur(mask, 0.3) * fade, p["ink"])
        return
    m = _blur(mask, 0.7) * 0.9 if p["inkjet"] else mask
    _mix(canvas, m, p["ink"])


def _windshield(st: _Style, canvas: Arr, nrng: np.random.Generator) -> Arr:
    """Seen through glass: tint, haze, a glare band, faint reflections."""
    p = st.params
    h, w = canvas.shape[1:]
    canvas *= _col(p["tint"])
    a = p["light"]
    xs = (np.arange(w, dtype=np.float32) - w * nrng.uniform(0, 1)) * math.cos(a)
    ys = (np.arange(h, dtype=np.float32) - h * nrng.uniform(0, 1)) * math.sin(a)
    t = ys[:, None] + xs[None, :]
    band = np.exp(-((t / (nrng.uniform(0.15, 0.6) * max(w, h))) ** 2)) * p["glare"]
    refl = _noise_field(nrng, h, w, (3, 5)) * 0.12
    veil = np.clip(p["haze"] + band + refl, 0, 0.85)
    _mix(canvas, veil, (236, 240, 244))
    return canvas
