"""The evaluation harness: any engine on any manifest -> predictions, report, chart.

    python -m vin_ocr.evaluation.evaluate engine=<name> [engine.path=RUN_FOLDER_OR_MODEL] \\
        data=manifest data.path=FILE.jsonl hydra.run.dir=OUT

With no arguments it runs RapidOCR on the bundled samples, offline. Options: ``batch_size``,
``limit`` (first N samples), ``crops`` (``auto``: each sample's ``crop`` flag, else a scene when
it has a ``box``, else a line crop; ``true``; ``false``), ``invalid_labels`` (``error``, the
default: a truth label that is not a 17-character VIN string stops the run before any reading,
naming each file:line; ``skip``: such rows are left out and counted). Duplicate rows of one image
are scored once; rows without a VIN are read but not scored; both are noted on the console and in
``report.json``'s ``labels``. The run folder receives ``predictions.jsonl``, ``report.json``
(with the ``definitions`` of its measures), ``report.md`` and ``per_position.png``.

The harness itself (:func:`run_eval`, :func:`check_labels`, ...) is the library
:mod:`vin_ocr.evaluation.harness`; the config schemas are in :mod:`vin_ocr.evaluation.schema`.
Both are re-exported here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import vin_ocr
from vin_ocr.config import register_configs
from vin_ocr.data.sample import read_manifest
from vin_ocr.errors import check_writable, exit_on_user_error
from vin_ocr.evaluation.engines import EngineUnavailable, build_engine
from vin_ocr.evaluation.harness import (
    check_labels,
    label_notes,
    repair_counts,
    resolve_manifest,
    run_eval,
    source_counts,
)
from vin_ocr.evaluation.report import fmt
from vin_ocr.evaluation.schema import (
    CheckpointConf,
    DataConf,
    EvalConf,
    PaddleOCRConf,
    RapidOCRConf,
    TesseractConf,
)

__all__ = [
    "CheckpointConf",
    "DataConf",
    "EvalConf",
    "PaddleOCRConf",
    "RapidOCRConf",
    "TesseractConf",
    "check_labels",
    "evaluate",
    "main",
    "repair_counts",
    "resolve_manifest",
    "run_eval",
    "source_counts",
]

#: What the console summary line shows.
_CONSOLE_KEYS = ("n", "exact_match", "exact_match_lenient", "cer", "char_accuracy", "ms_per_image")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Build the engine and the data named by ``cfg`` (``configs/eval/eval.yaml``) and run them."""
    if cfg.out_dir:
        out_dir = Path(cfg.out_dir)
    else:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            raise ValueError("out_dir is not set and no Hydra run folder exists: pass out_dir=DIR")
        out_dir = Path(HydraConfig.get().runtime.output_dir)
    check_writable(out_dir, "out_dir")  # before the engine loads and anything is read
    manifest = resolve_manifest(cfg.data.path)
    samples, labels = check_labels(read_manifest(manifest), manifest, cfg.invalid_labels)
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise ValueError(f"limit={cfg.limit}: must be at least 1 (or null for all)")
        samples = samples[: cfg.limit]
    for note in label_notes(labels, manifest):
        print(note, file=sys.stderr)
    engine_cfg = OmegaConf.to_container(cfg.engine, resolve=True)
    assert isinstance(engine_cfg, dict)
    engine_cfg.pop("_target_", None)
    engine = build_engine(cfg.engine)
    return run_eval(
        engine,
        samples,
        out_dir,
        batch_size=cfg.batch_size,
        crops=cfg.crops,
        barcodes=cfg.barcodes,
        warmup=cfg.warmup,
        top_confusions=cfg.top_confusions,
        manifest=manifest,
        engine_config={str(k): v for k, v in engine_cfg.items()},
        progress=cfg.progress,
        labels=labels,
    )


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR / "eval"), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(OSError, ValueError, EngineUnavailable, out="out_dir"):
        report = evaluate(cfg)
    values = ", ".join(f"{k}={fmt(k, report[k])}" for k in _CONSOLE_KEYS)
    print(f"{report['engine']['name']}: {values}")
    print(f"-> {Path(report['files']['report_md']).parent}")


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
