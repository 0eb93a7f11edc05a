"""Read users' data, validate it, split it by VIN and write manifests (and parquet + card).

    python -m vin_ocr.data.prepare source=folder source.path=DIR source.labels=labels.csv \\
        out=OUT_DIR [strict=true] [split.train=0.8 split.val=0.1 split.test=0.1] \\
        [format=jsonl|parquet]

Writes ``OUT_DIR/{train,val,test}.jsonl``; ``format=parquet`` adds ``OUT_DIR/data/<split>.parquet``
(images embedded) and a dataset card ``OUT_DIR/README.md``. Outputs are written only after
validation, each through a temporary file and a rename. An ``OUT_DIR`` that already holds
manifests (or a parquet/card output) is refused unless ``overwrite=true``; one that cannot be
written is refused before anything is read. A split with a non-zero ratio that would be empty
(too few VINs: a VIN never goes to two splits) is refused, naming it, unless
``allow_empty_splits=true`` (then a warning); set its ratio to 0 to go without it.
Sources (``configs/source/``): ``folder``, ``paddle``, ``hf``, ``manifest``, ``yolo``; each names
its reader with ``_target_``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import vin_ocr
from vin_ocr.config import register_configs
from vin_ocr.data.prepare_config import OutputFormat, PrepareConfig
from vin_ocr.data.prepare_output import PrepareResult, _public, check_out, write_outputs
from vin_ocr.data.sample import ManifestError, Sample
from vin_ocr.data.splits import split_by_vin
from vin_ocr.data.validate import DataValidationError, validate_samples
from vin_ocr.errors import exit_on_user_error

__all__ = ["PrepareConfig", "PrepareResult", "check_out", "main", "prepare"]

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig) -> PrepareResult:
    """Read ``cfg.source``, validate, split by VIN and write the outputs under ``cfg.out``.

    Raises :class:`DataValidationError` (strict mode, or nothing usable left) and ValueError
    (``out`` holds a previous result or cannot be written, a split would be empty) before
    writing.
    """
    out = Path(cfg.out)
    fmt = getattr(cfg.format, "name", cfg.format)
    if fmt not in OutputFormat.__members__:
        raise ValueError(f"format={fmt!r}: expected one of {list(OutputFormat.__members__)}")
    check_out(out, list(cfg.split), bool(cfg.get("overwrite", False)))
    samples: list[Sample] = instantiate(cfg.source, _convert_="all")
    log.info("read %d samples from %s", len(samples), cfg.source.path)
    report = validate_samples(samples, strict=bool(cfg.strict), **cfg.get("validate", {}))
    if not report.kept:
        raise DataValidationError(report)
    splits = split_by_vin(report.kept, ratios=dict(cfg.split), seed=int(cfg.seed))
    splits = {name: [_public(s) for s in part] for name, part in splits.items()}
    empty = [n for n, part in splits.items() if not part and float(cfg.split[n]) > 0]
    if empty:
        vins = len({s.vin for s in report.kept})
        what = (
            f"split {', '.join(empty)} would be empty: {vins} VIN(s) for ratios "
            + ", ".join(f"{n} {float(r):g}" for n, r in cfg.split.items())
            + " (a VIN never goes to two splits)"
        )
        if not cfg.get("allow_empty_splits", False):
            raise ValueError(
                f"{what}; add data, set split.{empty[0]}=0 (and rebalance), or "
                "allow_empty_splits=true to write it empty"
            )
        log.warning("WARNING: %s; written empty (allow_empty_splits=true)", what)
    files = write_outputs(splits, out, fmt, dict(cfg.get("card", {})))
    return PrepareResult(report=report, splits=splits, files=files)


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(DataValidationError, ManifestError, OSError, ValueError, out="out"):
        result = prepare(cfg)
    print(result.summary())


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
