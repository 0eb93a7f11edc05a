"""What a training run reads: real manifests, synthetic samples rendered on the fly, or both.

``configs/data/synth.yaml`` (the default) trains and validates on synthetic line crops only;
``configs/data/user.yaml`` reads the ``train.jsonl`` / ``val.jsonl`` that
``python -m vin_ocr.data.prepare`` writes, optionally mixed with synthetic samples.

Every manifest a run reads (train, val, test) is checked before the first step and before the
baseline evaluation (:func:`read_checked`): each image must be readable, each label made of VIN
characters (``O``, ``I``, ``Q``, lowercase or spaces are refused, naming ``file:line``; a label
that is not 17 characters long is a warning), no split may be empty, and no VIN may be in both
train and val. Synthetic samples are rendered by the project and are not re-checked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vin_ocr
from vin_ocr.data.sample import Sample, jsonl_rows, read_manifest

log = logging.getLogger(__name__)
SHOWN = 5  # problems listed in one error message


class DataError(ValueError):
    """A training input that cannot be used; the message names the file, the line and why."""


def read_checked(path: str | Path, what: str) -> list[Sample]:
    """Read the manifest ``path`` (``what``: ``data.train`` ...) and check every sample: the
    image decodes, the label is made of VIN characters; raise :class:`DataError` listing the
    first problems as ``file:line``. A label that is not 17 characters long is logged as a
    warning (it trains, but is not a VIN). An empty manifest is an error."""
    from vin_ocr.vin import ALPHABET

    path = Path(path)
    samples = read_manifest(path)
    if not samples:
        raise DataError(f"{what}: {path} has no samples")
    lines = [n for n, _ in jsonl_rows(path)]  # read_manifest keeps every non-blank line

    def image_problem(s: Sample) -> str | None:
        try:
            s.load_image()
        except Exception as err:  # any reason a worker would fail on it later
            return str(err)
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        image_problems = list(pool.map(image_problem, samples))
    errors, short = [], []
    for s, line, img in zip(samples, lines, image_problems, strict=True):
        where = f"{path}:{line}"
        if img:
            errors.append(f"{where}: {img}")
        bad = sorted({c for c in s.vin if c not in ALPHABET})
        if not s.vin:
            errors.append(f"{where}: no VIN label")
        elif bad:
            errors.append(
                f"{where}: label {s.vin!r} has characters a VIN never uses ({''.join(bad)!r}; "
                "VINs have no I, O or Q): fix the label"
            )
        elif len(s.vin) != 17:
            short.append(f"{where}: label {s.vin!r} has {len(s.vin)} characters, not 17")
    if short:
        log.warning("%s: %d label(s) are not 17 characters long: %s%s", what, len(short),
                    "; ".join(short[:SHOWN]), " ..." if len(short) > SHOWN else "")  # fmt: skip
    if errors:
        more = f"\n  ... and {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
        listed = "\n  ".join(errors[:SHOWN])
        raise DataError(f"{what}: {len(errors)} problem(s) in {path}:\n  {listed}{more}")
    return samples


@dataclass
class TrainDataConf:
    """The ``data`` group of ``train.yaml``; a mistyped key fails at start-up naming it."""

    train: str | None = None  # a manifest of real training samples
    val: str | None = None  # a manifest for validation; None: synthetic validation samples
    #: manifests evaluated with the harness at the end ("samples": the bundled sample set,
    #: "real": the bundled real photos)
    test: list[str] = field(default_factory=lambda: ["samples"])
    synth_train: int = 4000  # synthetic training samples per epoch, rendered on the fly; 0: none
    synth_val: int = 200  # synthetic validation samples (used when ``val`` is None)
    synth_seed: int = 0  # training samples use this seed, validation samples seed + 1
    synth: dict[str, Any] = field(default_factory=lambda: {"kind": "line"})  # SynthConfig keys


class SynthSamples(Sequence[Sample]):
    """``n`` synthetic samples as :class:`Sample` objects, each rendered when it is read."""

    def __init__(self, n: int, seed: int, cfg: dict[str, Any] | None = None) -> None:
        from vin_ocr.data.synth import SynthDataset

        self.ds = SynthDataset(n, seed, cfg or None)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.ds.sample(j) for j in range(*i.indices(len(self)))]
        return self.ds.sample(i)


class Concat(Sequence[Sample]):
    """Several sample sequences read as one."""

    def __init__(self, parts: Sequence[Sequence[Sample]]) -> None:
        self.parts = [p for p in parts if len(p)]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        for p in self.parts:
            if i < len(p):
                return p[i]
            i -= len(p)
        raise IndexError(i)


def test_manifest(name: str) -> Path:
    """A ``data.test`` entry as a manifest path ("samples": the bundled synthetic set; "real":
    the bundled real photos, data/real)."""
    named = {"samples": vin_ocr.SAMPLES_DIR, "real": vin_ocr.REAL_DIR}
    return named[name] / "manifest.jsonl" if name in named else Path(name)


def build_datasets(cfg: Any) -> tuple[Sequence[Sample], Sequence[Sample]]:
    """(train, val) sample sequences for a ``data`` config; VINs never cross from val to train."""
    if not hasattr(cfg, "synth_train"):
        raise ValueError(
            "this `data` config is an evaluation one (data.path only); training takes data=synth "
            "or data=user (see configs/data/)"
        )
    synth = dict(cfg.synth or {})
    real_train: list[Sample] = read_checked(cfg.train, "data.train") if cfg.train else []
    if cfg.val:
        val: Sequence[Sample] = read_checked(cfg.val, "data.val")
    else:
        val = SynthSamples(cfg.synth_val, cfg.synth_seed + 1, synth) if cfg.synth_val else []
    if not len(val):
        raise DataError(
            "no validation samples: set data.val to a manifest or data.synth_val > 0 (the best "
            "model is chosen on validation)"
        )
    if cfg.val and real_train:
        leaked = {s.vin for s in real_train} & {s.vin for s in val}
        if leaked:
            raise DataError(
                f"{len(leaked)} VIN(s) are in both {cfg.train} and {cfg.val} "
                f"(e.g. {sorted(leaked)[0]}): split by VIN with python -m vin_ocr.data.prepare"
            )
    parts: list[Sequence[Sample]] = [real_train]
    if cfg.synth_train:
        parts.append(SynthSamples(cfg.synth_train, cfg.synth_seed, synth))
    train = Concat(parts)
    if not len(train):
        raise DataError("no training samples: set data.train or data.synth_train > 0")
    return train, val


def read_test_sets(names: Sequence[str], train: Sequence[Sample] = ()) -> dict[str, Path]:
    """Check each ``data.test`` manifest as :func:`read_checked` does (before any evaluation);
    warn when a test VIN is also a real training VIN. Returns ``{name: manifest path}``."""
    parts = train.parts if isinstance(train, Concat) else [train]
    train_vins = {s.vin for part in parts if isinstance(part, list) for s in part}
    out = {}
    for name in names:
        path = test_manifest(name)
        samples = read_checked(path, f"data.test ({name})")
        shared = train_vins & {s.vin for s in samples}
        if shared:
            log.warning("%d VIN(s) of %s are also in data.train (e.g. %s): its figures are not "
                        "a test of unseen VINs", len(shared), path, sorted(shared)[0])  # fmt: skip
        out[name] = path
    return out
