"""Fonts for the synthetic renderer: installed ones only, never downloaded.

Each font has a short name (``ocr-b``, ``liberation-mono-bold``...), a file looked up under the
system font folders (:data:`SYSTEM_FONT_DIRS`, e.g. Debian's ``fonts-liberation``,
``fonts-freefont-ttf``, ``fonts-ocr-a``, ``fonts-ocr-b``, ``fonts-dejavu-core``) and a fallback
among the DejaVu fonts that matplotlib ships, so rendering works on any machine with matplotlib.
:func:`resolve` tells which file a name ends up with; :func:`load` returns a cached
``ImageFont``.

>>> resolve("dejavu-sans-mono").name
'DejaVuSansMono.ttf'
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import NamedTuple

from PIL import ImageFont

#: Where system fonts are searched (recursively), in order.
SYSTEM_FONT_DIRS: list[Path] = [
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local" / "share" / "fonts",
    Path.home() / ".fonts",
]


class FontEntry(NamedTuple):
    file: str  # file name searched under SYSTEM_FONT_DIRS
    fallback: str  # file name in matplotlib's fonts/ttf folder


#: Short name -> (system file, matplotlib DejaVu fallback of the closest style).
FONTS: dict[str, FontEntry] = {
    "dejavu-sans": FontEntry("DejaVuSans.ttf", "DejaVuSans.ttf"),
    "dejavu-sans-bold": FontEntry("DejaVuSans-Bold.ttf", "DejaVuSans-Bold.ttf"),
    "dejavu-sans-condensed-bold": FontEntry("DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf"),
    "dejavu-sans-mono": FontEntry("DejaVuSansMono.ttf", "DejaVuSansMono.ttf"),
    "dejavu-sans-mono-bold": FontEntry("DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Bold.ttf"),
    "dejavu-serif": FontEntry("DejaVuSerif.ttf", "DejaVuSerif.ttf"),
    "liberation-sans": FontEntry("LiberationSans-Regular.ttf", "DejaVuSans.ttf"),
    "liberation-sans-bold": FontEntry("LiberationSans-Bold.ttf", "DejaVuSans-Bold.ttf"),
    "liberation-sans-narrow": FontEntry("LiberationSansNarrow-Regular.ttf", "DejaVuSans.ttf"),
    "liberation-sans-narrow-bold": FontEntry(
        "LiberationSansNarrow-Bold.ttf", "DejaVuSans-Bold.ttf"
    ),
    "liberation-mono": FontEntry("LiberationMono-Regular.ttf", "DejaVuSansMono.ttf"),
    "liberation-mono-bold": FontEntry("LiberationMono-Bold.ttf", "DejaVuSansMono-Bold.ttf"),
    "liberation-serif": FontEntry("LiberationSerif-Regular.ttf", "DejaVuSerif.ttf"),
    "free-mono": FontEntry("FreeMono.ttf", "DejaVuSansMono.ttf"),
    "free-mono-bold": FontEntry("FreeMonoBold.ttf", "DejaVuSansMono-Bold.ttf"),
    "free-sans": FontEntry("FreeSans.ttf", "DejaVuSans.ttf"),
    "free-sans-bold": FontEntry("FreeSansBold.ttf", "DejaVuSans-Bold.ttf"),
    "ocr-a": FontEntry("OCRA.ttf", "DejaVuSansMono.ttf"),
    "ocr-b": FontEntry("OCRB.otf", "DejaVuSansMono.ttf"),
}


@functools.cache
def _system_index() -> dict[str, Path]:
    """File name -> first path found under :data:`SYSTEM_FONT_DIRS` (scanned once)."""
    index: dict[str, Path] = {}
    for root in SYSTEM_FONT_DIRS:
        if not root.is_dir():
            continue
        for dirpath, _dirs, files in sorted(os.walk(root)):
            for name in sorted(files):
                if name.lower().endswith((".ttf", ".otf")):
                    index.setdefault(name, Path(dirpath) / name)
    return index


def _matplotlib_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def resolve(name: str) -> Path:
    """The font file used for ``name``: the system one if installed, else matplotlib's DejaVu."""
    if name not in FONTS:
        raise KeyError(f"unknown font {name!r}; known: {', '.join(sorted(FONTS))}")
    entry = FONTS[name]
    found = _system_index().get(entry.file)
    if found is not None:
        return found
    fallback = _matplotlib_dir() / entry.fallback
    if not fallback.is_file():
        raise FileNotFoundError(f"font {name!r}: neither {entry.file} nor {fallback} exists")
    return fallback


def is_system(name: str) -> bool:
    """Whether ``name`` resolves to its own file (not a fallback)."""
    return resolve(name).name == FONTS[name].file


def available(names: list[str] | tuple[str, ...]) -> list[str]:
    """The names in ``names`` whose own file is installed; all of them if none is.

    Used to pick a font per sample: missing system fonts drop out instead of being replaced by
    the same DejaVu fallback many times (which would skew the mix).
    """
    own = [n for n in names if is_system(n)]
    return own or list(names)


def load(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached ``ImageFont`` for ``name`` at ``size`` pixels."""
    return load_file(str(resolve(name)), size)


@functools.cache
def load_file(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached ``ImageFont`` for a font file at ``size`` pixels."""
    return ImageFont.truetype(path, size=size)


def clear_cache() -> None:
    """Forget resolved files and loaded fonts (after changing :data:`SYSTEM_FONT_DIRS`)."""
    _system_index.cache_clear()
    resolve.cache_clear()
    load_file.cache_clear()
