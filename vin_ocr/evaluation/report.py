"""Writing an evaluation run's files: ``predictions.jsonl``, ``report.json``, ``report.md``,
``per_position.png``. Every file is written through a temporary file and a rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vin_ocr.data.sample import atomic_write_text

#: Headline metrics in report order: key, label, higher is better (None: no "best").
HEADLINE: tuple[tuple[str, str, bool | None], ...] = (
    ("exact_match", "Exact match", True),
    ("exact_match_lenient", "Exact match, lenient (VIN found in the output)", True),
    ("cer", "CER", False),
    ("char_accuracy", "Character accuracy (1 − CER)", True),
    ("norm_edit_dis", "norm_edit_dis (PaddleOCR)", True),
    ("positional_accuracy", "Positional accuracy (index by index)", True),
    ("valid_rate", "Valid VIN rate", True),
    ("empty_rate", "Empty rate", False),
    ("ms_per_image", "ms / image (mean)", False),
    ("ms_p50", "ms / image (p50)", False),
    ("ms_p95", "ms / image (p95)", False),
    ("images_per_s", "Images / s", True),
    ("n", "Samples", None),
)
_PERCENT = {
    "exact_match",
    "exact_match_lenient",
    "char_accuracy",
    "cer",
    "norm_edit_dis",
    "positional_accuracy",
    "valid_rate",
    "empty_rate",
}


def fmt(key: str, value: Any) -> str:
    """Format one headline value for a table (rates as percentages)."""
    if value is None:
        return "–"
    if key in _PERCENT:
        return f"{100 * value:.2f} %"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return atomic_write_text(path, text)


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def render_markdown(report: Mapping[str, Any], errors: Sequence[Mapping[str, Any]] = ()) -> str:
    """A human-readable report: headline table, per-position accuracy, confusions, errors."""
    lines = [
        f"# VIN evaluation: {report.get('engine', {}).get('name', '?')}",
        "",
        f"- data: `{report.get('data', {}).get('path', '?')}`",
        f"- crops: {report.get('crops', '?')}, batch size: {report.get('batch_size', '?')}",
        f"- written: {report.get('timestamp', '?')}",
        "",
        "| Metric | Value |",
        "|---|---|",
    ]
    lines += [f"| {label} | {fmt(key, report.get(key))} |" for key, label, _ in HEADLINE]
    labels = report.get("labels") or {}
    noted = {k: v for k, v in labels.items() if k != "rows" and v}
    if noted:
        lines += [
            "",
            "Labels: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in noted.items()),
        ]
    kinds = report.get("by_kind") or {}
    if len(kinds) > 1:
        keys = [(k, lbl) for k, lbl, _ in HEADLINE if k in next(iter(kinds.values()))]
        lines += ["", "## Line crops and scenes", ""]
        lines += [
            "| Kind | " + " | ".join(lbl for _, lbl in keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for kind, m in kinds.items():
            lines.append(f"| {kind} | " + " | ".join(fmt(k, m.get(k)) for k, _ in keys) + " |")
    pos = report.get("per_position") or []
    if pos:
        lines += ["", "## Accuracy per position", ""]
        lines.append("| " + " | ".join(str(i) for i in range(1, len(pos) + 1)) + " |")
        lines.append("|" + "---|" * len(pos))
        lines.append("| " + " | ".join("–" if a is None else f"{100 * a:.0f}" for a in pos) + " |")
    rep = report.get("repairs") or {}
    if rep.get("searched"):
        lines += ["", "## VIN-constrained search (check digit)", ""]
        lines += [
            f"Of {rep['searched']} labelled readings the search ran on, it changed "
            f"{rep['changed']}: **{rep['fixed']} fixed** (wrong before, exact after), "
            f"**{rep['broke']} broke** (exact before, wrong after), {rep['still_wrong']} "
            "still wrong."
        ]
    conf = report.get("confusions") or []
    if conf:
        lines += ["", "## Most frequent confusions (truth → prediction)", ""]
        lines += ["| Truth | Prediction | Count |", "|---|---|---|"]
        lines += [f"| `{c['truth']}` | `{c['pred']}` | {c['count']} |" for c in conf[:15]]
    if errors:
        lines += [
            "",
            "## First errors",
            "",
            "| Image | Truth | Answer |",
            "|---|---|---|",
        ]
        lines += [f"| `{e['image']}` | `{e['truth']}` | `{e['raw']}` |" for e in errors]
    defs = report.get("definitions") or {}
    if defs:
        lines += ["", "## Definitions", ""]
        lines += [f"- `{k}`: {v}" for k, v in defs.items()]
    return "\n".join(lines) + "\n"


def plot_per_position(series: Mapping[str, Sequence[float | None]], path: Path) -> Path:
    """Bar chart of accuracy per VIN position, one group of bars per series; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_pos = max((len(v) for v in series.values()), default=17)
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.5 * n_pos), 4.0))
    for k, (label, values) in enumerate(series.items()):
        xs = [i + 1 + (k - (len(series) - 1) / 2) * width for i in range(len(values))]
        ax.bar(xs, [100 * (v or 0.0) for v in values], width=width, label=label)
    ax.set_xticks(range(1, n_pos + 1))
    ax.set_xlabel("VIN position")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Character accuracy per position")
    if len(series) > 1:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(4, len(series)))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
