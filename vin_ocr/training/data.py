"""What a training run reads: real manifests, synthetic samples rendered on the fly, or both.

``configs/data/synth.yaml`` (the default) trains and validates on synthetic line crops only;
``configs/data/user.yaml`` reads the ``train.jsonl`` / ``val.jsonl`` that
``python -m vin_ocr.data.prepare`` writes, optionally mixed with synthetic samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

import vin_ocr
from vin_ocr.data.sample import Sample, read_manifest


@dataclass
class TrainDataConf:
    """The ``data`` group of ``train.yaml``; a mistyped key fails at start-up naming it."""

    train: str | None = None  # a manifest of real training samples
    val: str | None = None  # a manifest for validation; None: synthetic validation samples
    #: manifests evaluated with the harness at the end ("samples": the bundled sample set)
    test: list[str] = field(default_factory=lambda: ["samples"])
    synth_train: int = 4000  # synthetic training samples per epoch, rendered on the fly; 0: none
    synth_val: int = 200  # synthetic validation samples (used when ``val`` is None)
    synth_seed: int = 0  # training samples use this seed, validation samples seed + 1
    synth: dict[str, Any] = field(default_factory=lambda: {"kind": "line"})  # SynthConfig keys


ConfigStore.instance().store(group="data", name="train_data_schema", node=TrainDataConf)


class SynthSamples(Sequence[Sample]):
    """``n`` synthetic samples as :class:`Sample` objects, each rendered when it is read."""

    def __init__(self, n: int, seed: int, cfg: dict[str, Any] | None = None) -> None:
        from vin_ocr.data.synth import SynthDataset

        self.ds = SynthDataset(n, seed, cfg or None)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.ds.sample(j) for j in range(*i.indices(len(self)))]
        return self.ds.sample(i)


class Concat(Sequence[Sample]):
    """Several sample sequences read as one."""

    def __init__(self, parts: Sequence[Sequence[Sample]]) -> None:
        self.parts = [p for p in parts if len(p)]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i):  # type: ignore[override]
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
    """A ``data.test`` entry as a manifest path ("samples" is the bundled set)."""
    return vin_ocr.SAMPLES_DIR / "manifest.jsonl" if name == "samples" else Path(name)


def build_datasets(cfg: Any) -> tuple[Sequence[Sample], Sequence[Sample]]:
    """(train, val) sample sequences for a ``data`` config; VINs never cross from val to train."""
    if not hasattr(cfg, "synth_train"):
        raise ValueError(
            "this `data` config is an evaluation one (data.path only); training takes data=synth "
            "or data=user (see configs/data/)"
        )
    synth = dict(cfg.synth or {})
    real_train: list[Sample] = read_manifest(cfg.train) if cfg.train else []
    if cfg.val:
        val: Sequence[Sample] = read_manifest(cfg.val)
    else:
        val = SynthSamples(cfg.synth_val, cfg.synth_seed + 1, synth) if cfg.synth_val else []
    if cfg.val and real_train:
        leaked = {s.vin for s in real_train} & {s.vin for s in val}
        if leaked:
            raise ValueError(
                f"{len(leaked)} VIN(s) are in both {cfg.train} and {cfg.val} "
                f"(e.g. {sorted(leaked)[0]}): split by VIN with python -m vin_ocr.data.prepare"
            )
    parts: list[Sequence[Sample]] = [real_train]
    if cfg.synth_train:
        parts.append(SynthSamples(cfg.synth_train, cfg.synth_seed, synth))
    train = Concat(parts)
    if not len(train):
        raise ValueError("no training samples: set data.train or data.synth_train > 0")
    return train, val
