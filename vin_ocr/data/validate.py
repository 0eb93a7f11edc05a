"""Check samples before anything is written: labels, images and duplicates.

:func:`validate_samples` returns a :class:`ValidationReport` with one :class:`Issue` per problem,
each naming where the sample came from (``meta["_origin"]``, e.g. ``labels.csv:12``, set by the
readers) and the image. Strict mode raises :class:`DataValidationError` listing every problem;
lenient mode drops the bad samples and counts them by reason.

Issue kinds: ``empty_vin``, ``length``, ``characters``, ``check_digit`` (only where the check
digit is mandatory), ``vin_rules`` (other rules binding in the VIN's region, from
:func:`vin_ocr.vin.validate`: model-year code, numeric serial), ``missing_image``,
``unreadable_image`` (empty, not an image, truncated or corrupt), ``blank_image`` (decodes to one
flat colour, e.g. an all-white frame: nothing to read), ``image_size`` (a side below
``min_side`` or above ``max_side``, or more than ``max_pixels``), ``duplicate_row`` (the same
image and VIN twice), ``duplicate_image`` (another file with the same content and VIN),
``conflicting_label`` (one image, several VINs: every copy is dropped, since we cannot know
which label is right).

The same VIN on different images is not a problem (several photos of one car); the splits keep
them together.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vin_ocr import vin as vinlib
from vin_ocr.data.readers import ORIGIN
from vin_ocr.data.sample import Sample

ISSUE_KINDS: tuple[str, ...] = (
    "empty_vin",
    "length",
    "characters",
    "check_digit",
    "vin_rules",
    "missing_image",
    "unreadable_image",
    "blank_image",
    "image_size",
    "duplicate_row",
    "duplicate_image",
    "conflicting_label",
)


@dataclass(frozen=True)
class Issue:
    """One problem with one sample."""

    kind: str
    origin: str
    image: str
    message: str
    index: int = -1  # position of the sample in the validated sequence

    def __str__(self) -> str:
        text = f"{self.origin}: {self.message} (image {self.image}) [{self.kind}]"
        # a file name that is not UTF-8 holds surrogate escapes: show them as \udcXX, printable
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class ValidationReport:
    """What :func:`validate_samples` found: the samples kept and every issue."""

    total: int
    kept: list[Sample]
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def skipped(self) -> Counter[str]:
        """Dropped samples by reason (each sample counted once, by its first issue)."""
        first: dict[int, str] = {}
        for issue in self.issues:
            first.setdefault(issue.index, issue.kind)
        return Counter(first.values())

    def summary(self) -> str:
        skipped = self.skipped
        line = f"{self.total} samples read, {len(self.kept)} kept, {sum(skipped.values())} skipped"
        if skipped:
            line += ": " + ", ".join(f"{k} {n}" for k, n in sorted(skipped.items()))
        return line

    def format(self, max_issues: int | None = None) -> str:
        """The summary followed by the issues (all of them, or the first ``max_issues``)."""
        shown = self.issues if max_issues is None else self.issues[:max_issues]
        lines = [self.summary(), *(f"  {issue}" for issue in shown)]
        if len(shown) < len(self.issues):
            lines.append(f"  ... and {len(self.issues) - len(shown)} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


class DataValidationError(ValueError):
    """Strict validation failed; the message lists every problem, ``report`` holds them."""

    def __init__(self, report: ValidationReport):
        super().__init__(f"data validation failed\n{report.format()}")
        self.report = report


def origin_of(sample: Sample, index: int) -> str:
    return str(sample.meta.get(ORIGIN) or f"sample {index} ({sample.image})")


def vin_problems(vin: str) -> list[tuple[str, str]]:
    """``(kind, message)`` for each reason a label is not a usable VIN (empty when it is).

    >>> vin_problems("1M8GDM9AXKP042788")
    []
    >>> [kind for kind, _ in vin_problems("1M8GDM9OXKP04278")]
    ['characters', 'length']
    """
    if not vin:
        return [("empty_vin", "no VIN label")]
    problems = []
    bad = sorted({c for c in vin if c not in vinlib.ALPHABET})
    if bad:
        problems.append(
            ("characters", f"VIN {vin!r} has characters a VIN never uses: {''.join(bad)!r}")
        )
    if len(vin) != 17:
        problems.append(("length", f"VIN {vin!r} has {len(vin)} characters, expected 17"))
    if not problems:
        for reason in vinlib.validate(vin).reasons:  # rules that bind in the VIN's region
            kind = "check_digit" if "check digit" in reason else "vin_rules"
            problems.append((kind, f"VIN {vin!r}: {reason}"))
    return problems


#: An image whose 8-bit values span at most this many levels (all bands) is reported blank.
BLANK_RANGE = 2


@dataclass(frozen=True)
class ImageCheck:
    digest: str | None
    size: tuple[int, int] | None
    problem: tuple[str, str] | None


def check_image(
    path: Path, *, min_side: int = 8, max_side: int = 20_000, max_pixels: int = 100_000_000
) -> ImageCheck:
    """Read, hash and decode one image (as training reads it); report the first problem found."""
    from PIL import Image, UnidentifiedImageError

    from vin_ocr.data.images import to_rgb

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageCheck(None, None, ("missing_image", "image file not found"))
    except OSError as e:
        return ImageCheck(None, None, ("unreadable_image", f"cannot read the file ({e})"))
    if not data:
        return ImageCheck(None, None, ("unreadable_image", "empty file (0 bytes)"))
    digest = hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
        except Image.DecompressionBombError as e:
            return ImageCheck(digest, None, ("image_size", f"image too large ({e})"))
        except UnidentifiedImageError:
            return ImageCheck(digest, None, ("unreadable_image", "not an image file"))
        except Exception as e:
            return ImageCheck(digest, None, ("unreadable_image", f"cannot open image ({e})"))
        if min(w, h) < min_side or max(w, h) > max_side or w * h > max_pixels:
            limits = f"sides {min_side}..{max_side} px, at most {max_pixels / 1e6:g} MP"
            return ImageCheck(digest, (w, h), ("image_size", f"image is {w}x{h} ({limits})"))
        try:
            im.verify()  # checksums (PNG); cheap
            im = Image.open(io.BytesIO(data))
            if im.format == "JPEG":
                im.draft(im.mode, (max(w // 8, 1), max(h // 8, 1)))  # decode at 1/8: fast
            im.load()
            rgb = to_rgb(im)
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error...
            return ImageCheck(digest, (w, h), ("unreadable_image", f"broken {im.format} ({e})"))
    extrema = rgb.getextrema()
    if all(hi - lo <= BLANK_RANGE for lo, hi in extrema):
        lows, highs = zip(*extrema, strict=True)
        colour = "white" if min(lows) >= 250 else "black" if max(highs) <= 5 else "one colour"
        message = f"the image decodes to a blank frame (all {colour}, {im.mode} {im.format})"
        return ImageCheck(digest, (w, h), ("blank_image", message))
    return ImageCheck(digest, (w, h), None)


def validate_samples(
    samples: Iterable[Sample],
    strict: bool = False,
    *,
    check_vin: bool = True,
    check_images: bool = True,
    allow_unlabelled: bool = False,
    min_side: int = 8,
    max_side: int = 20_000,
    max_pixels: int = 100_000_000,
    workers: int | None = None,
) -> ValidationReport:
    """Validate samples; strict mode raises :class:`DataValidationError` on any issue.

    ``check_vin=False`` skips the VIN rules (pre-1981 or non-VIN labels); ``allow_unlabelled``
    accepts empty labels. Images are read with ``workers`` threads (default: up to 8).
    """
    samples = list(samples)
    per: dict[int, list[Issue]] = defaultdict(list)

    def add(i: int, kind: str, message: str) -> None:
        s = samples[i]
        per[i].append(Issue(kind, origin_of(s, i), str(s.image), message, i))

    for i, s in enumerate(samples):
        if not s.vin and allow_unlabelled:
            continue
        for problem in vin_problems(s.vin) if check_vin or not s.vin else []:
            add(i, *problem)

    by_path: dict[Path, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_path[Path(os.path.abspath(s.image))].append(i)

    checks: dict[Path, ImageCheck] = {}
    if check_images:
        paths = list(by_path)
        n = workers or min(8, os.cpu_count() or 1)
        limits = {"min_side": min_side, "max_side": max_side, "max_pixels": max_pixels}
        with ThreadPoolExecutor(max_workers=n) as pool:
            results = pool.map(lambda p: check_image(p, **limits), paths)
            checks = dict(zip(paths, results, strict=True))
        for path, check in checks.items():
            if check.problem:
                for i in by_path[path]:
                    add(i, *check.problem)

    # One representative row per image path, then one per image content.
    reps: dict[str, list[int]] = defaultdict(list)
    for path, rows in by_path.items():
        _dedupe(samples, rows, add, "duplicate_row", "the same image and VIN as")
        found = checks.get(path)
        key = found.digest if found and found.digest and not found.problem else str(path)
        reps[key].append(rows[0])
    for rows in reps.values():
        _dedupe(samples, rows, add, "duplicate_image", "the same image content and VIN as")

    issues = sorted((x for lst in per.values() for x in lst), key=lambda x: x.index)
    kept = [s for i, s in enumerate(samples) if i not in per]
    report = ValidationReport(total=len(samples), kept=kept, issues=issues)
    if strict and issues:
        raise DataValidationError(report)
    return report


def _dedupe(samples: Sequence[Sample], rows: list[int], add, kind: str, text: str) -> None:
    """Rows showing one image: extra copies are ``kind``; differing VINs conflict (all dropped)."""
    if len(rows) < 2:
        return
    first = rows[0]
    where = f"{origin_of(samples[first], first)} ({samples[first].image})"
    if len({samples[i].vin for i in rows}) > 1:
        for i in rows:
            j = next(j for j in rows if samples[j].vin != samples[i].vin)
            add(
                i,
                "conflicting_label",
                f"the same image is labelled {samples[j].vin!r} at {origin_of(samples[j], j)}",
            )
        return
    for i in rows[1:]:
        add(i, kind, f"{text} {where}")
