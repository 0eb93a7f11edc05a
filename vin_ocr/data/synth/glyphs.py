"""Text: a line of characters drawn into a mask (tracking, wobble, depth, dot-peen), cached
glyphs, font sizes fitted to an ink height, lines laid out top-down, and Code 39 bars."""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vin_ocr.data import fonts
from vin_ocr.data.synth.raster import Arr, Box


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
