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

Reports written before ``report.json`` carried ``definitions`` (before 2026-12-01) measured on
``vin.normalize(answer)``, and their ``char_accuracy`` was not 1 - CER: :func:`current` moves
their figures to rows that say what they are (:data:`OLD_ROWS`), so that no row mixes two
definitions. Their exact match is the lenient one of today's reports (the same definition).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

import vin_ocr
from vin_ocr.data.sample import atomic_write_text
from vin_ocr.errors import exit_on_user_error
from vin_ocr.evaluation.report import HEADLINE, plot_per_position, write_json
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


def _engine(report: Mapping[str, Any]) -> str | None:
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
    label = next((_engine(r) for r in sets.values() if _engine(r)), None) or path.resolve().name
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
    from vin_ocr.training.loggers import import_wandb, wandb_api_key_available

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


# --------------------------------------------------------------------------- the comparison
def _best(values: Sequence[Any], higher: bool | None) -> Any:
    present = [v for v in values if v is not None]
    if higher is None or len(present) < 2 or len(set(present)) < 2:
        return None
    return max(present) if higher else min(present)


def _rows(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> tuple:
    """:data:`HEADLINE`, and those of :data:`OLD_ROWS` some report has."""
    present = {k for by_set in runs.values() for r in by_set.values() for k in r}
    return HEADLINE + tuple(row for row in OLD_ROWS if row[0] in present)


def _old_note(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    old = [
        lbl
        for lbl, by_set in runs.items()
        if any(r.get("old_definitions") for r in by_set.values())
    ]
    if not old:
        return []
    return [
        f"Note: {', '.join(old)}: report(s) written before report.json carried `definitions`, "
        "scored on vin.normalize(answer): their exact match is shown as the lenient one (the "
        "same definition), their CER, character accuracy, valid and empty rates in rows of "
        "their own (old definitions), their per-position accuracy is left out of the winners."
    ]


def metrics_table(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A markdown table of the headline metrics: one column per run (``label -> set ->
    report``), one row per metric (and test set, in a first column, when there are several);
    old reports' figures (see :func:`current`) in rows of their own, with a note."""
    if not runs:
        raise ValueError("compare: no reports given")
    sets = list(dict.fromkeys(s for by_set in runs.values() for s in by_set))
    multi = len(sets) > 1
    lines = [
        ("| Set " if multi else "") + "| Metric | " + " | ".join(runs) + " |",
        "|" + "---|" * (multi + 1 + len(runs)),
    ]
    notes = _old_note(runs)
    rows = _rows(runs)
    for s in sets:
        reports = [by_set.get(s) or {} for by_set in runs.values()]
        for key, label, higher in rows:
            values = [r.get(key) for r in reports]
            best = _best(values, higher)
            cells = [
                f"**{fmt(key, v)}**" if v is not None and v == best else fmt(key, v) for v in values
            ]
            lines.append(
                ("| " + s + " " if multi else "") + f"| {label} | " + " | ".join(cells) + " |"
            )
        data = {str((r.get("data") or {}).get("path")) for r in reports if r.get("data")}
        if len(data) > 1:
            where = f" ({s})" if multi else ""
            notes.append(
                f"Note: these runs read different data sets{where}: " + ", ".join(sorted(data))
            )
    return "\n".join(lines + ([""] if notes else []) + notes) + "\n"


def compare(reports: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table of the headline metrics of reports on one test set, best in bold.

    ``reports`` is a list (columns named after each report's engine) or a mapping label -> report;
    old reports' figures are shown under their own rows (:func:`current`).

    >>> a = {"engine": {"name": "a"}, "exact_match": 0.5, "cer": 0.1, "n": 4, "definitions": {}}
    >>> b = {"engine": {"name": "b"}, "exact_match": 0.75, "cer": 0.2, "n": 4, "definitions": {}}
    >>> print(compare([a, b]).splitlines()[2])
    | Exact match | 50.00 % | **75.00 %** |
    """
    if isinstance(reports, Mapping):
        runs = dict(reports)
    else:
        labels = [_engine(r) or f"run {i + 1}" for i, r in enumerate(reports)]
        runs = {
            lbl if labels.count(lbl) == 1 else f"{lbl} ({i + 1})": r
            for i, (lbl, r) in enumerate(zip(labels, reports, strict=True))
        }
    return metrics_table({label: {"": current(r)} for label, r in runs.items()})


def winners(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Who is best, per test set: for each headline metric the run(s) with the best value
    (ties: several; none when fewer than two runs have it or all are equal), and for each VIN
    position the run(s) with the highest accuracy there."""
    out: dict[str, Any] = {}
    sets = list(dict.fromkeys(s for by_set in runs.values() for s in by_set))
    for s in sets:
        present = {lbl: by_set[s] for lbl, by_set in runs.items() if s in by_set}
        metrics = {}
        for key, _, higher in ROWS:
            best = _best([r.get(key) for r in present.values()], higher)
            if best is not None:
                metrics[key] = [lbl for lbl, r in present.items() if r.get(key) == best]
        series = {lbl: r.get("per_position") or [] for lbl, r in present.items()}
        n_pos = max((len(v) for v in series.values()), default=0)
        positions = []
        for i in range(n_pos):
            at = {lbl: v[i] for lbl, v in series.items() if i < len(v) and v[i] is not None}
            best = _best(list(at.values()), True)
            positions.append(
                [lbl for lbl, v in at.items() if v == best] if best is not None else []
            )
        out[s] = {"metrics": metrics, "per_position": positions}
    return out


def _spans(positions: Sequence[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3, 5`` (1-based positions)."""
    groups = []
    for _, grp in itertools.groupby(enumerate(positions), key=lambda t: t[1] - t[0]):
        run = [p for _, p in grp]
        groups.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(groups)


def wins_markdown(runs: Mapping[str, Mapping[str, Mapping[str, Any]]], wins: Mapping) -> str:
    """The "who wins where" section: per test set, each metric's winner with the runner-up,
    the positions each run leads, and a count of metric wins per run."""
    labels = {key: label for key, label, _ in ROWS}
    higher = {key: h for key, _, h in ROWS}
    lines = ["## Who wins where", ""]
    total = dict.fromkeys(runs, 0)
    for s, w in wins.items():
        lines += [f"### {s}" if s else "### Metrics", ""]
        if not w["metrics"]:
            lines += ["No metric separates the runs.", ""]
        else:
            lines += ["| Metric | Best | Value | Next |", "|---|---|---|---|"]
            for key, best in w["metrics"].items():
                value = runs[best[0]][s][key]
                others = [
                    (r[s][key], lbl)
                    for lbl, r in runs.items()
                    if s in r and r[s].get(key) is not None and lbl not in best
                ]
                others.sort(reverse=bool(higher[key]))
                nxt = f"{others[0][1]}: {fmt(key, others[0][0])}" if others else "–"
                lines.append(f"| {labels[key]} | {', '.join(best)} | {fmt(key, value)} | {nxt} |")
                for lbl in best:
                    total[lbl] += 1
            lines.append("")
        leads: dict[str, list[int]] = {}
        for i, best in enumerate(w["per_position"], start=1):
            leads.setdefault(best[0] if len(best) == 1 else "", []).append(i)
        if w["per_position"]:
            parts = [f"{lbl} leads at {_spans(p)}" for lbl, p in leads.items() if lbl]
            if "" in leads:
                parts.append(f"tied at {_spans(leads[''])}")
            lines += ["Accuracy per position: " + "; ".join(parts) + ".", ""]
    n = sum(len(w["metrics"]) for w in wins.values())
    tally = ", ".join(f"{lbl} {k}" for lbl, k in sorted(total.items(), key=lambda t: -t[1]))
    lines.append(f"Metric wins (of {n}, ties count for each): {tally}.")
    return "\n".join(lines) + "\n"


@dataclass
class Comparison:
    """Runs side by side; :meth:`write` puts the markdown, JSON and chart(s) on disk."""

    runs: list[RunReports]
    by_label: dict[str, dict[str, dict[str, Any]]] = field(init=False)
    table: str = field(init=False)
    wins: dict[str, Any] = field(init=False)
    wins_md: str = field(init=False)

    def __post_init__(self) -> None:
        self.by_label = {r.label: r.sets for r in self.runs}
        self.table = metrics_table(self.by_label)
        self.wins = winners(self.by_label)
        self.wins_md = wins_markdown(self.by_label, self.wins)

    def to_json(self) -> dict[str, Any]:
        def kept(report: Mapping[str, Any]) -> dict[str, Any]:
            out = {k: report.get(k) for k in KEPT if k in report}
            out["data"] = (report.get("data") or {}).get("path")
            return out

        return {
            "runs": [
                {
                    "label": r.label,
                    "source": r.source,
                    "sets": {s: kept(rep) for s, rep in r.sets.items()},
                }
                for r in self.runs
            ],
            "winners": self.wins,
        }

    def write(self, out: str | Path) -> dict[str, Path]:
        """``out`` (markdown), ``out`` with ``.json``, and the per-position chart(s) beside."""
        out = Path(out)
        sets = list(self.wins)
        charts = {}
        for s in sets:
            png = (
                out.with_suffix(".png") if len(sets) == 1 else out.with_name(f"{out.stem}_{s}.png")
            )
            series = {
                lbl: by_set[s].get("per_position") or []
                for lbl, by_set in self.by_label.items()
                if s in by_set and not by_set[s].get("old_definitions")
            }
            series.update(  # old reports: their own label, never one series with today's
                {
                    f"{lbl} (old definition)": by_set[s].get("per_position_old") or []
                    for lbl, by_set in self.by_label.items()
                    if s in by_set and by_set[s].get("old_definitions")
                }
            )
            charts[s] = plot_per_position(series, png)
        header = "# VIN runs compared\n\n" + "".join(
            f"- {r.label}: `{r.source}`\n" for r in self.runs
        )
        images = "".join(
            f"![per position{f' ({s})' if len(sets) > 1 else ''}]({p.name})\n"
            for s, p in charts.items()
        )
        text = f"{header}\n{self.table}\n{images}\n{self.wins_md}"
        files = {
            "md": atomic_write_text(out, text),
            "json": write_json(out.with_suffix(".json"), self.to_json()),
        }
        files.update({f"chart:{s}": p for s, p in charts.items()})
        return files


def compare_runs(
    runs: Sequence[str | Path],
    out: str | Path | None = None,
    api: Any = None,
    wandb_max_runs: int = 10,
) -> str:
    """Load each run (folder or ``wandb:...``), build the table; with ``out``, write the
    markdown, JSON and chart(s). Returns the table."""
    return build_comparison(runs, out, api, wandb_max_runs).table


def build_comparison(
    runs: Sequence[str | Path],
    out: str | Path | None = None,
    api: Any = None,
    wandb_max_runs: int = 10,
) -> Comparison:
    """:func:`compare_runs`, returning the whole :class:`Comparison`."""
    if not runs:
        raise ValueError("compare: pass runs=[DIR1,DIR2,...]")
    comparison = Comparison(load_runs(runs, api, wandb_max_runs))
    if out is not None:
        comparison.write(out)
    return comparison


@dataclass
class CompareConf:
    runs: list[str] = MISSING
    out: str | None = None
    wandb_max_runs: int = 10


ConfigStore.instance().store(name="compare_schema", node=CompareConf)


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(OSError, ValueError, out="out"):  # bad input: the message, no trace
        comparison = build_comparison(list(cfg.runs), cfg.out, wandb_max_runs=cfg.wandb_max_runs)
    print(comparison.table + "\n" + comparison.wins_md, end="")


if __name__ == "__main__":
    main()
