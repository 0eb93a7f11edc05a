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
        box = obj.get("box")
        crop = obj.get("crop")
        return cls(
            image=image if image.is_absolute() else root / image,
            vin=str(obj.get("vin") or ""),
            source=str(obj.get("source") or "user"),
            box=tuple(int(v) for v in box) if box is not None else None,  # type: ignore[arg-type]
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
        """The image as RGB (PIL), fully decoded: the in-memory one if set, else the file."""
        from PIL import Image

        if self.pixels is not None:
            return self.pixels.convert("RGB")

        with Image.open(self.image) as im:
            return im.convert("RGB")


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file; errors name file:line."""
    with path.open(encoding="utf-8") as f:
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


def write_manifest(samples: Iterable[Sample], path: str | os.PathLike[str]) -> Path:
    """Write samples as JSONL (image paths relative to the manifest's folder), atomically."""
    path = Path(path)
    root = path.parent
    lines = [json.dumps(s.to_dict(root), ensure_ascii=False) for s in samples]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
