"""The one sample type and its JSONL manifest.

A manifest is a text file with one JSON object per line. Each object has at least ``image``
(a path relative to the manifest's folder, or absolute) and ``vin`` (the label, may be empty for
unlabelled data). A sample may instead hold its image in memory (``pixels``, a PIL image: the
synthetic renderer's on-the-fly samples); such an image is not written to a manifest.
Optional keys: ``source`` (where the sample came from: ``synth``, ``user``, ...), ``box``
([x0, y0, x1, y1] of the VIN in the image, pixels), ``crop`` (true when the image is a line crop
holding only the VIN line). Every other key is kept in ``meta`` and written back.

>>> s = Sample(image=Path("a.png"), vin="1M8GDM9AXKP042788", source="synth", meta={"look": "plate"})
>>> Sample.from_dict(s.to_dict(Path(".")), Path(".")) == s
True
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_KNOWN = ("image", "vin", "source", "box", "crop")


class ManifestError(ValueError):
    """A manifest line that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class Sample:
    image: Path
    vin: str
    source: str = "user"
    box: tuple[int, int, int, int] | None = None
    crop: bool | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)
    #: An image held in memory (PIL), e.g. rendered on the fly; never written to a manifest.
    pixels: Any = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], root: Path) -> Sample:
        if "image" not in obj:
            raise KeyError("image")
        image = Path(str(obj["image"]))
        crop = obj.get("crop")
        return cls(
            image=image if image.is_absolute() else root / image,
            vin=str(obj.get("vin") or ""),
            source=str(obj.get("source") or "user"),
            box=parse_box(obj.get("box")),
            crop=bool(crop) if crop is not None else None,
            meta={k: v for k, v in obj.items() if k not in _KNOWN},
        )

    def to_dict(self, root: Path) -> dict[str, Any]:
        try:
            image = self.image.resolve().relative_to(root.resolve())
        except ValueError:
            image = self.image.resolve()
        obj: dict[str, Any] = {"image": image.as_posix(), "vin": self.vin, "source": self.source}
        if self.box is not None:
            obj["box"] = list(self.box)
        if self.crop is not None:
            obj["crop"] = self.crop
        obj.update(self.meta)
        return obj

    def load_image(self):  # -> PIL.Image.Image
        """The image as 8-bit RGB (PIL), upright, fully decoded: the in-memory one if set, else
        the file (:func:`vin_ocr.data.images.open_image`; errors name the file)."""
        from vin_ocr.data.images import open_image, to_rgb

        if self.pixels is not None:
            return to_rgb(self.pixels)
        return open_image(self.image)


def parse_box(value: Any) -> tuple[int, int, int, int] | None:
    """A ``box`` value as ``(x0, y0, x1, y1)`` pixels, or None; ValueError says what is wrong.

    >>> parse_box([1, 2, 30.0, 40])
    (1, 2, 30, 40)
    >>> parse_box("oops")
    Traceback (most recent call last):
    ValueError: box must be [x0, y0, x1, y1] (4 numbers, pixels), got 'oops'
    """
    if value is None:
        return None
    ok = isinstance(value, list | tuple) and len(value) == 4
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ValueError(f"box must be [x0, y0, x1, y1] (4 numbers, pixels), got {value!r}")
    x0, y0, x1, y1 = (int(v) for v in value)
    if x1 <= x0 or y1 <= y0 or min(x0, y0) < 0:
        raise ValueError(f"box {list(value)} is empty or negative: need 0 <= x0 < x1, 0 <= y0 < y1")
    return x0, y0, x1, y1


def read_text(path: Path, what: str = "file") -> str:
    """A text file's content as UTF-8 (a leading BOM dropped); a file in another encoding gives
    a :class:`ManifestError` naming the file, the line and the byte offset."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ManifestError(
            f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); save it as UTF-8 (e.g. with iconv -f latin1 -t utf-8)"
        ) from None


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file; errors name file:line."""
    with io.StringIO(read_text(path, "JSONL file")) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                kind = type(obj).__name__
                raise ManifestError(f"{path}:{lineno}: expected a JSON object, got {kind}")
            yield lineno, obj


def read_manifest(path: str | os.PathLike[str]) -> list[Sample]:
    """Read a JSONL manifest. Errors name the file and the line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    root = path.parent
    samples: list[Sample] = []
    for lineno, obj in jsonl_rows(path):
        try:
            samples.append(Sample.from_dict(obj, root))
        except KeyError as e:
            raise ManifestError(f"{path}:{lineno}: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{lineno}: {e}") from None
    return samples


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_line(obj: dict[str, Any]) -> str:
    """One JSON line, readable UTF-8; a file name that is not UTF-8 (a str holding surrogate
    escapes, as ``os.listdir`` gives it) is written as ``\\udcXX`` escapes, which read back to
    the same name."""
    line = json.dumps(obj, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj)
    return line


def write_manifest(samples: Iterable[Sample], path: str | os.PathLike[str]) -> Path:
    """Write samples as JSONL (image paths relative to the manifest's folder), atomically."""
    path = Path(path)
    root = path.parent
    lines = [_json_line(s.to_dict(root)) for s in samples]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
