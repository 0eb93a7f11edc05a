"""Train/val/test splits grouped by VIN: no VIN ever lands in two splits.

Groups (all samples of one VIN; an unlabelled sample is its own group) are ordered by a stable
hash of ``seed`` and the VIN (SHA-256, not Python's per-process ``hash()``), then each group goes
to the split furthest below its share so far. The result depends only on the seed and the set of
samples, and the sizes (in samples) stay within one group of the ratios.

>>> from pathlib import Path
>>> from vin_ocr.data.sample import Sample
>>> samples = [Sample(Path(f"{i}.png"), f"VIN{i % 40:03d}") for i in range(200)]
>>> {name: len(part) for name, part in split_by_vin(samples, seed=1).items()}
{'train': 160, 'val': 20, 'test': 20}
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from vin_ocr.data.sample import Sample

DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}


def group_key(sample: Sample) -> str:
    """What keeps samples together: the VIN, or the image path for an unlabelled sample."""
    return f"vin:{sample.vin}" if sample.vin else f"image:{Path(sample.image).as_posix()}"


def _order(key: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\0{key}".encode()).digest()


def check_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """Ratios must be non-negative and sum to 1 (within 1e-6)."""
    ratios = {str(k): float(v) for k, v in ratios.items()}
    if not ratios:
        raise ValueError("split ratios: at least one split is needed")
    negative = [k for k, v in ratios.items() if v < 0 or math.isnan(v)]
    if negative:
        raise ValueError(f"split ratios: {negative} must be >= 0 (got {ratios})")
    total = sum(ratios.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split ratios must sum to 1, got {total:g} ({ratios})")
    return ratios


def split_by_vin(
    samples: Iterable[Sample], ratios: Mapping[str, float] | None = None, seed: int = 0
) -> dict[str, list[Sample]]:
    """Split samples by VIN group; each split keeps the samples' original order."""
    ratios = check_ratios(DEFAULT_RATIOS if ratios is None else ratios)
    samples = list(samples)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(group_key(s), []).append(i)

    assigned = {name: 0 for name in ratios}
    where: dict[int, str] = {}
    placed = 0
    for key in sorted(groups, key=lambda k: _order(k, seed)):
        rows = groups[key]
        placed += len(rows)
        # The split with the largest shortfall once this group is counted; ties: first named.
        name = max(ratios, key=lambda n: ratios[n] * placed - assigned[n])
        assigned[name] += len(rows)
        for i in rows:
            where[i] = name
    out: dict[str, list[Sample]] = {name: [] for name in ratios}
    for i, s in enumerate(samples):
        out[where[i]].append(s)
    return out
