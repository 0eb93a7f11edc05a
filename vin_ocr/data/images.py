"""The one way the project reads an image: :func:`open_image` (a file or bytes) and :func:`to_rgb`.

Every reader goes through here so that training, evaluation, prepare's check and the app see the
same pixels:

- the EXIF orientation is applied (a phone photo taken upright is read upright, not sideways);
- 16-bit and 32-bit integer (``I;16``, ``I``) and float (``F``) images are scaled to 8 bits by
  their value range (a plain ``convert("RGB")`` clips them: a 16-bit TIFF comes out all white);
- palette, grey + alpha and RGBA images are put on a white background, CMYK / YCbCr / LAB are
  converted, so the result is always 8-bit ``RGB``.

>>> from PIL import Image
>>> im = Image.new("I;16", (4, 2), 30000)
>>> im.putpixel((0, 0), 1000)
>>> rgb = to_rgb(im)
>>> rgb.mode, rgb.getextrema()
('RGB', ((0, 255), (0, 255), (0, 255)))
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

#: Modes holding more than 8 bits per pixel, scaled by their value range.
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32S"})


class ImageReadError(OSError):
    """An image that cannot be read; the message names the file and the reason."""


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """The image file does not exist."""


def open_image(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Any:
    """Read a file path or image bytes into a fully decoded 8-bit RGB PIL image.

    Errors raise :class:`ImageReadError` naming the file (or ``name`` for bytes).
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, bytes | bytearray | memoryview):
        label, stream = name or "image bytes", io.BytesIO(bytes(source))
    else:
        path = Path(source)
        label = name or str(path).encode("utf-8", "backslashreplace").decode()  # printable
        if not path.is_file():
            raise ImageNotFoundError(f"{label}: image file not found")
        try:
            stream = io.BytesIO(path.read_bytes())
        except OSError as e:
            raise ImageReadError(f"{label}: cannot read the file ({e.strerror or e})") from None
    try:
        with Image.open(stream) as im:
            im.load()
            return to_rgb(im)
    except UnidentifiedImageError:
        raise ImageReadError(f"{label}: not an image file") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{label}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise ImageReadError(f"{label}: the image data is damaged ({e})") from None


def to_rgb(image: Any) -> Any:
    """``image`` upright (EXIF orientation applied) as 8-bit RGB; see the module doc."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)  # a new image (a copy when already upright)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_MODES:
        return _scale_to_8bit(image).convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "LAB":
        from PIL import ImageCms

        lab = ImageCms.createProfile("LAB")
        srgb = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(image, lab, srgb, outputMode="RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, HSV, I;16 already handled


def _scale_to_8bit(image: Any) -> Any:
    """A one-band wide image scaled linearly so its darkest pixel is 0 and brightest 255."""
    import numpy as np
    from PIL import Image

    a = np.asarray(image).astype(np.float64)
    if a.ndim == 3:  # some plugins give a trailing band axis
        a = a[..., 0]
    finite = np.isfinite(a)
    if not finite.any():
        return Image.new("L", image.size, 0)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if hi <= lo:  # a constant frame stays constant (prepare's check reports it)
        value = 0 if hi <= 0 else 255 if hi > 255 else int(hi)
        return Image.new("L", image.size, value)
    a = np.where(finite, a, lo)
    out = np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out)  # uint8, one band: mode "L"
