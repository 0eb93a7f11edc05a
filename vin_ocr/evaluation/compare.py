"""Put evaluation runs side by side: one markdown table, metrics as rows, runs as columns.

    python -m vin_ocr.evaluation.compare runs=[DIR1,DIR2,...] [out=FILE.md]

Prints the table; with ``out`` also writes it there, plus a combined per-position chart beside
it (``FILE.png``). The best value of each metric is in bold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

import vin_ocr
from vin_ocr.data.sample import atomic_write_text
from vin_ocr.evaluation.report import HEADLINE, fmt, plot_per_position


class RunFolderError(ValueError):
    """A path that is not an evaluation run folder; the message names it."""


def load_report(run: str | Path) -> dict[str, Any]:
    """Read ``RUN/report.json`` (``run`` may also be the report file itself)."""
    path = Path(run)
    if path.is_dir():
        path = path / "report.json"
    elif not path.exists():
        raise RunFolderError(f"{run}: no such run folder")
    if not path.is_file():
        raise RunFolderError(f"{run}: not an evaluation run folder (no report.json)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in ("exact_match", "cer", "n") if k not in report]
    if not isinstance(report, dict) or missing:
        raise RunFolderError(f"{path}: not an evaluation report (missing {', '.join(missing)})")
    return report


def _label(report: Mapping[str, Any], i: int) -> str:
    return str(report.get("engine", {}).get("name") or f"run {i + 1}")


def _labelled(reports: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]):
    if isinstance(reports, Mapping):
        return dict(reports)
    labels = [_label(r, i) for i, r in enumerate(reports)]
    out: dict[str, Mapping[str, Any]] = {}
    for i, (label, r) in enumerate(zip(labels, reports, strict=True)):
        out[label if labels.count(label) == 1 else f"{label} ({i + 1})"] = r
    return out


def compare(reports: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table of the headline metrics, one column per report, best value in bold.

    ``reports`` is a list (columns named after each report's engine) or a mapping label -> report.

    >>> a = {"engine": {"name": "a"}, "exact_match": 0.5, "cer": 0.1, "n": 4}
    >>> b = {"engine": {"name": "b"}, "exact_match": 0.75, "cer": 0.2, "n": 4}
    >>> print(compare([a, b]).splitlines()[2])
    | Exact match | 50.00 % | **75.00 %** |
    """
    runs = _labelled(reports)
    if len(runs) < 1:
        raise ValueError("compare: no reports given")
    lines = ["| Metric | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for key, label, higher in HEADLINE:
        values = [r.get(key) for r in runs.values()]
        present = [v for v in values if v is not None]
        best = None
        if higher is not None and len(present) > 1 and len(set(present)) > 1:
            best = max(present) if higher else min(present)
        cells = [
            f"**{fmt(key, v)}**" if v is not None and v == best else fmt(key, v) for v in values
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    data = {str(r.get("data", {}).get("path")) for r in runs.values()}
    if len(data) > 1:
        lines += ["", "Note: these runs read different data sets: " + ", ".join(sorted(data))]
    return "\n".join(lines) + "\n"


def compare_runs(runs: Sequence[str | Path], out: str | Path | None = None) -> str:
    """Load each run folder's report, build the table; with ``out``, write it and a chart."""
    if not runs:
        raise ValueError("compare: pass runs=[DIR1,DIR2,...]")
    reports = [load_report(r) for r in runs]
    labels = [_label(r, i) for i, r in enumerate(reports)]
    if len(set(labels)) < len(labels):  # the same engine twice: add the folder names
        labels = [f"{lbl} ({Path(p).resolve().name})" for lbl, p in zip(labels, runs, strict=True)]
    if len(set(labels)) < len(labels):  # the same folder twice
        labels = [f"{lbl} #{i + 1}" for i, lbl in enumerate(labels)]
    table = compare(dict(zip(labels, reports, strict=True)))
    if out is not None:
        out = Path(out)
        header = "# VIN evaluation runs compared\n\n" + "".join(
            f"- {lbl}: `{p}`\n" for lbl, p in zip(labels, runs, strict=True)
        )
        chart = plot_per_position(
            {lbl: r.get("per_position") or [] for lbl, r in zip(labels, reports, strict=True)},
            out.with_suffix(".png"),
        )
        atomic_write_text(out, f"{header}\n{table}\n![per position]({chart.name})\n")
    return table


@dataclass
class CompareConf:
    runs: list[str] = MISSING
    out: str | None = None


ConfigStore.instance().store(name="compare_schema", node=CompareConf)


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        print(compare_runs(list(cfg.runs), cfg.out), end="")
    except (OSError, ValueError) as e:  # bad input: the message, no trace
        raise SystemExit(f"error: {e}") from e


if __name__ == "__main__":
    main()
