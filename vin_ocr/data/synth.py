"""Synthetic VIN images: line crops and whole scenes in four looks, deterministic by seed.

Looks (``LOOKS``):

* ``stamped``  -- punched, dot-peened or raised characters in steel, painted or rusty metal, or on
  a riveted type plate; often ``*`` delimiters; low contrast (relief shading only).
* ``plate``    -- the dashboard plate seen through the windshield: light characters on a dark
  plate, haze, a glare band, a tint.
* ``sticker``  -- the door-jamb certification label: dark print on a white or silver label,
  label text (MFD BY, DATE, GVWR, GAWR...) and a Code 39 barcode of the VIN.
* ``document`` -- a registration paper: printed VIN on tinted security paper with field labels
  (``VIN``, ``Fahrzeug-Ident.-Nr.``, ``Chassis No.``...) and other fields.

Two kinds: ``line`` (a tight crop of the VIN line, 32-64 px high, aspect about 6:1 to 12:1, the
recogniser's input) and ``scene`` (the VIN among other text, 480-960 px wide; the VIN's box is
recorded). :func:`render_sample` draws sample ``index`` of a ``seed`` -- the same image in any
process and order -- and is what training uses on the fly (:class:`SynthDataset`);
:func:`generate` writes a folder of images and a ``manifest.jsonl``:

    python -m vin_ocr.data.synth out=data/synth n=10000 seed=0 kind=line

>>> img, vin, meta = render_sample(3, seed=0)
>>> img.mode, len(vin), meta["look"] in LOOKS, meta["kind"]
('RGB', 17, True, 'line')
"""

from __future__ import annotations

import functools
import io
import logging
import math
import multiprocessing as mp
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from PIL import Image, ImageDraw, ImageFilter, ImageFont

import vin_ocr
from vin_ocr import vin as vinlib
from vin_ocr.data import fonts
from vin_ocr.data.augment import AugmentConfig, augment, gaussian_field
from vin_ocr.data.sample import Sample, write_manifest

log = logging.getLogger(__name__)

LOOKS = ("stamped", "plate", "sticker", "document")
KINDS = ("line", "scene", "mixed")
Box = tuple[int, int, int, int]
Arr = np.ndarray


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


ConfigStore.instance().store(name="synth_schema", node=SynthRun)


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


# --- small numpy/PIL helpers -----------------------------------------------------------------


