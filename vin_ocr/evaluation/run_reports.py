"""The runs that ``compare`` puts side by side, read from evaluation folders, training run
folders (``eval/<set>/report.json``) and W&B runs (``wandb:ENTITY/PROJECT[/RUN_ID]``), each as a
:class:`RunReports`: its reports by test set name.

Reports written before ``report.json`` carried ``definitions`` (before 2026-12-01) measured on
``vin.normalize(answer)``, and their ``char_accuracy`` was not 1 - CER: :func:`current` moves
their figures to rows that say what they are (:data:`OLD_ROWS`), so that no row mixes two
definitions. Their exact match is the lenient one of today's reports (the same definition).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vin_ocr
from vin_ocr.evaluation.report import HEADLINE
from vin_ocr.evaluation.report import fmt as _fmt

WANDB_PREFIX = "wandb:"

#: Keys only reports with today's definitions have (W&B summaries carry no ``definitions``).
NEW_ONLY = ("exact_match_lenient", "norm_edit_dis", "positional_accuracy")
#: Where an old report's figures go: old key -> the key it is shown under. Old reports scored
#: ``vin.normalize(answer)`` (labels dropped, I/O/Q -> 1/0/0, the best 17-character run), and
#: their ``char_accuracy`` compared equal-length strings index by index (aligned otherwise,
#: extra characters free).
OLD_KEYS = {
    "exact_match": "exact_match_lenient",  # vin.normalize(answer) == truth: the same definition
    "cer": "cer_normalized",
    "char_accuracy": "char_accuracy_old",
    "valid_rate": "valid_rate_normalized",
    "empty_rate": "empty_rate_normalized",
    "per_position": "per_position_old",
}
#: Rows for old reports' figures, shown only when a compared report has them.
OLD_ROWS: tuple[tuple[str, str, bool | None], ...] = (
    ("cer_normalized", "CER after vin.normalize (old reports)", False),
    (
        "char_accuracy_old",
        "Character accuracy, old definition (index by index, extra characters free)",
        True,
    ),
    ("valid_rate_normalized", "Valid VIN rate after vin.normalize (old reports)", True),
    ("empty_rate_normalized", "Empty rate after vin.normalize (old reports)", False),
)
ROWS = HEADLINE + OLD_ROWS
#: report keys kept for each run and test set in ``FILE.json``
KEPT = (*(k for k, _, _ in ROWS), "per_position", "per_position_old", "old_definitions")


class RunFolderError(ValueError):
    """A path that is not an evaluation or training run folder; the message names it."""


@dataclass
class RunReports:
    """One column of the comparison: a run's reports, by test set name."""

    label: str
    source: str  # the folder or wandb:ENTITY/PROJECT/RUN_ID it was read from
    tag: str  # told apart by this when two runs have the same label (folder name, run id)
    sets: dict[str, dict[str, Any]]


def load_report(run: str | Path) -> dict[str, Any]:
    """Read ``RUN/report.json`` (``run`` may also be the report file itself)."""
    path = Path(run)
    if path.is_dir():
        path = path / "report.json"
    elif not path.exists():
        raise RunFolderError(f"{run}: no such run folder")
    if not path.is_file():
        raise RunFolderError(
            f"{run}: not an evaluation run folder (no report.json) nor a training run folder "
            "(no eval/<set>/report.json)"
        )
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in ("exact_match", "cer", "n") if k not in report]
    if not isinstance(report, dict) or missing:
        raise RunFolderError(f"{path}: not an evaluation report (missing {', '.join(missing)})")
    return report


def fmt(key: str, value: Any) -> str:
    """:func:`vin_ocr.evaluation.report.fmt`, old rows formatted like the rows they stand beside."""
    base = {v: k for k, v in OLD_KEYS.items() if k != "exact_match"}
    return _fmt(base.get(key, key), value)


def is_old(report: Mapping[str, Any]) -> bool:
    """A report written before the metrics had today's definitions: no ``definitions`` and none
    of the keys only today's reports have (:data:`NEW_ONLY`)."""
    return "definitions" not in report and not any(k in report for k in NEW_ONLY)


def current(report: Mapping[str, Any]) -> dict[str, Any]:
    """``report`` with an old report's figures moved to the keys of :data:`OLD_KEYS` (and
    ``old_definitions: True``); a report with today's definitions unchanged.

    >>> current({"exact_match": 0.5, "cer": 0.1, "char_accuracy": 0.95, "n": 4})
    {'n': 4, 'exact_match_lenient': 0.5, 'cer_normalized': 0.1, 'char_accuracy_old': 0.95, \
'old_definitions': True}
    """
    if not is_old(report):
        return dict(report)
    out = {k: v for k, v in report.items() if k not in OLD_KEYS}
    out.update({OLD_KEYS[k]: v for k, v in report.items() if k in OLD_KEYS})
    out["old_definitions"] = True
    return out


