"""Photometric and geometric augmentations for VIN images (numpy + PIL, a few ms per image).

Every function takes an RGB ``PIL.Image`` and returns a new RGB image of the SAME size; the
random ones draw only from the ``numpy.random.Generator`` they are given, so a seeded generator
gives the same result in any process. :func:`augment` chains them with the probabilities and
strengths of an :class:`AugmentConfig` and carries an optional box (the VIN line in a scene)
through the geometric step.

>>> import numpy as np
>>> from PIL import Image
>>> img = Image.new("RGB", (320, 40), (200, 200, 200))
>>> out, box = augment(img, np.random.default_rng(0), AugmentConfig(), box=(10, 5, 300, 35))
>>> out.size, out.mode, len(box)
((320, 40), 'RGB', 4)
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops, ImageFilter

Box = tuple[int, int, int, int]


@dataclass
class AugmentConfig:
    """Strengths (maximum amounts) and probabilities; ``strength`` scales every amount.

    ``strength: 0`` turns augmentation off; ``2`` doubles every maximum.
    """

    strength: float = 1.0
    p_geometry: float = 0.7
    perspective: float = 0.08  # corners move inwards by up to this fraction of the smaller side
    rotation: float = 1.5  # degrees, either way (the line shrinks to stay inside the frame)
    p_lighting: float = 0.8
    brightness: float = 0.2  # +- fraction of full scale
    contrast: float = 0.3  # contrast factor in [1 - c, 1 + c/2]
    gamma: float = 0.3  # gamma in [1 - g, 1 + g]
    p_shadow: float = 0.3
    shadow: float = 0.45  # darkest part of a soft shadow edge: 1 - shadow
    p_blur: float = 0.5
    blur: float = 1.2  # gaussian radius, pixels (scaled by the image height / 48)
    motion_blur: int = 5  # motion kernel length, pixels (scaled likewise)
    p_noise: float = 0.6
    noise: float = 8.0  # gaussian sigma, 0-255 scale
    p_jpeg: float = 0.4
    jpeg_quality: list[int] = field(default_factory=lambda: [35, 92])


# --- geometry --------------------------------------------------------------------------------


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 matrix mapping 4 points ``src`` onto 4 points ``dst`` (arrays of shape (4, 2))."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs, dtype=np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def warp(img: Image.Image, h: np.ndarray, fill: tuple[int, ...]) -> Image.Image:
    """Apply the forward homography ``h`` (input -> output pixels), same size, ``fill`` outside."""
    inv = np.linalg.inv(h)
    inv = inv / inv[2, 2]
    return img.transform(
        img.size,
        Image.Transform.PERSPECTIVE,
        tuple(inv.flatten()[:8]),
        Image.Resampling.BILINEAR,
        fillcolor=fill,
    )


def transform_box(box: Box, h: np.ndarray, size: tuple[int, int]) -> Box:
    """The axis-aligned box around ``box``'s corners mapped by ``h``, clipped to ``size``."""
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=np.float64)
    out = pts @ h.T
    out = out[:, :2] / out[:, 2:3]
    w, hgt = size
    return (
        max(0, math.floor(out[:, 0].min())),
        max(0, math.floor(out[:, 1].min())),
        min(w, math.ceil(out[:, 0].max())),
        min(hgt, math.ceil(out[:, 1].max())),
    )


def random_geometry(
    size: tuple[int, int], rng: np.random.Generator, perspective: float, rotation: float
) -> np.ndarray:
    """A random homography that keeps the whole image inside the frame.

    The corners move inwards by up to ``perspective`` of the smaller side, the result turns by up
    to ``rotation`` degrees and is scaled down about the centre where it would leave the frame.
    """
    w, h = size
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
    dst = src + inward * rng.uniform(0, perspective, (4, 2)) * min(w, h)
    angle = math.radians(rng.uniform(-rotation, rotation))
    c, s = math.cos(angle), math.sin(angle)
    centre = np.array([w / 2, h / 2])
    dst = (dst - centre) @ np.array([[c, s], [-s, c]]) + centre
    lo, hi = dst.min(axis=0), dst.max(axis=0)
    scale = min(1.0, w / (hi[0] - lo[0]), h / (hi[1] - lo[1]))
    dst = (dst - (lo + hi) / 2) * scale + centre
    return homography(src, dst)


def border_colour(img: Image.Image) -> tuple[int, ...]:
    """Mean colour of the outermost pixels: a plausible fill for warped-in corners."""
    a = np.asarray(img)
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).reshape(-1, a.shape[-1])
    return tuple(int(v) for v in edge.mean(axis=0))


# --- photometric -----------------------------------------------------------------------------

_TILE = 1024


@functools.cache
def _noise_tile() -> np.ndarray:
    return np.random.default_rng(20261123).standard_normal((_TILE, _TILE), dtype=np.float32)


