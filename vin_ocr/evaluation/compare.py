"""Put runs side by side: one markdown table (metrics as rows, runs as columns), a per-position
accuracy chart and which run wins where.

    python -m vin_ocr.evaluation.compare runs=[RUN1,RUN2,...] [out=FILE.md] [wandb_max_runs=10]

Each entry of ``runs`` is one of

- an evaluation folder (``report.json``, from ``python -m vin_ocr.evaluation.evaluate``),
- a training run folder (``eval/<set>/report.json``, from ``hf_finetune``): one column with
  every test set it was evaluated on,
- ``wandb:ENTITY/PROJECT/RUN_ID`` (one W&B run logged with ``logger=wandb``) or
  ``wandb:ENTITY/PROJECT`` (the project's newest runs that logged test metrics, at most
  ``wandb_max_runs``); these need the network and a W&B API key.

Test sets are matched by name: the bundled samples are ``samples``, any other manifest its file
stem (what a training run names ``eval/<set>``). It prints the table and the "who wins where"
section; with ``out`` it writes ``FILE.md`` (both, plus the chart), ``FILE.json`` (every figure
and the winners) and the chart ``FILE.png`` (``FILE_<set>.png`` per test set when there are
several). The best value of each metric is in bold.

Reports written before ``report.json`` carried ``definitions`` (before 2026-12-01) have their
figures shown in rows of their own (:func:`current`). The library: reading the runs is
:mod:`vin_ocr.evaluation.run_reports`, the comparison :mod:`vin_ocr.evaluation.comparison`; their
names are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import hydra
from omegaconf import MISSING, DictConfig

import vin_ocr
from vin_ocr.config import register_configs
from vin_ocr.errors import exit_on_user_error
from vin_ocr.evaluation.comparison import (
    Comparison,
    build_comparison,
    compare,
    compare_runs,
    metrics_table,
    winners,
    wins_markdown,
)
from vin_ocr.evaluation.run_reports import (
    KEPT,
    NEW_ONLY,
    OLD_KEYS,
    OLD_ROWS,
    ROWS,
    WANDB_PREFIX,
    RunFolderError,
    RunReports,
    current,
    fmt,
    is_old,
    load_folder,
    load_report,
    load_runs,
    load_wandb,
    reports_from_summary,
    set_name,
)

__all__ = [
    "KEPT",
    "NEW_ONLY",
    "OLD_KEYS",
    "OLD_ROWS",
    "ROWS",
    "WANDB_PREFIX",
    "CompareConf",
    "Comparison",
    "RunFolderError",
    "RunReports",
    "build_comparison",
    "compare",
    "compare_runs",
    "current",
    "fmt",
    "is_old",
    "load_folder",
    "load_report",
    "load_runs",
    "load_wandb",
    "main",
    "metrics_table",
    "reports_from_summary",
    "set_name",
    "winners",
    "wins_markdown",
]


@dataclass
class CompareConf:
    runs: list[str] = MISSING
    out: str | None = None
    wandb_max_runs: int = 10


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(OSError, ValueError, out="out"):  # bad input: the message, no trace
        comparison = build_comparison(list(cfg.runs), cfg.out, wandb_max_runs=cfg.wandb_max_runs)
    print(comparison.table + "\n" + comparison.wins_md, end="")


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
