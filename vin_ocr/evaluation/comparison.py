"""Runs side by side (:class:`Comparison`): the markdown table of the headline metrics (best
in bold), who wins where, and the per-position chart(s); the runs come from
:func:`vin_ocr.evaluation.run_reports.load_runs`. Its command line is
:mod:`vin_ocr.evaluation.compare`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vin_ocr.data.sample import atomic_write_text
from vin_ocr.evaluation.report import HEADLINE, plot_per_position, write_json
from vin_ocr.evaluation.run_reports import (
    KEPT,
    OLD_ROWS,
    ROWS,
    RunReports,
    current,
    engine_name,
    fmt,
    load_runs,
)


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
        labels = [engine_name(r) or f"run {i + 1}" for i, r in enumerate(reports)]
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