def gaussian_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Standard-normal noise of shape (h, w), fast: a window of a cached tile at a random offset.

    Drawn directly when larger than the tile. Read-only; deterministic given ``rng``.
    """
    if h > _TILE or w > _TILE:
        return rng.standard_normal((h, w), dtype=np.float32)
    y, x = rng.integers(0, _TILE - h + 1), rng.integers(0, _TILE - w + 1)
    return _noise_tile()[y : y + h, x : x + w]


def lighting(img: Image.Image, brightness: float, contrast: float, gamma: float) -> Image.Image:
    """Gamma, then contrast about mid-grey, then a brightness offset (one lookup table)."""
    x = np.arange(256, dtype=np.float64) / 255.0
    y = x**gamma
    y = (y - 0.5) * contrast + 0.5 + brightness
    lut = np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8).tolist()
    return img.point(lut * len(img.getbands()))


def shadow(img: Image.Image, rng: np.random.Generator, depth: float) -> Image.Image:
    """A soft shadow edge across the image, darkening one side by up to ``depth``."""
    w, h = img.size
    angle = rng.uniform(0, 2 * math.pi)
    cx, cy = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.2, 0.8)
    soft = max(2.0, rng.uniform(0.05, 0.4) * max(w, h))
    xs = (np.arange(w, dtype=np.float32) - cx) * math.cos(angle)
    ys = (np.arange(h, dtype=np.float32) - cy) * math.sin(angle)
    t = ys[:, None] + xs[None, :]
    mask = 1.0 - depth / (1.0 + np.exp(-t / soft))
    m = Image.fromarray(np.clip(mask * 255.0, 0, 255).astype(np.uint8))
    return ImageChops.multiply(img, Image.merge(img.mode, [m] * len(img.getbands())))


def gaussian_blur(img: Image.Image, radius: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius))


def motion_blur(img: Image.Image, length: int, angle: float) -> Image.Image:
    """Average of ``length`` copies shifted along ``angle`` (degrees), edges replicated."""
    if length < 2:
        return img.copy()
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape[:2]
    dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    offs = [
        (round(k * dy), round(k * dx))
        for k in np.linspace(-(length - 1) / 2, (length - 1) / 2, length)
    ]
    pad = max(max(abs(oy), abs(ox)) for oy, ox in offs)
    p = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    acc = np.zeros_like(a)
    for oy, ox in offs:
        acc += p[pad + oy : pad + oy + h, pad + ox : pad + ox + w]
    return Image.fromarray(np.clip(acc / length, 0, 255).astype(np.uint8))


def noise(img: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    """Gaussian sensor noise: mostly luminance, a little colour."""
    h, w = img.height, img.width
    lum = gaussian_field(rng, h, w) * sigma
    bands = []
    for band in img.split():
        a = np.asarray(band, dtype=np.float32) + lum + gaussian_field(rng, h, w) * (sigma * 0.35)
        bands.append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    return Image.merge(img.mode, bands)


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (block artefacts, chroma subsampling)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


# --- the chain -------------------------------------------------------------------------------


def augment(
    img: Image.Image,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    box: Box | None = None,
) -> tuple[Image.Image, Box | None]:
    """Apply a random chain of the augmentations above; returns ``(image, box)``.

    The image keeps its size and comes back in RGB; ``box`` (if given) follows the geometric step
    and stays inside the image. Deterministic given the state of ``rng``.
    """
    img = img.convert("RGB")
    k = float(cfg.strength)
    if k <= 0:
        return img, box
    # Draw every decision up front, so one step's randomness never shifts another's.
    u = rng.random(6)
    w, h = img.size
    scale = h / 48.0 if box is None else max(1.0, min(w, h) / 200.0)
    if u[0] < cfg.p_geometry:
        hm = random_geometry(img.size, rng, cfg.perspective * k, cfg.rotation * k)
        img = warp(img, hm, border_colour(img))
        if box is not None:
            box = transform_box(box, hm, img.size)
    if u[1] < cfg.p_lighting:
        img = lighting(
            img,
            brightness=rng.uniform(-1, 1) * cfg.brightness * k,
            contrast=1.0 + rng.uniform(-1, 0.5) * min(cfg.contrast * k, 0.9),
            gamma=1.0 + rng.uniform(-1, 1) * min(cfg.gamma * k, 0.9),
        )
    if u[2] < cfg.p_shadow:
        img = shadow(img, rng, rng.uniform(0.3, 1.0) * min(cfg.shadow * k, 0.95))
    if u[3] < cfg.p_blur:
        if rng.random() < 0.6:
            img = gaussian_blur(img, rng.uniform(0.3, 1.0) * cfg.blur * k * scale)
        else:
            length = round(rng.uniform(0.4, 1.0) * cfg.motion_blur * k * scale)
            img = motion_blur(img, length, rng.uniform(0, 180))
    if u[4] < cfg.p_noise:
        img = noise(img, rng, rng.uniform(0.2, 1.0) * cfg.noise * k)
    if u[5] < cfg.p_jpeg:
        lo, hi = cfg.jpeg_quality
        quality = round(hi - rng.uniform(0, 1) * (hi - lo) * min(k, 1.0))
        img = jpeg(img, quality)
    return img, box