def set_name(report: Mapping[str, Any]) -> str:
    """The test set a report scored: ``samples`` for the bundled set, else the manifest's stem."""
    path = (report.get("data") or {}).get("path")
    if not path:
        return "samples"
    if Path(path).resolve() == (vin_ocr.SAMPLES_DIR / "manifest.jsonl").resolve():
        return "samples"
    return Path(path).stem


def engine_name(report: Mapping[str, Any]) -> str | None:
    """The engine a report names (``engine.name``), if any."""
    return (report.get("engine") or {}).get("name")


def load_folder(run: str | Path) -> RunReports:
    """An evaluation folder (one test set) or a training run folder (``eval/<set>/``)."""
    path = Path(run)
    found = sorted(path.glob("eval/*/report.json")) if path.is_dir() else []
    if found and not (path / "report.json").is_file():
        sets = {p.parent.name: load_report(p) for p in found}
    else:
        report = load_report(path)
        sets = {set_name(report): report}
    sets = {name: current(r) for name, r in sets.items()}
    label = (
        next((engine_name(r) for r in sets.values() if engine_name(r)), None) or path.resolve().name
    )
    return RunReports(label, str(run), path.resolve().name, sets)


# --------------------------------------------------------------------------- W&B runs
def reports_from_summary(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Test-set reports from a W&B run summary (``eval/<set>/<metric>``, as ``logger=wandb``
    writes them), old runs' figures moved by :func:`current`; sets without an exact match are
    left out."""
    sets: dict[str, dict[str, Any]] = {}
    for key, value in summary.items():
        parts = str(key).split("/")
        if len(parts) == 3 and parts[0] == "eval" and parts[2] in KEPT:
            sets.setdefault(parts[1], {})[parts[2]] = value
    return {name: current(r) for name, r in sets.items() if r.get("exact_match") is not None}


def _wandb_api() -> Any:
    from vin_ocr.evaluation.wandb_access import import_wandb, wandb_api_key_available

    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        raise ValueError(
            f"W&B runs are read online, but WANDB_MODE={mode}: unset it, upload offline runs "
            "with `wandb sync`, or compare the local run folders instead"
        )
    if not wandb_api_key_available():
        raise ValueError(
            "reading W&B runs needs an API key: set WANDB_API_KEY or run `wandb login`"
        )
    return import_wandb().Api(timeout=30)


def load_wandb(source: str, api: Any = None, max_runs: int = 10) -> list[RunReports]:
    """``wandb:ENTITY/PROJECT/RUN_ID`` (one run) or ``wandb:ENTITY/PROJECT`` (its newest runs
    with test metrics, at most ``max_runs``), through ``wandb.Api`` (or ``api``)."""
    path = source.removeprefix(WANDB_PREFIX).strip("/")
    parts = path.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"{source}: expected wandb:ENTITY/PROJECT or wandb:ENTITY/PROJECT/RUN_ID")
    api = api if api is not None else _wandb_api()
    try:
        if len(parts) == 3:
            runs = [api.run(path)]
        else:
            listed = (r for r in api.runs(path, order="-created_at") if _has_reports(r))
            runs = list(itertools.islice(listed, max_runs))
    except Exception as e:  # the network, auth, a missing project: the message, not a trace
        raise ValueError(f"{source}: cannot read from W&B ({type(e).__name__}: {e})") from e
    out = []
    for run in runs:
        sets = reports_from_summary(run.summary_metrics)
        if not sets:
            raise ValueError(
                f"{source}: run {run.id} has no test metrics (eval/<set>/exact_match); was it "
                "logged with logger=wandb, and did it finish?"
            )
        where = f"{WANDB_PREFIX}{parts[0]}/{parts[1]}/{run.id}"
        out.append(RunReports(run.name or run.id, where, run.id, sets))
    if not out:
        raise ValueError(f"{source}: no run in this project logged test metrics")
    return out


def _has_reports(run: Any) -> bool:
    return bool(reports_from_summary(run.summary_metrics))


def load_runs(
    sources: Iterable[str | Path], api: Any = None, max_runs: int = 10
) -> list[RunReports]:
    """Every source read, and labels made unique (folder name or run id, then ``#n``)."""
    runs: list[RunReports] = []
    for src in sources:
        if str(src).startswith(WANDB_PREFIX):
            runs += load_wandb(str(src), api, max_runs)
        else:
            runs.append(load_folder(src))
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # the same engine twice: add the folder names / run ids
        labels = [f"{r.label} ({r.tag})" for r in runs]
    if len(set(labels)) < len(labels):  # the same folder twice
        labels = [f"{lbl} #{i + 1}" for i, lbl in enumerate(labels)]
    for run, label in zip(runs, labels, strict=True):
        run.label = label
    return runs
