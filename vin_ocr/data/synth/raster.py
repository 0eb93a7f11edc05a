"""Small numpy/PIL helpers: float canvases (channel-first, 0-255), masks, noise, colours."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[int, int, int, int]
Arr = np.ndarray


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


def _mask(im: Image.Image | list[Box]) -> Arr:
    assert isinstance(im, Image.Image)
    return np.asarray(im, dtype=np.float32) / 255.0
