"""The four looks' fonts, paints and per-sample style draws (:func:`_style`)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from vin_ocr.data import fonts
from vin_ocr.data.synth.glyphs import _Text
from vin_ocr.data.synth.raster import _jitter

_FONTS: dict[str, tuple[str, ...]] = {
    "stamped": (
        "dejavu-sans-mono-bold", "liberation-mono-bold", "dejavu-sans-condensed-bold",
        "liberation-sans-narrow-bold", "ocr-a", "ocr-b", "free-sans-bold", "dejavu-sans-mono",
    ),
    "plate": (
        "dejavu-sans-condensed-bold", "liberation-sans-narrow-bold", "dejavu-sans-mono-bold",
        "ocr-b", "free-sans-bold", "liberation-sans-bold", "dejavu-sans-bold", "ocr-a",
    ),
    "sticker": (
        "liberation-sans", "liberation-sans-bold", "dejavu-sans", "free-sans", "ocr-b",
        "liberation-sans-narrow", "liberation-mono", "dejavu-sans-mono", "free-sans-bold",
    ),
    "document": (
        "liberation-mono", "free-mono", "dejavu-sans-mono", "ocr-b", "liberation-sans",
        "dejavu-sans", "free-mono-bold", "liberation-mono-bold", "liberation-serif",
    ),
}  # fmt: skip

_LABEL_FONTS = ("liberation-sans", "dejavu-sans", "free-sans", "liberation-sans-narrow")
_BOLD_FONTS = ("liberation-sans-bold", "dejavu-sans-bold", "free-sans-bold")

_PAINT = {
    "black": (28, 28, 30),
    "white": (222, 222, 218),
    "silver": (160, 163, 168),
    "grey": (96, 99, 104),
    "red": (128, 22, 24),
    "blue": (28, 48, 104),
    "green": (34, 70, 48),
    "beige": (186, 170, 140),
}


_STAMP_PAINT = ((222, 222, 218), (160, 163, 168), (110, 113, 118), (150, 42, 40), (56, 84, 140),
                (64, 104, 74), (186, 170, 140))  # fmt: skip


def _painted(font: str, rng: random.Random) -> _Style:
    """Painted bodywork around a sticker or a type plate (any body colour)."""
    paint = _jitter(rng, rng.choice(list(_PAINT.values())), 10)
    return _Style("stamped", font, "painted", {"surface": "painted", "paint": paint})


def _font(look: str, rng: random.Random) -> str:
    return rng.choice(fonts.available(_FONTS[look]))


@dataclass
class _Style:
    look: str
    font: str
    variant: str
    params: dict[str, Any] = field(default_factory=dict)


def _style(look: str, rng: random.Random) -> _Style:
    p: dict[str, Any] = {}
    if look == "stamped":
        variant = rng.choices(["punched", "dot_peen", "raised"], [0.65, 0.2, 0.15])[0]
        surface = rng.choices(["steel", "painted", "rust", "aluminium"], [0.35, 0.3, 0.15, 0.2])[0]
        p["surface"] = surface
        if surface == "painted":  # lighter paints: relief on black paint is barely legible
            p["paint"] = _jitter(rng, rng.choice(_STAMP_PAINT), 12)
        elif surface == "aluminium":
            p["paint"] = _jitter(rng, (188, 190, 192), 14)
        else:
            p["paint"] = _jitter(rng, (128, 126, 122), 22)
        p["delim"] = rng.random() < 0.55
        p["light"] = rng.uniform(0, 2 * math.pi)
        p["amp"] = rng.uniform(60, 120)
        p["occl"] = rng.uniform(0.0, 0.45) if rng.random() < 0.8 else rng.uniform(-0.15, 0.0)
        p["tracking"] = rng.uniform(0.0, 0.18)
        p["wobble"] = rng.uniform(0, 0.05) if rng.random() < 0.5 else 0.0
        p["depth"] = rng.uniform(0, 0.35)
    elif look == "plate":
        variant = rng.choices(["light_on_dark", "dark_on_light"], [0.85, 0.15])[0]
        if variant == "light_on_dark":
            p["plate"] = _jitter(rng, rng.choice([(30, 31, 34), (22, 26, 34), (44, 44, 42)]), 8)
            p["ink"] = _jitter(rng, (200, 202, 200), 25)
        else:
            p["plate"] = _jitter(rng, (176, 178, 174), 15)
            p["ink"] = _jitter(rng, (30, 30, 32), 10)
        p["raised"] = rng.random() < 0.5
        p["tint"] = rng.choice([(0.92, 1.0, 0.96), (0.95, 0.98, 1.0), (1.0, 1.0, 1.0)])
        p["haze"] = rng.uniform(0.02, 0.18)
        p["glare"] = rng.uniform(0.0, 0.5)
        p["light"] = rng.uniform(0, 2 * math.pi)
        p["tracking"] = rng.uniform(0.0, 0.1)
    elif look == "sticker":
        variant = rng.choices(["white", "silver", "aged"], [0.6, 0.3, 0.1])[0]
        p["label"] = {
            "white": _jitter(rng, (238, 238, 236), 8),
            "silver": _jitter(rng, (192, 194, 196), 12),
            "aged": _jitter(rng, (226, 218, 190), 10),
        }[variant]
        p["ink"] = _jitter(rng, (32, 32, 34), 12)
        p["fade"] = rng.uniform(0.0, 0.3)
        p["tracking"] = rng.uniform(0.0, 0.06)
    else:
        variant = rng.choices(["white", "green", "pink", "beige", "blue"], [3, 2, 1, 1, 1])[0]
        p["paper"] = _jitter(
            rng,
            {
                "white": (242, 242, 238),
                "green": (222, 236, 222),
                "pink": (242, 226, 228),
                "beige": (238, 230, 208),
                "blue": (222, 232, 242),
            }[variant],
            6,
        )
        p["ink"] = _jitter(rng, rng.choice([(24, 24, 26), (30, 32, 60), (40, 40, 40)]), 8)
        p["form_ink"] = tuple(c * 0.55 for c in p["paper"])
        p["inkjet"] = rng.random() < 0.3
        p["tracking"] = rng.uniform(0.0, 0.08)
    return _Style(look=look, font=_font(look, rng), variant=variant, params=p)


def _vin_text(vin: str, st: _Style, size: int) -> _Text:
    p = st.params
    text = f"*{vin}*" if p.get("delim") else vin
    return _Text(
        text,
        st.font,
        size,
        tracking=p.get("tracking", 0.0) * size,
        wobble=p.get("wobble", 0.0) * size,
        depth=p.get("depth", 0.0),
        dots=st.variant == "dot_peen",
    )