def _noise_field(nrng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> Arr:
    """Smooth noise in [0, 1]: a (cells) grid of random values, upscaled bilinearly to (h, w)."""
    ch, cw = max(2, cells[0]), max(2, cells[1])
    small = Image.fromarray(nrng.random((ch, cw), dtype=np.float32), mode="F")
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _shift(a: Arr, dy: int, dx: int) -> Arr:
    """``out[y, x] = a[y - dy, x - dx]`` with edges replicated."""
    h, w = a.shape[:2]
    p = max(abs(dy), abs(dx))
    if p == 0:
        return a
    pad = ((p, p), (p, p)) + ((0, 0),) * (a.ndim - 2)
    q = np.pad(a, pad, mode="edge")
    return q[p - dy : p - dy + h, p - dx : p - dx + w]


def _blur(a: Arr, radius: float) -> Arr:
    if radius <= 0:
        return a
    im = Image.fromarray(np.clip(a * 255, 0, 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _mix(canvas: Arr, mask: Arr, colour: Arr | tuple[float, ...]) -> None:
    """In place: ``canvas = canvas * (1 - mask) + colour * mask`` (mask (h, w) in [0, 1])."""
    canvas *= 1.0 - mask
    canvas += _col(colour) * mask


def _col(colour: Arr | tuple[float, ...]) -> Arr:
    """A colour shaped (3, 1, 1), to broadcast over a (3, h, w) canvas (arrays pass through)."""
    a = np.asarray(colour, dtype=np.float32)
    return a.reshape(3, 1, 1) if a.size == 3 else a


def _to_image(canvas: Arr) -> Image.Image:
    """A (3, h, w) float canvas (channel-first: numpy is much faster so) as an RGB image."""
    u8 = np.clip(canvas, 0, 255).astype(np.uint8)
    return Image.merge("RGB", [Image.fromarray(band) for band in u8])


def _jitter(rng: random.Random, colour: tuple[int, ...], amount: int) -> tuple[float, ...]:
    """``colour`` made lighter or darker by up to ``amount``, with a faint tint of a quarter."""
    shift = rng.randint(-amount, amount)
    tint = max(1, amount // 4)
    return tuple(float(min(255, max(0, c + shift + rng.randint(-tint, tint)))) for c in colour)


# --- text --------------------------------------------------------------------------------------


@dataclass
class _Text:
    """A line of text to draw: per-character spacing/wobble/depth for punched characters."""

    text: str
    font: str
    size: int
    tracking: float = 0.0  # extra space between characters, px
    wobble: float = 0.0  # per-character vertical jitter, px
    depth: float = 0.0  # per-character intensity variation (0: all 255)
    dots: bool = False  # dot-peen: each character as a dot matrix

    @property
    def ifont(self) -> ImageFont.FreeTypeFont:
        return fonts.load(self.font, self.size)

    def extent(self) -> tuple[int, int, int, int]:
        """Ink box relative to the drawing origin (width includes tracking)."""
        f = self.ifont
        x0, y0, x1, y1 = (int(v) for v in f.getbbox(self.text))
        extra = self.tracking * (len(self.text) - 1)
        return x0, y0 - math.ceil(self.wobble), math.ceil(x1 + extra), y1 + math.ceil(self.wobble)

    def draw(self, im: Image.Image, x: float, y: float, rng: random.Random) -> Box:
        """Draw into the ``L`` image ``im``, the ink's top-left near (x, y); returns the ink box."""
        f = self.ifont
        bx0, by0, bx1, by1 = self.extent()
        ox, oy = x - bx0, y - by0
        if not (self.tracking or self.wobble or self.depth or self.dots):
            ImageDraw.Draw(im).text((ox, oy), self.text, font=f, fill=255)
            return (
                math.floor(x),
                math.floor(y),
                math.ceil(x + bx1 - bx0),
                math.ceil(y + by1 - by0),
            )
        # Character by character from cached glyph masks (pasting is much faster than drawing).
        cx = ox
        box = [math.inf, math.inf, -math.inf, -math.inf]
        for ch in self.text:
            dy = rng.uniform(-self.wobble, self.wobble) if self.wobble else 0.0
            fill = 255 - round(rng.uniform(0, self.depth) * 255) if self.depth else 255
            glyph, gx, gy, advance = (_dot_glyph if self.dots else _glyph)(self.font, self.size, ch)
            if glyph is not None:
                px, py = round(cx + gx), round(oy + dy + gy)
                im.paste(fill, (px, py, px + glyph.width, py + glyph.height), glyph)
                box = [
                    min(box[0], px),
                    min(box[1], py),
                    max(box[2], px + glyph.width),
                    max(box[3], py + glyph.height),
                ]
            cx += advance + self.tracking
        return (box[0], box[1], box[2], box[3])  # type: ignore[return-value]


def _glyph(font: str, size: int, ch: str) -> tuple[Image.Image | None, int, int, float]:
    """One character's mask (None for blank ones), its offset from the origin, its advance."""
    return _glyph_of(str(fonts.resolve(font)), size, ch)


@functools.lru_cache(maxsize=65536)
def _glyph_of(path: str, size: int, ch: str) -> tuple[Image.Image | None, int, int, float]:
    f = fonts.load_file(path, size)
    x0, y0, x1, y1 = (int(v) for v in f.getbbox(ch))
    if x1 <= x0 or y1 <= y0:
        return None, 0, 0, f.getlength(ch)
    im = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(im).text((-x0, -y0), ch, font=f, fill=255)
    return im, x0, y0, f.getlength(ch)


def _dot_glyph(font: str, size: int, ch: str) -> tuple[Image.Image | None, int, int, float]:
    """A character as dot-peen marking: its glyph resampled on a grid, one dot per inked cell."""
    return _dot_glyph_of(str(fonts.resolve(font)), size, ch)


@functools.lru_cache(maxsize=16384)
def _dot_glyph_of(path: str, size: int, ch: str) -> tuple[Image.Image | None, int, int, float]:
    glyph, gx, gy, advance = _glyph_of(path, size, ch)
    if glyph is None:
        return glyph, gx, gy, advance
    cell = max(2.0, glyph.height / 7)
    cols, rows = max(1, round(glyph.width / cell)), 7
    cells = np.asarray(glyph.resize((cols, rows), Image.Resampling.BOX))
    cw, ch_ = glyph.width / cols, glyph.height / rows
    r = 0.42 * min(cell, max(cw, 0.8 * cell))
    out = Image.new("L", glyph.size, 0)
    d = ImageDraw.Draw(out)
    for y, x in zip(*np.nonzero(cells > 80), strict=True):
        cx, cy = (x + 0.5) * cw, (y + 0.5) * ch_
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    return out, gx, gy, advance


#: Font sizes used: ~7% apart, so the glyph cache stays small and warms up quickly.
_SIZES = np.unique(np.round(6 * 1.07 ** np.arange(60))).astype(int)


@functools.lru_cache(maxsize=4096)
def _ink_ratio(font: str, text: str) -> float:
    ref = 100
    _, y0, _, y1 = fonts.load(font, ref).getbbox(text)
    return max(1, y1 - y0) / ref


def _fit_size(font: str, text: str, target_h: float) -> int:
    """The font size (from a fixed ladder) whose ink height for ``text`` is about ``target_h``."""
    want = target_h / _ink_ratio(font, "".join(sorted(set(text))))
    return int(_SIZES[np.abs(_SIZES - want).argmin()])


def _code39(text: str, module: float, height: int) -> Arr:
    """Code 39 of ``text`` as a float mask (1 = bar) ``module`` pixels per narrow module.

    The bar/space pattern is python-barcode's (``*`` start/stop added, no check character,
    wide = 3 narrow modules, one narrow gap between characters), so a reader sees the symbol
    the library would print; no quiet zones (the caller leaves them). ``module`` may be
    fractional: each pixel column gets the share of it that the bars cover, as a printer's dots
    averaged by a camera would, instead of rounding every bar to whole pixels.
    """
    import barcode

    bits = np.frombuffer(
        barcode.Code39(text, add_checksum=False).build()[0].encode(), dtype=np.uint8
    ) - ord("0")
    # Coverage of pixel column x = integral of the bit pattern over [x, x + 1) in module units.
    cum = np.concatenate([[0.0], np.cumsum(bits, dtype=np.float64)])
    edges = np.arange(math.ceil(bits.size * module) + 1) / module
    row = np.diff(np.interp(edges, np.arange(bits.size + 1), cum)) * module
    return np.broadcast_to(np.clip(row, 0, 1).astype(np.float32), (height, row.size)).copy()


# --- looks: fonts and styles -----------------------------------------------------------------

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


# --- looks: surfaces ---------------------------------------------------------------------------


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


# --- line crops ---------------------------------------------------------------------------------


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


# --- scenes ---------------------------------------------------------------------------------


_MAKERS = (
    "GENERAL MOTORS LLC", "FORD MOTOR COMPANY", "HONDA OF AMERICA MFG., INC.",
    "TOYOTA MOTOR MANUFACTURING", "VOLKSWAGEN AG", "BMW AG", "NISSAN MOTOR CO., LTD.",
    "HYUNDAI MOTOR COMPANY", "FCA US LLC", "TESLA, INC.", "RENAULT S.A.S.", "SKODA AUTO A.S.",
)  # fmt: skip


def _maker(vin: str, rng: random.Random) -> str:
    name = vinlib.manufacturer(vin)
    return name.upper() if name else rng.choice(_MAKERS)


def _kg(rng: random.Random, lo: int, hi: int) -> str:
    kg = rng.randrange(lo, hi, 5)
    return f"{kg} KG ({round(kg * 2.20462)} LB)"


def _layout_lines(
    canvas_size: tuple[int, int],
    lines: list[tuple[_Text, float, str]],
    x: float,
    y: float,
    gap: float,
    rng: random.Random,
) -> dict[str, Image.Image | list[Box]]:
    """Draw ``(text, indent, layer)`` lines top-down into one mask per layer; returns masks+boxes.

    ``boxes`` (key ``"boxes"``) lists each line's ink box in order.
    """
    masks: dict[str, Image.Image] = {}
    boxes: list[Box] = []
    for text, indent, layer in lines:
        if layer not in masks:
            masks[layer] = Image.new("L", canvas_size, 0)
        _, y0, _, y1 = text.extent()
        boxes.append(text.draw(masks[layer], x + indent, y, rng))
        y += (y1 - y0) + gap
    return {**masks, "boxes": boxes}


def _mask(im: Image.Image | list[Box]) -> Arr:
    assert isinstance(im, Image.Image)
    return np.asarray(im, dtype=np.float32) / 255.0


def _scene_sticker(
    vin: str, st: _Style, rng: random.Random, nrng: np.random.Generator, w: int
) -> tuple[Arr, Box]:
    h = round(w * rng.uniform(0.55, 0.8))
    body = _painted(st.font, rng)
    canvas = _surface(body, h, w, nrng)
    mx, my = round(w * rng.uniform(0.02, 0.07)), round(h * rng.uniform(0.03, 0.08))
    lw, lh = w - 2 * mx, h - 2 * my
    label = _surface(st, lh, lw, nrng)
    lf = rng.choice(fonts.available(_LABEL_FONTS))
    bf = rng.choice(fonts.available(_BOLD_FONTS))
    prefix = rng.choice(["VIN: ", "VIN ", "V.I.N. ", ""])
    month = f"{rng.randint(1, 12):02d}/{rng.randint(0, 99):02d}"
    tyre = rng.choice(["P215/55R17", "225/65R17", "P245/70R17", "205/55R16"])
    # (text, font, size relative to the body text, layer)
    rows: list[tuple[str, str, float, str]] = [
        (f"MFD BY: {_maker(vin, rng)}", bf, 1.0, "ink"),
        (f"DATE: {month}    GVWR: {_kg(rng, 1600, 3200)}", lf, 1.0, "ink"),
        (f"GAWR FRT: {_kg(rng, 800, 1600)}  RR: {_kg(rng, 800, 1600)}", lf, 1.0, "ink"),
        (
            f"TIRES {tyre}  COLD TIRE PRESSURE {rng.randint(200, 260)} KPA "
            f"({rng.randint(30, 38)} PSI)",
            lf,
            0.85,
            "ink",
        ),
        ("THIS VEHICLE CONFORMS TO ALL APPLICABLE U.S. FEDERAL MOTOR", lf, 0.8, "ink"),
        ("VEHICLE SAFETY, BUMPER, AND THEFT PREVENTION STANDARDS IN", lf, 0.8, "ink"),
        ("EFFECT ON THE DATE OF MANUFACTURE SHOWN ABOVE.", lf, 0.8, "ink"),
        (vin, st.font, rng.uniform(1.15, 1.6), "vin"),
        (
            f"TYPE: {rng.choice(['PASS CAR', 'MPV', 'TRUCK'])}    "
            f"PAINT: {rng.choice(['NH731P', 'WA8555', '1G3', '040', 'PW7'])}",
            lf,
            1.0,
            "ink",
        ),
    ]
    pad = round(lw * rng.uniform(0.04, 0.07))
    # Body text size: fill the label's height, but let the widest line fit its width.
    track = st.params["tracking"] * len(vin)
    width_1 = 1.05 * max(
        (fonts.load(f, 100).getlength(prefix + t) / 100 + track) * rel
        if layer == "vin"
        else fonts.load(f, 100).getlength(t) / 100 * rel
        for t, f, rel, layer in rows
    )
    small = min(round(lh / rng.uniform(17, 22)), int((lw - 2.5 * pad) / width_1))
    small = max(7, small)
    lines: list[tuple[_Text, float, str]] = []
    vin_at, pre = -1, None
    for t, f, rel, layer in rows:
        if layer == "vin":
            vt = _vin_text(vin, st, _fit_size(st.font, vin, small * rel * 0.72))
            pre = _Text(prefix, bf, vt.size) if prefix else None
            vin_at = len(lines)
            lines.append((vt, pre.ifont.getlength(prefix) if pre else 0.0, "vin"))
        else:
            lines.append((_Text(t, f, max(6, round(small * rel))), 0, layer))
    gap = small * rng.uniform(0.35, 0.6)
    drawn = _layout_lines((lw, lh), lines, pad, pad, gap, rng)
    boxes = drawn["boxes"]
    assert isinstance(boxes, list)
    vin_box = boxes[vin_at]
    ink = _mask(drawn["ink"])
    if pre:
        pm = Image.new("L", (lw, lh), 0)
        pre.draw(pm, pad, vin_box[1], rng)
        ink = np.maximum(ink, _mask(pm))
    # Barcode of the VIN (sometimes with the import marker ``I``) under the text.
    # Real labels print it across most of their width (narrow module ~0.2-0.25 mm on a label
    # ~10 cm wide), with a quiet zone of at least 10 modules each side; a fractional module
    # width in pixels, as a camera sees it. Whether it stays readable is up to the augmentations.
    code = ("I" if rng.random() < 0.2 else "") + vin
    n_modules = 16 * (len(code) + 2) - 1  # python-barcode's Code 39: 16 per character, less a gap
    # At least 1.25 px per module (a clean render decodes), at most what fits the label.
    fit = (lw - 14) / (n_modules + 20)
    module = min(fit, max(1.25, (lw - 2 * pad) * rng.uniform(0.6, 0.95) / n_modules))
    bar_h = round(lh * rng.uniform(0.1, 0.16))
    bars = _code39(code, module, bar_h)
    by = max(b[3] for b in boxes) + round(gap * 1.5)
    bx = max(min(pad, lw - 5 - bars.shape[1] - math.ceil(10 * module)), math.ceil(10 * module) + 5)
    if by + bar_h < lh - 2 and bx + bars.shape[1] + 10 * module <= lw - 5:
        ink[by : by + bar_h, bx : bx + bars.shape[1]] = np.maximum(
            ink[by : by + bar_h, bx : bx + bars.shape[1]], bars
        )
    _ink(st, label, ink, small, nrng)
    _ink(st, label, _mask(drawn["vin"]), vt.size, nrng)
    border = Image.new("L", (lw, lh), 0)
    ImageDraw.Draw(border).rectangle((3, 3, lw - 4, lh - 4), outline=255, width=max(1, lh // 150))
    _ink(st, label, _mask(border), small, nrng)
    canvas[:, my : my + lh, mx : mx + lw] = label
    x0, y0, x1, y1 = vin_box
    return canvas, (x0 + mx, y0 + my, x1 + mx, y1 + my)


_DOC_FORMS = {
    "de": (
        "Zulassungsbescheinigung Teil I",
        ["E  Fahrzeug-Ident.-Nr.", "E  Fahrzeug-Identifizierungsnummer"],
        [("A  Amtliches Kennzeichen", "{plate}"), ("B  Datum der Erstzulassung", "{date}"),
         ("D.1  Marke", "{make}"), ("2.1  Code zu 2", "{num4}"), ("C.1.1  Name", "{name}"),
         ("F.1  Techn. zul. Gesamtmasse in kg", "{kg}"), ("P.1  Hubraum in cm3", "{cc}")],
    ),
    "uk": (
        "VEHICLE REGISTRATION CERTIFICATE",
        ["Chassis No.", "VIN/Chassis/Frame No.", "E  VIN/Chassis/Frame No."],
        [("Registration number", "{plate}"), ("Date of first registration", "{date}"),
         ("Make", "{make}"), ("Registered keeper", "{name}"), ("Cylinder capacity (cc)", "{cc}"),
         ("Revenue weight", "{kg}")],
    ),
    "us": (
        "CERTIFICATE OF TITLE",
        ["VIN", "VEHICLE IDENTIFICATION NUMBER", "VEHICLE ID NO."],
        [("TITLE NUMBER", "{num8}"), ("YEAR", "{year}"), ("MAKE", "{make}"),
         ("OWNER", "{name}"), ("ODOMETER", "{odo} MILES"), ("ISSUE DATE", "{date}")],
    ),
}  # fmt: skip

_NAMES = ("MUSTERMANN, ERIKA", "SMITH, JOHN A", "GARCIA, MARIA", "NOWAK, JAN", "ROSSI, LUCA",
          "DUPONT, CLAIRE", "JOHNSON, EMILY R", "SCHMIDT, PETER")  # fmt: skip


def _doc_value(tpl: str, vin: str, rng: random.Random) -> str:
    letters = "ABCDEFGHKLMNPRSTUVWXYZ"
    return tpl.format(
        plate=f"{''.join(rng.choices(letters, k=2))} {''.join(rng.choices(letters, k=2))} "
        f"{rng.randint(1, 9999)}",
        date=f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1990, 2025)}",
        make=_maker(vin, rng).split(" ")[0],
        name=rng.choice(_NAMES),
        num4=f"{rng.randint(0, 9999):04d}",
        num8=f"{rng.randint(0, 99999999):08d}",
        kg=str(rng.randrange(1200, 3500, 5)),
        cc=str(rng.choice([998, 1395, 1598, 1968, 2487, 2996])),
        year=str(rng.randint(1990, 2025)),
        odo=f"{rng.randint(100, 250000):,}",
    )


def _scene_document(
    vin: str, st: _Style, rng: random.Random, nrng: np.random.Generator, w: int
) -> tuple[Arr, Box]:
    h = round(w * rng.uniform(0.6, 0.9))
    canvas = _surface(st, h, w, nrng)
    title, vin_labels, fields = _DOC_FORMS[rng.choice(list(_DOC_FORMS))]
    lf = rng.choice(fonts.available(_LABEL_FONTS))
    bf = rng.choice(fonts.available(_BOLD_FONTS))
    vf = st.font
    chosen = rng.sample(fields, k=min(len(fields), rng.randint(4, 6)))
    at = rng.randint(1, len(chosen))
    entries = [(lab, _doc_value(v, vin, rng)) for lab, v in chosen]
    entries.insert(at, (rng.choice(vin_labels), vin))
    # Font sizes such that the form fills most of the page's height.
    small = max(8, min(round(h / 20), round(h * rng.uniform(0.6, 0.85) / (3 + 2.9 * len(entries)))))
    value = round(small * rng.uniform(1.2, 1.5))
    pad = round(w * rng.uniform(0.05, 0.08))
    head = _Text(title, bf, round(small * 1.5))
    while head.extent()[2] > w - 2 * pad and head.size > 8:
        head = _Text(title, bf, int(head.size * 0.9))
    lines: list[tuple[_Text, float, str]] = [(head, 0, "form")]
    vin_pos = -1
    for lab, val in entries:
        lines.append((_Text(lab, lf, small), 0, "form"))
        if val == vin:
            vin_pos = len(lines)
            lines.append((_vin_text(vin, st, _fit_size(vf, vin, value * 0.72)), small, "vin"))
        else:
            lines.append((_Text(val, vf, _fit_size(vf, "0A", value * 0.72)), small, "ink"))
    gap = small * rng.uniform(0.3, 0.6)
    drawn = _layout_lines((w, h), lines, pad, pad, gap, rng)
    boxes = drawn["boxes"]
    assert isinstance(boxes, list)
    rules = Image.new("L", (w, h), 0)
    rd = ImageDraw.Draw(rules)
    for i in range(1, len(lines), 2):  # a rule above each field label
        y = boxes[i][1] - round(gap / 2) - 1
        rd.line((pad - 4, y, w - pad, y), fill=255, width=1)
    _mix(canvas, _mask(rules) * 0.6 + _mask(drawn["form"]), np.asarray(st.params["form_ink"]))
    if "ink" in drawn:
        _ink(st, canvas, _mask(drawn["ink"]), value, nrng)
    _ink(st, canvas, _mask(drawn["vin"]), value, nrng)
    return canvas, boxes[vin_pos]


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


_SCENES = {
    "stamped": _scene_stamped,
    "plate": _scene_plate,
    "sticker": _scene_sticker,
    "document": _scene_document,
}


# --- the public API ---------------------------------------------------------------------------


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


def _encode(img: Image.Image, image_format: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if image_format == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=3)
    else:
        img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


_JOB: dict[str, Any] = {}


def _init_job(job: dict[str, Any]) -> None:
    _JOB.clear()
    _JOB.update(job)


def _job_one(index: int) -> dict[str, Any]:
    """Worker: render sample ``index``, write its image, return its manifest entry."""
    j = _JOB
    img, vin, meta = render_sample(index, j["seed"], j["cfg"], **j.get("force", {}).get(index, {}))
    ext = "png" if j["format"] == "png" else "jpg"
    rel = Path("images") / f"{index:06d}.{ext}"
    _write_bytes(j["out"] / rel, _encode(img, j["format"], j["quality"]))
    return {"index": index, "image": rel.as_posix(), "vin": vin, "meta": meta}


def _run_jobs(indices: list[int], job: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(indices) < 2 * workers:
        _init_job(job)
        return [_job_one(i) for i in indices]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init_job, initargs=(job,)) as pool:
        chunk = max(1, min(64, len(indices) // (workers * 8)))
        rows = list(pool.imap(_job_one, indices, chunksize=chunk))
        pool.close()
        pool.join()
    return rows


def _write_all(
    out_dir: Path,
    indices: list[int],
    seed: int,
    cfg: SynthConfig,
    workers: int | None,
    image_format: str,
    quality: int,
    force: dict[int, dict[str, str]] | None = None,
) -> Path:
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format={image_format!r}; expected jpg or png")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    job = {
        "seed": seed,
        "cfg": cfg,
        "out": out_dir,
        "format": image_format,
        "quality": quality,
        "force": force or {},
    }
    rows = _run_jobs(indices, job, workers)
    samples = [_to_sample(out_dir / r["image"], r["vin"], r["meta"], None) for r in rows]
    return write_manifest(samples, out_dir / "manifest.jsonl")


def generate(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    kind: str = "line",
    looks: list[str] | tuple[str, ...] | None = None,
    workers: int | None = None,
    cfg: SynthConfig | Mapping[str, Any] | DictConfig | None = None,
    image_format: str = "jpg",
    quality: int = 92,
) -> Path:
    """Render samples ``0..n-1`` of ``seed`` into ``out_dir/images/`` and write the manifest.

    ``kind`` and ``looks`` override ``cfg``'s. ``workers``: processes (None: every core). Each
    image is written through a temporary file; ``manifest.jsonl`` is written last, atomically.
    Returns the manifest's path.
    """
    base = to_config(cfg)
    cfg = to_config({**_as_dict(base), "kind": kind, "looks": list(looks or base.looks)})
    if n < 0:
        raise ValueError(f"generate: n must be >= 0, got {n}")
    return _write_all(Path(out_dir), list(range(n)), seed, cfg, workers, image_format, quality)


def _as_dict(cfg: SynthConfig) -> dict[str, Any]:
    obj = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert isinstance(obj, dict)
    return obj  # type: ignore[return-value]


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


if __name__ == "__main__":
    main()
